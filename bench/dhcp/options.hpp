// What the DHCP benchmark's own tools (responder.cpp, loadgen.cpp) read of a packet: a minimal walk of the
// options area, for packets from a server or generator under test. Not the server's codec (dhcp/wire.hpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace bench_dhcp {

inline constexpr std::size_t kFixed = 236;  // op .. file, then the magic cookie
inline constexpr std::uint8_t kCookie[4] = {99, 130, 83, 99};

// Calls f(code, value, length) for each option of a BOOTP message with op `op`, until END or the first option
// that runs past the packet. False when the packet is not such a message.
template <class F>
bool for_each_option(const std::uint8_t* p, std::size_t n, std::uint8_t op, F&& f) {
    if (n < kFixed + 4 || p[0] != op || std::memcmp(p + kFixed, kCookie, 4) != 0) return false;
    for (std::size_t i = kFixed + 4; i < n;) {
        const std::uint8_t code = p[i];
        if (code == 255) break;
        if (code == 0) {
            ++i;
            continue;
        }
        if (i + 1 >= n || i + 2 + p[i + 1] > n) break;
        f(code, p + i + 2, p[i + 1]);
        i += 2 + p[i + 1];
    }
    return true;
}

}  // namespace bench_dhcp
