// fleetconf::dhcp: the DHCPv4 service: sockets around the pure decision function.
#pragma once

#include "fleetconf/common/service.hpp"
#include "fleetconf/common/site.hpp"
#include "fleetconf/dhcp/leases.hpp"
#include "fleetconf/dhcp/server.hpp"

#include <asio/io_context.hpp>
#include <spdlog/logger.h>

#include <memory>

namespace fleetconf::dhcp {

common::ServiceInfo service_info();

struct ServiceOptions {
    std::uint16_t server_port = 67;
    std::uint16_t client_port = 68;
    bool durable = true;              // sync leases before the reply that depends on them
    std::filesystem::path lease_file;  // default <data_dir>/dhcp/leases.journal
};

// The IPv4 address of a local interface (getifaddrs), for the server identifier.
std::optional<common::Ipv4> interface_ipv4(const std::string& ifname);

class Service {
public:
    // Opens the lease journal and builds the configuration. Throws std::runtime_error with a clear message.
    Service(asio::io_context& io, const common::Site& site, ServiceOptions opts, std::shared_ptr<spdlog::logger> log);
    ~Service();
    // Opens one UDP socket per network interface of the site (bound to that device only).
    void start();
    void stop();
    // Applies a new site file: new reservations and options; leases are kept.
    void reload(const common::Site& site);
    [[nodiscard]] const LeaseStore& leases() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace fleetconf::dhcp
