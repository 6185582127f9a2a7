// The blockcfg control socket (control_server.hpp): sessions, frame checks, replies.
#include "fleetconf/blockcfg/control_server.hpp"

#include "fleetconf/common/crypto.hpp"
#include "fleetconf/common/files.hpp"
#include "fleetconf/common/listener.hpp"
#include "fleetconf/common/runtime.hpp"

#include <asio/experimental/as_tuple.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/ip/v6_only.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <list>

namespace fleetconf::blockcfg {

using asio::ip::tcp;
using nlohmann::json;
constexpr auto use_tuple = asio::experimental::as_tuple(asio::use_awaitable);

// ---------------------------------------------------------------------------------------------------
// Keys

protocol::KeyRing load_key_file(const std::filesystem::path& p) {
    std::string text, error;
    if (auto err = common::read_secret_file(p, 1 << 20, text)) throw std::runtime_error(*err);
    auto ring = protocol::parse_key_file(text, error);
    if (!ring) throw std::runtime_error(p.string() + ": " + error);
    return *ring;
}

protocol::Key create_key_file(const std::filesystem::path& p, const std::string& key_id) {
    if (!protocol::valid_key_id(key_id)) throw std::runtime_error("invalid key id \"" + key_id + "\"");
    protocol::Key k{key_id, common::random_bytes(32)};
    const std::string text =
        "# fleetconf blockcfg control keys: KEY-ID BASE64-SECRET (keep this file secret)\n" + protocol::format_key_line(k);
    int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) throw std::system_error(errno, std::generic_category(), p.string() + ": cannot create key file");
    ::fchmod(fd, 0600);
    const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && ::fsync(fd) == 0;
    ::close(fd);
    if (!ok) throw std::runtime_error(p.string() + ": cannot write key file");
    return k;
}

// ---------------------------------------------------------------------------------------------------
// The control socket

struct ControlServer::Impl {
    asio::io_context& io;
    std::map<std::string, ConfigService*> devices;
    protocol::KeyRing keys;
    ControlServerOptions opts;
    std::shared_ptr<spdlog::logger> log;
    common::TcpListener listener;
    std::uint64_t requests = 0, auth_failures = 0;
    struct Failures {
        int count = 0;
        std::chrono::steady_clock::time_point window_start, blocked_until;
    };
    std::map<std::string, Failures> failures;
    bool stopped = false;

    Impl(asio::io_context& i, std::map<std::string, ConfigService*> d, protocol::KeyRing k, ControlServerOptions o,
         std::shared_ptr<spdlog::logger> l)
        : io(i), devices(std::move(d)), keys(std::move(k)), opts(o), log(l), listener(i.get_executor(), "block", o.limits, l) {}

    bool blocked(const std::string& peer) {
        auto it = failures.find(peer);
        return it != failures.end() && std::chrono::steady_clock::now() < it->second.blocked_until;
    }

    void record_failure(const std::string& peer, const std::string& why) {
        const auto now = std::chrono::steady_clock::now();
        auto& f = failures[peer];
        if (now - f.window_start > opts.failure_window) {
            f.window_start = now;
            f.count = 0;
        }
        ++f.count;
        ++auth_failures;
        log->warn("control {}: authentication failed: {} ({} in the last {} s)", peer, why, f.count, opts.failure_window.count());
        if (f.count >= opts.max_auth_failures) {
            f.blocked_until = now + opts.block_time;
            log->warn("control {}: {} failed authentications; refusing its connections for {} s", peer, f.count, opts.block_time.count());
        }
        if (failures.size() > 10000) failures.clear();  // bounded memory under a spray of addresses
    }

    void accept(std::shared_ptr<tcp::socket> sock, common::AdmissionTicket ticket, const std::string& peer);
    asio::awaitable<void> session(std::shared_ptr<tcp::socket> sock, common::AdmissionTicket ticket, std::string peer);
    void handle(const std::string& body, const std::string& who, std::function<void(std::string)> reply);
};

ControlServer::ControlServer(asio::io_context& io, std::map<std::string, ConfigService*> devices, protocol::KeyRing keys,
                             ControlServerOptions opts, std::shared_ptr<spdlog::logger> log)
    : impl_(std::make_unique<Impl>(io, std::move(devices), std::move(keys), opts, std::move(log))) {}

ControlServer::~ControlServer() = default;

void ControlServer::set_keys(protocol::KeyRing keys) { impl_->keys = std::move(keys); }
void ControlServer::set_devices(std::map<std::string, ConfigService*> devices) { impl_->devices = std::move(devices); }

std::uint16_t ControlServer::port() const { return impl_->listener.port(); }

ControlServer::Stats ControlServer::stats() const {
    const auto& i = *impl_;
    return {i.requests, i.auth_failures, i.listener.admission().stats().open, !i.stopped && i.listener.listening()};
}

void ControlServer::metrics(std::string& out) const { impl_->listener.metrics(out); }

