// ConsoleServer: the console's socket. One request per connection (Connection: close), read and answered
// within kTimeout; GET /api/v1/events stays open and receives the tick's events (Server-Sent Events).
#include "fleetconf/common/listener.hpp"
#include "fleetconf/common/runtime.hpp"
#include "fleetconf/console/console.hpp"

#include <asio/co_spawn.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/ssl/context.hpp>
#include <asio/ssl/stream.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include <array>
#include <list>

namespace fleetconf::console {

namespace {
constexpr auto use_tuple = asio::experimental::as_tuple(asio::use_awaitable);
using tcp = asio::ip::tcp;

std::int64_t unix_now() {
    return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}
}  // namespace

struct ConsoleServer::Impl : std::enable_shared_from_this<Impl> {
    asio::io_context& io;
    Options opts;
    std::shared_ptr<spdlog::logger> log;
    Console console;
    common::TcpListener listener;
    std::optional<asio::ssl::context> tls;
    asio::steady_timer ticker;
    bool stopped = false;

    // A live view: the events waiting for it, and a timer that wakes its writer.
    struct Stream {
        explicit Stream(asio::any_io_executor ex) : wake(ex) {}
        std::deque<std::string> queue;
        asio::steady_timer wake;
        std::string session;  // the cookie it was opened with: the stream ends with the session
        bool cut = false;
    };
    std::list<std::weak_ptr<Stream>> streams;
    std::uint64_t streams_cut = 0;

    Impl(asio::io_context& i, Options o, Backend b, std::shared_ptr<spdlog::logger> l)
        : io(i), opts(o), log(l), console(o, std::move(b), l), listener(i.get_executor(), "console", o.limits, l), ticker(i) {
        if (!opts.tls_cert.empty()) {
            tls.emplace(asio::ssl::context::tls_server);
            tls->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 | asio::ssl::context::no_sslv3 |
                             asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1 | asio::ssl::context::single_dh_use);
            try {
                tls->use_certificate_chain_file(opts.tls_cert.string());
                tls->use_private_key_file(opts.tls_key.string(), asio::ssl::context::pem);
            } catch (const std::system_error& e) {
                throw std::runtime_error("console TLS pair " + opts.tls_cert.string() + " / " + opts.tls_key.string() + ": " + e.what());
            }
        }
    }

    std::size_t live_streams() {
        streams.remove_if([](const auto& w) { return w.expired(); });
        return streams.size();
    }

    void broadcast(const std::vector<std::string>& events) {
        const auto now = Console::Clock::now();
        for (auto& w : streams) {
            auto st = w.lock();
            if (!st || st->cut) continue;
            if (!console.session_alive(st->session, now) || st->queue.size() + events.size() > kMaxQueued) {
                st->cut = true;  // logged out or expired, or a client that does not read: closed
                ++streams_cut;
            } else {
                st->queue.insert(st->queue.end(), events.begin(), events.end());
            }
            st->wake.cancel();
        }
    }

    asio::awaitable<void> tick_loop() {
        auto self = shared_from_this();
        while (!stopped) {
            broadcast(console.tick(unix_now()));
            ticker.expires_after(std::chrono::seconds(1));
            auto [ec] = co_await ticker.async_wait(use_tuple);
            if (ec) co_return;
        }
    }

    template <class S>
    asio::awaitable<void> conversation(S& s, common::SocketDeadline& deadline, const std::string& peer) {
        common::HttpRequestReader reader(common::HttpLimits{
            .max_url = 2048, .max_header_bytes = 16384, .max_body = 0, .body_limit = [](const common::HttpRequest& r) -> std::size_t {
                return r.method == "POST" ? 65536 : 0;
            }});
        std::array<char, 8192> buf;
        while (reader.state() == common::HttpRequestReader::State::reading) {
            auto [ec, n] = co_await s.async_read_some(asio::buffer(buf), use_tuple);
            if (ec) co_return;
            reader.feed(std::string_view(buf.data(), n));
        }
        deadline.arm(kTimeout);  // the reply must leave within this
        if (reader.state() != common::HttpRequestReader::State::complete) {
            const int status = reader.state() == common::HttpRequestReader::State::too_large ? 413 : 400;
            const auto out = common::http_response(status, "text/plain; charset=utf-8", reader.error() + "\n");
            co_await asio::async_write(s, asio::buffer(out), use_tuple);
            co_return;
        }
        const auto& req = reader.request();
        auto reply = console.handle(req, peer, tls.has_value(), Console::Clock::now());
        if (reply.stream && live_streams() >= kMaxStreams) {
            reply = {503, "application/json", "{\"error\":\"too many live views open; close one\"}\n", "Retry-After: 5\r\n", false};
        }
        if (!reply.stream) {
            auto out = common::http_response(reply.status, reply.content_type, reply.body, reply.headers);
            if (req.method == "HEAD") out.resize(out.size() - reply.body.size());
            co_await asio::async_write(s, asio::buffer(out), use_tuple);
            co_return;
        }
        // Server-Sent Events: every view as it stands, then what each tick changes; a comment line every
        // 15 s keeps proxies from closing an idle stream.
        auto st = std::make_shared<Stream>(io.get_executor());
        st->session = cookie_value(req.header("cookie"), "fleetconf_console");
        streams.push_back(st);
        std::string out =
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n" + reply.headers + "\r\nretry: 2000\n\n";
        for (auto& e : console.initial_events()) out += e;
        while (!stopped && !st->cut) {
            deadline.arm(kTimeout);
            auto [ec, n] = co_await asio::async_write(s, asio::buffer(out), use_tuple);
            if (ec) break;
            deadline.disarm();
            out.clear();
            if (st->queue.empty()) {
                st->wake.expires_after(std::chrono::seconds(15));
                co_await st->wake.async_wait(use_tuple);
                if (st->queue.empty()) out = ": keep-alive\n\n";
            }
            while (!st->queue.empty()) {
                out += st->queue.front();
                st->queue.pop_front();
            }
        }
    }

