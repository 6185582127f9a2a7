#include "fleetconf/common/net.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstring>

namespace fleetconf::common {
namespace {

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

// Strict decimal: digits only, no sign, no leading zero (except "0"), value <= max.
std::optional<unsigned> parse_dec(std::string_view s, unsigned max) {
    if (s.empty() || s.size() > 10) return std::nullopt;
    if (s.size() > 1 && s[0] == '0') return std::nullopt;
    unsigned v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc{} || p != s.data() + s.size() || v > max) return std::nullopt;
    return v;
}

int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

}  // namespace

std::optional<Ipv4> Ipv4::parse(std::string_view text) {
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
        auto dot = text.find('.');
        if ((i < 3) == (dot == std::string_view::npos)) return std::nullopt;
        auto part = text.substr(0, dot);
        auto n = parse_dec(part, 255);
        if (!n) return std::nullopt;
        v = v << 8 | *n;
        text = i < 3 ? text.substr(dot + 1) : std::string_view{};
    }
    return Ipv4{v};
}

std::string Ipv4::to_string() const {
    // Digit arithmetic, not snprintf: this is on the DHCP packet path.
    std::string s;
    s.reserve(15);
    for (int i = 3; i >= 0; --i) {
        const unsigned b = (v_ >> (8 * i)) & 0xFF;
        if (b >= 100) s.push_back(static_cast<char>('0' + b / 100));
        if (b >= 10) s.push_back(static_cast<char>('0' + b / 10 % 10));
        s.push_back(static_cast<char>('0' + b % 10));
        if (i) s.push_back('.');
    }
    return s;
}

std::array<std::uint8_t, 4> Ipv4::bytes() const {
    return {static_cast<std::uint8_t>(v_ >> 24), static_cast<std::uint8_t>(v_ >> 16), static_cast<std::uint8_t>(v_ >> 8),
            static_cast<std::uint8_t>(v_)};
}

std::optional<Ipv6> Ipv6::parse(std::string_view text) {
    if (text.empty() || text.size() > 45 || text.find('%') != std::string_view::npos) return std::nullopt;
    std::string z(text);
    std::array<std::uint8_t, 16> b{};
    if (inet_pton(AF_INET6, z.c_str(), b.data()) != 1) return std::nullopt;
    return Ipv6{b};
}

std::string Ipv6::to_string() const {
    char buf[INET6_ADDRSTRLEN];
    inet_ntop(AF_INET6, b_.data(), buf, sizeof buf);
    return buf;
}

bool Ipv6::is_loopback() const {
    for (int i = 0; i < 15; ++i)
        if (b_[i] != 0) return false;
    return b_[15] == 1;
}

std::optional<IpAddress> parse_ip(std::string_view text) {
    if (auto a = Ipv4::parse(text)) return IpAddress{*a};
    if (auto a = Ipv6::parse(text)) return IpAddress{*a};
    return std::nullopt;
}

std::string to_string(const IpAddress& a) {
    return std::visit([](const auto& x) { return x.to_string(); }, a);
}

bool is_loopback(const IpAddress& a) {
    return std::visit([](const auto& x) { return x.is_loopback(); }, a);
}

std::optional<Prefix> Prefix::parse(std::string_view text) {
    auto slash = text.find('/');
    if (slash == std::string_view::npos) return std::nullopt;
    auto a = Ipv4::parse(text.substr(0, slash));
    auto n = parse_dec(text.substr(slash + 1), 32);
    if (!a || !n) return std::nullopt;
    auto p = Prefix::of(*a, static_cast<int>(*n));
    if (p.net_ != *a) return std::nullopt;  // host bits set: ambiguous, refuse
    return p;
}

Prefix Prefix::of(Ipv4 addr, int len) {
    Prefix p;
    p.len_ = len < 0 ? 0 : (len > 32 ? 32 : len);
    p.net_ = Ipv4{addr.value() & p.netmask().value()};
    return p;
}

Ipv4 Prefix::netmask() const { return Ipv4{len_ == 0 ? 0u : ~std::uint32_t{0} << (32 - len_)}; }

Ipv4 Prefix::broadcast() const { return Ipv4{net_.value() | ~netmask().value()}; }

bool Prefix::contains(Ipv4 a) const { return (a.value() & netmask().value()) == net_.value(); }

bool Prefix::is_host(Ipv4 a) const {
    if (!contains(a)) return false;
    if (len_ >= 31) return true;
    return a != net_ && a != broadcast();
}

std::string Prefix::to_string() const { return net_.to_string() + "/" + std::to_string(len_); }

