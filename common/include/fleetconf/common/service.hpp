// What each service library reports about itself, so `fleetconf serve` can say what it runs.
#pragma once

#include <string_view>

namespace fleetconf::common {

struct ServiceInfo {
    std::string_view name;     // "dhcp", "git", "block"
    bool available;            // false while the service is not implemented in this build
    std::string_view summary;  // one line for humans
};

}  // namespace fleetconf::common
