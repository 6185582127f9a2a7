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
#include <future>
#include <optional>
#include <type_traits>
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

// systemd's readiness protocol (sd_notify(3), without libsystemd): sends `state` ("READY=1",
// "RELOADING=1", "STOPPING=1", "STATUS=...") as one datagram to $NOTIFY_SOCKET when it is set (a path, or
// "@name" for an abstract socket). Returns false when there is no socket or the send failed; a no-op
// outside systemd. Type=notify units (examples/systemd) start once the sockets are bound.
bool notify_systemd(const std::string& state);

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

// One service's own thread: its io_context runs there, so that its work and its blocking calls (libgit2
// walks, fdatasync, ...) never delay another service of the process (`fleetconf serve` gives each service
// one; docs/architecture.md). Everything else talks to the service through call(), which runs a function
// on the service's thread.
class ServiceThread {
public:
    explicit ServiceThread(std::string name);
    ~ServiceThread();
    ServiceThread(const ServiceThread&) = delete;
    ServiceThread& operator=(const ServiceThread&) = delete;

    asio::io_context& io();
    [[nodiscard]] const std::string& name() const;
    void start();  // the thread runs the io_context until finish()
    [[nodiscard]] bool on_thread() const;

    // Runs f on the service's thread and returns its result (or rethrows its exception); runs it inline when
    // called from that thread, or when the thread is not running.
    template <typename F>
    auto call(F f) -> std::invoke_result_t<F&> {
        using R = std::invoke_result_t<F&>;
        if (!running() || on_thread()) return f();
        std::promise<R> p;
        auto fut = p.get_future();
        post([&] { fulfil(p, f); });
        return fut.get();
    }
    // As call(), but gives up after `timeout` (nullopt): for the status endpoint, which must answer even when
    // a service's thread is stuck. f is copied: it may run after the caller gave up.
    template <typename F>
    auto try_call(F f, std::chrono::milliseconds timeout) -> std::optional<std::invoke_result_t<F&>> {
        using R = std::invoke_result_t<F&>;
        if (!running() || on_thread()) return f();
        auto p = std::make_shared<std::promise<R>>();
        auto fut = p->get_future();
        post([p, f]() mutable { fulfil(*p, f); });
        if (fut.wait_for(timeout) != std::future_status::ready) return std::nullopt;
        return fut.get();
    }

    // After the service was told to stop: lets the work left on the thread finish for up to `grace`, then
    // stops the loop, and joins. True when the work finished in time.
    bool finish(std::chrono::milliseconds grace);

private:
    [[nodiscard]] bool running() const;
    void post(std::function<void()> f);
    template <typename R, typename F>
    static void fulfil(std::promise<R>& p, F& f) {
        try {
            if constexpr (std::is_void_v<R>) {
                f();
                p.set_value();
            } else {
                p.set_value(f());
            }
        } catch (...) {
            p.set_exception(std::current_exception());
        }
    }
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace fleetconf::common
