// fleetconf::gitconf: git smart-protocol host, one repository per unikernel.
#pragma once

#include "fleetconf/common/service.hpp"

namespace fleetconf::gitconf {

// Not implemented in this build yet (tracked by issue #6); `fleetconf serve` reports it as such.
common::ServiceInfo service_info();

}  // namespace fleetconf::gitconf
