#include "fleetconf/common/runtime.hpp"

#include "fleetconf/common/log.hpp"

#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/signal_set.hpp>

#include <condition_variable>
#include <csignal>
#include <mutex>
#include <thread>

namespace fleetconf::common {

struct Runtime::Io {
    asio::io_context context;
    asio::signal_set signals{context, SIGINT, SIGTERM};
};

Runtime::Runtime() : io_(std::make_unique<Io>()) {
    io_->signals.add(SIGHUP);
    wait_signal();
}

Runtime::~Runtime() = default;

asio::io_context& Runtime::io() { return io_->context; }

void Runtime::wait_signal() {
    io_->signals.async_wait([this](const std::error_code& ec, int sig) {
        if (ec) return;
        if (sig == SIGHUP) {
            log::get("serve")->info("SIGHUP: reloading");
            request_reload();
        } else if (!stopping_) {
            log::get("serve")->info("{}: stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
            request_stop();
        } else {
            log::get("serve")->warn("second stop signal: stopping now");
            forced_ = true;
            io_->context.stop();
            return;
        }
        wait_signal();
    });
}

void Runtime::request_stop() {
    asio::post(io_->context, [this] {
        if (stopping_) return;
        stopping_ = true;
        for (auto& f : stop_handlers_) f();
    });
}

void Runtime::request_reload() {
    asio::post(io_->context, [this] {
        for (auto& f : reload_handlers_) f();
    });
}

bool Runtime::run(std::chrono::milliseconds grace) {
    // The pending signal wait would keep the loop alive forever; a watchdog thread instead waits for
    // the stop, lets the services finish for up to `grace`, then cancels the signal wait (so the loop can
    // end naturally) and finally stops the loop if work remains.
    std::mutex m;
    std::condition_variable cv;
    bool done = false;
    std::thread watchdog([&] {
        std::unique_lock lock(m);
        while (!done) {
            cv.wait_for(lock, std::chrono::milliseconds(50));
            if (done) break;
            if (!stopping_) continue;
            // Release the signal wait so that the loop ends as soon as the services' work is done.
            asio::post(io_->context, [this] { io_->signals.cancel(); });
            if (cv.wait_for(lock, grace, [&] { return done; })) break;
            log::get("serve")->warn("stop deadline of {} ms passed with work still running; abandoning it", grace.count());
            forced_ = true;
            io_->context.stop();
            break;
        }
    });
    io_->context.run();
    {
        std::lock_guard lock(m);
        done = true;
    }
    cv.notify_all();
    watchdog.join();
    return !forced_;
}

}  // namespace fleetconf::common