    asio::awaitable<void> session(std::shared_ptr<tcp::socket> sock, common::AdmissionTicket ticket, std::string peer) {
        (void)ticket;  // holds the connection's slot until the session ends
        auto self = shared_from_this();
        const auto close = common::socket_closer(sock);
        common::SocketDeadline deadline(io.get_executor(), close);
        deadline.arm(kTimeout);
        deadline.start();
        if (!tls) {
            co_await conversation(*sock, deadline, peer);
        } else {
            asio::ssl::stream<tcp::socket&> stream(*sock, *tls);
            auto [ec] = co_await stream.async_handshake(asio::ssl::stream_base::server, use_tuple);
            if (ec) {
                log->debug("console {}: TLS handshake failed: {}", peer, ec.message());
            } else {
                co_await conversation(stream, deadline, peer);
                deadline.arm(std::chrono::seconds(2));
                co_await stream.async_shutdown(use_tuple);
            }
        }
        close();
    }
};

ConsoleServer::ConsoleServer(asio::io_context& io, Options opts, Backend backend, std::shared_ptr<spdlog::logger> log)
    : impl_(std::make_shared<Impl>(io, std::move(opts), std::move(backend), std::move(log))) {}

ConsoleServer::~ConsoleServer() { stop(); }

void ConsoleServer::start() {
    auto& i = *impl_;
    try {
        i.listener.open(i.opts.listen, "console");
    } catch (const std::runtime_error& e) {
        throw std::runtime_error(std::string("console: ") + e.what());
    }
    i.log->info("console on {}://{}/ ({})", i.tls ? "https" : "http", common::host_port(i.opts.listen.host, port()),
                i.console.login_required() ? "login required" : "no login: loopback only");
    auto self = impl_;
    i.listener.start(
        [self](auto sock, common::AdmissionTicket ticket, const std::string& peer) {
            asio::co_spawn(self->io, self->session(std::move(sock), std::move(ticket), peer),
                           common::log_exception(self->log, "console session", spdlog::level::warn));
        },
        [](tcp::socket& s, common::Refusal) {
            common::refuse_with(
                s, common::http_response(503, "application/json", "{\"error\":\"busy: too many connections\"}\n", "Retry-After: 5\r\n"));
        });
    asio::co_spawn(i.io, i.tick_loop(), common::log_exception(i.log, "console tick"));
}

void ConsoleServer::stop() {
    auto& i = *impl_;
    if (i.stopped) return;
    i.stopped = true;
    i.ticker.cancel();
    i.listener.stop();
    for (auto& w : i.streams)
        if (auto st = w.lock()) {
            st->cut = true;
            st->wake.cancel();
        }
}

std::uint16_t ConsoleServer::port() const { return impl_->listener.port(); }

std::string ConsoleServer::metrics() const {
    auto& i = *impl_;
    const auto& c = i.console.counters();
    std::string o;
    auto line = [&](const char* name, const char* type, const char* help, std::initializer_list<std::pair<std::string, double>> v) {
        o += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
        for (const auto& [labels, value] : v)
            o += std::string(name) + labels + " " + std::to_string(static_cast<std::uint64_t>(value)) + "\n";
    };
    line("fleetconf_console_requests_total", "counter", "Console HTTP requests", {{"", static_cast<double>(c.requests)}});
    line("fleetconf_console_logins_total", "counter", "Console logins by result",
         {{"{result=\"ok\"}", static_cast<double>(c.logins)},
          {"{result=\"failed\"}", static_cast<double>(c.login_failures)},
          {"{result=\"throttled\"}", static_cast<double>(c.login_throttled)}});
    line("fleetconf_console_refused_total", "counter", "Console requests refused by reason",
         {{"{reason=\"unauthorized\"}", static_cast<double>(c.unauthorized)}, {"{reason=\"csrf\"}", static_cast<double>(c.csrf_refused)}});
    line("fleetconf_console_actions_total", "counter", "Console actions by result",
         {{"{result=\"ok\"}", static_cast<double>(c.actions)}, {"{result=\"failed\"}", static_cast<double>(c.actions_failed)}});
    line("fleetconf_console_streams", "gauge", "Live views open", {{"", static_cast<double>(i.live_streams())}});
    line("fleetconf_console_streams_cut_total", "counter", "Live views closed for a slow reader or an ended session",
         {{"", static_cast<double>(i.streams_cut)}});
    line("fleetconf_console_sessions", "gauge", "Console sessions", {{"", static_cast<double>(i.console.sessions())}});
    i.listener.metrics(o);
    return o;
}

}  // namespace fleetconf::console
