// What each service library reports about itself, and what `fleetconf serve` needs of a running service.
#pragma once

#include "fleetconf/common/site.hpp"
#include "fleetconf/common/status.hpp"

#include <string_view>

namespace fleetconf::common {

struct ServiceInfo {
    std::string_view name;     // "dhcp", "git", "block"
    bool available;            // false while the service is not implemented in this build
    std::string_view summary;  // one line for humans
};

// A service as `fleetconf serve` runs it: constructed on a site, then started, reloaded and stopped, each on
// the service's own thread (ServiceThread). Errors of start() and reload() are exceptions with a message that
// names what failed; a failed reload leaves the running configuration in place.
class Service {
public:
    virtual ~Service() = default;
    virtual void start() = 0;
    virtual void reload(const Site& site) = 0;
    virtual void stop() = 0;
    // Its /metrics lines and /health verdict for the status endpoint.
    [[nodiscard]] virtual StatusSource status_source() const = 0;
};

}  // namespace fleetconf::common
