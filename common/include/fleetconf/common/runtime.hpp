// The Asio runtime every daemon shares: an io_context, graceful stop on SIGINT/SIGTERM with a
// deadline, and a reload hook on SIGHUP.
#pragma once

#include "fleetconf/common/asio_fwd.hpp"

#include <spdlog/logger.h>

#include <exception>
#include <memory>
#include <string>

#include <atomic>
#include <chrono>
#include <functional>
#include <vector>

namespace fleetconf::common {

// Completion handler for co_spawn: a coroutine that ends with an exception is logged, never lost.
inline auto log_exception(std::shared_ptr<spdlog::logger> log, std::string what, spdlog::level::level_enum level = spdlog::level::err) {
    return [log = std::move(log), what = std::move(what), level](std::exception_ptr e) {
        if (!e) return;
        try {
            std::rethrow_exception(e);
        } catch (const std::exception& x) {
            log->log(level, "{}: {}", what, x.what());
        }
    };
}

class Runtime {
public:
    Runtime();
    ~Runtime();
    Runtime(const Runtime&) = delete;
    Runtime& operator=(const Runtime&) = delete;

    asio::io_context& io();

    // Called once, on the first SIGINT/SIGTERM or request_stop(): cancel acceptors and sessions here.
    void on_stop(std::function<void()> f) { stop_handlers_.push_back(std::move(f)); }
    // Called on every SIGHUP (or request_reload()).
    void on_reload(std::function<void()> f) { reload_handlers_.push_back(std::move(f)); }

    void request_stop();
    void request_reload();
    [[nodiscard]] bool stopping() const { return stopping_; }

    // Runs until all work has finished after a stop, or `grace` has passed since the stop (then the
    // remaining work is abandoned).
    // Returns true when the stop was clean.
    bool run(std::chrono::milliseconds grace = std::chrono::seconds(5));

private:
    void wait_signal();

    struct Io;  // the io_context and the signal set
    std::unique_ptr<Io> io_;
    std::vector<std::function<void()>> stop_handlers_;
    std::vector<std::function<void()>> reload_handlers_;
    std::atomic<bool> stopping_{false};
    std::atomic<bool> forced_{false};
};

}  // namespace fleetconf::common
