// The receive-pack command parser: arbitrary bytes give commands, a pack, or an error; never more
// pack bytes than the limit, never a command with a malformed id.
#include "fleetconf/gitconf/receive_pack.hpp"

#include <cstdint>
#include <cstdlib>
#include <string_view>

using namespace fleetconf::gitconf;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view in(reinterpret_cast<const char*>(data), size);
    ReceivePack rp(PushLimits{.max_pack = 4096, .max_object = 1024, .max_repo = 1 << 20, .max_commands = 8});
    const auto split = size ? data[0] % (size + 1) : 0;
    std::size_t used = rp.feed(in.substr(0, split));
    used += rp.feed(in.substr(used));
    if (used > size) std::abort();
    rp.end_of_input();
    if (rp.pack().size() > 4096 || rp.commands().size() > 8) std::abort();
    PushResult r;
    r.commands = rp.commands();
    (void)report(r, rp.side_band());
    return 0;
}
