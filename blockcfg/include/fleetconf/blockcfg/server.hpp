// The blockcfg editor: `ConfigService` owns one device (its store, the in-memory view and the single
// write queue); `Server` is the TCP control socket in front of one or more of them.
#pragma once

#include "fleetconf/common/asio_fwd.hpp"
#include "fleetconf/blockcfg/model.hpp"
#include "fleetconf/blockcfg/protocol.hpp"
#include "fleetconf/blockcfg/store.hpp"
#include "fleetconf/common/admission.hpp"
#include "fleetconf/common/net.hpp"

#include <spdlog/logger.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

namespace fleetconf::blockcfg {

struct Outcome {
    std::error_code ec;
    std::string message;
    std::uint64_t previous_generation = 0;
    std::uint64_t generation = 0;  // after the change (or current, on failure)
};

// One device. Changes go through one queue served by one thread: each batch of queued changes is
// applied in order and committed as ONE durable generation (group commit), then the in-memory view is
// swapped and every change in the batch is answered. Reads use the view: always the last durable state.
class ConfigService {
public:
    // Fails (throws std::runtime_error) if the stored payload does not parse.
    ConfigService(std::string name, std::unique_ptr<Device> dev, Store store, std::shared_ptr<spdlog::logger> log);
    ~ConfigService();
    ConfigService(const ConfigService&) = delete;
    ConfigService& operator=(const ConfigService&) = delete;

    struct Snapshot {
        std::shared_ptr<const Config> config;
        GenerationInfo gen;
    };
    [[nodiscard]] Snapshot snapshot() const;
    [[nodiscard]] std::vector<GenerationInfo> history() const;
    [[nodiscard]] const std::string& name() const { return name_; }
    [[nodiscard]] Geometry geometry() const { return store_.geometry(); }

    // Queues a change; `done` runs on the writer thread once it is durable or has failed.
    void submit(ChangeRequest req, std::string who, std::function<void(Outcome)> done);
    // Blocking convenience (CLI, tests).
    Outcome change(ChangeRequest req, std::string who);

    struct Stats {
        std::uint64_t commits = 0;          // generations written
        std::uint64_t commit_failures = 0;  // batches the device failed to store
        std::uint64_t applied = 0;          // changes made durable
        std::uint64_t refused = 0;          // changes answered with an error (invalid, conflict, failed commit)
        std::string last_error;             // the last failed commit, until one succeeds
    };
    [[nodiscard]] Stats stats() const;

private:
    struct Pending {
        ChangeRequest req;
        std::string who;
        std::function<void(Outcome)> done;
    };
    void writer();

    std::string name_;
    std::unique_ptr<Device> dev_;
    Store store_;  // touched by the writer thread, and by history() under store_mutex_
    std::shared_ptr<spdlog::logger> log_;
    mutable std::mutex store_mutex_;
    mutable std::mutex view_mutex_;
    Snapshot view_;
    Stats stats_;  // under view_mutex_
    std::mutex queue_mutex_;
    std::condition_variable queue_cv_;
    std::deque<Pending> queue_;
    bool stopping_ = false;
    std::thread thread_;
};

struct ServerOptions {
    common::Endpoint listen{common::Ipv4{127, 0, 0, 1}, 7300};
    std::size_t max_frame = protocol::kDefaultMaxFrame;
    std::chrono::milliseconds read_timeout{10000};  // a started frame must complete within this (whole frame, not per read)
    std::chrono::milliseconds idle_timeout{60000};  // between requests
    // Connections: 256 in all, 32 per address, 64 not yet authenticated, each of which must send its first
    // verified request within 10 s (docs/limits.md).
    common::ListenerLimits limits{.max_connections = 256, .max_per_address = 32, .max_unauthenticated = 64};
    int max_auth_failures = 5;  // per peer address within failure_window
    std::chrono::seconds failure_window{60};
    std::chrono::seconds block_time{60};  // then connections from it are refused this long
};

class Server {
public:
    // `devices` by name; a request selects one with "device", or omits it when there is only one.
    Server(asio::io_context& io, std::map<std::string, ConfigService*> devices, protocol::KeyRing keys, ServerOptions opts,
           std::shared_ptr<spdlog::logger> log);
    ~Server();
    // Binds and starts accepting; throws std::system_error if the address cannot be bound.
    void start();
    // Stops accepting and closes every connection.
    void stop();
    [[nodiscard]] std::uint16_t port() const;
    // Replaces the key ring (for key rotation on reload); existing connections keep their key.
    void set_keys(protocol::KeyRing keys);

    struct Stats {
        std::uint64_t requests = 0;       // verified requests answered
        std::uint64_t auth_failures = 0;  // frames that failed authentication (or were oversized)
        std::size_t connections = 0;      // open now
        bool listening = false;
    };
    [[nodiscard]] Stats stats() const;
    // The listener's Prometheus lines (connections, refusals by reason).
    void metrics(std::string& out) const;

    // Answers one verified request body (a JSON document) without any socket; used by sessions and tests.
    // Calls `reply` with the reply body, possibly later (changes wait for their commit).
    void handle(const std::string& body, const std::string& who, std::function<void(std::string)> reply);

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// Reads a key file (must not be group/world accessible). Throws std::runtime_error naming the file.
protocol::KeyRing load_key_file(const std::filesystem::path& p);
// Creates a key file with one fresh 32-byte key (mode 0600). Refuses to overwrite.
protocol::Key create_key_file(const std::filesystem::path& p, const std::string& key_id = "admin");

std::uint64_t now_ns();

}  // namespace fleetconf::blockcfg
