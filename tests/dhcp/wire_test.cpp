#include <algorithm>
#include "fleetconf/dhcp/wire.hpp"

#include "fleetconf/common/crypto.hpp"

#include <catch2/catch.hpp>

using namespace fleetconf::dhcp;
using fleetconf::common::from_hex;
using fleetconf::common::Ipv4;

namespace {

// Real DISCOVERs captured in this project's test namespaces (how, with which versions and commands: tests/dhcp/README.md;
// re-captured and compared on every CI run by tests/dhcp/capture_test.py):
// udhcpc (busybox 1.35): "busybox udhcpc -i IF -x hostname:web", chaddr 02:00:00:aa:bb:cc, 300 bytes.
//   53=01 DISCOVER; 57=0240 (576); 55=01 03 06 0c 0f 1c 2a; 12="web"; 60="udhcp 1.35.0"; 61=01 020000aabbcc; END
const char* kUdhcpc =
    "010106009ef37d500000000000000000000000000000000000000000020000aabbcc00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000638253633501013902024037070103060c0f1c2a0c037765623c0c756468637020312e33352e303d0701020000aabbccff000000000000000000000000000000";
// dhclient (isc-dhcp-client 4.4.3) with 'send host-name "calendar";', 300 bytes, no client id.
//   53=01; 12="calendar"; 55=01 1c 02 03 0f 06 0c; END
const char* kDhclient =
    "01010600a3ebb4270000000000000000000000000000000000000000020000aabbcc00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000638253633501010c0863616c656e6461723707011c02030f060cff00000000000000000000000000000000000000000000000000000000000000000000000000";
// perfdhcp (kea-admin 2.2) acting as a relay: giaddr 10.77.0.2, chaddr 00:0c:01:02:03:04, 262 bytes.
//   53=01; 55=01 1c 02 03 0f 06 0c; 61=01 000c01020304; END (no padding to 300)
const char* kPerfdhcp =
    "0101060100000000000000000000000000000000000000000a4d0002000c0102030400000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000638253633501013707011c02030f060c3d0701000c01020304ff";

Message decode_hex(const char* hex) {
    auto b = from_hex(hex);
    REQUIRE(b);
    std::error_code ec;
    auto m = decode(*b, ec);
    INFO(ec.message());
    REQUIRE(m);
    return *m;
}

void add(Bytes& b, std::initializer_list<std::uint8_t> x) { b.insert(b.end(), x); }

Bytes valid_header() {
    Bytes b(240, 0);
    b[0] = 1;
    b[1] = 1;
    b[2] = 6;
    b[236] = 99;
    b[237] = 130;
    b[238] = 83;
    b[239] = 99;
    return b;
}

}  // namespace

TEST_CASE("captured udhcpc DISCOVER", "[dhcp][wire]") {
    auto m = decode_hex(kUdhcpc);
    CHECK(m.op == 1);
    CHECK(m.type() == MessageType::discover);
    CHECK(m.mac().to_string() == "02:00:00:aa:bb:cc");
    CHECK(*m.string_option(opt::hostname) == "web");
    CHECK(*m.string_option(opt::vendor_class) == "udhcp 1.35.0");
    CHECK(m.find(opt::client_id)->data == Bytes{0x01, 0x02, 0x00, 0x00, 0xaa, 0xbb, 0xcc});
    CHECK(m.find(opt::max_size)->data == Bytes{0x02, 0x40});
    CHECK(m.find(opt::parameter_list)->data == Bytes{1, 3, 6, 12, 15, 28, 42});
    CHECK_FALSE(m.broadcast_flag());
    // Re-encoding gives the same bytes (same option order, padded to 300).
    CHECK(fleetconf::common::to_hex(encode(m)) == kUdhcpc);
}

