#include "fleetconf/common/text.hpp"

#include <catch2/catch.hpp>

using namespace fleetconf::common;

TEST_CASE("printable: network text made safe for every output (docs/text-escaping.md)", "[text]") {
    CHECK(printable("web-1") == "web-1");
    CHECK(printable("caf\xc3\xa9") == "caf\xc3\xa9");  // UTF-8 passes
    CHECK(printable("\xff") == "\\xff");
    CHECK(printable("a\nb") == "a\\x0ab");
    CHECK(printable("a\\b") == "a\\\\b");
    CHECK(printable(std::string("a\0b", 3)) == "a\\x00b");
    CHECK(printable("\x7f") == "\\x7f");
    CHECK(printable("\xc2\x85") == "\\xc2\\x85");                    // C1 control (NEL)
    CHECK(printable("\xc0\xaf") == "\\xc0\\xaf");                    // overlong '/'
    CHECK(printable("\xed\xa0\x80") == "\\xed\\xa0\\x80");           // surrogate
    CHECK(printable("\xe2\x82") == "\\xe2\\x82");                    // truncated sequence
    CHECK(printable("\xf4\x90\x80\x80") == "\\xf4\\x90\\x80\\x80");  // above U+10FFFF
    CHECK(printable("\xf0\x9f\x98\x80") == "\xf0\x9f\x98\x80");
    CHECK(is_printable("web"));
    CHECK_FALSE(is_printable("\xff"));
    CHECK_FALSE(is_printable("a\\b"));
}

TEST_CASE("printable round-trips every byte string", "[text]") {
    std::string all;
    for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
    for (const std::string& s : {all, std::string("\\x41"), std::string("\\"), std::string("\xc3\xa9\xc3")}) {
        const auto p = printable(s);
        CHECK(log_safe(p) == p);  // valid UTF-8, no control characters
        auto back = unescape_printable(p);
        REQUIRE(back);
        CHECK(*back == s);
    }
    CHECK_FALSE(unescape_printable("\\x4"));
    CHECK_FALSE(unescape_printable("\\q"));
    CHECK_FALSE(unescape_printable("\\"));
}

TEST_CASE("log_safe keeps backslashes and escapes controls", "[text]") {
    CHECK(log_safe("C:\\dir") == "C:\\dir");
    CHECK(log_safe("a\r\nb\x1b[31m") == "a\\x0d\\x0ab\\x1b[31m");
}
