// The blockcfg control protocol, without sockets (docs/blockcfg-protocol.md).
//
// Frames: u32 big-endian length, then that many bytes; the length is checked against the cap before
// anything else. On connect the server sends HELLO with a fresh 32-byte nonce. Each request carries a
// key id, a sequence number (1, 2, 3, ... on that connection) and an HMAC-SHA256 tag over a
// domain-separation label, the version, the direction, the nonce, the key id, the sequence number and
// the body; each reply is tagged the same way and also covers the request's tag.
#pragma once

#include "fleetconf/blockcfg/error.hpp"

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace fleetconf::blockcfg::protocol {

inline constexpr std::uint8_t kVersion = 1;
inline constexpr std::size_t kDefaultMaxFrame = 1 << 20;  // 1 MiB
inline constexpr std::string_view kLabel = "fleetconf-blockcfg";
inline constexpr std::array<std::uint8_t, 4> kHelloMagic = {'F', 'C', 'B', 'H'};
inline constexpr std::array<std::uint8_t, 4> kBusyMagic = {'F', 'C', 'B', 'B'};
inline constexpr std::uint8_t kTypeRequest = 1;
inline constexpr std::uint8_t kTypeReply = 2;
inline constexpr std::size_t kMinKeyBytes = 32;
inline constexpr std::size_t kMaxKeyIdBytes = 32;

using Nonce = std::array<std::uint8_t, 32>;
using Tag = std::array<std::uint8_t, 32>;
using Bytes = std::vector<std::uint8_t>;

struct Key {
    std::string id;
    Bytes secret;
};

// Key file: one key per line, "KEY-ID BASE64-SECRET"; '#' starts a comment; blank lines ignored.
// Key ids are 1-32 of [A-Za-z0-9._-]; secrets at least 32 bytes.
struct KeyRing {
    std::vector<Key> keys;
    [[nodiscard]] const Key* find(std::string_view id) const;
};
std::optional<KeyRing> parse_key_file(std::string_view text, std::string& error);
std::string format_key_line(const Key& k);
bool valid_key_id(std::string_view id);

// ---- framing ----
Bytes frame(std::span<const std::uint8_t> body);

// Incremental frame reader: feed bytes as they arrive, take whole frames out.
class FrameReader {
public:
    explicit FrameReader(std::size_t max_frame = kDefaultMaxFrame) : max_(max_frame) {}
    // Returns errc::too_large as soon as a length prefix above the cap is seen (nothing more is buffered).
    std::error_code feed(std::span<const std::uint8_t> data);
    // The next complete frame's body, if any.
    std::optional<Bytes> next();
    // True while a frame has started but is not complete (for the read timeout).
    [[nodiscard]] bool partial() const { return !buf_.empty(); }

private:
    std::size_t max_;
    Bytes buf_;
    std::size_t consumed_ = 0;
};

// ---- messages (bodies of frames) ----
Bytes encode_hello(const Nonce& nonce);
std::optional<Nonce> decode_hello(std::span<const std::uint8_t> body);

// BUSY, sent instead of HELLO when the server turns a connection away, then the connection closes
// (docs/blockcfg-protocol.md). Unauthenticated: it only explains the refusal, it changes nothing.
enum class BusyReason : std::uint8_t { too_many_connections = 1, address_blocked = 2 };
struct Busy {
    BusyReason reason = BusyReason::too_many_connections;
    std::string message;  // at most 200 bytes of UTF-8
};
Bytes encode_busy(const Busy& b);
std::optional<Busy> decode_busy(std::span<const std::uint8_t> body);

struct RequestFrame {
    std::string key_id;
    std::uint64_t seq = 0;
    Tag tag{};
    std::string body;
};
struct ReplyFrame {
    std::uint64_t seq = 0;
    Tag tag{};
    std::string body;
};

Tag request_tag(const Key& key, const Nonce& nonce, std::uint64_t seq, std::string_view body);
Tag reply_tag(const Key& key, const Nonce& nonce, std::uint64_t seq, const Tag& request, std::string_view body);

Bytes encode_request(const Key& key, const Nonce& nonce, std::uint64_t seq, std::string_view body);
std::optional<RequestFrame> decode_request(std::span<const std::uint8_t> body);
Bytes encode_reply(const Key& key, const Nonce& nonce, std::uint64_t seq, const Tag& request, std::string_view body);
std::optional<ReplyFrame> decode_reply(std::span<const std::uint8_t> body);

// ---- the two ends of one connection ----
struct Verified {
    const Key* key = nullptr;
    std::uint64_t seq = 0;
    std::string body;
};

// Server side: checks each request frame. Any error means: close the connection, change nothing.
class ServerSession {
public:
    ServerSession(const KeyRing& keys, const Nonce& nonce) : keys_(keys), nonce_(nonce) {}
    // errc::bad_request (malformed), errc::unauthorized (unknown key, wrong tag, wrong sequence).
    std::error_code on_request(std::span<const std::uint8_t> frame_body, Verified& out, std::string& why);
    // The reply to the last verified request.
    Bytes reply(std::string_view body) const;
    [[nodiscard]] const Nonce& nonce() const { return nonce_; }

private:
    const KeyRing& keys_;
    Nonce nonce_;
    std::uint64_t last_seq_ = 0;
    const Key* key_ = nullptr;  // pinned by the first request: one key per connection
    Tag last_tag_{};
};

// Client side.
class ClientSession {
public:
    explicit ClientSession(Key key) : key_(std::move(key)) {}
    std::error_code on_hello(std::span<const std::uint8_t> frame_body);
    Bytes request(std::string_view body);
    // Verifies the reply to the last request; errc::unauthorized if it is not authentic or not the reply.
    std::error_code on_reply(std::span<const std::uint8_t> frame_body, std::string& body);

private:
    Key key_;
    std::optional<Nonce> nonce_;
    std::uint64_t seq_ = 0;
    Tag last_tag_{};
    bool waiting_ = false;
};

}  // namespace fleetconf::blockcfg::protocol
