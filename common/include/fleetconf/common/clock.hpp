// Wall-clock time as the lease journal, the lease-driven routes and the control channel count it.
#pragma once

#include <chrono>
#include <cstdint>

namespace fleetconf::common {

// Seconds since the Unix epoch.
inline std::uint64_t unix_now() {
    return static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count());
}

}  // namespace fleetconf::common
