#include "fleetconf/dhcp/leases.hpp"

#include "fleetconf/common/crypto.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <fstream>

using namespace fleetconf::dhcp;
using fleetconf::common::Ipv4;

namespace {

std::filesystem::path temp_dir() {
    auto d = std::filesystem::temp_directory_path() / ("fc-leases-" + fleetconf::common::to_hex(fleetconf::common::random_bytes(4)));
    std::filesystem::create_directories(d);
    return d;
}

Lease lease(std::uint8_t last, const std::string& host, LeaseState s = LeaseState::bound) {
    Lease l;
    l.address = Ipv4(10, 0, 0, last);
    l.client = {1, 2, 0, 0, 0, 0, last};
    l.mac = fleetconf::common::Mac({2, 0, 0, 0, 0, last});
    l.hostname = host;
    l.network = "br0";
    l.state = s;
    l.expires = 1'800'000'000 + last;
    return l;
}

}  // namespace

TEST_CASE("journal: replay after reopen, one sync for many changes", "[dhcp][leases]") {
    auto dir = temp_dir();
    const auto f = dir / "leases.journal";
    {
        JournalLeaseStore j(f);
        j.apply({{lease(1, "a")}, {lease(2, "b")}, {lease(3, "c")}});
        j.sync();
        CHECK(j.syncs() == 1);
        j.apply({{lease(2, "b"), true}});
        j.sync();
    }
    JournalLeaseStore r(f);
    CHECK(r.size() == 2);
    CHECK(r.by_address(Ipv4(10, 0, 0, 1))->hostname == "a");
    CHECK(r.by_address(Ipv4(10, 0, 0, 2)) == nullptr);
    CHECK(r.by_client(lease(3, "c").client)->address == Ipv4(10, 0, 0, 3));
    std::filesystem::remove_all(dir);
}

TEST_CASE("journal: a torn or damaged last record is dropped, and the file is cut back", "[dhcp][leases]") {
    auto dir = temp_dir();
    const auto f = dir / "leases.journal";
    const std::string good = JournalLeaseStore::encode_record({lease(1, "a")});
    const std::string next = JournalLeaseStore::encode_record({lease(2, "b")});
    for (std::size_t cut = 1; cut < next.size(); ++cut) {
        {
            std::ofstream o(f, std::ios::trunc | std::ios::binary);
            o << good << next.substr(0, cut);
        }
        std::vector<std::string> warnings;
        JournalLeaseStore j(f, &warnings, 4096);
        INFO("cut at " << cut);
        CHECK(j.size() == 1);
        CHECK(warnings.size() == 1);
        j.apply({{lease(3, "c")}});
        j.sync();
        JournalLeaseStore again(f, nullptr, 4096);
        CHECK(again.size() == 2);  // the torn tail was cut, so the new record is readable
    }
    // A flipped bit in the last complete line: dropped too.
    {
        std::string bad = next;
        bad[20] ^= 1;
        std::ofstream o(f, std::ios::trunc | std::ios::binary);
        o << good << bad;
    }
    std::vector<std::string> warnings;
    JournalLeaseStore j(f, &warnings);
    CHECK(j.size() == 1);
    CHECK_THAT(warnings.at(0), Catch::Contains("damaged last record"));
    std::filesystem::remove_all(dir);
}

TEST_CASE("journal: preallocated zeros; appends inside them keep the file size; a write torn into them is dropped",
          "[dhcp][leases]") {
    auto dir = temp_dir();
    const auto f = dir / "leases.journal";
    std::uintmax_t size = 0;
    {
        JournalLeaseStore j(f, nullptr, 8192);
        size = std::filesystem::file_size(f);
        CHECK(size == 8192);
        j.apply({{lease(1, "a")}});
        j.sync();
        CHECK(std::filesystem::file_size(f) == size);  // no metadata change for fdatasync to write
        for (int i = 0; i < 200; ++i) j.apply({{lease(static_cast<std::uint8_t>(i % 250), "h" + std::to_string(i))}});
        j.sync();  // past the zeros: the file grows by another chunk
        CHECK(std::filesystem::file_size(f) > size);
    }
    {
        std::vector<std::string> warnings;
        JournalLeaseStore j(f, &warnings, 8192);
        CHECK(warnings.empty());  // trailing zeros are free space, not damage
        CHECK(j.size() == 200);
    }
    // A record torn inside the zeros (its head written, no newline, zeros after it).
    std::string text = JournalLeaseStore::encode_record({lease(1, "a")}) + JournalLeaseStore::encode_record({lease(2, "b")}).substr(0, 30);
    text.resize(4096, '\0');
    {
        std::ofstream o(f, std::ios::trunc | std::ios::binary);
        o << text;
    }
    std::vector<std::string> warnings;
    JournalLeaseStore j(f, &warnings, 8192);
    CHECK(j.size() == 1);
    REQUIRE(warnings.size() == 1);
    CHECK_THAT(warnings[0], Catch::Contains("torn"));
    j.apply({{lease(3, "c")}});
    j.sync();
    CHECK(JournalLeaseStore(f, nullptr, 8192).size() == 2);
    std::filesystem::remove_all(dir);
}

