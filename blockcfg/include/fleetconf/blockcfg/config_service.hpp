// One device's editor: `ConfigService` owns the device (its store, the in-memory view of the last durable
// configuration) and the single write queue, served by one writer thread that commits each batch of
// queued changes as one generation (the batch's decision is model.hpp's apply_batch).
#pragma once

#include "fleetconf/blockcfg/model.hpp"
#include "fleetconf/blockcfg/protocol.hpp"
#include "fleetconf/blockcfg/store.hpp"
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
    std::uint64_t generation = 0;       // after the change (or current, on failure)
    std::vector<std::string> warnings;  // an accepted change the operator should know more about
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
    // Who made a generation and what they changed (from its stored record; [] when it has none).
    [[nodiscard]] std::vector<ChangeNote> change_of(std::uint64_t generation) const;
    [[nodiscard]] const std::string& name() const { return name_; }
    [[nodiscard]] Geometry geometry() const { return store_.geometry(); }

    // Queues a change; `done` runs on the writer thread once it is durable or has failed.
    void submit(ChangeRequest req, std::string who, std::function<void(Outcome)> done);
    // Blocking convenience (CLI, tests).
    Outcome change(ChangeRequest req, std::string who);
    // Called on the writer thread after each accepted change is durable, with the configuration it made;
    // what it returns goes into that change's Outcome::warnings (and the log). The lease router uses it to
    // notice a rollback that took lease-owned routes away.
    using Observer = std::function<std::vector<std::string>(const ChangeRequest&, const Config&, std::uint64_t generation)>;
    void set_observer(Observer o);

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
    std::mutex observer_mutex_;
    Observer observer_;
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

std::uint64_t now_ns();

}  // namespace fleetconf::blockcfg
