// pkt-line codec: arbitrary bytes must parse to packets or an error, never past the buffer, and the
// incremental parse must agree with a whole-buffer parse.
#include "fleetconf/gitconf/pktline.hpp"

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

using namespace fleetconf::gitconf;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view in(reinterpret_cast<const char*>(data), size);
    std::string rebuilt;
    std::size_t pos = 0;
    while (pos < in.size()) {
        pkt::Packet p;
        std::size_t used = 0;
        const auto ec = pkt::parse(in.substr(pos), p, used);
        if (ec) break;
        if (used == 0 || used > in.size() - pos) std::abort();
        if (p.kind == pkt::Kind::data) {
            if (p.payload.size() + 4 != used) std::abort();
            pkt::write(rebuilt, p.payload);
        } else if (p.kind == pkt::Kind::flush) {
            pkt::write_flush(rebuilt);
        } else if (p.kind == pkt::Kind::delim) {
            pkt::write_delim(rebuilt);
        } else {
            pkt::write_response_end(rebuilt);
        }
        pos += used;
    }
    // Re-encoding what was parsed gives the same packets (lengths in lower case).
    std::size_t rpos = 0, ipos = 0;
    while (rpos < rebuilt.size()) {
        pkt::Packet a, b;
        std::size_t ua = 0, ub = 0;
        if (pkt::parse(std::string_view(rebuilt).substr(rpos), a, ua) || pkt::parse(in.substr(ipos), b, ub)) std::abort();
        if (a.kind != b.kind || a.payload != b.payload) std::abort();
        rpos += ua;
        ipos += ub;
    }
    return 0;
}