TEST_CASE("captured dhclient and perfdhcp DISCOVERs", "[dhcp][wire]") {
    auto d = decode_hex(kDhclient);
    CHECK(*d.string_option(opt::hostname) == "calendar");
    CHECK_FALSE(d.find(opt::client_id));
    CHECK(d.find(opt::parameter_list)->data == Bytes{1, 28, 2, 3, 15, 6, 12});
    CHECK(fleetconf::common::to_hex(encode(d)) == kDhclient);
    auto p = decode_hex(kPerfdhcp);
    CHECK(p.giaddr == Ipv4(10, 77, 0, 2));
    CHECK(p.mac().to_string() == "00:0c:01:02:03:04");
    CHECK(p.type() == MessageType::discover);
}

TEST_CASE("malformed packets give their error, never a crash", "[dhcp][wire]") {
    struct Case {
        const char* what;
        Bytes bytes;
        DecodeError error;
    };
    std::vector<Case> cases;
    cases.push_back({"empty", {}, DecodeError::too_short});
    cases.push_back({"truncated header", Bytes(200, 0), DecodeError::too_short});
    {
        auto b = valid_header();
        b[0] = 3;
        b.push_back(255);
        cases.push_back({"bad op", b, DecodeError::bad_op});
    }
    {
        auto b = valid_header();
        b[2] = 17;
        b.push_back(255);
        cases.push_back({"hlen 17", b, DecodeError::bad_hlen});
    }
    {
        auto b = valid_header();
        b[239] = 98;
        b.push_back(255);
        cases.push_back({"bad cookie", b, DecodeError::bad_cookie});
    }
    {
        auto b = valid_header();
        add(b, {53, 1, 1, 12, 10, 'a', 'b'});
        cases.push_back({"option length past the end", b, DecodeError::option_truncated});
    }
    {
        auto b = valid_header();
        add(b, {53, 1, 1});
        cases.push_back({"missing end", b, DecodeError::missing_end});
    }
    {
        auto b = valid_header();
        add(b, {53, 1, 1, 12});
        cases.push_back({"code without length", b, DecodeError::option_truncated});
    }
    {
        auto b = valid_header();
        add(b, {52, 1, 4, 255});
        cases.push_back({"overload value 4", b, DecodeError::bad_overload});
    }
    {
        auto b = valid_header();
        b[108] = 12;
        b[109] = 200;  // an option in the file field running past it
        add(b, {52, 1, 1, 255});
        cases.push_back({"bad option inside the overloaded file field", b, DecodeError::option_truncated});
    }
    cases.push_back({"oversized", Bytes(70000, 0), DecodeError::too_long});
    for (const auto& c : cases) {
        INFO(c.what);
        std::error_code ec;
        CHECK_FALSE(decode(c.bytes, ec));
        CHECK(ec == c.error);
    }
}

TEST_CASE("option overload and RFC 3396 long options", "[dhcp][wire]") {
    auto b = valid_header();
    // file field: hostname "abc"; sname field: a second piece of option 43.
    b[108] = 12, b[109] = 3, b[110] = 'a', b[111] = 'b', b[112] = 'c', b[113] = 255;
    b[44] = 43, b[45] = 2, b[46] = 0xAA, b[47] = 0xBB, b[48] = 255;
    add(b, {53, 1, 1, 52, 1, 3, 43, 1, 0x99, 255});
    std::error_code ec;
    auto m = decode(b, ec);
    REQUIRE(m);
    CHECK(*m->string_option(opt::hostname) == "abc");
    CHECK(m->find(opt::vendor_specific)->data == Bytes{0x99, 0xAA, 0xBB});  // joined in order: options, file, sname
    // A 600-byte option is split into 255+255+90 and joined again.
    Message big;
    big.options.push_back({opt::message_type, {1}});
    big.options.push_back({224, Bytes(600, 0x5A)});
    const auto enc = encode(big);
    auto back = decode(enc, ec);
    REQUIRE(back);
    CHECK(back->find(224)->data == Bytes(600, 0x5A));
    CHECK(enc[240 + 3] == 224);
    CHECK(enc[240 + 4] == 255);
}

