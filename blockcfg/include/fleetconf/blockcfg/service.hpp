// fleetconf::blockcfg: crash-safe configuration store on a block device, edited over an
// authenticated control socket.
#pragma once

#include "fleetconf/common/service.hpp"

namespace fleetconf::blockcfg {

common::ServiceInfo service_info();

}  // namespace fleetconf::blockcfg
