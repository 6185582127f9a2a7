// tlstunnel compatibility (docs/tlstunnel-compat.md): the reverse proxy's control-socket commands (DER,
// framed with an HMAC that covers the body only) and its block-device layout (two superblocks and a
// copy-on-write chain of sectors). fleetconf speaks this protocol only as a client: it has no replay
// protection by design, so fleetconf never serves it. Sans-I/O: bytes in, values out.
#pragma once

#include "fleetconf/common/net.hpp"

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <variant>
#include <vector>

namespace fleetconf::blockcfg::tlstunnel {

using Bytes = std::vector<std::uint8_t>;

// One route: `Sni ::= SEQUENCE { sni UTF8String, host Ip, port INTEGER }`. tlstunnel does not
// range-check ports, so a decoded port is kept as sent.
struct Sni {
    std::string name;
    common::IpAddress host;
    std::int64_t port = 0;
    bool operator==(const Sni&) const = default;
};

// `Command ::= CHOICE { add [0] Sni, remove [1] UTF8String, list [2] NULL, snis [3] SEQUENCE OF Sni,
//                       result [4] SEQUENCE { exit INTEGER, message UTF8String } }`
struct Add {
    Sni sni;
    bool operator==(const Add&) const = default;
};
struct Remove {
    std::string name;
    bool operator==(const Remove&) const = default;
};
struct List {
    bool operator==(const List&) const = default;
};
struct Snis {
    std::vector<Sni> snis;
    bool operator==(const Snis&) const = default;
};
struct Result {
    std::int64_t exit = 0;  // 0 ok, 1 write failed or unexpected command, 2 DER parse error, 3 authentication failure
    std::string message;
    bool operator==(const Result&) const = default;
};
using Command = std::variant<Add, Remove, List, Snis, Result>;

inline constexpr std::size_t kMaxFrame = 16u << 20;  // refuse replies announcing more than this
inline constexpr std::size_t kMacSize = 32;

// DER. Decoding is strict (definite minimal lengths, no trailing bytes) and bounded; on failure it
// returns nullopt and says why in `error`.
Bytes encode(const Command& c);
std::optional<Command> decode(std::span<const std::uint8_t> der, std::string& error);
// The stored data on the disk: `SEQUENCE OF Sni`.
Bytes encode_snis(const std::vector<Sni>& snis);
std::optional<std::vector<Sni>> decode_snis(std::span<const std::uint8_t> der, std::string& error);

// A request frame: u64 big-endian L, then HMAC-SHA256(key, der) and der (L = 32 + |der|). The key is the
// secret's raw bytes, as given to the proxy's --key.
Bytes frame_request(std::span<const std::uint8_t> key, std::span<const std::uint8_t> der);
// A reply frame: u64 big-endian L, then L bytes of DER. Returns the DER once `buf` holds the whole frame,
// nullopt while more is needed; sets `error` (and returns nullopt) for a frame over kMaxFrame.
std::optional<Bytes> parse_reply(std::span<const std::uint8_t> buf, std::string& error);

std::string describe(const Command& c);  // one line, for logs and the CLI

// ---- the block device ----
struct Superblock {
    std::uint16_t version = 1;
    std::uint64_t counter = 0;
    std::uint64_t timestamp = 0;
    std::uint64_t first_sector = 0;
    std::uint64_t data_length = 0;
    std::array<std::uint8_t, 32> data_hash{};
};
// One superblock sector (sector_size bytes) with its trailing SHA-256.
Bytes encode_superblock(const Superblock& sb, std::size_t sector_size);
// nullopt (and why in `error`) when the sector's own hash or version does not verify.
std::optional<Superblock> decode_superblock(std::span<const std::uint8_t> sector, std::string& error);

// The superblock timestamp as tlstunnel writes it (filesystem.ml encode_timestamp): whole days times
// 86,000 s (sic: the proxy's ns_per_day) plus the time of day, in nanoseconds. The proxy decodes the same
// way, so the field round-trips there; fleetconf writes it so and shows it decoded.
std::uint64_t encode_timestamp(std::int64_t unix_seconds);
std::int64_t decode_timestamp(std::uint64_t field);  // Unix seconds

struct DiskContents {
    std::vector<Sni> snis;
    Superblock used;                 // the superblock the data was read through
    bool used_last = false;          // true: the copy in the last sector
    std::vector<std::string> notes;  // what was damaged but did not stop the read (the other superblock, ...)
};
// Reads a whole tlstunnel image: both superblocks, the newer verified one first; its sector chain (in
// range, no loops, no superblock sectors, ends exactly at the data length) and data hash; falls back to
// the other superblock when the newer one's data does not verify. Damage is never read as an empty
// configuration: when nothing verifies the result is the list of everything that failed.
std::variant<DiskContents, std::vector<std::string>> read_disk(std::span<const std::uint8_t> image, std::size_t sector_size);
// A fresh image of `sectors` sectors holding `snis`: data chained from sector 1, both superblocks written
// with `counter` and `timestamp` (the field as stored: see encode_timestamp). Throws std::length_error when the data does not fit.
Bytes write_disk(const std::vector<Sni>& snis, std::size_t sector_size, std::uint64_t sectors, std::uint64_t counter,
                 std::uint64_t timestamp);

}  // namespace fleetconf::blockcfg::tlstunnel
