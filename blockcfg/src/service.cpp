#include "fleetconf/blockcfg/service.hpp"

namespace fleetconf::blockcfg {

common::ServiceInfo service_info() {
    return {"block", false, "not built yet (issue #3): block-device configuration store"};
}

}  // namespace fleetconf::blockcfg
