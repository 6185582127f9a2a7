#include "fleetconf/common/runtime.hpp"

#include "fleetconf/common/log.hpp"

#include <asio/post.hpp>

#include <condition_variable>
#include <csignal>
#include <mutex>
#include <thread>

namespace fleetconf::common {

Runtime::Runtime() : signals_(io_, SIGINT, SIGTERM) {
    signals_.add(SIGHUP);
    wait_signal();
}

void Runtime::wait_signal() {
    signals_.async_wait([this](const std::error_code& ec, int sig) {
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
            io_.stop();
            return;
        }
        wait_signal();
    });
}

void Runtime::request_stop() {
    asio::post(io_, [this] {
        if (stopping_) return;
        stopping_ = true;
        for (auto& f : stop_handlers_) f();
    });
}

void Runtime::request_reload() {
    asio::post(io_, [this] {
        for (auto& f : reload_handlers_) f();
    });
}

bool Runtime::run(std::chrono::milliseconds grace) {
    // The pending signal wait would keep io_.run() alive forever; a watchdog thread instead waits for
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
            asio::post(io_, [this] { signals_.cancel(); });
            if (cv.wait_for(lock, grace, [&] { return done; })) break;
            log::get("serve")->warn("stop deadline of {} ms passed with work still running; abandoning it", grace.count());
            forced_ = true;
            io_.stop();
            break;
        }
    });
    io_.run();
    {
        std::lock_guard lock(m);
        done = true;
    }
    cv.notify_all();
    watchdog.join();
    return !forced_;
}

}  // namespace fleetconf::common
