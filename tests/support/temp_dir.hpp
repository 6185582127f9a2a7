// A fresh directory under /tmp, removed with everything in it when the test ends.
#pragma once

#include <filesystem>
#include <string>

#include <stdlib.h>

namespace fleetconf::test {

struct TempDir {
    std::filesystem::path path;
    explicit TempDir(const std::string& prefix = "fleetconf-test") {
        std::string tmpl = "/tmp/" + prefix + "-XXXXXX";
        path = ::mkdtemp(tmpl.data());
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
};

}  // namespace fleetconf::test
