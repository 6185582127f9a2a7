#include "fleetconf/dhcp/service.hpp"

namespace fleetconf::dhcp {

common::ServiceInfo service_info() {
    return {"dhcp", false, "not built yet (issue #4): DHCPv4 server (RFC 2131) with site options"};
}

}  // namespace fleetconf::dhcp
