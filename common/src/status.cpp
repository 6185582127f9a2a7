#include "fleetconf/common/status.hpp"

#include "fleetconf/common/listener.hpp"
#include "fleetconf/common/runtime.hpp"

#include <asio/co_spawn.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <nlohmann/json.hpp>

#include <sys/resource.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <list>

namespace fleetconf::common {

namespace {
constexpr auto use_tuple = asio::experimental::as_tuple(asio::use_awaitable);

// Seconds with millisecond resolution: "%g" would round a Unix time to 6 digits (an error of hours).
std::string seconds(double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.3f", v);
    return buf;
}

// What the kernel says about this process; zero when /proc is not there.
std::uint64_t resident_bytes() {
    std::ifstream f("/proc/self/statm");
    std::uint64_t size = 0, resident = 0;
    if (!(f >> size >> resident)) return 0;
    return resident * static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
}

std::uint64_t open_fds() {
    std::error_code ec;
    std::uint64_t n = 0;
    for (std::filesystem::directory_iterator it("/proc/self/fd", ec), end; !ec && it != end; it.increment(ec)) ++n;
    return n > 0 ? n - 1 : 0;  // the iterator's own descriptor
}

double cpu_seconds() {
    rusage ru{};
    ::getrusage(RUSAGE_SELF, &ru);
    auto s = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6; };
    return s(ru.ru_utime) + s(ru.ru_stime);
}

Health checked(const StatusSource& s) {
    if (!s.health) return {true, "running"};
    try {
        return s.health();
    } catch (const std::exception& e) {
        return {false, std::string("health check failed: ") + e.what()};
    }
}
}  // namespace

StatusRegistry::StatusRegistry() : started_(std::chrono::system_clock::now()) {}

Health StatusRegistry::health(std::string& json_out) const {
    nlohmann::json services = nlohmann::json::object();
    Health all{true, ""};
    for (const auto& s : sources_) {
        const auto h = checked(s);
        services[s.name] = {{"ok", h.ok}, {"detail", h.detail}};
        if (h.degraded) services[s.name]["degraded"] = true;
        if (!h.ok || h.degraded) {
            all.ok = all.ok && h.ok;
            all.degraded = all.degraded || h.degraded;
            all.detail += (all.detail.empty() ? "" : "; ") + s.name + ": " + h.detail;
        }
    }
    const auto uptime = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now() - started_).count();
    const char* status = !all.ok ? "failing" : all.degraded ? "degraded" : "ok";
    json_out = nlohmann::json{{"status", status}, {"uptime_s", uptime}, {"services", services}}.dump(
                   2, ' ', false, nlohmann::json::error_handler_t::replace) +
               "\n";
    return all;
}

std::string StatusRegistry::metrics() const {
    std::string out;
    std::string up = "# HELP fleetconf_up 1 when the service reports itself healthy (see /health)\n# TYPE fleetconf_up gauge\n";
    for (const auto& s : sources_) {
        if (s.metrics) {
            try {
                out += s.metrics();
            } catch (const std::exception&) {
                // The health line below says what is wrong; a broken source must not hide the others.
            }
        }
        up += "fleetconf_up{service=\"" + s.name + "\"} " + (checked(s).ok ? "1" : "0") + "\n";
    }
    out += up;
    const auto start = std::chrono::duration<double>(started_.time_since_epoch()).count();
    out +=
        "# HELP process_start_time_seconds Start time of the process since the Unix epoch in seconds\n"
        "# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds " +
        seconds(start) + "\n";
    out +=
        "# HELP process_cpu_seconds_total User and system CPU time spent in seconds\n"
        "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total " +
        seconds(cpu_seconds()) + "\n";
    out +=
        "# HELP process_resident_memory_bytes Resident memory size in bytes\n"
        "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes " +
        std::to_string(resident_bytes()) + "\n";
    out +=
        "# HELP process_open_fds Number of open file descriptors\n"
        "# TYPE process_open_fds gauge\nprocess_open_fds " +
        std::to_string(open_fds()) + "\n";
    return out;
}

