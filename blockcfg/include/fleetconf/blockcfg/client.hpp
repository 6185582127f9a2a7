// A blocking client for the blockcfg control protocol (used by the CLI, tests and benchmarks).
#pragma once

#include "fleetconf/blockcfg/protocol.hpp"
#include "fleetconf/common/net.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <memory>
#include <stdexcept>

namespace fleetconf::blockcfg {

// Transport or authentication failure (not an error reply: those come back as {"ok": false, ...}).
class ClientError : public std::runtime_error {
    using std::runtime_error::runtime_error;
};

class Client {
public:
    // Connects and reads the server's hello. Throws ClientError.
    Client(const common::Endpoint& server, protocol::Key key, std::chrono::milliseconds timeout = std::chrono::seconds(10));
    ~Client();
    Client(Client&&) noexcept;
    Client& operator=(Client&&) noexcept;
    // Sends one request and returns the verified reply body. Throws ClientError.
    nlohmann::json call(const nlohmann::json& request);

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace fleetconf::blockcfg
