// The on-disk store (docs/blockcfg-format.md): two header copies (first and last sector) and a ring of
// payload slots in between. A commit writes the new payload to a slot that does not hold the current
// generation, syncs, writes header copy 0 and syncs (two syncs per commit), then writes copy 1, which the
// next sync makes durable: after a crash the device holds the old or the new generation, and older
// generations stay readable as history while their slots last.
#pragma once

#include "fleetconf/blockcfg/device.hpp"
#include "fleetconf/blockcfg/error.hpp"

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace fleetconf::blockcfg {

using Uuid = std::array<std::uint8_t, 16>;

// How a commit reaches the device.
// - ordered (default): write slot, fdatasync, write header copy 0, fdatasync (commit point), write copy 1.
//   Safe on any device that honours fdatasync, even without the checksums.
// - checksummed: write slot, write header copy 0, fdatasync (commit point), write copy 1. One sync per
//   commit. Safe because recovery accepts a header only when its slot holds the same generation with a
//   matching checksum: a header that reached the disk without its slot falls back to the other copy.
enum class CommitMode { ordered, checksummed };

struct FormatOptions {
    std::uint32_t slots = 0;  // 0: as many as fit, 2 to 16, each at least min_slot_bytes
    std::uint64_t min_slot_bytes = 64 * 1024;
    std::optional<Uuid> uuid;  // random when absent
    bool force = false;        // format a device that is not blank
};

struct GenerationInfo {
    std::uint64_t generation = 0;
    std::uint64_t timestamp_ns = 0;
    std::uint64_t length = 0;
    std::uint32_t slot = 0;
};

struct Geometry {
    std::uint32_t sector_size = 0;
    std::uint64_t sectors = 0;
    std::uint32_t slots = 0;
    std::uint32_t slot_sectors = 0;  // including the slot's own header sector
    [[nodiscard]] std::uint64_t max_payload() const { return std::uint64_t{slot_sectors - 1} * sector_size; }
};

class Store {
public:
    // Formats the device and commits `initial_payload` as generation 1.
    static std::error_code format(Device& dev, const FormatOptions& opts, std::string_view initial_payload, std::string* message = nullptr);

    // Opens and recovers. On failure returns nullopt with `ec` (blank_device, damaged) and `message`.
    // Recovery notes (a damaged newest generation, a stale header copy) go to `warnings`.
    static std::optional<Store> open(Device& dev, std::error_code& ec, std::string& message, std::vector<std::string>* warnings = nullptr);

    [[nodiscard]] const GenerationInfo& current() const { return current_; }
    [[nodiscard]] std::uint64_t generation() const { return current_.generation; }
    [[nodiscard]] const std::string& payload() const { return payload_; }
    [[nodiscard]] const Uuid& uuid() const { return uuid_; }
    [[nodiscard]] const Geometry& geometry() const { return geo_; }

    // Writes `payload` as the next generation, durably. On error nothing in memory changes.
    std::error_code commit(std::string_view payload, std::uint64_t timestamp_ns);
    // Makes the second header copy of the last commit durable too (call before closing the device).
    std::error_code flush();
    void set_commit_mode(CommitMode m) { mode_ = m; }
    [[nodiscard]] CommitMode commit_mode() const { return mode_; }

    // Every generation still readable on the device, newest first (the current one included).
    [[nodiscard]] std::vector<GenerationInfo> history() const;
    // The payload of an older generation, if its slot still holds it intact.
    [[nodiscard]] std::optional<std::string> read_generation(std::uint64_t generation) const;

private:
    explicit Store(Device& dev) : dev_(&dev) {}
    std::optional<std::pair<GenerationInfo, std::string>> read_slot(std::uint32_t slot) const;

    Device* dev_;
    Geometry geo_;
    Uuid uuid_{};
    GenerationInfo current_;
    std::uint64_t highest_seen_ = 0;
    CommitMode mode_ = CommitMode::ordered;  // next generation = highest ever seen + 1 (never reuse a number)
    std::string payload_;
};

// Byte-level codec of the two sector kinds, exposed for the format document's test vectors and fuzzing.
namespace layout {
inline constexpr char kHeaderMagic[8] = {'F', 'L', 'E', 'E', 'T', 'C', 'F', 'G'};
inline constexpr char kSlotMagic[8] = {'F', 'L', 'E', 'E', 'T', 'S', 'L', 'T'};
inline constexpr std::uint16_t kVersion = 1;

struct Header {
    std::uint16_t copy = 0;
    Geometry geometry;
    Uuid uuid{};
    GenerationInfo gen;
    std::array<std::uint8_t, 32> payload_sha256{};
};
struct SlotHeader {
    Uuid uuid{};
    GenerationInfo gen;  // gen.slot is not stored; set by the reader
    std::array<std::uint8_t, 32> payload_sha256{};
};

std::vector<std::uint8_t> encode_header(const Header& h);
// nullopt when the checksum, magic, version or geometry is wrong; `why` says which.
std::optional<Header> decode_header(std::span<const std::uint8_t> sector, std::string* why = nullptr);
std::vector<std::uint8_t> encode_slot_header(const SlotHeader& h, std::uint32_t sector_size);
std::optional<SlotHeader> decode_slot_header(std::span<const std::uint8_t> sector, std::string* why = nullptr);
}  // namespace layout

}  // namespace fleetconf::blockcfg
