// The console's views and actions (console::Backend) over the services of one `fleetconf serve`: the DHCP
// leases (asked on the DHCP thread), the git host's activity, audit logs and repositories, the block devices
// (their snapshots are thread-safe) and the site file as it runs. docs/console.md gives every field.
#pragma once

#include "fleetconf/common/runtime.hpp"
#include "fleetconf/common/site.hpp"
#include "fleetconf/console/console.hpp"

#include <memory>

namespace fleetconf::dhcp {
class Service;
}
namespace fleetconf::gitconf {
class Service;
}
namespace fleetconf::blockcfg {
class SiteService;
}

namespace fleetconf::cli {

// What the console reads and acts on; every call comes from the console's thread (the main thread), which
// also applies reloads: `site` is replaced there when a reload is applied.
struct ConsoleParts {
    std::shared_ptr<const common::Site> site;
    dhcp::Service* dhcp = nullptr;  // nullptr: not running in this process
    common::ServiceThread* dhcp_thread = nullptr;
    gitconf::Service* git = nullptr;
    blockcfg::SiteService* block = nullptr;
    common::ServiceThread* block_thread = nullptr;
};

console::Backend make_console_backend(std::shared_ptr<ConsoleParts> parts);

}  // namespace fleetconf::cli
