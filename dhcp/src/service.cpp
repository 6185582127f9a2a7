#include "fleetconf/dhcp/service.hpp"

#include <ifaddrs.h>
#include <netinet/in.h>

namespace fleetconf::dhcp {

common::ServiceInfo service_info() { return {"dhcp", true, "DHCPv4 server (RFC 2131) with site options"}; }

std::optional<common::Ipv4> interface_ipv4(const std::string& ifname) {
    ifaddrs* list = nullptr;
    if (::getifaddrs(&list) != 0) return std::nullopt;
    std::optional<common::Ipv4> out;
    for (ifaddrs* i = list; i; i = i->ifa_next)
        if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET && ifname == i->ifa_name) {
            const auto* sin = reinterpret_cast<const sockaddr_in*>(i->ifa_addr);
            out = common::Ipv4{ntohl(sin->sin_addr.s_addr)};
            break;
        }
    ::freeifaddrs(list);
    return out;
}

}  // namespace fleetconf::dhcp
