#include "fleetconf/common/runtime.hpp"

#include <asio/steady_timer.hpp>
#include <catch2/catch.hpp>

#include <csignal>

using namespace fleetconf::common;

TEST_CASE("SIGHUP reloads and SIGTERM stops cleanly", "[runtime]") {
    Runtime rt;
    int reloads = 0, stops = 0;
    rt.on_reload([&] {
        ++reloads;
        ::raise(SIGTERM);
    });
    rt.on_stop([&] { ++stops; });
    asio::steady_timer t(rt.io(), std::chrono::milliseconds(10));
    t.async_wait([](std::error_code) { ::raise(SIGHUP); });
    CHECK(rt.run(std::chrono::seconds(5)));
    CHECK(reloads == 1);
    CHECK(stops == 1);
    CHECK(rt.stopping());
}

TEST_CASE("work that ignores the stop is abandoned after the grace period", "[runtime]") {
    Runtime rt;
    asio::steady_timer stubborn(rt.io(), std::chrono::hours(1));
    stubborn.async_wait([](std::error_code) {});
    rt.request_stop();
    CHECK_FALSE(rt.run(std::chrono::milliseconds(100)));
}

TEST_CASE("work cancelled by a stop handler ends the run without waiting for the deadline", "[runtime]") {
    Runtime rt;
    asio::steady_timer job(rt.io(), std::chrono::hours(1));
    job.async_wait([](std::error_code) {});
    rt.on_stop([&] { job.cancel(); });
    rt.request_stop();
    CHECK(rt.run(std::chrono::seconds(30)));  // true: ended by itself, not by the deadline
}
