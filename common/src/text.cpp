#include "fleetconf/common/text.hpp"

#include "fleetconf/common/crypto.hpp"

#include <cstdint>

namespace fleetconf::common {
namespace {

// Length of the well-formed UTF-8 sequence at s[i] (RFC 3629: no overlongs, no surrogates, at most
// U+10FFFF), or 0.
std::size_t utf8_sequence(std::string_view s, std::size_t i) {
    const auto b = [&](std::size_t k) { return static_cast<std::uint8_t>(s[i + k]); };
    const auto cont = [&](std::size_t k) { return i + k < s.size() && (b(k) & 0xC0) == 0x80; };
    const std::uint8_t c = b(0);
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        if (!cont(1) || !cont(2)) return 0;
        if (c == 0xE0 && b(1) < 0xA0) return 0;   // overlong
        if (c == 0xED && b(1) >= 0xA0) return 0;  // UTF-16 surrogates
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (!cont(1) || !cont(2) || !cont(3)) return 0;
        if (c == 0xF0 && b(1) < 0x90) return 0;   // overlong
        if (c == 0xF4 && b(1) >= 0x90) return 0;  // above U+10FFFF
        return 4;
    }
    return 0;
}

// A C1 control character (U+0080-U+009F) is the two bytes C2 80-9F.
bool c1_control(std::string_view s, std::size_t i) {
    return static_cast<std::uint8_t>(s[i]) == 0xC2 && i + 1 < s.size() && static_cast<std::uint8_t>(s[i + 1]) <= 0x9F;
}

void hex_byte(std::string& out, std::uint8_t c) {
    static constexpr char digits[] = "0123456789abcdef";
    out += "\\x";
    out += digits[c >> 4];
    out += digits[c & 0xF];
}

template <bool EscapeBackslash>
std::string escape(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size();) {
        const auto c = static_cast<std::uint8_t>(s[i]);
        if (c == '\\' && EscapeBackslash) {
            out += "\\\\";
            ++i;
            continue;
        }
        const std::size_t n = utf8_sequence(s, i);
        if (n == 0 || c < 0x20 || c == 0x7F || c1_control(s, i)) {
            if (n <= 1) {
                hex_byte(out, c);
                ++i;
            } else {
                for (std::size_t k = 0; k < n; ++k) hex_byte(out, static_cast<std::uint8_t>(s[i + k]));
                i += n;
            }
            continue;
        }
        out.append(s.substr(i, n));
        i += n;
    }
    return out;
}

}  // namespace

std::string printable(std::string_view bytes) { return escape<true>(bytes); }

bool is_printable(std::string_view bytes) {
    for (std::size_t i = 0; i < bytes.size();) {
        const auto c = static_cast<std::uint8_t>(bytes[i]);
        const std::size_t n = utf8_sequence(bytes, i);
        if (c == '\\' || n == 0 || c < 0x20 || c == 0x7F || c1_control(bytes, i)) return false;
        i += n;
    }
    return true;
}

std::optional<std::string> unescape_printable(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (text[i] != '\\') {
            out += text[i];
            continue;
        }
        if (i + 1 < text.size() && text[i + 1] == '\\') {
            out += '\\';
            ++i;
            continue;
        }
        if (i + 3 >= text.size() || text[i + 1] != 'x') return std::nullopt;
        const auto byte = from_hex(text.substr(i + 2, 2));
        if (!byte) return std::nullopt;
        out += static_cast<char>((*byte)[0]);
        i += 3;
    }
    return out;
}

std::string log_safe(std::string_view text) { return escape<false>(text); }

}  // namespace fleetconf::common
