// Small network value types with strict parsing and canonical formatting.
// Parsers return std::nullopt on any malformed input; they never throw.
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

namespace fleetconf::common {

// An IPv4 address in host byte order. Dotted-quad only: no octal, hex, short forms or leading zeros.
class Ipv4 {
public:
    constexpr Ipv4() = default;
    constexpr explicit Ipv4(std::uint32_t host_order) : v_(host_order) {}
    constexpr Ipv4(std::uint8_t a, std::uint8_t b, std::uint8_t c, std::uint8_t d)
        : v_(std::uint32_t{a} << 24 | std::uint32_t{b} << 16 | std::uint32_t{c} << 8 | d) {}

    static std::optional<Ipv4> parse(std::string_view text);
    [[nodiscard]] std::string to_string() const;
    [[nodiscard]] constexpr std::uint32_t value() const { return v_; }
    [[nodiscard]] std::array<std::uint8_t, 4> bytes() const;
    [[nodiscard]] constexpr bool is_unspecified() const { return v_ == 0; }
    [[nodiscard]] constexpr bool is_loopback() const { return (v_ >> 24) == 127; }
    [[nodiscard]] constexpr bool is_multicast() const { return (v_ >> 28) == 0xE; }
    [[nodiscard]] constexpr bool is_broadcast() const { return v_ == 0xFFFFFFFFu; }
    constexpr auto operator<=>(const Ipv4&) const = default;

private:
    std::uint32_t v_ = 0;
};

// An IPv6 address (network byte order bytes); parsed and printed by inet_pton/inet_ntop (RFC 5952 form).
class Ipv6 {
public:
    Ipv6() = default;
    explicit Ipv6(const std::array<std::uint8_t, 16>& b) : b_(b) {}
    static std::optional<Ipv6> parse(std::string_view text);
    [[nodiscard]] std::string to_string() const;
    [[nodiscard]] const std::array<std::uint8_t, 16>& bytes() const { return b_; }
    [[nodiscard]] bool is_loopback() const;
    auto operator<=>(const Ipv6&) const = default;

private:
    std::array<std::uint8_t, 16> b_{};
};

using IpAddress = std::variant<Ipv4, Ipv6>;
std::optional<IpAddress> parse_ip(std::string_view text);
std::string to_string(const IpAddress& a);
bool is_loopback(const IpAddress& a);
// An address and a port together: "192.0.2.1:443", "[2001:db8::7]:8443" (RFC 3986 brackets for IPv6).
std::string host_port(const IpAddress& a, std::uint32_t port);

// An IPv4 prefix "a.b.c.d/len". The address must be the network address (no host bits set).
class Prefix {
public:
    Prefix() = default;
    static std::optional<Prefix> parse(std::string_view text);
    // Builds a prefix, clearing host bits; len must be 0..32.
    static Prefix of(Ipv4 addr, int len);
    [[nodiscard]] Ipv4 network() const { return net_; }
    [[nodiscard]] int length() const { return len_; }
    [[nodiscard]] Ipv4 netmask() const;
    [[nodiscard]] Ipv4 broadcast() const;
    [[nodiscard]] bool contains(Ipv4 a) const;
    // True for an address usable by a host: inside, and not the network or broadcast address
    // (for /31 and /32 every address is usable, RFC 3021).
    [[nodiscard]] bool is_host(Ipv4 a) const;
    [[nodiscard]] std::string to_string() const;
    auto operator<=>(const Prefix&) const = default;

private:
    Ipv4 net_;
    int len_ = 0;
};

// An inclusive IPv4 range "first-last" (first <= last).
class Range {
public:
    Range() = default;
    Range(Ipv4 first, Ipv4 last) : first_(first), last_(last) {}
    // Accepts "a-b" (spaces around '-' allowed). A reversed range is reported via `reversed`.
    static std::optional<Range> parse(std::string_view text, bool* reversed = nullptr);
    [[nodiscard]] Ipv4 first() const { return first_; }
    [[nodiscard]] Ipv4 last() const { return last_; }
    [[nodiscard]] std::uint64_t size() const { return std::uint64_t{last_.value()} - first_.value() + 1; }
    [[nodiscard]] bool contains(Ipv4 a) const { return first_ <= a && a <= last_; }
    [[nodiscard]] bool overlaps(const Range& o) const { return first_ <= o.last_ && o.first_ <= last_; }
    [[nodiscard]] std::string to_string() const;
    auto operator<=>(const Range&) const = default;

private:
    Ipv4 first_;
    Ipv4 last_;
};

// A 48-bit MAC address. Parses "aa:bb:cc:dd:ee:ff" and "aa-bb-cc-dd-ee-ff" (any case); prints lower-case colons.
class Mac {
public:
    Mac() = default;
    explicit Mac(const std::array<std::uint8_t, 6>& b) : b_(b) {}
    static std::optional<Mac> parse(std::string_view text);
    [[nodiscard]] std::string to_string() const;
    [[nodiscard]] const std::array<std::uint8_t, 6>& bytes() const { return b_; }
    [[nodiscard]] bool is_multicast() const { return (b_[0] & 1) != 0; }
    [[nodiscard]] bool is_zero() const;
    auto operator<=>(const Mac&) const = default;

private:
    std::array<std::uint8_t, 6> b_{};
};

// host:port where host is an IPv4 address or a bracketed IPv6 address ("[::1]:80").
struct Endpoint {
    IpAddress host;
    std::uint16_t port = 0;

    // With default_port set, the ":port" part may be omitted (and IPv6 may then be written bare).
    static std::optional<Endpoint> parse(std::string_view text, std::optional<std::uint16_t> default_port = {});
    // An address to listen on: as parse(), and port 0 is accepted (the kernel picks a free port, which the
    // listener logs; what tests use so that they never guess a free port).
    static std::optional<Endpoint> parse_listen(std::string_view text);
    [[nodiscard]] std::string to_string() const;
    [[nodiscard]] std::string host_string() const { return common::to_string(host); }
    bool operator==(const Endpoint&) const = default;
};

// RFC 1123 host-name label: 1-63 of [a-z0-9-], not starting or ending with '-' (case-insensitive).
bool is_dns_label(std::string_view s);
// A dotted host name made of labels, at most 253 characters, no trailing dot.
bool is_dns_name(std::string_view s);

}  // namespace fleetconf::common
