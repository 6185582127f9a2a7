// Connection budgets for a TCP listener, without sockets (docs/limits.md).
//
// Every listener of fleetconf admits connections through one Admission:
//   - at most `max_connections` open at once;
//   - at most `max_per_address` from one peer address (IPv4 /32, IPv6 /64 by default), so that one
//     address, however many connections it opens, leaves the rest of the slots to everyone else;
//   - at most `max_unauthenticated` that have not yet authenticated (OpenSSH's MaxStartups), each given
//     `login_grace` to do so (LoginGraceTime): a flood of silent connections cannot hold the slots that a
//     real client needs to log in.
// A refusal is counted by reason, and logged at most once per address per `log_interval` (no log flood).
// Thread-safe: SSH sessions release their slot from their own threads.
#pragma once

#include "fleetconf/common/net.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

namespace fleetconf::common {

struct ListenerLimits {
    std::size_t max_connections = 256;
    std::size_t max_per_address = 32;      // 0: no per-address limit
    std::size_t max_unauthenticated = 64;  // 0: no separate budget (the listener authenticates nothing)
    std::chrono::milliseconds login_grace{10000};
    int ipv4_prefix = 32;  // peers in one prefix share the per-address budget
    int ipv6_prefix = 64;
    std::size_t min_rate = 16384;  // bytes/s: a reply or body slower than this is cut (phase_deadline)
    std::chrono::milliseconds log_interval{60000};
    bool operator==(const ListenerLimits&) const = default;
};

// Every TCP listener by name (the site file's services.limits keys and the metrics label), and its
// defaults (docs/limits.md).
inline constexpr std::string_view kListenerNames[] = {"git", "http", "https", "ssh", "block", "dhcp-control", "status", "console"};
ListenerLimits default_limits(std::string_view listener);

enum class Refusal {
    listener_full,         // max_connections open
    address_full,          // max_per_address open from this address (or prefix)
    unauthenticated_full,  // max_unauthenticated connections have not authenticated yet
    stopping,              // the service is stopping
};
std::string_view to_string(Refusal r);  // "listener_full", ... (the metrics label)

// The address a peer is counted under: its address with host bits past the prefix cleared.
std::string peer_key(const std::string& address, int ipv4_prefix, int ipv6_prefix);

class Admission {
public:
    using Clock = std::chrono::steady_clock;
    explicit Admission(ListenerLimits limits) : limits_(limits) {}

    struct Decision {
        std::optional<Refusal> refused;  // nullopt: admitted, and counted until release()
        bool log = false;                // log this refusal (the first for this address in the interval)
        std::string key;                 // the peer key, for authenticated()/release()
    };
    // A new connection from `address` (as printed by asio, no port). Counts it when admitted.
    Decision admit(const std::string& address, Clock::time_point now = Clock::now());
    // The connection proved who it is: it leaves the unauthenticated budget.
    void authenticated(const std::string& key);
    // The connection closed; `authenticated` says which budget it was in.
    void release(const std::string& key, bool authenticated);
    void set_limits(const ListenerLimits& l);

    struct Stats {
        std::size_t open = 0, unauthenticated = 0, addresses = 0;
        std::map<Refusal, std::uint64_t> refused;
    };
    [[nodiscard]] Stats stats() const;
    [[nodiscard]] ListenerLimits limits() const;

private:
    mutable std::mutex m_;
    ListenerLimits limits_;
    std::size_t open_ = 0, unauthenticated_ = 0;
    std::unordered_map<std::string, std::size_t> per_key_;
    std::unordered_map<std::string, Clock::time_point> last_logged_;
    std::map<Refusal, std::uint64_t> refused_;
};

// One admitted connection's slot: released when destroyed (RAII); authenticated() moves it out of the
// unauthenticated budget. Movable, so that a session can carry it.
class AdmissionTicket {
public:
    AdmissionTicket() = default;
    AdmissionTicket(Admission* a, std::string key) : a_(a), key_(std::move(key)) {}
    AdmissionTicket(AdmissionTicket&& o) noexcept : a_(std::exchange(o.a_, nullptr)), key_(std::move(o.key_)), auth_(o.auth_) {}
    AdmissionTicket& operator=(AdmissionTicket&& o) noexcept {
        if (this != &o) {
            reset();
            a_ = std::exchange(o.a_, nullptr);
            key_ = std::move(o.key_);
            auth_ = o.auth_;
        }
        return *this;
    }
    AdmissionTicket(const AdmissionTicket&) = delete;
    AdmissionTicket& operator=(const AdmissionTicket&) = delete;
    ~AdmissionTicket() { reset(); }

    void authenticated() {
        if (a_ && !auth_) {
            auth_ = true;
            a_->authenticated(key_);
        }
    }
    [[nodiscard]] bool is_authenticated() const { return auth_; }
    void reset() {
        if (a_) a_->release(key_, auth_);
        a_ = nullptr;
    }

private:
    Admission* a_ = nullptr;
    std::string key_;
    bool auth_ = false;
};

// The time a whole phase may take when it moves `bytes`: `base`, plus one second per `min_rate` bytes
// (a client that reads or sends slower than min_rate bytes/s is cut, however it paces itself).
std::chrono::milliseconds phase_deadline(std::chrono::milliseconds base, std::size_t bytes, std::size_t min_rate);

}  // namespace fleetconf::common
