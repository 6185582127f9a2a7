// Value-type parsers and codecs: no crash on any input, and parse(format(x)) == x for what parses.
#include "fleetconf/common/crypto.hpp"
#include "fleetconf/common/net.hpp"

#include <cstdint>
#include <string_view>

using namespace fleetconf::common;

#define FUZZ_ASSERT(c)              \
    do {                            \
        if (!(c)) __builtin_trap(); \
    } while (0)

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view s(reinterpret_cast<const char*>(data), size);
    if (auto a = Ipv4::parse(s)) FUZZ_ASSERT(Ipv4::parse(a->to_string()) == a);
    if (auto a = Ipv6::parse(s)) FUZZ_ASSERT(Ipv6::parse(a->to_string()) == a);
    if (auto p = Prefix::parse(s)) FUZZ_ASSERT(Prefix::parse(p->to_string()) == p);
    if (auto r = Range::parse(s)) FUZZ_ASSERT(Range::parse(r->to_string()) == r);
    if (auto m = Mac::parse(s)) FUZZ_ASSERT(Mac::parse(m->to_string()) == m);
    if (auto e = Endpoint::parse(s)) FUZZ_ASSERT(Endpoint::parse(e->to_string()) == e);
    (void)Endpoint::parse(s, 80);
    (void)is_dns_name(s);
    if (auto b = base64_decode(s)) {
        FUZZ_ASSERT(base64_decode(base64_encode(*b)) == b);
        FUZZ_ASSERT(base64_decode(base64_encode(*b, false)) == b);
    }
    if (auto b = from_hex(s)) FUZZ_ASSERT(from_hex(to_hex(*b)) == b);
    return 0;
}
