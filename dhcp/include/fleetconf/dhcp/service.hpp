// fleetconf::dhcp: DHCPv4 server (RFC 2131) with site options.
#pragma once

#include "fleetconf/common/service.hpp"

namespace fleetconf::dhcp {

// Not implemented in this build yet (tracked by issue #4); `fleetconf serve` reports it as such.
common::ServiceInfo service_info();

}  // namespace fleetconf::dhcp
