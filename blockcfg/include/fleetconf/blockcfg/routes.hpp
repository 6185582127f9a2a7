// Lease-driven routes: keeps `host -> address:port` entries of a proxy in step with DHCP leases. The
// proxy is a blockcfg device served in this process, a blockcfg editor elsewhere (its authenticated
// control protocol), or a tlstunnel proxy (its own protocol, as a client). Every change is an ordinary
// change there (durable, logged); one worker thread applies them in order, skips those that change
// nothing, and retries failures with backoff (1 s doubling to 60 s), keeping only the latest wish per host.
#pragma once

#include "fleetconf/blockcfg/model.hpp"
#include "fleetconf/blockcfg/protocol.hpp"
#include "fleetconf/blockcfg/tlstunnel.hpp"
#include "fleetconf/common/site.hpp"
#include "fleetconf/common/status.hpp"

#include <spdlog/logger.h>

#include <chrono>
#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

namespace fleetconf::blockcfg {

class ConfigService;

struct RouteTarget {
    common::LeaseRoutes::Kind kind = common::LeaseRoutes::Kind::local;
    ConfigService* local = nullptr;  // local
    common::Endpoint endpoint;       // blockcfg, tlstunnel
    protocol::Key key;               // blockcfg
    std::string device;              // blockcfg: device name on the editor ("" = its only one)
    std::string tlstunnel_key;       // tlstunnel: the proxy's --key, raw
    [[nodiscard]] std::string describe() const;
};

// Builds the target of `routes`: loads the key file; `local_device` finds a device served in this process.
// Throws std::runtime_error with a clear message.
RouteTarget make_route_target(const common::LeaseRoutes& routes, const std::function<ConfigService*(const std::string&)>& local_device);

// tlstunnel's control protocol as a client: one command, one connection, 10 s. Throws std::runtime_error.
tlstunnel::Command tlstunnel_call(const common::Endpoint& proxy, const std::string& key, const tlstunnel::Command& cmd);

// Where route changes go: reads one host's route and changes it. make_route_driver builds the one of a
// RouteTarget (this process's device, a blockcfg editor, tlstunnel); tests use a fake.
class RouteDriver {
public:
    virtual ~RouteDriver() = default;
    [[nodiscard]] virtual std::string describe() const = 0;
    // host's route now, or nullopt when it has none. Throws std::runtime_error when the target cannot be asked.
    virtual std::optional<Backend> current(const std::string& host) = 0;
    struct Outcome {
        bool ok = false;
        std::string detail;  // ok: what the target says (e.g. "generation 7"); otherwise the error
    };
    // Routes host to `backend`, or removes its route (nullopt). `why` is recorded where the target keeps a log.
    virtual Outcome change(const std::string& host, const std::optional<Backend>& backend, const std::string& why) = 0;
};
std::unique_ptr<RouteDriver> make_route_driver(RouteTarget target);

// Retry schedule of a failed change: `first`, doubling, at most `max`.
struct Backoff {
    std::chrono::milliseconds first{1000};
    std::chrono::milliseconds max{60000};
    [[nodiscard]] std::chrono::milliseconds after(int attempts) const;  // delay after the attempts-th failure
};

class RouteSync {
public:
    RouteSync(RouteTarget target, std::shared_ptr<spdlog::logger> log);
    RouteSync(std::unique_ptr<RouteDriver> driver, std::shared_ptr<spdlog::logger> log, Backoff backoff = {});
    ~RouteSync();
    RouteSync(const RouteSync&) = delete;
    RouteSync& operator=(const RouteSync&) = delete;

    // host -> backend (add or change).
    void set(const std::string& host, const Backend& backend, std::string why);
    // Removes host's route if it still points at `address` (a newer lease elsewhere keeps it).
    void clear(const std::string& host, const common::IpAddress& address, std::string why);
    // Removes host's route wherever it points (a route no active lease owns, found when taking the duty over).
    void clear_any(const std::string& host, std::string why);
    // Waits (at most `timeout`) until nothing is queued or being applied; true when idle. For tests and stop.
    bool wait_idle(std::chrono::milliseconds timeout);
    void stop();

    struct Counters {
        std::uint64_t applied = 0, unchanged = 0, failed = 0;
        std::size_t pending = 0;   // hosts with a change still to apply
        std::size_t retrying = 0;  // of those, hosts whose last attempt failed
    };
    [[nodiscard]] Counters counters() const;
    // Counters in Prometheus text; unhealthy while some change waits for a retry. Source name "routes".
    [[nodiscard]] common::StatusSource status_source() const;

private:
    struct Wish {
        std::optional<Backend> backend;  // nullopt: remove
        common::IpAddress if_at;         // remove only if the route points here
        std::string why;
        int attempts = 0;
        std::chrono::steady_clock::time_point not_before{};
        bool anywhere = false;  // remove: wherever the route points (if_at unused)
    };
    void run();
    // Applies one wish; returns false (after logging) when it should be retried.
    bool apply(const std::string& host, const Wish& w);

