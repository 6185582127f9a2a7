// One operator endpoint for every service of the process: GET /health (JSON; 200 when every service is
// healthy, 503 otherwise) and GET /metrics (Prometheus text: each service's metrics and the process's).
// docs/status.md describes both. The decision (status_reply) is pure; StatusServer is its socket.
#pragma once

#include "fleetconf/common/admission.hpp"
#include "fleetconf/common/asio_fwd.hpp"
#include "fleetconf/common/http.hpp"
#include "fleetconf/common/net.hpp"

#include <spdlog/logger.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace fleetconf::common {

struct Health {
    bool ok = true;
    std::string detail;     // one line for the operator: what runs, or what is wrong
    bool degraded = false;  // serving, but something needs the operator's attention (said in `detail`)
};

// What one service contributes. Both functions run on the endpoint's io_context thread.
struct StatusSource {
    std::string name;                      // "dhcp", "git", "block", "routes"
    std::function<std::string()> metrics;  // Prometheus text exposition (may be empty)
    std::function<Health()> health;
};

class StatusRegistry {
public:
    StatusRegistry();
    void add(StatusSource s) { sources_.push_back(std::move(s)); }
    [[nodiscard]] bool empty() const { return sources_.empty(); }
    // {"status": "ok"|"failing", "uptime_s": N, "services": {NAME: {"ok": bool, "detail": "..."}}}
    [[nodiscard]] Health health(std::string& json_out) const;
    // Every source's text, then fleetconf_up{service} and the process_* metrics.
    [[nodiscard]] std::string metrics() const;

private:
    std::vector<StatusSource> sources_;
    std::chrono::system_clock::time_point started_;
};

struct StatusReply {
    int status = 200;
    std::string content_type;
    std::string body;
};
// The pure decision: GET or HEAD of /health or /metrics; 405 for other methods, 404 for other paths.
StatusReply status_reply(const StatusRegistry& reg, const HttpRequest& req);

class StatusServer {
public:
    StatusServer(asio::io_context& io, Endpoint listen, const StatusRegistry& reg, std::shared_ptr<spdlog::logger> log,
                 const ListenerLimits& limits = default_limits("status"));
    ~StatusServer();
    // Binds (throws std::system_error naming the address) and starts accepting.
    void start();
    void stop();
    [[nodiscard]] std::uint16_t port() const;
    // The listener's Prometheus lines (connections, refusals by reason).
    void metrics(std::string& out) const;

    static constexpr std::chrono::seconds kTimeout{10};  // a request must arrive, whole, within this

private:
    struct Impl;
    std::shared_ptr<Impl> impl_;
};

}  // namespace fleetconf::common
