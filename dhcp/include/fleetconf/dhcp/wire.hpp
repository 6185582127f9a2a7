// DHCPv4 messages <-> bytes (RFC 2131 section 2, RFC 2132), without sockets.
// Options are kept as raw bytes by code, in order of first appearance; several instances of one code
// are joined (RFC 3396), and the sname/file fields are read as options when option 52 says so.
#pragma once

#include "fleetconf/common/dhcp_options.hpp"
#include "fleetconf/common/net.hpp"

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace fleetconf::dhcp {

using Bytes = std::vector<std::uint8_t>;

enum class MessageType : std::uint8_t {
    discover = 1,
    offer = 2,
    request = 3,
    decline = 4,
    ack = 5,
    nak = 6,
    release = 7,
    inform = 8,
};
std::string_view to_string(MessageType t);

// Option codes, and the option table, are common to the server and the site file.
namespace opt = common::dhcp_options::code;

struct Option {
    std::uint8_t code;
    Bytes data;
    bool operator==(const Option&) const = default;
};

struct Message {
    std::uint8_t op = 1;  // 1 BOOTREQUEST, 2 BOOTREPLY
    std::uint8_t htype = 1;
    std::uint8_t hlen = 6;
    std::uint8_t hops = 0;
    std::uint32_t xid = 0;
    std::uint16_t secs = 0;
    std::uint16_t flags = 0;  // bit 15: broadcast
    common::Ipv4 ciaddr, yiaddr, siaddr, giaddr;
    std::array<std::uint8_t, 16> chaddr{};
    std::array<std::uint8_t, 64> sname{};
    std::array<std::uint8_t, 128> file{};
    std::vector<Option> options;

    [[nodiscard]] bool broadcast_flag() const { return (flags & 0x8000) != 0; }
    [[nodiscard]] const Option* find(std::uint8_t code) const;
    [[nodiscard]] std::optional<MessageType> type() const;
    [[nodiscard]] std::optional<common::Ipv4> address_option(std::uint8_t code) const;
    [[nodiscard]] std::optional<std::string> string_option(std::uint8_t code) const;
    [[nodiscard]] common::Mac mac() const;    // chaddr as a MAC (htype 1, hlen 6)
    void set(std::uint8_t code, Bytes data);  // replaces or appends
    bool operator==(const Message&) const = default;
};

enum class DecodeError {
    too_short = 1,     // shorter than the 236-byte header plus the magic cookie
    bad_op,            // op is not 1 or 2
    bad_hlen,          // hlen above 16
    bad_cookie,        // not 99.130.83.99
    option_truncated,  // an option's length runs past the end of its area
    missing_end,       // no END option in the options area
    bad_overload,      // option 52 malformed, or not 1-3
    too_long,          // over 65,507 bytes (the largest UDP payload)
};
const std::error_category& decode_category();
inline std::error_code make_error_code(DecodeError e) { return {static_cast<int>(e), decode_category()}; }

inline constexpr std::size_t kHeaderSize = 236;
inline constexpr std::size_t kMinMessageSize = 576 - 28;  // RFC 2131: 576-byte IP datagrams -> 548 of DHCP
inline constexpr std::size_t kBootpMinSize = 300;         // pad replies to at least this (RFC 1542 2.1)

// Strictly bounds-checked; never reads past `data`.
std::optional<Message> decode(std::span<const std::uint8_t> data, std::error_code& ec);
// Encodes in the order of `m.options`; options longer than 255 bytes are split (RFC 3396). Options that
// do not fit in `max_size` are left out (the required ones must come first); returns the codes left out.
Bytes encode(const Message& m, std::size_t max_size = 1500, std::vector<std::uint8_t>* dropped = nullptr);
// The same bytes, appended to `out` (the packet path encodes a batch of replies into one buffer).
void encode_append(const Message& m, Bytes& out, std::size_t max_size = 1500, std::vector<std::uint8_t>* dropped = nullptr);

// ---- option value helpers ----
Bytes u32_bytes(std::uint32_t v);
Bytes addr_bytes(common::Ipv4 a);
Bytes addrs_bytes(const std::vector<common::Ipv4>& v);
// RFC 3925: enterprise number, then a block of sub-options.
Bytes vivso_bytes(std::uint32_t enterprise, const std::vector<std::pair<std::uint8_t, Bytes>>& suboptions);
// Parses option 125 into (enterprise, suboptions) blocks; nullopt if malformed.
std::optional<std::vector<std::pair<std::uint32_t, std::vector<std::pair<std::uint8_t, Bytes>>>>> parse_vivso(
    std::span<const std::uint8_t>);
// RFC 4702 Client FQDN (option 81): flags, two deprecated RCODE bytes, the name (ASCII, or RFC 1035 wire
// format when E is set).
namespace fqdn_flag {
inline constexpr std::uint8_t S = 0x01, O = 0x02, E = 0x04, N = 0x08;
}
struct ClientFqdn {
    std::uint8_t flags = 0;
    std::string name;              // dotted, lower case as received, no trailing dot
    bool fully_qualified = false;  // wire format: ended with the root label; ASCII: ended with '.'
    bool operator==(const ClientFqdn&) const = default;
};
// nullopt when shorter than 3 bytes, or the wire-format name is malformed (label over 63, name over 255,
// a length past the end, bytes after the root label).
std::optional<ClientFqdn> parse_fqdn(std::span<const std::uint8_t> data);
// A server's option 81 value: RCODE1 = RCODE2 = 255; the name in the encoding the E flag says.
Bytes fqdn_bytes(const ClientFqdn& f);
// RFC 3442 classless static routes.
struct ClasslessRoute {
    common::Prefix destination;
    common::Ipv4 router;
    bool operator==(const ClasslessRoute&) const = default;
};
Bytes classless_routes_bytes(const std::vector<ClasslessRoute>& routes);
std::optional<std::vector<ClasslessRoute>> parse_classless_routes(std::span<const std::uint8_t>);

// ---- the option table (common/dhcp_options.hpp; docs/dhcp-options.md describes the same facts) ----
using common::dhcp_options::option_def;
using common::dhcp_options::option_table;
using common::dhcp_options::OptionDef;
using common::dhcp_options::OptionType;
// Human form for logs and `fleetconf dhcp leases` ("10.0.0.1", "[1,3,6]", "\"text\"", hex otherwise).
std::string format_option(std::uint8_t code, std::span<const std::uint8_t> data);

}  // namespace fleetconf::dhcp

template <>
struct std::is_error_code_enum<fleetconf::dhcp::DecodeError> : std::true_type {};
