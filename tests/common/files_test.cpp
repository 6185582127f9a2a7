#include "fleetconf/common/files.hpp"

#include "../support/temp_dir.hpp"

#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <fstream>

using namespace fleetconf::common;

namespace {
std::filesystem::path secret(const std::filesystem::path& dir, const std::string& name, const std::string& text, unsigned mode = 0600) {
    const auto p = dir / name;
    std::ofstream(p, std::ios::binary) << text;
    ::chmod(p.c_str(), mode);
    return p;
}
}  // namespace

TEST_CASE("one-line secrets: line ends dropped as asked, empty and shared files refused", "[files]") {
    fleetconf::test::TempDir d;
    std::string out;
    CHECK_FALSE(read_secret_line(secret(d.path, "a", "token123\r\n"), out));
    CHECK(out == "token123");
    // Raw keys lose one newline only: a trailing space or CR is part of the key.
    CHECK_FALSE(read_secret_line(secret(d.path, "b", "key \r\n\n"), out, Trim::one_newline));
    CHECK(out == "key \r\n");
    auto empty = read_secret_line(secret(d.path, "c", "\n"), out);
    REQUIRE(empty);
    CHECK_THAT(*empty, Catch::Contains("empty secret"));
    auto shared = read_secret_line(secret(d.path, "d", "x\n", 0644), out);
    REQUIRE(shared);
    CHECK_THAT(*shared, Catch::Contains("chmod 600"));
    const auto big_file = secret(d.path, "e", std::string(5000, 'x'));
    auto big = read_secret_line(big_file, out);
    REQUIRE(big);  // over the 4 KiB limit, and said so
    CHECK(*big == big_file.string() + ": file is 5000 bytes, at most 4096 allowed");
}
