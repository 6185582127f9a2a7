#include "fleetconf/gitconf/service.hpp"

namespace fleetconf::gitconf {

common::ServiceInfo service_info() {
    return {"git", false, "not built yet (issue #6): git smart-protocol host, one repository per unikernel"};
}

}  // namespace fleetconf::gitconf
