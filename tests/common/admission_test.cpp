#include "fleetconf/common/admission.hpp"

#include <catch2/catch.hpp>

using namespace fleetconf::common;
using namespace std::chrono_literals;

TEST_CASE("admission: the listener, per-address and login budgets, in that order", "[admission]") {
    Admission a({.max_connections = 4, .max_per_address = 2, .max_unauthenticated = 3});
    auto d1 = a.admit("10.0.0.1"), d2 = a.admit("10.0.0.1");
    CHECK_FALSE(d1.refused);
    CHECK_FALSE(d2.refused);
    CHECK(a.admit("10.0.0.1").refused == Refusal::address_full);  // one address: its share only
    auto d3 = a.admit("10.0.0.2");
    CHECK_FALSE(d3.refused);
    CHECK(a.admit("10.0.0.3").refused == Refusal::unauthenticated_full);  // 3 logging in
    a.authenticated(d3.key);
    auto d4 = a.admit("10.0.0.3");
    CHECK_FALSE(d4.refused);
    CHECK(a.admit("10.0.0.4").refused == Refusal::listener_full);  // 4 open
    a.release(d1.key, false);
    CHECK_FALSE(a.admit("10.0.0.4").refused);
    const auto st = a.stats();
    CHECK(st.open == 4);
    CHECK(st.refused.at(Refusal::address_full) == 1);
    CHECK(st.refused.at(Refusal::unauthenticated_full) == 1);
    CHECK(st.refused.at(Refusal::listener_full) == 1);
}

TEST_CASE("admission: 0 switches the per-address and login budgets off", "[admission]") {
    Admission a({.max_connections = 3, .max_per_address = 0, .max_unauthenticated = 0});
    for (int i = 0; i < 3; ++i) CHECK_FALSE(a.admit("10.0.0.1").refused);
    CHECK(a.admit("10.0.0.1").refused == Refusal::listener_full);
    CHECK(a.stats().unauthenticated == 0);
}

TEST_CASE("admission: peers are counted by prefix (IPv4 /32 and IPv6 /64 by default)", "[admission]") {
    CHECK(peer_key("10.1.2.3", 32, 64) == "10.1.2.3/32");
    CHECK(peer_key("10.1.2.3", 24, 64) == "10.1.2.0/24");
    CHECK(peer_key("2001:db8:1:2:3:4:5:6", 32, 64) == "2001:db8:1:2::/64");
    CHECK(peer_key("2001:db8:1:2:3:4:5:6", 32, 56) == "2001:db8:1::/56");
    CHECK(peer_key("not an address", 32, 64) == "not an address");
    Admission a({.max_connections = 10, .max_per_address = 1, .max_unauthenticated = 0, .ipv6_prefix = 64});
    CHECK_FALSE(a.admit("2001:db8::1").refused);
    CHECK(a.admit("2001:db8::2").refused == Refusal::address_full);  // same /64
    CHECK_FALSE(a.admit("2001:db8:0:1::1").refused);                 // next /64
}

TEST_CASE("admission: a refusal is logged once per address per interval, and counted every time", "[admission]") {
    Admission a({.max_connections = 1, .max_per_address = 0, .max_unauthenticated = 0, .log_interval = 60s});
    const auto t0 = Admission::Clock::time_point{} + 1000s;
    CHECK_FALSE(a.admit("10.0.0.1", t0).refused);
    CHECK(a.admit("10.0.0.2", t0).log);
    CHECK_FALSE(a.admit("10.0.0.2", t0 + 1s).log);
    CHECK(a.admit("10.0.0.3", t0 + 1s).log);  // another address logs at once
    CHECK_FALSE(a.admit("10.0.0.2", t0 + 59s).log);
    CHECK(a.admit("10.0.0.2", t0 + 60s).log);
    CHECK(a.stats().refused.at(Refusal::listener_full) == 5);
}

TEST_CASE("admission: a ticket gives its slot back once, in the budget it is in", "[admission]") {
    Admission a({.max_connections = 2, .max_per_address = 0, .max_unauthenticated = 1});
    {
        AdmissionTicket t(&a, a.admit("10.0.0.1").key);
        CHECK(a.admit("10.0.0.2").refused == Refusal::unauthenticated_full);
        t.authenticated();
        t.authenticated();  // twice: counted once
        CHECK(a.stats().unauthenticated == 0);
        AdmissionTicket moved = std::move(t);
        CHECK(a.stats().open == 1);
    }
    CHECK(a.stats().open == 0);
    CHECK(a.stats().unauthenticated == 0);
    CHECK(a.stats().addresses == 0);
}

TEST_CASE("phase deadlines: a base plus one second per min_rate bytes", "[admission]") {
    CHECK(phase_deadline(10s, 0, 1024) == 10s);
    CHECK(phase_deadline(10s, 10 * 1024, 1024) == 20s);
    CHECK(phase_deadline(10s, 1 << 30, 0) == 10s);
}