TEST_CASE("encode respects the maximum message size and pads to 300", "[dhcp][wire]") {
    Message m;
    m.op = 2;
    m.options.push_back({opt::message_type, {2}});
    m.options.push_back({opt::server_id, addr_bytes(Ipv4(10, 0, 0, 1))});
    m.options.push_back({224, Bytes(400, 1)});
    std::vector<std::uint8_t> dropped;
    const auto small = encode(m, 548, &dropped);
    CHECK(small.size() == 300);  // the big option did not fit 548 bytes and was left out, then padded
    CHECK(dropped == std::vector<std::uint8_t>{224});
    dropped.clear();
    const auto large = encode(m, 1400, &dropped);
    CHECK(dropped.empty());
    CHECK(large.size() == 240 + 3 + 6 + (400 + 2 * 2) + 1);  // 400 bytes = chunks of 255 and 145
}

TEST_CASE("encode_append: the same bytes after what the buffer holds, the size limit counted from there", "[dhcp][wire]") {
    Message m;
    m.op = 2;
    m.options.push_back({opt::message_type, {2}});
    m.options.push_back({224, Bytes(400, 1)});
    Bytes batch(1000, 0xAB);  // a previous reply in the same buffer
    std::vector<std::uint8_t> dropped;
    encode_append(m, batch, 548, &dropped);
    CHECK(dropped == std::vector<std::uint8_t>{224});
    REQUIRE(batch.size() == 1000 + 300);
    CHECK(Bytes(batch.begin() + 1000, batch.end()) == encode(m, 548));
    CHECK(std::all_of(batch.begin(), batch.begin() + 1000, [](auto b) { return b == 0xAB; }));
    encode_append(m, batch, 1400);
    CHECK(Bytes(batch.begin() + 1300, batch.end()) == encode(m, 1400));
}

TEST_CASE("vivso (RFC 3925) and classless routes (RFC 3442)", "[dhcp][wire]") {
    const auto v = vivso_bytes(49836, {{0, Bytes{'1', '0', '.', '0', '.', '0', '.', '3', ':', '8', '0', '9', '4'}}});
    CHECK(fleetconf::common::to_hex(v) == "0000c2ac0f000d31302e302e302e333a38303934");
    auto parsed = parse_vivso(v);
    REQUIRE(parsed);
    CHECK((*parsed)[0].first == 49836);
    CHECK((*parsed)[0].second[0].first == 0);
    CHECK_FALSE(parse_vivso(Bytes{0, 0, 0xc2, 0xac, 5, 0, 9}));
    std::vector<ClasslessRoute> routes = {{*fleetconf::common::Prefix::parse("10.0.0.0/8"), Ipv4(10, 0, 0, 1)},
                                          {*fleetconf::common::Prefix::parse("0.0.0.0/0"), Ipv4(10, 0, 0, 254)},
                                          {*fleetconf::common::Prefix::parse("192.168.4.0/22"), Ipv4(10, 0, 0, 2)}};
    const auto rb = classless_routes_bytes(routes);
    // RFC 3442 section 3 encoding: width, significant octets, router.
    CHECK(fleetconf::common::to_hex(rb) == "080a0a000001000a0000fe16c0a8040a000002");
    CHECK(*parse_classless_routes(rb) == routes);
    CHECK_FALSE(parse_classless_routes(Bytes{33, 1, 2, 3, 4, 5, 6, 7, 8}));
    CHECK_FALSE(parse_classless_routes(Bytes{24, 10, 0}));
}

TEST_CASE("option table and formatting", "[dhcp][wire]") {
    CHECK(option_def(121)->type == OptionType::classless_routes);
    CHECK(option_def(82)->name == "dhcp-agent-options");
    CHECK(format_option(3, addrs_bytes({Ipv4(10, 0, 0, 1), Ipv4(10, 0, 0, 2)})) == "10.0.0.1,10.0.0.2");
    CHECK(format_option(55, Bytes{1, 3, 6}) == "[1,3,6]");
    CHECK(format_option(12, Bytes{'w', 'e', 'b'}) == "\"web\"");
    CHECK(format_option(240, Bytes{0xde, 0xad}) == "dead");
    CHECK(format_option(51, u32_bytes(3600)) == "3600");
}
