// fleetconf::console: the operator console, one page and its JSON API (/api/v1, docs/console.md), served
// by `fleetconf serve` (services.console). `Console` is the decision: HTTP request in, reply out, with the
// access rules of auth.hpp; the views and actions come from a `Backend` that the embedder supplies.
// `ConsoleServer` is its socket: plain HTTP or HTTPS, Server-Sent Events for the live views.
#pragma once

#include "fleetconf/common/admission.hpp"
#include "fleetconf/common/asio_fwd.hpp"
#include "fleetconf/common/http.hpp"
#include "fleetconf/common/net.hpp"
#include "fleetconf/console/auth.hpp"

#include <nlohmann/json.hpp>
#include <spdlog/logger.h>

#include <chrono>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace fleetconf::console {

struct Options {
    common::Endpoint listen{common::Ipv4{127, 0, 0, 1}, 9468};
    std::filesystem::path tls_cert, tls_key;  // both: HTTPS
    std::filesystem::path password_file;      // set: a login is required
    std::filesystem::path audit_file;         // every action, one JSON line, synced before the reply
    common::ListenerLimits limits = common::default_limits("console");
};

// A field of JSON that came from outside (a request body, a line read back from a file): its value when it has
// the expected type, else "" or 0. Never operator[] on a const object: a missing key there is undefined.
std::string text_field(const nlohmann::json& j, const char* key);
std::int64_t number_field(const nlohmann::json& j, const char* key);

// An action refused for a reason the operator can act on: the HTTP status (400, 404, 409) and one line.
struct ActionError : std::runtime_error {
    ActionError(int s, const std::string& what) : std::runtime_error(what), status(s) {}
    int status;
};

// What the console shows and does (docs/console.md gives each view's fields). `fleetconf serve` supplies
// it (cli/console_backend.cpp), reaching each service on its own thread. Called on the console's thread.
struct Backend {
    std::function<nlohmann::json()> fleet, networks, repositories, devices;
    std::function<nlohmann::json(const std::string& query, std::size_t limit)> leases;
    std::function<nlohmann::json(const std::string& device)> device_history;  // throws ActionError(404) for no such device
    // Running totals for the activity charts, sampled once a second: series name -> counter.
    std::function<std::map<std::string, double>()> counters;
    // The actions: arguments as posted (validated by the backend), the operator's name; the result's JSON.
    using Action = std::function<nlohmann::json(const nlohmann::json& args, const std::string& who)>;
    std::map<std::string, Action, std::less<>> actions;  // "route-add", "route-remove", "rollback", "token-rotate", "lease-release"
};

struct Reply {
    int status = 200;
    std::string content_type = "application/json";
    std::string body;
    std::string headers;  // extra header lines, each ending "\r\n"
    bool stream = false;  // GET /api/v1/events: the connection stays open for Server-Sent Events
};

class Console {
public:
    using Clock = std::chrono::steady_clock;
    Console(Options opts, Backend backend, std::shared_ptr<spdlog::logger> log);

    // The decision for one request from `peer` ("ADDR:PORT"). `tls` says whether it came over HTTPS.
    Reply handle(const common::HttpRequest& req, const std::string& peer, bool tls, Clock::time_point now);

    // Once a second: samples the counters and rebuilds the views; returns the Server-Sent Events to send to
    // every stream ("event: NAME\ndata: JSON\n\n"), only for the views that changed.
    std::vector<std::string> tick(std::int64_t unix_now);
    // Everything a new stream gets first: every view as it stands.
    [[nodiscard]] std::vector<std::string> initial_events() const;

    [[nodiscard]] bool login_required() const { return !opts_.password_file.empty(); }
    // Whether a live stream opened with this session cookie may go on (the session did not end).
    [[nodiscard]] bool session_alive(std::string_view token, Clock::time_point now) const;
    struct Counters {
        std::uint64_t requests = 0, logins = 0, login_failures = 0, login_throttled = 0, unauthorized = 0, csrf_refused = 0, actions = 0,
                      actions_failed = 0;
    };
    [[nodiscard]] const Counters& counters() const { return counters_; }
    [[nodiscard]] std::size_t sessions() const { return sessions_.size(); }

    static constexpr std::size_t kHistory = 3600;   // seconds of activity kept
    static constexpr std::size_t kAuditKept = 200;  // recent console audit entries in memory

private:
    Reply api(const common::HttpRequest& req, std::string_view path, std::string_view query, const std::string& peer, bool tls,
              Clock::time_point now);
    Reply action(const std::string& name, const common::HttpRequest& req, const Session& s, const std::string& peer);
    void audit(nlohmann::json entry);
    nlohmann::json activity_json() const;
    Options opts_;
    Backend backend_;
    std::shared_ptr<spdlog::logger> log_;
    std::optional<PasswordFile> passwords_;
    Sessions sessions_;
    LoginLimiter limiter_;
    Counters counters_;
    // The views as last sent (their text), to send only what changed.
    std::map<std::string, std::string, std::less<>> views_;
    std::int64_t last_slow_ = 0;  // repositories and devices are rebuilt every 10 s
    std::map<std::string, double> last_totals_;
    std::map<std::string, std::deque<double>> series_;  // per-second increments, newest last
    std::int64_t series_end_ = 0;
    std::deque<nlohmann::json> audit_;
    std::vector<std::string> pending_;  // events made between two ticks (an action's audit entry)
};

class ConsoleServer {
public:
    // Reads the password file and the TLS pair (throws std::runtime_error naming the file).
    ConsoleServer(asio::io_context& io, Options opts, Backend backend, std::shared_ptr<spdlog::logger> log);
    ~ConsoleServer();
    void start();  // binds (throws naming the address), starts accepting and the once-a-second tick
    void stop();
    [[nodiscard]] std::uint16_t port() const;
    // Prometheus text: requests, logins, refusals, actions, live streams, the listener's connections.
    [[nodiscard]] std::string metrics() const;

    static constexpr std::chrono::seconds kTimeout{10};  // a request must arrive whole (and a reply leave) within this
    static constexpr std::size_t kMaxStreams = 32;       // live views open at once
    static constexpr std::size_t kMaxQueued = 64;        // events waiting for a slow stream before it is cut

private:
    struct Impl;
    std::shared_ptr<Impl> impl_;
};

}  // namespace fleetconf::console