StatusReply status_reply(const StatusRegistry& reg, const HttpRequest& req) {
    const std::string_view url = req.url;
    const auto path = url.substr(0, url.find('?'));
    if (path != "/health" && path != "/metrics")
        return {404, "text/plain; charset=utf-8", "not found: GET /health (JSON) or /metrics (Prometheus)\n"};
    if (req.method != "GET" && req.method != "HEAD") return {405, "text/plain; charset=utf-8", "GET or HEAD only\n"};
    if (path == "/metrics") return {200, "text/plain; version=0.0.4; charset=utf-8", reg.metrics()};
    StatusReply r{200, "application/json", ""};
    if (!reg.health(r.body).ok) r.status = 503;
    return r;
}

struct StatusServer::Impl : std::enable_shared_from_this<Impl> {
    asio::io_context& io;
    Endpoint listen;
    const StatusRegistry& reg;
    std::shared_ptr<spdlog::logger> log;
    TcpListener listener;
    bool stopped = false;

    Impl(asio::io_context& i, Endpoint l, const StatusRegistry& r, std::shared_ptr<spdlog::logger> lg, const ListenerLimits& limits)
        : io(i), listen(l), reg(r), log(lg), listener(i.get_executor(), "status", limits, lg) {}

    // One request per connection, read and answered within kTimeout as a whole (a trickling client is cut).
    asio::awaitable<void> session(std::shared_ptr<asio::ip::tcp::socket> s, AdmissionTicket ticket) {
        using namespace asio::experimental::awaitable_operators;
        (void)ticket;  // holds the connection's slot until the session ends
        auto self = shared_from_this();
        HttpRequestReader reader(HttpLimits{.max_url = 1024, .max_header_bytes = 8192, .max_body = 0, .body_limit = {}});
        asio::steady_timer deadline(io, kTimeout);
        std::array<char, 4096> buf;
        std::string out;
        while (reader.state() == HttpRequestReader::State::reading) {
            auto r = co_await (s->async_read_some(asio::buffer(buf), use_tuple) || deadline.async_wait(use_tuple));
            if (r.index() == 1) co_return;  // timeout: close
            auto [ec, n] = std::get<0>(r);
            if (ec) co_return;
            reader.feed(std::string_view(buf.data(), n));
        }
        if (reader.state() == HttpRequestReader::State::complete) {
            auto reply = status_reply(reg, reader.request());
            if (reply.status == 200 && reply.content_type.rfind("text/plain", 0) == 0) listener.metrics(reply.body);  // /metrics
            out = http_response(reply.status, reply.content_type, reply.body);
            if (reader.request().method == "HEAD") out.resize(out.size() - reply.body.size());
        } else {
            const int status = reader.state() == HttpRequestReader::State::too_large ? 413 : 400;
            out = http_response(status, "text/plain; charset=utf-8", reader.error() + "\n");
        }
        deadline.expires_after(kTimeout);  // a client that does not read its reply is cut
        co_await (asio::async_write(*s, asio::buffer(out), use_tuple) || deadline.async_wait(use_tuple));
        std::error_code ec;
        s->shutdown(asio::ip::tcp::socket::shutdown_both, ec);
        s->close(ec);
    }
};

StatusServer::StatusServer(asio::io_context& io, Endpoint listen, const StatusRegistry& reg, std::shared_ptr<spdlog::logger> log,
                           const ListenerLimits& limits)
    : impl_(std::make_shared<Impl>(io, listen, reg, std::move(log), limits)) {}

StatusServer::~StatusServer() { stop(); }

void StatusServer::start() {
    auto& i = *impl_;
    try {
        i.listener.open(i.listen, "status");
    } catch (const std::runtime_error& e) {
        throw std::runtime_error(std::string("status endpoint: ") + e.what());
    }
    i.log->info("status on http://{} (/health, /metrics)", host_port(i.listen.host, port()));
    auto self = impl_;
    i.listener.start(
        [self](auto sock, AdmissionTicket ticket, const std::string&) {
            asio::co_spawn(self->io, self->session(std::move(sock), std::move(ticket)),
                           log_exception(self->log, "status session", spdlog::level::warn));
        },
        [](asio::ip::tcp::socket& s, Refusal) {
            refuse_with(
                s, http_response(503, "text/plain; charset=utf-8", "busy: too many connections; try again later\n", "Retry-After: 5\r\n"));
        });
}

void StatusServer::stop() {
    auto& i = *impl_;
    if (i.stopped) return;
    i.stopped = true;
    i.listener.stop();
}

std::uint16_t StatusServer::port() const { return impl_->listener.port(); }

void StatusServer::metrics(std::string& out) const { impl_->listener.metrics(out); }

}  // namespace fleetconf::common
