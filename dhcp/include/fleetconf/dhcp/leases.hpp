// Leases and where they live. `LeaseView` is what the decision function reads; `LeaseStore` adds
// applying changes and making them durable. `JournalLeaseStore` is the embedded default: an
// append-only journal with a checksum per record, group-committed with one fdatasync for many
// changes, compacted by writing a fresh journal and renaming it over the old one.
#pragma once

#include "fleetconf/common/net.hpp"
#include "fleetconf/dhcp/wire.hpp"

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <set>
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
    std::string fqdn;           // the name the client asked the server to update (option 81 with S), completed; "" if none
    bool operator==(const Lease&) const = default;
};

// FNV-1a of a client identity (64 bits): cheap for the short keys of the packet path (7 bytes for htype + MAC).
// Not a defence against chosen keys; used where a client can add at most one key per request.
inline std::uint64_t client_hash(std::string_view key) noexcept {
    std::uint64_t h = 14695981039346656037ull;
    for (unsigned char ch : key) h = (h ^ ch) * 1099511628211ull;
    return h;
}

class LeaseView {
public:
    virtual ~LeaseView() = default;
    [[nodiscard]] virtual const Lease* by_address(common::Ipv4 a) const = 0;
    [[nodiscard]] virtual const Lease* by_client(const Bytes& client) const = 0;
    // The highest address in [first, last] that has a lease record, if any. Lets allocation start after
    // the used part of a pool in O(log n) instead of walking it.
    [[nodiscard]] virtual std::optional<common::Ipv4> highest_in(common::Ipv4 first, common::Ipv4 last) const = 0;
    // Whether other servers allocate from the same leases at the same time (a shared lease database): then
    // new clients are spread over the pool instead of filled in order, so that two servers seldom pick the
    // same address at once (the loser of that compare-and-set costs its client a NAK and a new DISCOVER).
    [[nodiscard]] virtual bool shared() const { return false; }
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
    // A commit split for a service that waits for the disk on another thread: begin_sync() (on the thread that
    // applies changes) hands what was applied to the operating system and returns the blocking part, to run
    // once on any thread (it throws when the sync fails), or nothing when all is durable already; end_sync(ok)
    // then runs on the applying thread. What was applied before begin_sync() is durable once the blocking
    // part returned, except the addresses end_sync returns: changes that lost a compare-and-set to another
    // server sharing the store (their replies must not leave; the store holds the winner's lease now). The
    // default syncs at once.
    virtual std::function<void()> begin_sync() {
        sync();
        return {};
    }
    virtual std::vector<common::Ipv4> end_sync(bool /*ok*/) { return {}; }
    // Why no lease can be promised or offered now (a lease database that cannot be reached), or nullopt.
    [[nodiscard]] virtual std::optional<std::string> unavailable() const { return std::nullopt; }
    // Whether this server holds the site-wide duties (lease-driven routes, their expiry) that must run once
    // for every server sharing the store: always with a store of its own; with a shared database, the one
    // server holding its advisory lock.
    [[nodiscard]] virtual bool has_duty() const { return true; }
    // The store's own counters for /metrics (name, value), e.g. database conflicts and reconnects.
    [[nodiscard]] virtual std::vector<std::pair<std::string, std::uint64_t>> counters() const { return {}; }
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
    void clear();
    // Every record in address order.
    template <typename F>
    void for_each(F&& f) const {
        for (const auto a : order_) f(by_addr_.at(a));
    }
    static std::string_view key(const Bytes& client) { return {reinterpret_cast<const char*>(client.data()), client.size()}; }
    struct KeyHash {
        using is_transparent = void;  // lookups by string_view: no string built per packet
        // The table re-hashes keys while it walks a bucket, so a cheap function matters more than a strong one.
        std::size_t operator()(std::string_view s) const noexcept {
            const auto h = client_hash(s);
            return static_cast<std::size_t>(h ^ (h >> 32));
        }
    };
    // The packet path looks leases up by address and by client on every request: hash tables (a lookup
    // costs a cache miss or two; the tree it replaced cost about 16). The ordered set of addresses serves
    // highest_in() and the ordered listing; it changes only when an address gets or loses its record.
    std::unordered_map<std::uint32_t, Lease> by_addr_;
    std::set<std::uint32_t> order_;
    std::unordered_map<std::string, common::Ipv4, KeyHash, std::equal_to<>> by_client_;  // client identity bytes -> address
};

