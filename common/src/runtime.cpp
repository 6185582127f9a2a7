#include "fleetconf/common/runtime.hpp"
#include <cstring>
#include <cstdlib>
#include <cstddef>
#include <unistd.h>
#include <sys/un.h>
#include <sys/socket.h>

#include "fleetconf/common/log.hpp"

#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/executor_work_guard.hpp>
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

struct ServiceThread::Impl {
    explicit Impl(std::string n) : name(std::move(n)), guard(asio::make_work_guard(io)) {}
    std::string name;
    asio::io_context io;
    asio::executor_work_guard<asio::io_context::executor_type> guard;
    std::thread thread;
    std::atomic<bool> running{false};
    std::mutex m;
    std::condition_variable cv;
    bool ended = false;
};

ServiceThread::ServiceThread(std::string name) : impl_(std::make_unique<Impl>(std::move(name))) {}

ServiceThread::~ServiceThread() { finish(std::chrono::milliseconds(0)); }

asio::io_context& ServiceThread::io() { return impl_->io; }
const std::string& ServiceThread::name() const { return impl_->name; }
bool ServiceThread::running() const { return impl_->running; }
bool ServiceThread::on_thread() const { return impl_->thread.get_id() == std::this_thread::get_id(); }

void ServiceThread::start() {
    auto& i = *impl_;
    if (i.running) return;
    i.running = true;
    i.thread = std::thread([&i] {
        try {
            i.io.run();
        } catch (const std::exception& e) {
            log::get("serve")->critical("{} thread: {}", i.name, e.what());
        }
        std::lock_guard g(i.m);
        i.ended = true;
        i.cv.notify_all();
    });
}

void ServiceThread::post(std::function<void()> f) { asio::post(impl_->io, std::move(f)); }

bool ServiceThread::finish(std::chrono::milliseconds grace) {
    auto& i = *impl_;
    i.guard.reset();
    if (!i.thread.joinable()) return true;
    bool clean = true;
    {
        std::unique_lock lock(i.m);
        if (!i.cv.wait_for(lock, grace, [&] { return i.ended; })) {
            if (grace.count() > 0)
                log::get("serve")->warn("{}: work still running {} ms after the stop; abandoning it", i.name, grace.count());
            clean = false;
            i.io.stop();
        }
    }
    i.thread.join();
    i.running = false;
    return clean;
}

bool notify_systemd(const std::string& state) {
    const char* path = std::getenv("NOTIFY_SOCKET");
    if (!path || !*path) return false;
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    const std::size_t len = std::strlen(path);
    if (len >= sizeof sa.sun_path) return false;
    std::memcpy(sa.sun_path, path, len);
    if (sa.sun_path[0] == '@') sa.sun_path[0] = '\0';  // abstract namespace
    const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return false;
    const auto size = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + len);
    const bool ok = ::sendto(fd, state.data(), state.size(), MSG_NOSIGNAL, reinterpret_cast<const sockaddr*>(&sa), size) ==
                    static_cast<ssize_t>(state.size());
    ::close(fd);
    return ok;
}

}  // namespace fleetconf::common
