#include "fleetconf/common/runtime.hpp"

#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <catch2/catch.hpp>

#include <csignal>
#include <future>
#include <stdexcept>
#include <thread>

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

// ---- ServiceThread: one service's own thread (issue 17) ----

TEST_CASE("ServiceThread: call runs on the service's thread and returns its result or exception", "[runtime][isolation]") {
    fleetconf::common::ServiceThread t("test");
    const auto caller = std::this_thread::get_id();
    CHECK(t.call([&] { return std::this_thread::get_id(); }) == caller);  // not started: inline
    t.start();
    const auto on = t.call([&] { return std::this_thread::get_id(); });
    CHECK(on != caller);
    CHECK(t.call([&] { return t.on_thread(); }));
    CHECK_FALSE(t.on_thread());
    CHECK_THROWS_WITH(t.call([]() -> int { throw std::runtime_error("boom"); }), "boom");
    CHECK(t.call([&] { return t.call([] { return 7; }); }) == 7);  // from the thread itself: inline, no deadlock
    CHECK(t.finish(std::chrono::seconds(5)));
}

TEST_CASE("ServiceThread: a stuck service does not stop the caller (try_call gives up), and the others go on", "[runtime][isolation]") {
    fleetconf::common::ServiceThread stuck("stuck"), other("other");
    stuck.start();
    other.start();
    std::promise<void> release;
    auto latch = release.get_future().share();
    asio::post(stuck.io(), [latch] { latch.wait(); });  // a long walk, held on a latch
    CHECK_FALSE(stuck.try_call([] { return 1; }, std::chrono::milliseconds(100)).has_value());
    CHECK(other.call([] { return 2; }) == 2);  // another service's thread answers while the first is busy
    CHECK(other.try_call([] { return 3; }, std::chrono::seconds(10)) == 3);
    release.set_value();
    CHECK(stuck.call([] { return 4; }) == 4);  // and the stuck one answers once its work is done
    CHECK(stuck.finish(std::chrono::seconds(5)));
    CHECK(other.finish(std::chrono::seconds(5)));
}

TEST_CASE("ServiceThread: finish abandons work still running after the grace", "[runtime][isolation]") {
    fleetconf::common::ServiceThread t("slow");
    t.start();
    asio::steady_timer timer(t.io(), std::chrono::hours(1));
    timer.async_wait([](std::error_code) {});
    CHECK_FALSE(t.finish(std::chrono::milliseconds(100)));
    CHECK(t.call([] { return 5; }) == 5);  // joined: inline from then on
}
