// tlstunnel's DER commands, frames and disk layout: byte vectors from docs/tlstunnel-compat.md, and (at the end)
// vectors produced by a port of tlstunnel's own source (tests/blockcfg/tlstunnel_reference.py).
#include "fleetconf/blockcfg/migrate.hpp"
#include "fleetconf/blockcfg/tlstunnel.hpp"

#include "fleetconf/common/crypto.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <fstream>

using namespace fleetconf::blockcfg::tlstunnel;
using fleetconf::common::Ipv4;
using fleetconf::common::Ipv6;

namespace {

Bytes hex(std::string_view h) { return *fleetconf::common::from_hex(h); }
std::string hex(const Bytes& b) { return fleetconf::common::to_hex(b); }

Command round_trip(const Command& c) {
    std::string err;
    auto back = decode(encode(c), err);
    INFO(err);
    REQUIRE(back);
    return *back;
}

}  // namespace

TEST_CASE("tlstunnel DER: each command, byte for byte", "[blockcfg][tlstunnel]") {
    CHECK(hex(encode(List{})) == "a2020500");
    CHECK(hex(encode(Remove{"a.example"})) == "a10b0c09612e6578616d706c65");
    // add web.example -> 10.0.0.1:443
    CHECK(hex(encode(Add{{"web.example", Ipv4(10, 0, 0, 1), 443}})) ==
          "a01b3019"
          "0c0b7765622e6578616d706c65"
          "a006"
          "02040a000001"
          "020201bb");
    CHECK(hex(encode(Result{0, "ok"})) ==
          "a4093007020100"
          "0c026f6b");
    CHECK(hex(encode(Result{3, ""})) ==
          "a4073005020103"
          "0c00");
    CHECK(hex(encode(Snis{{}})) == "a3023000");
    for (const Command& c :
         {Command{List{}}, Command{Remove{"x"}}, Command{Add{{"h", Ipv4(1, 2, 3, 4), 80}}},
          Command{Snis{{{"a", Ipv4(10, 0, 0, 1), 1}, {"b", *Ipv6::parse("2001:db8::1"), 65535}}}}, Command{Result{2, "could not parse"}}})
        CHECK(round_trip(c) == c);
}

TEST_CASE("tlstunnel DER: IPv4 is a signed 32-bit INTEGER, IPv6 four signed words", "[blockcfg][tlstunnel]") {
    auto ip_bytes = [](const fleetconf::common::IpAddress& a) {
        auto der = hex(encode(Add{{"h", a, 1}}));
        // a0 L 30 L 0c 01 68 <Ip> 02 01 01: cut the Ip element out
        return der.substr(14, der.size() - 14 - 6);
    };
    CHECK(ip_bytes(Ipv4(127, 0, 0, 1)) == "a00602047f000001");
    CHECK(ip_bytes(Ipv4(128, 0, 0, 0)) == "a006020480000000");    // -2147483648
    CHECK(ip_bytes(Ipv4(192, 168, 1, 1)) == "a0060204c0a80101");  // -1062731519
    CHECK(ip_bytes(Ipv4(255, 255, 255, 255)) == "a0030201ff");    // -1
    CHECK(ip_bytes(Ipv4(255, 255, 255, 0)) == "a0040202ff00");    // -256
    CHECK(ip_bytes(Ipv4(0, 0, 0, 128)) == "a00402020080");        // 128 needs a leading zero
    CHECK(ip_bytes(Ipv4(0, 0, 0, 0)) == "a003020100");
    CHECK(ip_bytes(*Ipv6::parse("::1")) == "a10e300c020100020100020100020101");
    CHECK(ip_bytes(*Ipv6::parse("ffff:ffff::8000:0")) ==
          "a111300f0201ff"
          "020100"
          "020100"
          "020480000000");
    for (auto a : {Ipv4(128, 0, 0, 1), Ipv4(255, 0, 0, 0), Ipv4(1, 1, 1, 1)}) {
        auto c = round_trip(Add{{"h", a, 443}});
        CHECK(std::get<Ipv4>(std::get<Add>(c).sni.host) == a);
    }
}

