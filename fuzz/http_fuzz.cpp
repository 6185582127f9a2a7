// The HTTP request reader (every service endpoint reads untrusted requests with it): no crash on any
// input, limits always hold, and the bytes split at any point read the same as in one piece. The same
// bytes also go to the client side's response and URL parsers (webhook answers, `dhcp ctl`).
#include "fleetconf/common/http.hpp"

#include <cstdint>
#include <string_view>

using namespace fleetconf::common;

#define FUZZ_ASSERT(c)              \
    do {                            \
        if (!(c)) __builtin_trap(); \
    } while (0)

namespace {
const HttpLimits kLimits{.max_url = 256, .max_header_bytes = 1024, .max_body = 512, .body_limit = {}};

struct Outcome {
    HttpRequestReader::State state;
    HttpRequest req;
    std::size_t used = 0;
};

// Reads every request in `in` (pipelined), fed in pieces of `step` bytes.
std::vector<Outcome> read_all(std::string_view in, std::size_t step) {
    std::vector<Outcome> out;
    HttpRequestReader r(kLimits);
    std::size_t pos = 0, start = 0;
    while (pos < in.size() && out.size() < 64) {
        const auto n = r.feed(in.substr(pos, std::min(step, in.size() - pos)));
        pos += n;
        if (r.state() == HttpRequestReader::State::reading) {
            if (n == 0) break;  // cannot happen while reading; guards the loop
            continue;
        }
        out.push_back({r.state(), r.request(), pos - start});
        if (r.state() != HttpRequestReader::State::complete) break;
        const auto& q = r.request();
        FUZZ_ASSERT(q.url.size() <= kLimits.max_url);
        FUZZ_ASSERT(q.body.size() <= kLimits.max_body);
        std::size_t header_bytes = 0;
        for (const auto& [k, v] : q.headers) header_bytes += k.size() + v.size();
        FUZZ_ASSERT(header_bytes <= 3 * kLimits.max_header_bytes);  // each ", " join follows a counted field byte
        (void)parse_basic_auth(q.header("authorization"));
        r.next();
        start = pos;
    }
    return out;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const std::size_t step = 1 + data[0] % 17;
    const std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
    if (auto r = parse_http_response(in, 64)) FUZZ_ASSERT(r->body.size() <= 64 && r->status > 0);
    if (auto u = parse_http_url(in)) FUZZ_ASSERT(!u->host.empty() && !u->target.empty());
    const auto whole = read_all(in, in.size() + 1);
    const auto pieces = read_all(in, step);
    // A request that completes in one piece completes the same way in pieces (errors may be found at
    // different points, so only complete requests are compared).
    for (std::size_t i = 0; i < whole.size() && i < pieces.size(); ++i) {
        if (whole[i].state != HttpRequestReader::State::complete) break;
        FUZZ_ASSERT(pieces[i].state == HttpRequestReader::State::complete);
        FUZZ_ASSERT(pieces[i].req.method == whole[i].req.method);
        FUZZ_ASSERT(pieces[i].req.url == whole[i].req.url);
        FUZZ_ASSERT(pieces[i].req.headers == whole[i].req.headers);
        FUZZ_ASSERT(pieces[i].req.body == whole[i].req.body);
        FUZZ_ASSERT(pieces[i].used == whole[i].used);
    }
    return 0;
}
