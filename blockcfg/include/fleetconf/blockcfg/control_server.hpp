// The blockcfg control socket: a TCP listener (common::TcpListener) whose sessions verify each frame
// (protocol.hpp), answer reads from a device's view and queue changes on its ConfigService.
#pragma once

#include "fleetconf/blockcfg/config_service.hpp"
#include "fleetconf/blockcfg/protocol.hpp"
#include "fleetconf/common/admission.hpp"
#include "fleetconf/common/asio_fwd.hpp"
#include "fleetconf/common/net.hpp"

#include <spdlog/logger.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>

namespace fleetconf::blockcfg {

struct ControlServerOptions {
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

class ControlServer {
public:
    // `devices` by name; a request selects one with "device", or omits it when there is only one.
    ControlServer(asio::io_context& io, std::map<std::string, ConfigService*> devices, protocol::KeyRing keys, ControlServerOptions opts,
                  std::shared_ptr<spdlog::logger> log);
    ~ControlServer();
    // Binds and starts accepting; throws std::system_error if the address cannot be bound.
    void start();
    // Stops accepting and closes every connection.
    void stop();
    [[nodiscard]] std::uint16_t port() const;
    // Replaces the key ring (for key rotation on reload); existing connections keep their key.
    void set_keys(protocol::KeyRing keys);
    // Replaces the devices served (reload: devices added and removed); a request already queued on a
    // device that is no longer served completes.
    void set_devices(std::map<std::string, ConfigService*> devices);

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

}  // namespace fleetconf::blockcfg