TEST_CASE("tlstunnel DER: strict decoding", "[blockcfg][tlstunnel]") {
    std::string err;
    CHECK_FALSE(decode(hex(""), err));
    CHECK_FALSE(decode(hex("a2800500"
                           "0000"),
                       err));  // indefinite length
    CHECK(err == "list: indefinite length (not DER)");
    CHECK_FALSE(decode(hex("a202050000"), err));  // trailing byte
    CHECK_FALSE(decode(hex("a281020500"), err));  // non-minimal length
    CHECK_FALSE(decode(hex("a5020500"), err));    // unknown command
    CHECK_FALSE(decode(hex("a2030500"), err));    // runs past the end
    // port as a non-minimal INTEGER (00 01 bb)
    CHECK_FALSE(decode(hex("a01c301a"
                           "0c0b7765622e6578616d706c65"
                           "a006"
                           "02040a000001"
                           "02030001bb"),
                       err));
    CHECK(err == "Sni port: non-minimal INTEGER (not DER)");
    // an IPv4 INTEGER outside the signed 32-bit range (0x00c0a80101: 192.168.1.1 written unsigned)
    CHECK_FALSE(decode(hex("a01c301a"
                           "0c0b7765622e6578616d706c65"
                           "a007"
                           "020500c0a80101"
                           "020201bb"),
                       err));
    CHECK(err == "Ip v4: 3232235777 is not a signed 32-bit integer");
    // a tlstunnel port outside 1-65535 is kept as sent (tlstunnel does not check): the importer refuses it
    auto c = decode(encode(Add{{"h", Ipv4(1, 2, 3, 4), 70000}}), err);
    REQUIRE(c);
    CHECK(std::get<Add>(*c).sni.port == 70000);
}

TEST_CASE("tlstunnel frames: u64 length, HMAC-SHA256 of the DER only, then the DER", "[blockcfg][tlstunnel]") {
    const auto f = frame_request(fleetconf::common::as_bytes("secret"), hex("a2020500"));
    CHECK(hex(f) ==
          "0000000000000024"
          "49b537aeb786f0d65b39885565fb75466cfe78bb03fb2a284c56d5cd88bf4f2c"
          "a2020500");
    std::string err;
    const auto reply =
        hex("000000000000000b"
            "a4093007020100"
            "0c026f6b");
    for (std::size_t n = 0; n < reply.size(); ++n) CHECK_FALSE(parse_reply(std::span(reply).first(n), err));
    auto der = parse_reply(reply, err);
    REQUIRE(der);
    CHECK(hex(*der) == "a40930070201000c026f6b");
    CHECK_FALSE(parse_reply(hex("0000000100000000"), err));
    CHECK(err == "reply announces 4294967296 bytes (limit 16777216)");
}