void ControlServer::start() {
    auto& i = *impl_;
    i.listener.open(i.opts.listen, "control socket");
    i.log->info("control socket serves {} device(s) with {} key(s)", i.devices.size(), i.keys.keys.size());
    i.listener.start([&i](auto sock, auto ticket, const std::string& peer) { i.accept(std::move(sock), std::move(ticket), peer); },
                     [](tcp::socket& s, common::Refusal why) {
                         // A refused client is told why (BUSY instead of HELLO), so that it does not blame its key.
                         const std::string text = why == common::Refusal::address_full ? "busy: too many connections from this address"
                                                  : why == common::Refusal::unauthenticated_full
                                                      ? "busy: too many connections are logging in; try again in a few seconds"
                                                      : "busy: too many connections open; try again later";
                         const auto out = protocol::frame(protocol::encode_busy({protocol::BusyReason::too_many_connections, text}));
                         common::refuse_with(s, std::string_view(reinterpret_cast<const char*>(out.data()), out.size()));
                     });
}

void ControlServer::stop() {
    impl_->stopped = true;
    impl_->listener.stop();
}

void ControlServer::handle(const std::string& body, const std::string& who, std::function<void(std::string)> reply) {
    impl_->handle(body, who, std::move(reply));
}

void ControlServer::Impl::accept(std::shared_ptr<tcp::socket> sock, common::AdmissionTicket ticket, const std::string& peer) {
    const std::string peer_addr = peer.substr(0, peer.rfind(':'));
    if (blocked(peer_addr)) {
        log->debug("control {}: refused (too many failed authentications)", peer);
        const auto out = protocol::frame(protocol::encode_busy(
            {protocol::BusyReason::address_blocked, "this address is refused for 60 s after repeated failed authentications"}));
        common::refuse_with(*sock, std::string_view(reinterpret_cast<const char*>(out.data()), out.size()));
        return;
    }
    asio::co_spawn(io, session(std::move(sock), std::move(ticket), peer),
                   common::log_exception(log, std::string("control ").append(peer).append(": session failed")));
}

asio::awaitable<void> ControlServer::Impl::session(std::shared_ptr<tcp::socket> sock, common::AdmissionTicket ticket, std::string peer) {
    using namespace asio::experimental::awaitable_operators;
    const std::string peer_addr = peer.substr(0, peer.rfind(':'));
    auto close = [&] {
        std::error_code ec;
        sock->shutdown(tcp::socket::shutdown_both, ec);
        sock->close(ec);
    };
    protocol::Nonce nonce;
    common::random_bytes(nonce);
    protocol::ServerSession ss(keys, nonce);
    protocol::FrameReader reader(opts.max_frame);
    asio::steady_timer timer(io);
    // Phase deadlines (docs/limits.md): the whole login (HELLO to the first verified request) within the
    // login grace; then a started frame completes within read_timeout and a reply is written within it,
    // and the time between requests is idle_timeout. Bytes arriving do not move a deadline.
    using Clock = std::chrono::steady_clock;
    auto phase_end = Clock::now() + opts.limits.login_grace;
    const char* phase = "login grace";
    auto write_all = [&](const std::vector<std::uint8_t>& out) -> asio::awaitable<bool> {
        timer.expires_at(phase_end);
        auto r = co_await (asio::async_write(*sock, asio::buffer(out), use_tuple) || timer.async_wait(use_tuple));
        if (r.index() == 0 && !std::get<0>(std::get<0>(r))) co_return true;
        if (r.index() == 1) log->info("control {}: closed: the client did not read its reply", peer);
        close();
        co_return false;
    };

    if (!co_await write_all(protocol::frame(protocol::encode_hello(nonce)))) co_return;

    std::vector<std::uint8_t> buf(16384);
    std::string key_id = "-";
    while (true) {
        timer.expires_at(phase_end);
        auto result = co_await (sock->async_read_some(asio::buffer(buf), use_tuple) || timer.async_wait(use_tuple));
        if (result.index() == 1) {
            log->info("control {}: closed: {} over", peer, phase);
            close();
            co_return;
        }
        auto [rec, n] = std::get<0>(result);
        if (rec) {
            if (rec != asio::error::eof && rec != asio::error::operation_aborted) log->debug("control {}: {}", peer, rec.message());
            close();
            co_return;
        }
        const bool was_partial = reader.partial();
        if (reader.feed(std::span<const std::uint8_t>(buf.data(), n))) {
            log->warn("control {}: frame larger than {} bytes; closing", peer, opts.max_frame);
            record_failure(peer_addr, "oversized frame");
            close();
            co_return;
        }
        if (!was_partial && reader.partial()) {
            // A frame started: it has read_timeout to arrive whole (and, before login, no more than the grace).
            const auto end = Clock::now() + opts.read_timeout;
            if (ticket.is_authenticated() || end < phase_end) {
                phase_end = end;
                phase = "read timeout (a frame stalled)";
            }
        }
        while (auto body = reader.next()) {
            protocol::Verified v;
            std::string why;
            if (auto ec = ss.on_request(*body, v, why)) {
                record_failure(peer_addr, why);
                close();
                co_return;
            }
            key_id = v.key->id;
            ticket.authenticated();
            ++requests;
            // Wait for the answer (changes are answered by the writer thread once durable).
            struct Wait {
                asio::steady_timer t;
                std::optional<std::string> reply;
                explicit Wait(asio::io_context& i) : t(i, asio::steady_timer::time_point::max()) {}
            };
            auto w = std::make_shared<Wait>(io);
            handle(v.body, peer + " key " + key_id, [w](std::string r) {
                asio::post(w->t.get_executor(), [w, r = std::move(r)]() mutable {
                    w->reply = std::move(r);
                    w->t.cancel();
                });
            });
            if (!w->reply) co_await w->t.async_wait(use_tuple);
            if (!w->reply) {
                close();
                co_return;
            }
            phase_end = Clock::now() + opts.read_timeout;
            if (!co_await write_all(protocol::frame(ss.reply(*w->reply)))) co_return;
            // The next phase: idle until a frame starts, or (pipelined) the rest of a started one.
            phase_end = Clock::now() + (reader.partial() ? opts.read_timeout : opts.idle_timeout);
            phase = reader.partial() ? "read timeout (a frame stalled)" : "idle timeout";
        }
    }
}