TEST_CASE("journal: compaction keeps exactly the live leases", "[dhcp][leases]") {
    auto dir = temp_dir();
    const auto f = dir / "leases.journal";
    JournalLeaseStore j(f);
    for (int round = 0; round < 50; ++round) {
        j.apply({{lease(1, "a" + std::to_string(round))}, {lease(2, "b")}});
        j.sync();
    }
    CHECK(j.records() == 100);
    j.compact();
    CHECK(j.records() == 2);
    j.apply({{lease(4, "d")}});
    j.sync();
    JournalLeaseStore r(f);
    CHECK(r.size() == 3);
    CHECK(r.by_address(Ipv4(10, 0, 0, 1))->hostname == "a49");
    std::filesystem::remove_all(dir);
}

TEST_CASE("journal record codec", "[dhcp][leases]") {
    const auto rec = JournalLeaseStore::encode_record({lease(7, "web")});
    CHECK(rec.back() == '\n');
    auto back = JournalLeaseStore::decode_record(std::string_view(rec).substr(0, rec.size() - 1));
    REQUIRE(back);
    CHECK(back->lease == lease(7, "web"));
    CHECK_FALSE(JournalLeaseStore::decode_record("00000000 {}"));
    CHECK_FALSE(JournalLeaseStore::decode_record("garbage"));
}

TEST_CASE("the record example of docs/dhcp-leases.md (CRC computed with Python's zlib)", "[dhcp][leases]") {
    auto r = JournalLeaseStore::decode_record(
        R"(a31584fa {"a":"10.88.0.100","c":"ff01020000aabbcc","m":"02:00:00:aa:bb:cc","h":"web","n":"br0","s":"bound","e":1800000600})");
    REQUIRE(r);
    CHECK(r->lease.address == Ipv4(10, 88, 0, 100));
    CHECK(r->lease.state == LeaseState::bound);
    CHECK(r->lease.expires == 1800000600);
    CHECK(r->lease.client == Bytes{0xff, 0x01, 0x02, 0x00, 0x00, 0xaa, 0xbb, 0xcc});
}

TEST_CASE("journal records are byte-identical to nlohmann's ordered JSON, hostile host names included", "[dhcp][leases]") {
    // The encoder writes the JSON by hand (it runs on the packet path); this pins it to the documented form.
    for (const std::string& host : {std::string("web"), std::string(""), std::string("quote\"back\\slash"), std::string("ctl\x01\n\t"),
                                   std::string("caf\xc3\xa9"), std::string("bad\xff\xfeutf8"), std::string(63, 'x')}) {
        for (bool remove : {false, true}) {
            LeaseChange c{lease(9, host, LeaseState::offered), remove};
            nlohmann::ordered_json j;
            j["a"] = c.lease.address.to_string();
            if (remove) {
                j["remove"] = true;
            } else {
                j["c"] = fleetconf::common::to_hex(c.lease.client);
                j["m"] = c.lease.mac.to_string();
                j["h"] = c.lease.hostname;
                j["n"] = c.lease.network;
                j["s"] = "offered";
                j["e"] = c.lease.expires;
            }
            const auto body = j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
            const auto rec = JournalLeaseStore::encode_record(c);
            INFO(host);
            CHECK(rec.substr(9, rec.size() - 10) == body);
            auto back = JournalLeaseStore::decode_record(std::string_view(rec).substr(0, rec.size() - 1));
            REQUIRE(back);
            CHECK(back->remove == remove);
        }
    }
}

TEST_CASE("journal: the option-81 name travels in \"f\" only when set", "[dhcp][leases]") {
    auto l = lease(5, "laptop");
    CHECK(JournalLeaseStore::encode_record({l}).find("\"f\"") == std::string::npos);
    l.fqdn = "laptop.fleet.example";
    const auto rec = JournalLeaseStore::encode_record({l});
    CHECK(rec.find(R"(,"e":1800000005,"f":"laptop.fleet.example"})") != std::string::npos);
    auto back = JournalLeaseStore::decode_record(std::string_view(rec).substr(0, rec.size() - 1));
    REQUIRE(back);
    CHECK(back->lease == l);
}