TEST_CASE("tlstunnel disk: write, read, damage", "[blockcfg][tlstunnel]") {
    std::vector<Sni> routes;
    for (int i = 0; i < 60; ++i)
        routes.push_back({"host" + std::to_string(i) + ".example", Ipv4(10, 0, 0, static_cast<std::uint8_t>(i)), 443});
    for (std::size_t ss : {std::size_t{512}, std::size_t{4096}}) {
        auto img = write_disk(routes, ss, 64, 7, 1'800'000'000);
        REQUIRE(img.size() == 64 * ss);
        auto r = read_disk(img, ss);
        REQUIRE(std::holds_alternative<DiskContents>(r));
        CHECK(std::get<DiskContents>(r).snis == routes);
        CHECK(std::get<DiskContents>(r).used.counter == 7);
        // Superblock fields at their documented offsets.
        CHECK(hex(Bytes(img.begin(), img.begin() + 40)) ==
              "0001000000000000"
              "0000000000000007"
              "000000006b49d200"
              "0000000000000001" +
                  hex(Bytes{0, 0, 0, 0, 0, 0, static_cast<std::uint8_t>(encode_snis(routes).size() >> 8),
                            static_cast<std::uint8_t>(encode_snis(routes).size())}));
        // One superblock damaged: read through the other, and say so.
        auto one = img;
        one[10] ^= 1;
        auto r1 = read_disk(one, ss);
        REQUIRE(std::holds_alternative<DiskContents>(r1));
        CHECK(std::get<DiskContents>(r1).used_last);
        REQUIRE(std::get<DiskContents>(r1).notes.size() == 1);
        CHECK(std::get<DiskContents>(r1).notes[0].find("first superblock") != std::string::npos);
        // Both damaged: an error, never an empty configuration.
        auto both = one;
        both[both.size() - 1] ^= 1;
        auto r2 = read_disk(both, ss);
        REQUIRE(std::holds_alternative<std::vector<std::string>>(r2));
        CHECK(std::get<std::vector<std::string>>(r2).back().find("NOT an empty configuration") != std::string::npos);
        // A broken chain: the first data sector points outside the device.
        if (ss == 512) {
            auto broken = img;
            broken[ss + 7] = 200;
            auto r3 = read_disk(broken, ss);
            REQUIRE(std::holds_alternative<std::vector<std::string>>(r3));
            CHECK(std::get<std::vector<std::string>>(r3)[0].find("chain") != std::string::npos);
        }
    }
    CHECK_THROWS_AS(write_disk(routes, 512, 4, 1, 0), std::length_error);
    // The example of docs/tlstunnel-compat.md.
    const std::vector<Sni> one{{"a", Ipv4(10, 0, 0, 1), 80}};
    CHECK(hex(encode_snis(one)) == "3010300e0c0161a00602040a000001020150");
    auto img = write_disk(one, 512, 8, 1, 1'800'000'000);
    const auto digest = fleetconf::common::sha256(encode_snis(one));
    const auto data_hash = hex(Bytes(digest.begin(), digest.end()));
    CHECK(hex(Bytes(img.begin(), img.begin() + 72)) ==
          "0001000000000000"
          "0000000000000001"
          "000000006b49d200"
          "0000000000000001"
          "0000000000000012" +
              data_hash);
    CHECK(hex(Bytes(img.begin() + 512, img.begin() + 512 + 26)) ==
          "0000000000000000"
          "3010300e0c0161a00602040a000001020150");
    CHECK(Bytes(img.begin(), img.begin() + 512) == Bytes(img.end() - 512, img.end()));
}

TEST_CASE("tlstunnel: an IPv6 route is described as [address]:port (issue 16.11)", "[tlstunnel]") {
    using namespace fleetconf::blockcfg::tlstunnel;
    const auto v6 = *fleetconf::common::parse_ip("2001:db8::7");
    CHECK(describe(Command{Add{Sni{"www.example.org", v6, 8443}}}) == "add www.example.org -> [2001:db8::7]:8443");
    const auto v4 = *fleetconf::common::parse_ip("192.0.2.1");
    CHECK(describe(Command{Add{Sni{"a.example", v4, 443}}}) == "add a.example -> 192.0.2.1:443");
    CHECK(describe(Command{Add{Sni{"a.example", v4, 70000}}}) == "add a.example -> 192.0.2.1 port 70000");
    CHECK(fleetconf::common::host_port(v6, 1) == "[2001:db8::7]:1");
}

// ---- vectors from tlstunnel's own source (tests/blockcfg/tlstunnel_reference.py, a port of robur-coop/tlstunnel's
// configuration.ml, client.ml, unikernel.ml and filesystem.ml; fixtures/tlstunnel_reference.json) ----
namespace {

nlohmann::json reference() {
    std::ifstream f(std::string(FLEETCONF_SOURCE_DIR) + "/tests/blockcfg/fixtures/tlstunnel_reference.json");
    REQUIRE(f);
    return nlohmann::json::parse(f);
}

Command reply_command(const std::string& frame_hex) {
    std::string err;
    const auto frame = hex(frame_hex);
    auto der = parse_reply(frame, err);
    INFO(err);
    REQUIRE(der);
    auto c = decode(*der, err);
    INFO(err);
    REQUIRE(c);
    return *c;
}

}  // namespace

TEST_CASE("tlstunnel source vectors: request frames are byte for byte what client.ml writes", "[blockcfg][tlstunnel][reference]") {
    const auto v = reference();
    const std::string key = v["key"];
    auto frame = [&](const Command& c) { return hex(frame_request(fleetconf::common::as_bytes(key), encode(c))); };
    CHECK(frame(Add{{"www.example.org", Ipv4(192, 168, 1, 10), 8443}}) == v["request_add"]);
    CHECK(frame(Remove{"www.example.org"}) == v["request_remove"]);
    CHECK(frame(List{}) == v["request_list"]);
}

TEST_CASE("tlstunnel source vectors: the proxy's replies decode", "[blockcfg][tlstunnel][reference]") {
    const auto v = reference();
    CHECK(reply_command(v["reply_add"]) == Command{Result{0, "www.example.org was successfully added"}});
    CHECK(reply_command(v["reply_remove"]) == Command{Result{0, "site3.example.org was successfylly removed"}});
    CHECK(reply_command(v["reply_bad_key"]) == Command{Result{3, "authentication failure"}});
    const auto list = reply_command(v["reply_list"]);
    REQUIRE(std::holds_alternative<Snis>(list));
    const auto& snis = std::get<Snis>(list).snis;
    REQUIRE(snis.size() == v["disk"]["routes"].size());
    for (std::size_t i = 0; i < snis.size(); ++i) {
        INFO(i);
        CHECK(snis[i].name == v["disk"]["routes"][i][0]);
        CHECK(fleetconf::common::to_string(snis[i].host) == v["disk"]["routes"][i][1]);
        CHECK(snis[i].port == v["disk"]["routes"][i][2]);
    }
}

TEST_CASE("tlstunnel source vectors: a disk the proxy wrote reads back (non-zero padding, reused sectors)",
          "[blockcfg][tlstunnel][reference]") {
    const auto v = reference()["disk"];
    const auto image = hex(v["image"].get<std::string>());
    REQUIRE(image.size() == v["sector_size"].get<std::size_t>() * v["sectors"].get<std::size_t>());
    auto r = read_disk(image, v["sector_size"]);
    REQUIRE(std::holds_alternative<DiskContents>(r));
    const auto& c = std::get<DiskContents>(r);
    CHECK(c.notes.empty());
    CHECK(c.used.counter == v["counter"]);
    CHECK(c.used.first_sector == v["first_sector"]);
    CHECK(c.used.timestamp == v["timestamp"]);
    CHECK(decode_timestamp(c.used.timestamp) == v["unix_time"]);
    CHECK(encode_timestamp(v["unix_time"]) == v["timestamp"]);
    REQUIRE(c.snis.size() == v["routes"].size());
    for (std::size_t i = 0; i < c.snis.size(); ++i) {
        INFO(i);
        CHECK(c.snis[i].name == v["routes"][i][0]);
        CHECK(fleetconf::common::to_string(c.snis[i].host) == v["routes"][i][1]);
        CHECK(c.snis[i].port == v["routes"][i][2]);
    }
}

TEST_CASE("tlstunnel timestamps: 86,000-second days, as filesystem.ml encodes them", "[blockcfg][tlstunnel]") {
    CHECK(encode_timestamp(0) == 0);
    CHECK(encode_timestamp(86'399) == 86'399'000'000'000ull);  // the time of day is not wrapped at 86,000 s
    CHECK(encode_timestamp(86'400) == 86'000'000'000'000ull);  // one day
    CHECK(decode_timestamp(86'000'000'000'000ull) == 86'400);
    CHECK(decode_timestamp(encode_timestamp(1'800'000'000)) == 1'800'000'000);
}

TEST_CASE("tlstunnel migration: routes both ways, the sector size found, the counter carried on", "[blockcfg][tlstunnel][migrate]") {
    namespace bc = fleetconf::blockcfg;
    const std::vector<Sni> snis{{"WWW.Fleet.Test", Ipv4(10, 0, 0, 5), 443}, {"api.fleet.test", Ipv4(10, 0, 0, 6), 8443}};
    SECTION("import: names normalized; all or nothing, every bad route named") {
        auto c = to_config(snis);
        REQUIRE(std::holds_alternative<bc::Config>(c));
        const auto& cfg = std::get<bc::Config>(c);
        CHECK(cfg.routes.size() == 2);
        CHECK(cfg.routes.at("www.fleet.test").to_string() == "10.0.0.5:443");
        auto bad = to_config({{"ok.test", Ipv4(10, 0, 0, 1), 1},
                              {"bad name!", Ipv4(10, 0, 0, 2), 80},
                              {"port.test", Ipv4(10, 0, 0, 3), 70000},
                              {"OK.test", Ipv4(10, 0, 0, 4), 2},
                              {"default", Ipv4(10, 0, 0, 5), 80}});
        REQUIRE(std::holds_alternative<std::vector<std::string>>(bad));
        const auto& why = std::get<std::vector<std::string>>(bad);
        REQUIRE(why.size() == 4);
        CHECK(why[0].starts_with("\"bad name!\": "));
        CHECK(why[1] == "port.test: port 70000 is out of range");
        CHECK(why[2] == "\"OK.test\": listed twice");
        CHECK(why[3] == "\"default\": names fleetconf's default route");
    }
    SECTION("export: every route; the default route cannot go and is reported") {
        bc::Config cfg = std::get<bc::Config>(to_config(snis));
        auto e = from_config(cfg);
        CHECK(e.snis.size() == 2);
        CHECK_FALSE(e.default_dropped);
        cfg.default_route = bc::Backend{Ipv4(10, 0, 0, 9), 80};
        CHECK(from_config(cfg).default_dropped);
    }
    SECTION("read_image tries 512 then 4096; a given size is the only one tried") {
        const auto image = write_disk(snis, 4096, 8, 5, encode_timestamp(1700000000));
        auto found = read_image(image, 0);
        REQUIRE(std::holds_alternative<ReadImage>(found));
        CHECK(std::get<ReadImage>(found).sector_size == 4096);
        CHECK(std::get<ReadImage>(found).contents.snis == snis);
        auto wrong = read_image(image, 512);
        REQUIRE(std::holds_alternative<std::vector<std::string>>(wrong));
        for (const auto& p : std::get<std::vector<std::string>>(wrong)) CHECK(p.starts_with("512-byte sectors: "));
    }
    SECTION("next_counter: one past the newest verified superblock, else 1") {
        const auto image = write_disk(snis, 512, 16, 41, encode_timestamp(1700000000));
        CHECK(next_counter(image, 512) == 42);
        auto damaged = image;
        damaged[10] ^= 0xff;  // the first superblock no longer verifies: the last one still counts
        CHECK(next_counter(damaged, 512) == 42);
        CHECK(next_counter(std::vector<std::uint8_t>(4096, 0), 512) == 1);
        CHECK(next_counter({}, 512) == 1);
    }
}
