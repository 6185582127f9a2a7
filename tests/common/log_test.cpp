#include "fleetconf/common/log.hpp"

#include <catch2/catch.hpp>

using namespace fleetconf::common;

TEST_CASE("log level specs", "[log]") {
    log::Options o;
    CHECK_FALSE(log::parse_levels("warn,dhcp=debug,git=trace", o));
    CHECK(o.level == spdlog::level::warn);
    CHECK(o.service_levels.at("dhcp") == spdlog::level::debug);
    CHECK(o.service_levels.at("git") == spdlog::level::trace);
    log::Options bad;
    CHECK(*log::parse_levels("loud", bad) ==
          "unknown log level in \"loud\" (use trace, debug, info, warn, error, critical, off)");
    CHECK(*log::parse_levels("=debug", bad) == "missing service name in \"=debug\"");
    CHECK(log::parse_format("json") == log::Format::json);
    CHECK_FALSE(log::parse_format("xml"));
}

TEST_CASE("per-service levels apply to loggers", "[log]") {
    log::Options o;
    REQUIRE_FALSE(log::parse_levels("error,block=debug", o));
    log::setup(o);
    CHECK(log::get("block")->level() == spdlog::level::debug);
    CHECK(log::get("dhcp")->level() == spdlog::level::err);
    log::setup(log::Options{});
    CHECK(log::get("block")->level() == spdlog::level::info);
}
