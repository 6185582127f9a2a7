// A Kea lease file handed to `fleetconf dhcp import` (another program's output, possibly damaged): the
// parser must never crash, and what it returns must be what the server can hold: one lease per address and
// per client, each in a network, with a host name without control characters.
#include "fleetconf/dhcp/kea_csv.hpp"

#include <cstdint>
#include <set>
#include <string_view>

using namespace fleetconf::dhcp;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    try {
        const auto r = parse_kea_lease4_csv(text, [](fleetconf::common::Ipv4 a) -> std::optional<std::string> {
            if ((a.value() >> 24) == 10) return std::string("n1");
            return std::nullopt;
        });
        std::set<fleetconf::common::Ipv4> addresses;
        std::set<Bytes> clients;
        for (const auto& l : r.leases) {
            if (!addresses.insert(l.address).second || !clients.insert(l.client).second) __builtin_trap();
            if (l.network != "n1" || l.client.empty()) __builtin_trap();
            for (unsigned char c : l.hostname)  // escaped as the server escapes names from the network
                if (c < 0x20 || c == 0x7f) __builtin_trap();
        }
        if (r.leases.size() > r.records) __builtin_trap();
    } catch (const std::runtime_error&) {
        // not Kea's header: refused with a message
    }
    return 0;
}
