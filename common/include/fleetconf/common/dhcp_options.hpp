// The DHCPv4 option table: one list of codes, names and value types, used by the wire codec and the
// DHCP server (dhcp/) and by the site file's checks (what a site may set). docs/dhcp-options.md describes
// the same facts.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

namespace fleetconf::common::dhcp_options {

// Option codes used by the server logic (RFC 2132 unless noted).
namespace code {
inline constexpr std::uint8_t pad = 0, subnet_mask = 1, router = 3, dns = 6, log_server = 7, hostname = 12, domain = 15, broadcast = 28,
                              ntp = 42, vendor_specific = 43, requested_address = 50, lease_time = 51, overload = 52, message_type = 53,
                              server_id = 54, parameter_list = 55, message = 56, max_size = 57, renewal_t1 = 58, rebinding_t2 = 59,
                              vendor_class = 60, client_id = 61, client_fqdn = 81 /* RFC 4702 */, relay_agent = 82 /* RFC 3046 */,
                              classless_routes = 121 /* RFC 3442 */, vivso = 125 /* RFC 3925 */, end = 255;
}  // namespace code

// Site-specific options (RFC 2132 section 2: 224-254); the configuration URI goes in one of them.
inline constexpr std::uint8_t kFirstSiteCode = 224, kLastSiteCode = 254;
inline constexpr std::uint8_t kDefaultConfigUriCode = kFirstSiteCode;
// The MirageOS private enterprise number (DNSvizor's option 125) and the sub-option of its monitoring sink.
inline constexpr std::uint32_t kMirageEnterprise = 49836;
inline constexpr std::uint8_t kMonitoringSuboption = 0;

enum class OptionType {
    address,
    addresses,
    u8,
    u16,
    u32,
    i32,
    string,
    flag,
    bytes,
    client_id,
    parameter_list,
    classless_routes,
    vivso,
    relay_agent
};

struct OptionDef {
    std::uint8_t code;
    std::string_view name;  // the ISC name (Kea, dhclient)
    OptionType type;
    bool managed = false;  // computed by the server for each reply; a site file cannot set it
};

std::span<const OptionDef> option_table();
const OptionDef* option_def(std::uint8_t code);  // nullptr for codes not in the table
bool managed_by_server(std::uint8_t code);

}  // namespace fleetconf::common::dhcp_options
