// Leases in PostgreSQL (docs/scale-out.md): several fleetconf servers share one lease table. Each keeps
// the table in memory (MemoryLeaseStore) for fast decisions, kept current by LISTEN/NOTIFY, and writes
// its decisions back as compare-and-set: every row carries a version token, and a change is written only
// where the row still holds the token this server last saw (or, for a new row, where there is none). A
// change that lost the race is reported by end_sync(), so its ACK is withheld and the row reloaded.
#pragma once

#include "fleetconf/common/site.hpp"
#include "fleetconf/dhcp/leases.hpp"

#include <spdlog/logger.h>

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

struct pg_conn;

namespace fleetconf::dhcp::pg {

// The schema this build reads and writes (`fleetconf dhcp db status` shows the database's).
inline constexpr int kSchemaVersion = 1;
// The NOTIFY channel of lease changes (docs/scale-out.md, "Schema").
inline constexpr const char* kChannel = "fleetconf_lease4";
// The session advisory lock whose holder has the site-wide duties (routes, expiry): "fleetconf" in ASCII.
inline constexpr std::int64_t kDutyLock = 0x666c656574636f6e;

// One blocking libpq connection. The password comes from the database's password_file (never from the
// connection string). Throws std::runtime_error with libpq's message.
class Connection {
public:
    explicit Connection(const common::LeaseDatabase& db, int connect_timeout_s = 5);
    ~Connection();
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    using Row = std::vector<std::optional<std::string>>;
    // Runs one statement with text parameters (nullopt = NULL); the rows of its result, as text.
    std::vector<Row> exec(const std::string& sql, const std::vector<std::optional<std::string>>& params = {});
    [[nodiscard]] pg_conn* native() const { return conn_; }
    [[nodiscard]] bool ok() const;
    [[nodiscard]] std::string server() const;  // host:port or socket directory, and the server version

private:
    pg_conn* conn_ = nullptr;
};

struct Status {
    int version = 0;  // 0: no fleetconf schema in this database
    std::uint64_t leases = 0;
    std::string server;
    std::string synchronous_commit;  // the server's setting: what an ACK's durability rests on
};
Status status(Connection& c);
// Creates the schema (kSchemaVersion). Throws when one exists already.
void init(Connection& c);
// Applies the steps from the database's version to kSchemaVersion; returns the version found before.
int upgrade(Connection& c);
// Throws with the command to run unless the schema is kSchemaVersion.
void require_schema(Connection& c);

std::vector<Lease> load(Connection& c);
// Migration: replaces every lease in the table by `leases`, in one transaction.
void replace_all(Connection& c, const std::vector<Lease>& leases);

class PgLeaseStore final : public MemoryLeaseStore {
public:
    // Runs a callable on the thread that owns the store (the service's io thread).
    using Post = std::function<void(std::function<void()>)>;
    // Connects, checks the schema (throws when it is not kSchemaVersion) and loads every lease; when the
    // database cannot be reached, starts unavailable and keeps trying. `name` names this server in the rows
    // it writes (writer column) and in logs.
    PgLeaseStore(common::LeaseDatabase db, std::string name, Post post, std::shared_ptr<spdlog::logger> log);
    ~PgLeaseStore() override;

    void apply(const std::vector<LeaseChange>& changes) override;
    void sync() override;  // writes what waits now, on the calling thread; throws on a failure or a conflict
    std::function<void()> begin_sync() override;
    std::vector<common::Ipv4> end_sync(bool ok) override;
    [[nodiscard]] std::optional<std::string> unavailable() const override;
    [[nodiscard]] bool has_duty() const override { return duty_; }
    [[nodiscard]] bool shared() const override { return true; }
    [[nodiscard]] std::vector<std::pair<std::string, std::uint64_t>> counters() const override;

    // For tests: the version token this server believes address `a` holds (0: no row).
    [[nodiscard]] std::int64_t token(common::Ipv4 a) const;

private:
    struct Pending {
        std::optional<Lease> lease;  // nullopt: delete the row
        std::int64_t expected = 0;   // the token the row must hold (0: no row)
        std::int64_t token = 0;      // the token written with it
    };
    struct Outcome {
        std::vector<common::Ipv4> conflicts;                              // changes another writer got to first
        std::vector<std::pair<common::Ipv4, std::optional<Lease>>> rows;  // their rows now (nullopt: none)
        std::vector<std::int64_t> tokens;                                 // each row's token
    };
    std::int64_t next_token();
    void queue(common::Ipv4 a, std::optional<Lease> l);
    void forget(common::Ipv4 a);  // no row for `a` any more (memory and token)
    // Runs `batch` in one statement on the sync connection (any thread); fills `out`.
    void write(const std::map<common::Ipv4, Pending>& batch, Outcome& out);
    std::vector<common::Ipv4> settle(const Outcome& out);
    void replace(std::vector<Lease> rows, std::vector<std::int64_t> tokens);  // io thread: a fresh copy of the table
    void remote(const std::string& payload);                                  // io thread: one NOTIFY
    void listen_loop();

    common::LeaseDatabase db_;
    std::string name_;
    std::string writer_;  // unique per store instance: its own notifications are recognised by it
    Post post_;
    std::shared_ptr<spdlog::logger> log_;
    std::int64_t nonce_ = 0;
    std::uint32_t counter_ = 0;
    std::unordered_map<std::uint32_t, std::int64_t> tokens_;  // address -> token this server believes is in the row
    std::map<common::Ipv4, Pending> pending_;                 // changes not yet handed to a write
    std::shared_ptr<Outcome> in_flight_;                      // the outcome begin_sync's job fills
    std::optional<std::string> down_;                         // why the store is unavailable (io thread)
    bool duty_ = false;                                       // io thread: this server holds kDutyLock
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);

    std::mutex write_mutex_;  // the sync connection: one write at a time
    std::unique_ptr<Connection> sync_conn_;

    std::mutex wake_mutex_;
    std::condition_variable wake_;
    std::atomic<bool> stop_{false};
    std::atomic<bool> reload_{false};
    std::thread listener_;

    std::uint64_t writes_ = 0, conflicts_ = 0, failures_ = 0, reconnects_ = 0, remote_updates_ = 0, reloads_ = 0;
};

}  // namespace fleetconf::dhcp::pg
