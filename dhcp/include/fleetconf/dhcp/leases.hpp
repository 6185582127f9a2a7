// Leases and where they live. `LeaseView` is what the decision function reads; `LeaseStore` adds
// applying changes and making them durable. `JournalLeaseStore` is the embedded default: an
// append-only journal with a checksum per record, group-committed with one fdatasync for many
// changes, compacted by writing a fresh journal and renaming it over the old one.
#pragma once

#include "fleetconf/common/net.hpp"
#include "fleetconf/dhcp/wire.hpp"

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace fleetconf::dhcp {

enum class LeaseState : std::uint8_t { offered, bound, released, declined };
std::string_view to_string(LeaseState s);
std::optional<LeaseState> lease_state_from(std::string_view s);

struct Lease {
    common::Ipv4 address;
    Bytes client;  // identity: client id (61), or htype + chaddr
    common::Mac mac;
    std::string hostname;
    std::string network;
    LeaseState state = LeaseState::offered;
    std::uint64_t expires = 0;  // seconds since the Unix epoch
    std::string fqdn;  // the name the client asked the server to update (option 81 with S), completed; "" if none
    bool operator==(const Lease&) const = default;
};

class LeaseView {
public:
    virtual ~LeaseView() = default;
    [[nodiscard]] virtual const Lease* by_address(common::Ipv4 a) const = 0;
    [[nodiscard]] virtual const Lease* by_client(const Bytes& client) const = 0;
    // The highest address in [first, last] that has a lease record, if any. Lets allocation start after
    // the used part of a pool in O(log n) instead of walking it.
    [[nodiscard]] virtual std::optional<common::Ipv4> highest_in(common::Ipv4 first, common::Ipv4 last) const = 0;
};

// A change the decision function asks for: upsert a lease record, or forget an address.
struct LeaseChange {
    Lease lease;
    bool remove = false;
};

class LeaseStore : public LeaseView {
public:
    // Applies in memory and queues for durability.
    virtual void apply(const std::vector<LeaseChange>& changes) = 0;
    // Makes everything applied so far durable (one sync for all of it).
    virtual void sync() = 0;
    // Hands what was applied to the operating system without waiting for the disk: visible to readers of
    // the journal, durable with the next sync.
    virtual void flush() {}
    [[nodiscard]] virtual std::vector<Lease> all() const = 0;
};

class MemoryLeaseStore : public LeaseStore {
public:
    const Lease* by_address(common::Ipv4 a) const override;
    const Lease* by_client(const Bytes& client) const override;
    std::optional<common::Ipv4> highest_in(common::Ipv4 first, common::Ipv4 last) const override;
    void apply(const std::vector<LeaseChange>& changes) override;
    void sync() override {}
    std::vector<Lease> all() const override;
    [[nodiscard]] std::size_t size() const { return by_addr_.size(); }

protected:
    void apply_one(const LeaseChange& c);
    static std::string key(const Bytes& client) { return {client.begin(), client.end()}; }
    std::map<common::Ipv4, Lease> by_addr_;
    std::unordered_map<std::string, common::Ipv4> by_client_;  // client identity bytes -> address
};

// Journal format (docs/dhcp-leases.md): one record per line, `<crc32 as 8 hex digits> <JSON>\n`, where
// the CRC-32 (zlib) covers the JSON bytes, followed by preallocated zeros: the records end at the first
// NUL. Replay applies records in order; a last line without its newline or with a bad checksum is a
// torn write and is dropped (and cut off the file).
class JournalLeaseStore final : public MemoryLeaseStore {
public:
    // Zeros kept ahead of the last record, so appends change no file metadata (docs/dhcp-leases.md).
    static constexpr std::uint64_t kPreallocate = 4u << 20;
    // Opens (creating if needed) and replays. Throws std::runtime_error on an unreadable journal.
    // `prealloc_bytes`: bytes of zeros kept ahead of the last record.
    explicit JournalLeaseStore(std::filesystem::path file, std::vector<std::string>* warnings = nullptr,
                               std::uint64_t prealloc_bytes = kPreallocate);
    ~JournalLeaseStore() override;
    void apply(const std::vector<LeaseChange>& changes) override;
    void sync() override;  // write + fdatasync of everything appended since the last sync
    void flush() override;  // write only
    // Rewrites the journal with only the live leases (temporary file, fsync, rename, fsync of the directory).
    void compact();
    [[nodiscard]] std::uint64_t records() const { return records_; }
    [[nodiscard]] std::uint64_t syncs() const { return syncs_; }

    static std::string encode_record(const LeaseChange& c);
    static std::optional<LeaseChange> decode_record(std::string_view line);

private:
    void write_at(std::uint64_t offset, const char* data, std::size_t n);
    void preallocate(std::uint64_t size);
    std::filesystem::path file_;
    int fd_ = -1;
    std::uint64_t end_ = 0;        // where the next record goes
    std::uint64_t allocated_ = 0;  // file size: records, then zeros
    std::uint64_t chunk_ = kPreallocate;
    std::string pending_;
    bool unsynced_ = false;  // records written (or pending) since the last fdatasync
    std::uint64_t records_ = 0;
    std::uint64_t syncs_ = 0;
};

}  // namespace fleetconf::dhcp
