// Precompiled for every fleetconf target (fleetconf_pch in CMakeLists.txt): heavy third-party headers only.
// Marked as a system header so that GCC 12's known false positives inside inlined libstdc++ code
// (-Warray-bounds, -Wstringop-overflow) stay where they belong, as without a precompiled header.
#pragma GCC system_header
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
