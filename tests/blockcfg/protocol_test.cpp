#include "fleetconf/blockcfg/protocol.hpp"

#include "fleetconf/common/crypto.hpp"

#include <catch2/catch.hpp>

using namespace fleetconf::blockcfg;
using namespace fleetconf::blockcfg::protocol;
using fleetconf::common::from_hex;
using fleetconf::common::to_hex;

namespace {

// The vectors of docs/blockcfg-protocol.md, computed independently with Python's hmac module.
const char* kKeyFile = "# test key\nadmin AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n";
const char* kHello = "000000254643424801202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f";
const char* kRequest =
    "0000003c010561646d696e00000000000000010f208be4d449d2f97bed21f6ed9750518e073dfca4615ac92da962e7a775cad57b226f70223a226c697374227d";
const char* kReply =
    "0000004f020000000000000001acc179399834d2f38fdab54f788dd644193569b7200bfcf0c58e6a7622d2f1ac7b2267656e65726174696f6e223a312c226f6b223a747275652c22726f75746573223a5b5d7d";

KeyRing ring() {
    std::string err;
    auto r = parse_key_file(kKeyFile, err);
    REQUIRE(r);
    return *r;
}

Nonce test_nonce() {
    Nonce n;
    for (int i = 0; i < 32; ++i) n[i] = static_cast<std::uint8_t>(0x20 + i);
    return n;
}

std::span<const std::uint8_t> body_of(const Bytes& framed) { return std::span<const std::uint8_t>(framed).subspan(4); }

}  // namespace

TEST_CASE("protocol test vectors, byte for byte", "[protocol]") {
    const auto keys = ring();
    const Key& k = keys.keys.at(0);
    CHECK(to_hex(frame(encode_hello(test_nonce()))) == kHello);
    CHECK(to_hex(frame(encode_request(k, test_nonce(), 1, R"({"op":"list"})"))) == kRequest);
    const auto req_tag = request_tag(k, test_nonce(), 1, R"({"op":"list"})");
    CHECK(to_hex(frame(encode_reply(k, test_nonce(), 1, req_tag, R"({"generation":1,"ok":true,"routes":[]})"))) == kReply);

    // The server verifies the vector request and produces the vector reply.
    ServerSession server(keys, test_nonce());
    Verified v;
    std::string why;
    REQUIRE_FALSE(server.on_request(body_of(*from_hex(kRequest)), v, why));
    CHECK(v.body == R"({"op":"list"})");
    CHECK(to_hex(frame(server.reply(R"({"generation":1,"ok":true,"routes":[]})"))) == kReply);

    // The client accepts the vector hello and reply.
    ClientSession client(k);
    REQUIRE_FALSE(client.on_hello(body_of(*from_hex(kHello))));
    CHECK(to_hex(frame(client.request(R"({"op":"list"})"))) == kRequest);
    std::string body;
    REQUIRE_FALSE(client.on_reply(body_of(*from_hex(kReply)), body));
    CHECK(body == R"({"generation":1,"ok":true,"routes":[]})");
}

TEST_CASE("server rejects forged, unknown-key, replayed, reordered and malformed requests", "[protocol]") {
    const auto keys = ring();
    const Key& k = keys.keys.at(0);
    const Nonce n = test_nonce();
    Verified v;
    std::string why;
    auto fresh = [&] { return ServerSession(keys, n); };

    SECTION("forged tag") {
        auto s = fresh();
        auto req = encode_request(k, n, 1, "{}");
        req[2 + 5 + 8] ^= 1;
        CHECK(s.on_request(req, v, why) == errc::unauthorized);
        CHECK_THAT(why, Catch::Contains("bad tag"));
    }
    SECTION("altered body") {
        auto s = fresh();
        auto req = encode_request(k, n, 1, R"({"op":"list"})");
        req.back() = ']';
        CHECK(s.on_request(req, v, why) == errc::unauthorized);
    }
    SECTION("unknown key id") {
        auto s = fresh();
        Key other{"other", k.secret};
        CHECK(s.on_request(encode_request(other, n, 1, "{}"), v, why) == errc::unauthorized);
        CHECK_THAT(why, Catch::Contains("unknown key id"));
    }
    SECTION("right id, wrong secret") {
        auto s = fresh();
        Key wrong{"admin", Bytes(32, 7)};
        CHECK(s.on_request(encode_request(wrong, n, 1, "{}"), v, why) == errc::unauthorized);
    }
    SECTION("replay on the same connection") {
        auto s = fresh();
        auto req = encode_request(k, n, 1, "{}");
        REQUIRE_FALSE(s.on_request(req, v, why));
        CHECK(s.on_request(req, v, why) == errc::unauthorized);
        CHECK_THAT(why, Catch::Contains("replay or reorder"));
    }
    SECTION("replay on a new connection (another nonce)") {
        auto req = encode_request(k, n, 1, "{}");
        Nonce other = n;
        other[0] ^= 0xff;
        ServerSession s2(keys, other);
        CHECK(s2.on_request(req, v, why) == errc::unauthorized);
    }
    SECTION("reordered sequence numbers") {
        auto s = fresh();
        CHECK(s.on_request(encode_request(k, n, 2, "{}"), v, why) == errc::unauthorized);
        auto s2 = fresh();
        REQUIRE_FALSE(s2.on_request(encode_request(k, n, 1, "{}"), v, why));
        CHECK(s2.on_request(encode_request(k, n, 3, "{}"), v, why) == errc::unauthorized);
    }
    SECTION("malformed frames") {
        auto s = fresh();
        const std::vector<Bytes> bad = {{}, {1}, {2, 5}, {1, 0}, {1, 33}, {1, 5, 'a', 'd', 'm', 'i', 'n', 0, 0, 0}};
        for (const auto& b : bad) CHECK(s.on_request(b, v, why) == errc::bad_request);
    }
}