    std::unique_ptr<RouteDriver> driver_;
    std::shared_ptr<spdlog::logger> log_;
    Backoff backoff_;
    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::map<std::string, Wish> wishes_;
    bool busy_ = false, stopping_ = false;
    Counters counters_;
    std::thread worker_;
};

// What the router needs to know of a DHCP lease (the DHCP library stays independent of this one).
struct LeaseFacts {
    common::Ipv4 address;
    common::Mac mac;
    std::vector<std::uint8_t> client;  // 0xFF + client id, or htype + chaddr
    std::string fqdn;                  // option 81 name the client asked the server to update, or ""
    std::uint64_t expires = 0;
};

// Maps leases to routes with the site file: a unikernel (matched by client id or MAC) routes its
// public_hosts to its address on backend_port (default routes.port); with routes.fqdn, an option-81 name
// is routed too. Remembers which addresses it routed, so that expiry removes what a lease added.
//
// It records the routes it owns (lease -> hosts and port), in memory and, when given a state file, on disk
// (written atomically when the set changes), so that a route whose reason is gone is removed even when
// the reason went while the process was down. Reconciliation (start, set_site on reload, sweep): routes
// that no longer belong (a removed unikernel, changed public_hosts, an expired lease) are removed, missing
// or different ones set again. Single-threaded: call it from one thread (the DHCP service's).
class LeaseRouter {
public:
    // `state_file`: where the owned routes are kept across restarts ("" keeps them in memory only).
    LeaseRouter(const common::Site& site, RouteSync& sync, std::filesystem::path state_file = {},
                std::shared_ptr<spdlog::logger> log = nullptr);
    // At start: routes every binding made while the process was down (`active`: the bound leases; those
    // expired by `now` are skipped) and removes routes recorded as owned whose lease or reason is gone.
    // Routes that are already right change nothing on the target.
    void start(const std::vector<LeaseFacts>& active, std::uint64_t now);
    // Reload: the new site applies to every owned route at once (reconcile).
    void set_site(const common::Site& site, const std::vector<LeaseFacts>& active, std::uint64_t now);
    void bound(const LeaseFacts& l);
    void released(const LeaseFacts& l, const std::string& why);
    // Removes the routes of routed leases that are no longer active (expired, or gone). `active`: the
    // bound, unexpired leases now.
    void sweep(const std::vector<LeaseFacts>& active, std::uint64_t now);
    // sweep(), then routes the active leases it does not route yet (bindings another server made, when
    // several share one lease database and this one holds the duty).
    void follow(const std::vector<LeaseFacts>& active, std::uint64_t now);
    // The duty taken (several servers share one lease database; at start too): start(), then the route of
    // every public host of a DHCP unikernel that no active lease owns is removed wherever it points: another
    // holder may have set it for a lease that ended while that holder had the duty, and this process's
    // record (routes.json) cannot know it. Option-81 names are not in the site file and are not covered.
    void take_over(const std::vector<LeaseFacts>& active, std::uint64_t now);
    // Sets every owned route again (after a rollback on the target): missing or changed ones are restored.
    void restore(const std::string& why);
    [[nodiscard]] std::vector<std::string> hosts_of(const LeaseFacts& l, std::uint16_t& port) const;
    using Owned = std::map<std::string, Backend>;  // host -> backend, every route the router owns
    // A snapshot, safe to read from any thread (the block writer's rollback check).
    [[nodiscard]] std::shared_ptr<const Owned> owned() const { return std::atomic_load(&owned_snapshot_); }
    // The hosts of `owned` whose route in `config` is missing or different (what a rollback took away).
    static std::vector<std::string> missing(const Owned& owned, const Config& config);

private:
    struct Entry {
        LeaseFacts lease;
        std::vector<std::string> hosts;
        std::uint16_t port = 0;
    };
    void route(const LeaseFacts& l, bool reconcile);
    void drop(const Entry& e, const std::vector<std::string>& keep, const std::string& why);
    void reconcile(const std::vector<LeaseFacts>& active, std::uint64_t now, const std::string& why);
    void changed();  // after routed_ changed: snapshot and state file
    void load();

    common::Site site_;
    RouteSync& sync_;
    std::filesystem::path state_file_;
    std::shared_ptr<spdlog::logger> log_;
    std::map<common::Ipv4, Entry> routed_;
    std::shared_ptr<const Owned> owned_snapshot_ = std::make_shared<const Owned>();
};

}  // namespace fleetconf::blockcfg
