#include "fleetconf/blockcfg/service.hpp"

namespace fleetconf::blockcfg {

common::ServiceInfo service_info() {
    return {"block", true, "block-device configuration store with an authenticated control socket"};
}

}  // namespace fleetconf::blockcfg