// A byte range of the journal file.
struct JournalRegion {
    std::uint64_t offset = 0;
    std::uint64_t length = 0;
    bool operator==(const JournalRegion&) const = default;
};

// What a journal file holds (docs/dhcp-leases.md, "Recovery"): every intact record in file order, and
// every damaged region between them. Pure: bytes in, values out.
struct JournalScan {
    int version = 2;                         // 1: no header line (journals written before format 2)
    std::vector<LeaseChange> records;        // every intact record, in file order
    std::uint64_t end = 0;                   // just past the last intact record (or the header)
    std::uint64_t last_seq = 0;              // the highest record sequence number seen (version 2)
    std::uint64_t missing_records = 0;       // sequence numbers skipped between intact records (version 2)
    std::vector<JournalRegion> damaged;      // bytes that are neither intact records nor the free space at the end
    std::optional<JournalRegion> torn_tail;  // the last, incomplete record (a write cut by a crash)
};
[[nodiscard]] JournalScan scan_journal(std::string_view text);

// Journal format 2 (docs/dhcp-leases.md): a header line `fleetconf-lease-journal 2`, then one record per
// line, `<crc32 as 8 hex digits> <JSON>\n`, where the CRC-32 (zlib) covers the JSON bytes and the JSON
// carries a sequence number `q`, followed by preallocated zeros. A record never contains a NUL or a LF,
// so replay resynchronises at the next line or after a run of NULs and keeps every intact record after a
// damaged region. Format 1 (no header, no `q`) is read and rewritten as format 2.
class JournalLeaseStore final : public MemoryLeaseStore {
public:
    static constexpr std::string_view kHeader = "fleetconf-lease-journal 2\n";
    // Zeros kept ahead of the last record, so appends change no file metadata (docs/dhcp-leases.md).
    static constexpr std::uint64_t kPreallocate = 4u << 20;
    // Opens (creating if needed) and replays. Throws std::runtime_error on an unreadable journal.
    // `warnings`: one line per torn tail or format upgrade. Damaged regions are in `recovery()`; before
    // the journal is rewritten without them the whole file is copied to `<file>.damaged-<UTC time>`.
    // `prealloc_bytes`: bytes of zeros kept ahead of the last record.
    explicit JournalLeaseStore(std::filesystem::path file, std::vector<std::string>* warnings = nullptr,
                               std::uint64_t prealloc_bytes = kPreallocate);
    ~JournalLeaseStore() override;
    void apply(const std::vector<LeaseChange>& changes) override;
    void sync() override;                         // write + fdatasync of everything appended since the last sync
    void flush() override;                        // write only
    std::function<void()> begin_sync() override;  // write; the fdatasync is returned
    std::vector<common::Ipv4> end_sync(bool ok) override;
    // Rewrites the journal with only the live leases (temporary file, fsync, rename, fsync of the directory).
    void compact();
    // The service compacts once the journal holds more than twice its live leases plus kCompactSlack
    // records: the cost of a rewrite is spread over at least as many appends as it writes.
    static constexpr std::uint64_t kCompactSlack = 10000;
    [[nodiscard]] bool needs_compaction() const { return records_ > 2 * size() + kCompactSlack; }
    [[nodiscard]] std::uint64_t records() const { return records_; }
    [[nodiscard]] std::uint64_t syncs() const { return syncs_; }

    struct Recovery {
        std::vector<JournalRegion> damaged;  // as found at open, offsets into the file as it was
        std::uint64_t missing_records = 0;
        std::filesystem::path damaged_copy;  // where the file was copied before the rewrite ("" if none)
        int version_read = 2;
    };
    [[nodiscard]] const Recovery& recovery() const { return recovery_; }

    // One record line with its LF. `seq` 0 writes format 1 (no `q`; for tests of the old format).
    static std::string encode_record(const LeaseChange& c, std::uint64_t seq = 0);
    // The same line appended to `out`.
    static void append_record(std::string& out, const LeaseChange& c, std::uint64_t seq = 0);
    // One record line without its LF; `seq` receives `q` (0 when absent).
    static std::optional<LeaseChange> decode_record(std::string_view line, std::uint64_t* seq = nullptr);

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
    std::uint64_t next_seq_ = 1;
    Recovery recovery_;
};

}  // namespace fleetconf::dhcp
