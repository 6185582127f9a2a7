#include "fleetconf/dhcp/kea_csv.hpp"

#include <catch2/catch.hpp>

using namespace fleetconf::dhcp;
using fleetconf::common::Ipv4;

namespace {
std::optional<std::string> in_site(Ipv4 a) {
    if (a.value() >> 8 == Ipv4(10, 9, 0, 0).value() >> 8) return std::string("n1");
    return std::nullopt;
}
}  // namespace

TEST_CASE("Kea 2.2 lease4 CSV: every client keeps its address", "[dhcp][kea]") {
    // As Kea 2.2's memfile writes it: appended records, the last per address wins; valid_lifetime 0 deletes;
    // a comma in a host name escaped as &#x2c.
    const std::string csv =
        "address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context\n"
        "10.9.0.100,02:00:00:00:00:01,01:02:00:00:00:00:01,600,1900000000,1,0,0,web&#x2cone,0,\n"
        "10.9.0.101,02:00:00:00:00:02,,600,1900000000,1,1,1,two.fleet.example,0,\n"
        "10.9.0.102,02:00:00:00:00:03,,600,1900000000,1,0,0,,1,\n"
        "10.9.0.103,02:00:00:00:00:04,,600,1900000000,1,0,0,,0,\n"
        "10.9.0.103,02:00:00:00:00:04,,0,0,1,0,0,,0,\n"
        "10.8.0.1,02:00:00:00:00:05,,600,1900000000,1,0,0,,0,\n"
        "10.9.0.104,02:00:00:00:00:06,,600,1900000000,1,0,0,,2,\n"
        "10.9.0.101,02:00:00:00:00:02,,900,1900000300,1,1,1,two.fleet.example,0,{ \"a\": 1 }\n"
        "garbage\n";
    const auto r = parse_kea_lease4_csv(csv, in_site);
    CHECK(r.records == 9);
    REQUIRE(r.leases.size() == 4);
    CHECK(r.leases[0].address == Ipv4(10, 9, 0, 100));
    CHECK(r.leases[0].client == Bytes{0xFF, 1, 2, 0, 0, 0, 0, 1});  // option 61's data behind the 0xFF tag (client_key)
    CHECK(r.leases[0].hostname == "web,one");
    CHECK(r.leases[0].state == LeaseState::bound);
    CHECK(r.leases[0].network == "n1");
    CHECK(r.leases[1].client == Bytes{1, 2, 0, 0, 0, 0, 2});  // htype 1 + chaddr
    CHECK(r.leases[1].expires == 1900000300);                 // the later record
    CHECK(r.leases[2].state == LeaseState::declined);
    CHECK(r.leases[3].address == Ipv4(10, 9, 0, 104));
    CHECK(r.leases[3].state == LeaseState::released);
    REQUIRE(r.warnings.size() == 2);
    CHECK(r.warnings[0].find("line 7: 10.8.0.1 is in no network") == 0);
    CHECK(r.warnings[1].find("line 10:") == 0);
}

TEST_CASE("Kea lease4 CSV: not Kea's header, columns found by name, one address per client", "[dhcp][kea]") {
    CHECK_THROWS_WITH(parse_kea_lease4_csv("a,b,c\n1,2,3\n", in_site), Catch::Contains("not a Kea lease4 CSV header"));
    CHECK_THROWS(parse_kea_lease4_csv("", in_site));
    // Kea 2.4+ adds pool_id; the order of columns does not matter.
    const auto r = parse_kea_lease4_csv(
        "hwaddr,address,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context,pool_id\n"
        "02:00:00:00:00:07,10.9.0.50,,600,1900000000,1,0,0,x,0,,0\n"
        "02:00:00:00:00:07,10.9.0.51,,600,1900000100,1,0,0,x,0,,0\n",
        in_site);
    REQUIRE(r.leases.size() == 1);
    CHECK(r.leases[0].address == Ipv4(10, 9, 0, 51));
    CHECK(r.warnings.size() == 1);
}
