#include "fleetconf/common/crypto.hpp"

#include <catch2/catch.hpp>

using namespace fleetconf::common;

TEST_CASE("SHA-256 and MD5 known answers", "[crypto]") {
    CHECK(to_hex(sha256("")) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    CHECK(to_hex(sha256("abc")) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK(to_hex(md5("")) == "d41d8cd98f00b204e9800998ecf8427e");
    CHECK(to_hex(md5("br-fleetweb")) == "8819f5255bef1086bd3b5ff4e8bd7fc5");
    Sha256 inc;
    inc.update("a").update("bc");
    CHECK(inc.finish() == sha256("abc"));
}

TEST_CASE("HMAC-SHA256 RFC 4231 vectors", "[crypto]") {
    // Test case 1
    Bytes key(20, 0x0b);
    CHECK(to_hex(hmac_sha256(key, as_bytes("Hi There"))) == "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
    // Test case 2, and the same message in two parts
    CHECK(to_hex(hmac_sha256(as_bytes("Jefe"), as_bytes("what do ya want for nothing?"))) ==
          "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    CHECK(to_hex(hmac_sha256(as_bytes("Jefe"), {as_bytes("what do ya "), as_bytes("want for nothing?")})) ==
          "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    // Test case 6: key longer than the block size
    Bytes long_key(131, 0xaa);
    CHECK(to_hex(hmac_sha256(long_key, as_bytes("Test Using Larger Than Block-Size Key - Hash Key First"))) ==
          "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

TEST_CASE("random bytes and constant-time compare", "[crypto]") {
    auto a = random_bytes(32), b = random_bytes(32);
    CHECK(a.size() == 32);
    CHECK(a != b);
    CHECK(constant_time_equal(a, a));
    CHECK_FALSE(constant_time_equal(a, b));
    CHECK_FALSE(constant_time_equal(a, std::span<const std::uint8_t>(a).first(31)));
    CHECK(constant_time_equal({}, {}));
}

TEST_CASE("hex", "[crypto]") {
    CHECK(to_hex(Bytes{0x00, 0xab, 0xff}) == "00abff");
    CHECK(*from_hex("00ABff") == Bytes{0x00, 0xab, 0xff});
    CHECK(from_hex("")->empty());
    CHECK_FALSE(from_hex("abc"));
    CHECK_FALSE(from_hex("zz"));
}

TEST_CASE("base64 RFC 4648 vectors, padded and unpadded", "[crypto]") {
    const std::pair<const char*, const char*> vectors[] = {
        {"", ""}, {"f", "Zg=="}, {"fo", "Zm8="}, {"foo", "Zm9v"}, {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"}};
    for (auto [plain, enc] : vectors) {
        INFO(plain);
        CHECK(base64_encode(as_bytes(plain)) == enc);
        auto dec = base64_decode(enc);
        REQUIRE(dec);
        CHECK(std::string(dec->begin(), dec->end()) == plain);
        std::string unpadded = enc;
        while (!unpadded.empty() && unpadded.back() == '=') unpadded.pop_back();
        CHECK(base64_encode(as_bytes(plain), false) == unpadded);
        auto dec2 = base64_decode(unpadded);
        REQUIRE(dec2);
        CHECK(std::string(dec2->begin(), dec2->end()) == plain);
    }
    for (const char* bad : {"Z", "Zg=", "Zg===", "Zh==", "Zm9=", "Zm9v!", "Zm 9v", "=Zm9", "Zm8=Zm8="}) {
        INFO(bad);
        CHECK_FALSE(base64_decode(bad));
    }
}