namespace {

std::string error_reply(errc code, const std::string& message, std::uint64_t generation) {
    return json{{"ok", false}, {"generation", generation}, {"error", {{"code", code_name(code)}, {"message", message}}}}.dump();
}

}  // namespace

void ControlServer::Impl::handle(const std::string& body, const std::string& who, std::function<void(std::string)> reply) {
    json j = json::parse(body, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return reply(error_reply(errc::bad_request, "request body is not a JSON object", 0));
    ConfigService* dev = nullptr;
    if (auto d = j.find("device"); d != j.end()) {
        if (!d->is_string()) return reply(error_reply(errc::bad_request, "\"device\" must be a string", 0));
        auto it = devices.find(d->get<std::string>());
        if (it == devices.end()) return reply(error_reply(errc::not_found, "no device \"" + d->get<std::string>().substr(0, 64) + "\"", 0));
        dev = it->second;
        j.erase("device");
    } else if (devices.size() == 1) {
        dev = devices.begin()->second;
    } else {
        std::string names;
        for (const auto& [n, _] : devices) names += (names.empty() ? "" : ", ") + n;
        return reply(error_reply(errc::bad_request, "several devices are served; name one with \"device\" (" + names + ")", 0));
    }
    auto parsed = parse_request(j);
    const auto snap = dev->snapshot();
    if (auto* f = std::get_if<Failure>(&parsed)) return reply(error_reply(f->code, f->message, snap.gen.generation));
    auto& req = std::get<Request>(parsed);
    if (auto* r = std::get_if<ReadRequest>(&req)) {
        json out{{"ok", true}, {"generation", snap.gen.generation}};
        switch (r->kind) {
            case ReadRequest::Kind::list: out["routes"] = routes_json(*snap.config); break;
            case ReadRequest::Kind::get: {
                std::optional<Backend> b;
                if (r->host == kDefaultRoute) b = snap.config->default_route;
                else if (auto it = snap.config->routes.find(r->host); it != snap.config->routes.end()) b = it->second;
                if (!b) return reply(error_reply(errc::not_found, "no route for " + r->host, snap.gen.generation));
                auto rj = to_json(*b);
                rj["host"] = r->host;
                out["route"] = rj;
                break;
            }
            case ReadRequest::Kind::status: {
                const auto g = dev->geometry();
                out["device"] = dev->name();
                out["timestamp_ns"] = snap.gen.timestamp_ns;
                out["routes"] = snap.config->routes.size() + (snap.config->default_route ? 1 : 0);
                out["sector_size"] = g.sector_size;
                out["slots"] = g.slots;
                out["max_payload_bytes"] = g.max_payload();
                out["payload_bytes"] = snap.gen.length;
                break;
            }
            case ReadRequest::Kind::history: {
                json gens = json::array();
                for (const auto& h : dev->history()) {
                    json change = json::array();
                    for (const auto& n : dev->change_of(h.generation)) change.push_back({{"by", n.by}, {"what", n.what}});
                    gens.push_back(
                        {{"generation", h.generation}, {"timestamp_ns", h.timestamp_ns}, {"bytes", h.length}, {"change", change}});
                }
                out["generations"] = gens;
                break;
            }
        }
        return reply(out.dump());
    }
    auto& change = std::get<ChangeRequest>(req);
    dev->submit(std::move(change), who, [reply = std::move(reply)](Outcome o) {
        if (o.ec)
            return reply(
                error_reply(o.ec.category() == category() ? static_cast<errc>(o.ec.value()) : errc::internal, o.message, o.generation));
        json r{{"ok", true}, {"generation", o.generation}, {"previous_generation", o.previous_generation}};
        if (!o.warnings.empty()) r["warnings"] = o.warnings;
        reply(r.dump());
    });
}

}  // namespace fleetconf::blockcfg