TEST_CASE("client rejects altered, unbound and unexpected replies", "[protocol]") {
    const auto keys = ring();
    const Key& k = keys.keys.at(0);
    ClientSession c(k);
    std::string body;
    CHECK(c.on_reply(encode_reply(k, test_nonce(), 1, Tag{}, "{}"), body) == errc::bad_request);  // no hello yet
    REQUIRE_FALSE(c.on_hello(encode_hello(test_nonce())));
    auto req = c.request("{}");
    auto req_tag = request_tag(k, test_nonce(), 1, "{}");
    auto rep = encode_reply(k, test_nonce(), 1, req_tag, R"({"ok":true})");
    auto altered = rep;
    altered.back() ^= 1;
    CHECK(c.on_reply(altered, body) == errc::unauthorized);
    // A reply bound to another request (other tag) is refused.
    CHECK(c.on_reply(encode_reply(k, test_nonce(), 1, Tag{}, R"({"ok":true})"), body) == errc::unauthorized);
    REQUIRE_FALSE(c.on_reply(rep, body));
    CHECK(body == R"({"ok":true})");
    CHECK(c.on_reply(rep, body) == errc::bad_request);  // not waiting for a reply any more
}

TEST_CASE("frame reader: every split point, the cap before any body", "[protocol][frames]") {
    const auto keys = ring();
    Bytes stream = frame(encode_request(keys.keys[0], test_nonce(), 1, R"({"op":"list"})"));
    const auto second = frame(encode_request(keys.keys[0], test_nonce(), 2, R"({"op":"status"})"));
    stream.insert(stream.end(), second.begin(), second.end());
    const std::size_t split = GENERATE_COPY(range<std::size_t>(0, stream.size() + 1));
    FrameReader r;
    REQUIRE_FALSE(r.feed(std::span<const std::uint8_t>(stream).first(split)));
    std::vector<Bytes> frames;
    while (auto f = r.next()) frames.push_back(*f);
    REQUIRE_FALSE(r.feed(std::span<const std::uint8_t>(stream).subspan(split)));
    while (auto f = r.next()) frames.push_back(*f);
    REQUIRE(frames.size() == 2);
    const auto decoded = decode_request(frames[1]);
    REQUIRE(decoded);
    CHECK(decoded->seq == 2);
    CHECK_FALSE(r.partial());
}

TEST_CASE("frame reader refuses an oversized length at once", "[protocol][frames]") {
    FrameReader r(1000);
    const std::uint8_t big[] = {0, 0, 0x03, 0xE9};  // 1001
    CHECK(r.feed(big) == errc::too_large);
    FrameReader r2(1000);
    const std::uint8_t ok[] = {0, 0, 0x03, 0xE8, 'x'};
    CHECK_FALSE(r2.feed(ok));
    CHECK(r2.partial());
    CHECK_FALSE(r2.next());
}

TEST_CASE("key files", "[protocol][keys]") {
    std::string err;
    CHECK(parse_key_file("a AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\nb AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", err)
              ->keys.size() == 2);
    const std::pair<const char*, const char*> bad[] = {
        {"", "no keys"},
        {"justone", "line 1: expected \"KEY-ID BASE64-SECRET\""},
        {"bad/id AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", "line 1: key id must be 1-32 characters of A-Z a-z 0-9 . _ -"},
        {"a AAEC", "line 1: secret is 3 bytes; at least 32 are required"},
        {"a !!!", "line 1: secret is not valid base64"},
        {"a AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n\na AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
         "line 3: key id a is defined twice"},
    };
    for (auto [text, msg] : bad) {
        INFO(text);
        CHECK_FALSE(parse_key_file(text, err));
        CHECK(err == msg);
    }
}

TEST_CASE("BUSY frame: the docs/blockcfg-protocol.md example", "[protocol]") {
    using namespace fleetconf::blockcfg::protocol;
    const auto f = frame(encode_busy({BusyReason::too_many_connections, "busy"}));
    CHECK(fleetconf::common::to_hex(f) == "0000000a46434242010162757379");
    auto b = decode_busy(std::span(f).subspan(4));
    REQUIRE(b);
    CHECK(b->message == "busy");
    CHECK_FALSE(decode_busy(encode_hello(Nonce{})));
    CHECK_FALSE(decode_hello(std::span(f).subspan(4)));
}
