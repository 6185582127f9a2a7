#include "fleetconf/common/net.hpp"

#include <catch2/catch.hpp>

using namespace fleetconf::common;

TEST_CASE("Ipv4 parses dotted quads strictly", "[net]") {
    CHECK(Ipv4::parse("10.0.0.1")->value() == 0x0A000001u);
    CHECK(Ipv4::parse("255.255.255.255")->is_broadcast());
    CHECK(Ipv4::parse("0.0.0.0")->is_unspecified());
    CHECK(Ipv4::parse("127.3.4.5")->is_loopback());
    CHECK(Ipv4::parse("224.0.0.1")->is_multicast());
    CHECK(Ipv4(192, 168, 1, 2).to_string() == "192.168.1.2");
    CHECK(Ipv4(1, 2, 3, 4).bytes() == std::array<std::uint8_t, 4>{1, 2, 3, 4});
    for (const char* bad : {"", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "1.2.3.-4", "1..2.3", "1.2.3.4 ", " 1.2.3.4", "0x1.2.3.4",
                            "1.2.3.4/24", "a.b.c.d", "1.2.3.", ".1.2.3", "4294967296"}) {
        INFO(bad);
        CHECK_FALSE(Ipv4::parse(bad));
    }
}

TEST_CASE("Ipv6 parses and prints RFC 5952 form", "[net]") {
    CHECK(Ipv6::parse("::1")->is_loopback());
    CHECK(Ipv6::parse("2001:DB8:0:0:0:0:0:1")->to_string() == "2001:db8::1");
    CHECK_FALSE(Ipv6::parse("fe80::1%eth0"));
    CHECK_FALSE(Ipv6::parse("1.2.3.4"));
    CHECK_FALSE(Ipv6::parse("::g"));
    CHECK_FALSE(Ipv6::parse(""));
    CHECK(std::holds_alternative<Ipv4>(*parse_ip("1.2.3.4")));
    CHECK(std::holds_alternative<Ipv6>(*parse_ip("::")));
    CHECK_FALSE(parse_ip("localhost"));
}

TEST_CASE("Prefix", "[net]") {
    auto p = Prefix::parse("10.1.0.0/16");
    REQUIRE(p);
    CHECK(p->netmask().to_string() == "255.255.0.0");
    CHECK(p->broadcast().to_string() == "10.1.255.255");
    CHECK(p->contains(*Ipv4::parse("10.1.200.3")));
    CHECK_FALSE(p->contains(*Ipv4::parse("10.2.0.1")));
    CHECK(p->is_host(*Ipv4::parse("10.1.0.1")));
    CHECK_FALSE(p->is_host(*Ipv4::parse("10.1.0.0")));
    CHECK_FALSE(p->is_host(*Ipv4::parse("10.1.255.255")));
    CHECK(Prefix::parse("10.0.0.0/31")->is_host(*Ipv4::parse("10.0.0.0")));  // RFC 3021
    CHECK(Prefix::parse("0.0.0.0/0")->contains(Ipv4(8, 8, 8, 8)));
    CHECK(Prefix::of(Ipv4(10, 1, 2, 3), 24).to_string() == "10.1.2.0/24");
    for (const char* bad : {"10.1.0.0", "10.1.0.1/16", "10.1.0.0/33", "10.1.0.0/", "10.1.0.0/-1", "10.1.0.0/016", "/8"}) {
        INFO(bad);
        CHECK_FALSE(Prefix::parse(bad));
    }
}

TEST_CASE("Range", "[net]") {
    auto r = Range::parse("10.0.0.10 - 10.0.0.20");
    REQUIRE(r);
    CHECK(r->size() == 11);
    CHECK(r->contains(Ipv4(10, 0, 0, 15)));
    CHECK_FALSE(r->contains(Ipv4(10, 0, 0, 21)));
    CHECK(r->to_string() == "10.0.0.10-10.0.0.20");
    CHECK(r->overlaps(*Range::parse("10.0.0.20-10.0.0.30")));
    CHECK_FALSE(r->overlaps(*Range::parse("10.0.0.21-10.0.0.30")));
    CHECK(Range::parse("0.0.0.0-255.255.255.255")->size() == 4294967296ull);
    bool reversed = false;
    CHECK_FALSE(Range::parse("10.0.0.20-10.0.0.10", &reversed));
    CHECK(reversed);
    CHECK_FALSE(Range::parse("10.0.0.20", &reversed));
    CHECK_FALSE(reversed);
    CHECK_FALSE(Range::parse("10.0.0.1-x"));
}

