// pkt-line framing (git's gitprotocol-common): an incremental, sans-I/O codec.
//
// A packet is four hex digits of length (the length counts itself) followed by that many minus four
// bytes of payload. 0000 is a flush, 0001 a delimiter (protocol v2), 0002 a response end (v2).
// Lengths may be written in upper-case hex (git-kv does) and payloads may or may not end in LF; the
// parser accepts both and `line()` strips one trailing LF for callers that want text.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>

namespace fleetconf::gitconf::pkt {

// Largest packet, length prefix included (gitprotocol-common: LARGE_PACKET_MAX).
inline constexpr std::size_t kMaxPacket = 65520;
inline constexpr std::size_t kMaxPayload = kMaxPacket - 4;
// Largest side-band-64k data chunk: one byte of band plus the payload.
inline constexpr std::size_t kMaxSidebandData = kMaxPayload - 1;

enum class errc {
    need_more = 1,    // not an error: the buffer ends inside a packet
    bad_length,       // the length prefix is not four hex digits
    reserved_length,  // 0003: reserved by the protocol
    too_long,         // longer than 65520 bytes
};
const std::error_category& category();
inline std::error_code make_error_code(errc e) { return {static_cast<int>(e), category()}; }

enum class Kind : std::uint8_t { data, flush, delim, response_end };

struct Packet {
    Kind kind = Kind::flush;
    std::string_view payload;  // points into the parsed buffer; data packets only

    // The payload without one trailing LF.
    [[nodiscard]] std::string_view line() const {
        return !payload.empty() && payload.back() == '\n' ? payload.substr(0, payload.size() - 1) : payload;
    }
    [[nodiscard]] bool is_flush() const { return kind == Kind::flush; }
};

// Parses one packet from the front of `in`. On success sets `out` and `consumed` (the bytes to drop);
// returns errc::need_more when `in` holds only part of a packet (consumed stays 0), any other errc when
// the stream is broken (the connection must be dropped).
std::error_code parse(std::string_view in, Packet& out, std::size_t& consumed);

// Appends a data packet. `payload` must be at most kMaxPayload bytes (checked: throws std::length_error).
void write(std::string& out, std::string_view payload);
// Appends a data packet whose payload is `text` followed by LF.
void write_line(std::string& out, std::string_view text);
void write_flush(std::string& out);
void write_delim(std::string& out);
void write_response_end(std::string& out);
// Appends `data` split into side-band packets on `band` (1 data, 2 progress, 3 error), each at most
// `max_packet` bytes long (65520 for side-band-64k, 1000 for side-band).
void write_sideband(std::string& out, std::uint8_t band, std::string_view data, std::size_t max_packet = kMaxPacket);

}  // namespace fleetconf::gitconf::pkt

template <>
struct std::is_error_code_enum<fleetconf::gitconf::pkt::errc> : std::true_type {};
