// fleetconf::dhcp: the DHCPv4 service: sockets around the pure decision function.
#pragma once

#include "fleetconf/common/asio_fwd.hpp"
#include "fleetconf/common/reload.hpp"
#include "fleetconf/common/service.hpp"
#include "fleetconf/common/site.hpp"
#include "fleetconf/common/status.hpp"
#include "fleetconf/dhcp/leases.hpp"
#include "fleetconf/dhcp/server.hpp"

#include <spdlog/logger.h>

#include <chrono>
#include <functional>
#include <memory>

#include <nlohmann/json.hpp>

namespace fleetconf::dhcp {

common::ServiceInfo service_info();

// Where the service keeps its files under the site's data directory (docs/dhcp-leases.md, docs/dhcp-control.md).
std::filesystem::path lease_file(const common::Site& site);      // <data_dir>/dhcp/leases.journal
std::filesystem::path control_socket(const common::Site& site);  // <data_dir>/dhcp/control.sock

struct ServiceOptions {
    std::uint16_t server_port = 67;
    std::uint16_t client_port = 68;
    bool durable = true;  // sync leases before the reply that depends on them
    // Durable mode: the shortest time between the starts of two lease-journal syncs. A lone REQUEST is
    // synced at once; under load the ACKs that arrive within the interval share one sync (group commit),
    // which caps syncs per second at 1/interval and adds at most the interval to an ACK's delay.
    std::chrono::microseconds commit_interval{1000};
    std::filesystem::path lease_file;      // default <data_dir>/dhcp/leases.journal
    std::filesystem::path control_socket;  // default <data_dir>/dhcp/control.sock; "-" disables
    std::filesystem::path site_file;       // named in config-get's answer
    // Control commands over HTTP (kea-ctrl-agent's POST /), Basic authentication with the password in
    // control_key_file (a secret file, at least 16 characters). Default: the site's services.dhcp settings.
    std::optional<common::Endpoint> control_http;
    std::filesystem::path control_key_file;
    // Where leases are kept. Default: the lease journal at lease_file. An embedder may supply another store
    // (tests use one that fails on demand); the service syncs it before every reply that promises a lease.
    std::function<std::unique_ptr<LeaseStore>()> lease_store;
};

// The IPv4 address of a local interface (getifaddrs), for the server identifier.
std::optional<common::Ipv4> interface_ipv4(const std::string& ifname);

class Service final : public common::Service {
public:
    // Opens the lease journal and builds the configuration. Throws std::runtime_error with a clear message.
    Service(asio::io_context& io, const common::Site& site, ServiceOptions opts, std::shared_ptr<spdlog::logger> log);
    ~Service() override;
    // Opens one UDP socket per network interface of the site (bound to that device only).
    void start() override;
    void stop() override;
    // The UDP port the service listens on: server_port, or the one the system chose when it is 0 (the same
    // for every interface; relayed replies go to it). 0 before start().
    [[nodiscard]] std::uint16_t local_port() const;
    // Applies a new site file as a whole or not at all: networks, reservations and options; a socket is
    // opened for each new interface and closed for each one no network uses any more. Throws (and keeps
    // the running configuration) when an interface cannot be bound or a network has no server address.
    // Leases are kept.
    void reload(const common::Site& site) override;
    [[nodiscard]] const LeaseStore& leases() const;
    // Whether this server runs the site-wide lease duties (routes, expiry): true with the local journal; with
    // leases in PostgreSQL, only on the one server holding the database's advisory lock.
    [[nodiscard]] bool has_duty() const;
    // DHCPACKs sent since start (the console's exchanges/s chart); on the service's thread.
    [[nodiscard]] std::uint64_t acks_sent() const;

    // A Kea-style control command: {"command": NAME, "arguments": {...}} -> {"result": 0|1|2|3, "text", "arguments"}.
    // result: 0 success, 1 error, 2 unsupported command, 3 empty (nothing found). config-reload waits for the
    // verdict: call it through command_async (the control channels do); command() answers it with result 1.
    nlohmann::json command(const nlohmann::json& request);
    void command_async(const nlohmann::json& request, std::function<void(nlohmann::json)> done);
    // Statistics in Prometheus text exposition format.
    [[nodiscard]] std::string prometheus() const;
    // Healthy while it listens on every interface and the lease journal takes writes.
    [[nodiscard]] common::Health health() const;
    // Both, for the process's status endpoint ("dhcp").
    [[nodiscard]] common::StatusSource status_source() const override;
    // config-reload asks the process to reload (its common::Reloader); the hook calls `done` with the
    // verdict on this service's thread, once the transaction is decided.
    using ReloadDone = std::function<void(const common::ReloadVerdict&)>;
    void set_reload_hook(std::function<void(ReloadDone done)> hook);
    // Called for every LeaseEvent (lease-driven routes use it).
    void set_lease_hook(std::function<void(const LeaseEvent&)> hook);

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace fleetconf::dhcp