std::optional<Range> Range::parse(std::string_view text, bool* reversed) {
    if (reversed) *reversed = false;
    auto dash = text.find('-');
    if (dash == std::string_view::npos) return std::nullopt;
    auto a = Ipv4::parse(trim(text.substr(0, dash)));
    auto b = Ipv4::parse(trim(text.substr(dash + 1)));
    if (!a || !b) return std::nullopt;
    if (*b < *a) {
        if (reversed) *reversed = true;
        return std::nullopt;
    }
    return Range{*a, *b};
}

std::string Range::to_string() const { return first_.to_string() + "-" + last_.to_string(); }

std::optional<Mac> Mac::parse(std::string_view text) {
    if (text.size() != 17) return std::nullopt;
    const char sep = text[2];
    if (sep != ':' && sep != '-') return std::nullopt;
    std::array<std::uint8_t, 6> b{};
    for (std::size_t i = 0; i < 6; ++i) {
        const std::size_t o = i * 3;
        if (i > 0 && text[o - 1] != sep) return std::nullopt;
        int hi = hexval(text[o]), lo = hexval(text[o + 1]);
        if (hi < 0 || lo < 0) return std::nullopt;
        b[i] = static_cast<std::uint8_t>(hi << 4 | lo);
    }
    return Mac{b};
}

std::string Mac::to_string() const {
    static constexpr char digits[] = "0123456789abcdef";
    std::string s(17, ':');
    for (std::size_t i = 0; i < 6; ++i) {
        s[3 * i] = digits[b_[i] >> 4];
        s[3 * i + 1] = digits[b_[i] & 0xF];
    }
    return s;
}

bool Mac::is_zero() const {
    for (auto x : b_)
        if (x != 0) return false;
    return true;
}

std::optional<Endpoint> Endpoint::parse(std::string_view text, std::optional<std::uint16_t> default_port) {
    std::string_view host, port;
    if (!text.empty() && text.front() == '[') {
        auto close = text.find(']');
        if (close == std::string_view::npos) return std::nullopt;
        host = text.substr(1, close - 1);
        auto rest = text.substr(close + 1);
        if (!rest.empty()) {
            if (rest.front() != ':') return std::nullopt;
            port = rest.substr(1);
            if (port.empty()) return std::nullopt;
        }
        auto a = Ipv6::parse(host);
        if (!a) return std::nullopt;
        Endpoint e{*a, 0};
        if (port.empty()) {
            if (!default_port) return std::nullopt;
            e.port = *default_port;
            return e;
        }
        auto n = parse_dec(port, 65535);
        if (!n || *n == 0) return std::nullopt;
        e.port = static_cast<std::uint16_t>(*n);
        return e;
    }
    const auto colons = std::count(text.begin(), text.end(), ':');
    if (colons > 1) {  // bare IPv6 is only unambiguous without a port
        if (!default_port) return std::nullopt;
        auto a = Ipv6::parse(text);
        if (!a) return std::nullopt;
        return Endpoint{*a, *default_port};
    }
    if (colons == 1) {
        auto c = text.find(':');
        host = text.substr(0, c);
        port = text.substr(c + 1);
    } else {
        host = text;
    }
    auto a = Ipv4::parse(host);
    if (!a) return std::nullopt;
    if (colons == 0) {
        if (!default_port) return std::nullopt;
        return Endpoint{*a, *default_port};
    }
    auto n = parse_dec(port, 65535);
    if (!n || *n == 0) return std::nullopt;
    return Endpoint{*a, static_cast<std::uint16_t>(*n)};
}

std::optional<Endpoint> Endpoint::parse_listen(std::string_view text) {
    if (text.size() > 2 && text.ends_with(":0") && !text.ends_with("::0")) {
        auto e = parse(std::string(text.substr(0, text.size() - 1)) + "1");
        if (e) e->port = 0;
        return e;
    }
    return parse(text);
}

std::string host_port(const IpAddress& a, std::uint32_t port) {
    const bool v6 = std::holds_alternative<Ipv6>(a);
    // Appended piece by piece (as in peer_of): GCC 12 at -O2 reads "literal" + string as a possible overlap (-Wrestrict).
    std::string out(v6 ? "[" : "");
    out.append(fleetconf::common::to_string(a)).append(v6 ? "]:" : ":").append(std::to_string(port));
    return out;
}

std::string Endpoint::to_string() const { return host_port(host, port); }

bool is_dns_label(std::string_view s) {
    if (s.empty() || s.size() > 63 || s.front() == '-' || s.back() == '-') return false;
    for (char c : s) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
        if (!ok) return false;
    }
    return true;
}

bool is_dns_name(std::string_view s) {
    if (s.empty() || s.size() > 253) return false;
    while (true) {
        auto dot = s.find('.');
        if (!is_dns_label(s.substr(0, dot))) return false;
        if (dot == std::string_view::npos) return true;
        s = s.substr(dot + 1);
    }
}

}  // namespace fleetconf::common
