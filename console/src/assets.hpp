// The page's files, compiled into the binary (console/assets/, embedded by console/embed_assets.cmake).
#pragma once

#include <string_view>

namespace fleetconf::console {

struct Asset {
    std::string_view path;  // "/index.html", "/app.js", "/app.css"
    std::string_view content_type;
    std::string_view data;
};

// nullptr when there is no such file.
const Asset* find_asset(std::string_view path);

}  // namespace fleetconf::console