TEST_CASE("Mac", "[net]") {
    CHECK(Mac::parse("00:80:41:AB:cd:Ef")->to_string() == "00:80:41:ab:cd:ef");
    CHECK(Mac::parse("00-80-41-ab-cd-ef")->to_string() == "00:80:41:ab:cd:ef");
    CHECK(Mac::parse("01:00:5e:00:00:01")->is_multicast());
    CHECK(Mac::parse("00:00:00:00:00:00")->is_zero());
    for (const char* bad : {"", "00:80:41:ab:cd", "00:80:41:ab:cd:ef:00", "00:80-41:ab:cd:ef", "0:80:41:ab:cd:ef0", "00:80:41:ab:cd:eg",
                            "008041abcdef", "00.80.41.ab.cd.ef"}) {
        INFO(bad);
        CHECK_FALSE(Mac::parse(bad));
    }
}

TEST_CASE("Endpoint", "[net]") {
    auto e = Endpoint::parse("127.0.0.1:7300");
    REQUIRE(e);
    CHECK(e->port == 7300);
    CHECK(e->to_string() == "127.0.0.1:7300");
    CHECK(Endpoint::parse("[::1]:80")->to_string() == "[::1]:80");
    CHECK(Endpoint::parse("[2001:db8::1]", 443)->port == 443);
    CHECK(Endpoint::parse("2001:db8::1", 443)->to_string() == "[2001:db8::1]:443");
    CHECK(Endpoint::parse("10.0.0.1", 514)->port == 514);
    CHECK(is_loopback(Endpoint::parse("[::1]:1")->host));
    for (const char* bad : {"127.0.0.1", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536", "[::1]", "::1:80", "[::1]80", "host:80",
                            "[1.2.3.4]:80", "127.0.0.1:+80", "127.0.0.1:080", "[::1]:"}) {
        INFO(bad);
        CHECK_FALSE(Endpoint::parse(bad));
    }
}

TEST_CASE("DNS names and labels", "[net]") {
    CHECK(is_dns_label("web-1"));
    CHECK(is_dns_label("A"));
    CHECK(is_dns_label(std::string(63, 'a')));
    CHECK_FALSE(is_dns_label(std::string(64, 'a')));
    CHECK_FALSE(is_dns_label("-a"));
    CHECK_FALSE(is_dns_label("a-"));
    CHECK_FALSE(is_dns_label("a_b"));
    CHECK_FALSE(is_dns_label(""));
    CHECK(is_dns_name("fleet.example"));
    CHECK_FALSE(is_dns_name("fleet..example"));
    CHECK_FALSE(is_dns_name("fleet.example."));
    CHECK_FALSE(is_dns_name(std::string(254, 'a')));
}

TEST_CASE("listen endpoints accept port 0 (the kernel picks one); others do not", "[net]") {
    using fleetconf::common::Endpoint;
    CHECK_FALSE(Endpoint::parse("127.0.0.1:0"));
    auto e = Endpoint::parse_listen("127.0.0.1:0");
    REQUIRE(e);
    CHECK(e->port == 0);
    auto v6 = Endpoint::parse_listen("[::1]:0");
    REQUIRE(v6);
    CHECK(v6->port == 0);
    auto p = Endpoint::parse_listen("127.0.0.1:7300");
    REQUIRE(p);
    CHECK(p->port == 7300);
    CHECK_FALSE(Endpoint::parse_listen("127.0.0.1:"));
    CHECK_FALSE(Endpoint::parse_listen("::0"));
}
