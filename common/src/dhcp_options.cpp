#include "fleetconf/common/dhcp_options.hpp"

namespace fleetconf::common::dhcp_options {

namespace {
// RFC 2132 unless noted; `true` marks the options the server computes itself (RFC 2132 section 9,
// RFC 3046), which a site file cannot set.
constexpr OptionDef kTable[] = {
    {1, "subnet-mask", OptionType::address},
    {2, "time-offset", OptionType::i32},
    {3, "routers", OptionType::addresses},
    {4, "time-servers", OptionType::addresses},
    {5, "name-servers", OptionType::addresses},
    {6, "domain-name-servers", OptionType::addresses},
    {7, "log-servers", OptionType::addresses},
    {8, "cookie-servers", OptionType::addresses},
    {9, "lpr-servers", OptionType::addresses},
    {10, "impress-servers", OptionType::addresses},
    {11, "resource-location-servers", OptionType::addresses},
    {12, "host-name", OptionType::string},
    {13, "boot-size", OptionType::u16},
    {14, "merit-dump", OptionType::string},
    {15, "domain-name", OptionType::string},
    {16, "swap-server", OptionType::address},
    {17, "root-path", OptionType::string},
    {18, "extensions-path", OptionType::string},
    {19, "ip-forwarding", OptionType::flag},
    {20, "non-local-source-routing", OptionType::flag},
    {21, "policy-filter", OptionType::addresses},
    {22, "max-dgram-reassembly", OptionType::u16},
    {23, "default-ip-ttl", OptionType::u8},
    {24, "path-mtu-aging-timeout", OptionType::u32},
    {25, "path-mtu-plateau-table", OptionType::bytes},
    {26, "interface-mtu", OptionType::u16},
    {27, "all-subnets-local", OptionType::flag},
    {28, "broadcast-address", OptionType::address},
    {29, "perform-mask-discovery", OptionType::flag},
    {30, "mask-supplier", OptionType::flag},
    {31, "router-discovery", OptionType::flag},
    {32, "router-solicitation-address", OptionType::address},
    {33, "static-routes", OptionType::addresses},
    {34, "trailer-encapsulation", OptionType::flag},
    {35, "arp-cache-timeout", OptionType::u32},
    {36, "ieee802-3-encapsulation", OptionType::flag},
    {37, "default-tcp-ttl", OptionType::u8},
    {38, "tcp-keepalive-interval", OptionType::u32},
    {39, "tcp-keepalive-garbage", OptionType::flag},
    {40, "nis-domain", OptionType::string},
    {41, "nis-servers", OptionType::addresses},
    {42, "ntp-servers", OptionType::addresses},
    {43, "vendor-encapsulated-options", OptionType::bytes},
    {44, "netbios-name-servers", OptionType::addresses},
    {45, "netbios-dd-server", OptionType::addresses},
    {46, "netbios-node-type", OptionType::u8},
    {47, "netbios-scope", OptionType::string},
    {48, "font-servers", OptionType::addresses},
    {49, "x-display-manager", OptionType::addresses},
    {50, "dhcp-requested-address", OptionType::address, true},
    {51, "dhcp-lease-time", OptionType::u32, true},
    {52, "dhcp-option-overload", OptionType::u8, true},
    {53, "dhcp-message-type", OptionType::u8, true},
    {54, "dhcp-server-identifier", OptionType::address, true},
    {55, "dhcp-parameter-request-list", OptionType::parameter_list, true},
    {56, "dhcp-message", OptionType::string},
    {57, "dhcp-max-message-size", OptionType::u16, true},
    {58, "dhcp-renewal-time", OptionType::u32, true},
    {59, "dhcp-rebinding-time", OptionType::u32, true},
    {60, "vendor-class-identifier", OptionType::string},
    {61, "dhcp-client-identifier", OptionType::client_id, true},
    {64, "nisplus-domain-name", OptionType::string},
    {65, "nisplus-servers", OptionType::addresses},
    {66, "tftp-server-name", OptionType::string},
    {67, "boot-file-name", OptionType::string},
    {68, "mobile-ip-home-agent", OptionType::addresses},
    {69, "smtp-server", OptionType::addresses},
    {70, "pop-server", OptionType::addresses},
    {71, "nntp-server", OptionType::addresses},
    {72, "www-server", OptionType::addresses},
    {73, "finger-server", OptionType::addresses},
    {74, "irc-server", OptionType::addresses},
    {75, "streettalk-server", OptionType::addresses},
    {76, "streettalk-directory-assistance-server", OptionType::addresses},
    {81, "fqdn", OptionType::bytes},
    {82, "dhcp-agent-options", OptionType::relay_agent, true},
    {119, "domain-search", OptionType::bytes},
    {121, "classless-static-route", OptionType::classless_routes},
    {125, "vivso-suboptions", OptionType::vivso},
};
}  // namespace

std::span<const OptionDef> option_table() { return kTable; }

const OptionDef* option_def(std::uint8_t code) {
    for (const auto& d : kTable)
        if (d.code == code) return &d;
    return nullptr;
}

bool managed_by_server(std::uint8_t code) {
    const auto* d = option_def(code);
    return d && d->managed;
}

}  // namespace fleetconf::common::dhcp_options
