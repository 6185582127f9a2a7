#include "fleetconf/blockcfg/server.hpp"

#include "fleetconf/common/crypto.hpp"
#include "fleetconf/common/files.hpp"
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

std::uint64_t now_ns() {
    return static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
}

// ---------------------------------------------------------------------------------------------------
// ConfigService

ConfigService::ConfigService(std::string name, std::unique_ptr<Device> dev, Store store, std::shared_ptr<spdlog::logger> log)
    : name_(std::move(name)), dev_(std::move(dev)), store_(std::move(store)), log_(std::move(log)) {
    auto c = from_payload(store_.payload());
    if (auto* f = std::get_if<Failure>(&c))
        throw std::runtime_error(name_ + ": generation " + std::to_string(store_.generation()) + ": " + f->message);
    view_ = {std::make_shared<const Config>(std::get<Config>(std::move(c))), store_.current()};
    thread_ = std::thread([this] { writer(); });
}

ConfigService::~ConfigService() {
    {
        std::lock_guard lock(queue_mutex_);
        stopping_ = true;
    }
    queue_cv_.notify_all();
    thread_.join();
    std::lock_guard lock(store_mutex_);
    if (store_.flush()) log_->warn("{}: final flush failed; the second header copy may be one generation behind", name_);
}

ConfigService::Snapshot ConfigService::snapshot() const {
    std::lock_guard lock(view_mutex_);
    return view_;
}

std::vector<GenerationInfo> ConfigService::history() const {
    std::lock_guard lock(store_mutex_);
    return store_.history();
}

void ConfigService::submit(ChangeRequest req, std::string who, std::function<void(Outcome)> done) {
    {
        std::lock_guard lock(queue_mutex_);
        queue_.push_back({std::move(req), std::move(who), std::move(done)});
    }
    queue_cv_.notify_one();
}

Outcome ConfigService::change(ChangeRequest req, std::string who) {
    std::mutex m;
    std::condition_variable cv;
    std::optional<Outcome> result;
    submit(std::move(req), std::move(who), [&](Outcome o) {
        std::lock_guard lock(m);
        result = std::move(o);
        cv.notify_one();
    });
    std::unique_lock lock(m);
    cv.wait(lock, [&] { return result.has_value(); });
    return *result;
}

ConfigService::Stats ConfigService::stats() const {
    std::lock_guard lock(view_mutex_);
    return stats_;
}

void ConfigService::writer() {
    constexpr std::size_t kMaxBatch = 256;
    while (true) {
        std::vector<Pending> batch;
        {
            std::unique_lock lock(queue_mutex_);
            queue_cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
            if (queue_.empty()) return;  // stopping, and nothing left to do
            while (!queue_.empty() && batch.size() < kMaxBatch) {
                batch.push_back(std::move(queue_.front()));
                queue_.pop_front();
            }
        }
        const Snapshot before = snapshot();
        Config work = *before.config;
        const std::uint64_t gen = before.gen.generation;
        bool changed = false;
        std::vector<Outcome> outcomes(batch.size());
        std::vector<bool> accepted(batch.size(), false);
        for (std::size_t i = 0; i < batch.size(); ++i) {
            auto& p = batch[i];
            auto& o = outcomes[i];
            o.previous_generation = gen;
            o.generation = gen;
            // Once an earlier change in this batch is applied, the state is no longer generation `gen`:
            // every compare-and-swap in the rest of the batch must fail, or an update would be lost.
            if (p.req.expect_generation && (*p.req.expect_generation != gen || changed)) {
                o.ec = errc::conflict;
                o.message = "expected generation " + std::to_string(*p.req.expect_generation) + ", the configuration is at " +
                            std::to_string(changed ? gen + 1 : gen) + (changed ? " (being committed)" : "");
                continue;
            }
            if (p.req.rollback_to) {
                std::optional<std::string> old;
                {
                    std::lock_guard lock(store_mutex_);
                    old = store_.read_generation(*p.req.rollback_to);
                }
                if (!old) {
                    o.ec = errc::not_found;
                    o.message = "generation " + std::to_string(*p.req.rollback_to) + " is no longer on the device (see history)";
                    continue;
                }
                auto c = from_payload(*old);
                if (auto* f = std::get_if<Failure>(&c)) {
                    o.ec = f->code;
                    o.message = f->message;
                    continue;
                }
                work = std::get<Config>(std::move(c));
            } else if (auto f = p.req.ops.size() == 1 ? apply(work, p.req.ops[0])  // one op is atomic by itself
                                                      : apply_all(work, p.req.ops)) {
                o.ec = f->code;
                o.message = f->message;
                continue;
            }
            changed = true;
            accepted[i] = true;
        }
        if (changed) {
            std::error_code ec;
            GenerationInfo info;
            const std::string payload = to_payload(work);
            {
                std::lock_guard lock(store_mutex_);
                ec = store_.commit(payload, now_ns());
                info = store_.current();
            }
            if (ec) {
                {
                    std::lock_guard lock(view_mutex_);
                    ++stats_.commit_failures;
                    stats_.last_error = ec.message();
                }
                log_->error("{}: commit of {} change(s) failed: {}; the configuration stays at generation {}", name_,
                            std::count(accepted.begin(), accepted.end(), true), ec.message(), gen);
                for (std::size_t i = 0; i < batch.size(); ++i)
                    if (accepted[i]) {
                        outcomes[i].ec = ec;
                        outcomes[i].message = "the device failed to store the change: " + ec.message();
                    }
            } else {
                // Durable: only now does the view (and so every reader) see it.
                {
                    std::lock_guard lock(view_mutex_);
                    view_ = {std::make_shared<const Config>(std::move(work)), info};
                    ++stats_.commits;
                    stats_.applied += static_cast<std::uint64_t>(std::count(accepted.begin(), accepted.end(), true));
                    stats_.last_error.clear();
                }
                for (std::size_t i = 0; i < batch.size(); ++i)
                    if (accepted[i]) {
                        outcomes[i].generation = info.generation;
                        log_->info("{}: {} by {}: generation {} -> {}", name_, batch[i].req.name, batch[i].who, gen, info.generation);
                    }
            }
        }
        {
            std::lock_guard lock(view_mutex_);
            for (const auto& o : outcomes) stats_.refused += o.ec ? 1 : 0;
        }
        for (std::size_t i = 0; i < batch.size(); ++i) {
            if (!accepted[i] && outcomes[i].ec)
                log_->info("{}: {} by {} refused: {} {}", name_, batch[i].req.name, batch[i].who,
                           code_name(static_cast<errc>(outcomes[i].ec.value())), outcomes[i].message);
            if (batch[i].done) batch[i].done(std::move(outcomes[i]));
        }
    }
}

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
// Server

struct Server::Impl {
    asio::io_context& io;
    std::map<std::string, ConfigService*> devices;
    protocol::KeyRing keys;
    ServerOptions opts;
    std::shared_ptr<spdlog::logger> log;
    tcp::acceptor acceptor;
    std::list<std::weak_ptr<tcp::socket>> sockets;
    std::size_t connections = 0;
    std::uint64_t requests = 0, auth_failures = 0;
    struct Failures {
        int count = 0;
        std::chrono::steady_clock::time_point window_start, blocked_until;
    };
    std::map<std::string, Failures> failures;
    bool stopped = false;

    Impl(asio::io_context& i, std::map<std::string, ConfigService*> d, protocol::KeyRing k, ServerOptions o,
         std::shared_ptr<spdlog::logger> l)
        : io(i), devices(std::move(d)), keys(std::move(k)), opts(o), log(std::move(l)), acceptor(i) {}

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

    asio::awaitable<void> accept_loop();
    asio::awaitable<void> session(std::shared_ptr<tcp::socket> sock, std::string peer);
    void handle(const std::string& body, const std::string& who, std::function<void(std::string)> reply);
};

Server::Server(asio::io_context& io, std::map<std::string, ConfigService*> devices, protocol::KeyRing keys, ServerOptions opts,
               std::shared_ptr<spdlog::logger> log)
    : impl_(std::make_unique<Impl>(io, std::move(devices), std::move(keys), opts, std::move(log))) {}

Server::~Server() = default;

void Server::set_keys(protocol::KeyRing keys) { impl_->keys = std::move(keys); }

std::uint16_t Server::port() const { return impl_->acceptor.local_endpoint().port(); }

Server::Stats Server::stats() const {
    const auto& i = *impl_;
    return {i.requests, i.auth_failures, i.connections, !i.stopped && i.acceptor.is_open()};
}

void Server::start() {
    auto& a = impl_->acceptor;
    const auto& e = impl_->opts.listen;
    const auto addr = asio::ip::make_address(e.host_string());
    tcp::endpoint ep(addr, e.port);
    a.open(ep.protocol());
    a.set_option(tcp::acceptor::reuse_address(true));
    if (ep.address().is_v6()) a.set_option(asio::ip::v6_only(true));
    a.bind(ep);
    a.listen();
    impl_->log->info("control socket listening on {} ({} device(s), {} key(s)){}", common::Endpoint{e.host, port()}.to_string(),
                     impl_->devices.size(), impl_->keys.keys.size(),
                     common::is_loopback(e.host) ? "" : "; NOT loopback: reachable from the network");
    asio::co_spawn(impl_->io, impl_->accept_loop(), common::log_exception(impl_->log, "control accept loop ended"));
}

void Server::stop() {
    impl_->stopped = true;
    std::error_code ec;
    impl_->acceptor.close(ec);
    for (auto& w : impl_->sockets)
        if (auto s = w.lock()) s->close(ec);
    impl_->sockets.clear();
}

void Server::handle(const std::string& body, const std::string& who, std::function<void(std::string)> reply) {
    impl_->handle(body, who, std::move(reply));
}

asio::awaitable<void> Server::Impl::accept_loop() {
    while (!stopped) {
        auto [ec, s] = co_await acceptor.async_accept(use_tuple);
        if (ec) {
            if (ec == asio::error::operation_aborted || stopped) co_return;
            log->warn("control accept: {}", ec.message());
            continue;
        }
        std::error_code pec;
        auto rep = s.remote_endpoint(pec);
        const std::string peer = pec ? "?"
                                     : (rep.address().is_v6() ? "[" + rep.address().to_string() + "]" : rep.address().to_string()) + ":" +
                                           std::to_string(rep.port());
        const std::string peer_addr = pec ? "?" : rep.address().to_string();
        // A refused client is told why (BUSY instead of HELLO), so that it does not blame its key.
        auto turn_away = [&](protocol::BusyReason why, const std::string& text) {
            const auto out = protocol::frame(protocol::encode_busy({why, text}));
            s.non_blocking(true, pec);
            asio::write(s, asio::buffer(out), pec);  // a fresh socket's send buffer takes it at once, or it is dropped
            s.shutdown(tcp::socket::shutdown_send, pec);
            s.close(pec);
        };
        if (blocked(peer_addr)) {
            log->debug("control {}: refused (too many failed authentications)", peer);
            turn_away(protocol::BusyReason::address_blocked, "this address is refused for 60 s after repeated failed authentications");
            continue;
        }
        if (connections >= opts.max_connections) {
            log->warn("control {}: refused, {} connections open", peer, connections);
            turn_away(protocol::BusyReason::too_many_connections,
                      "busy: " + std::to_string(connections) + " connections open (the limit); try again later");
            continue;
        }
        s.set_option(tcp::no_delay(true), pec);  // request/response: never wait to coalesce a reply
        auto sock = std::make_shared<tcp::socket>(std::move(s));
        sockets.remove_if([](const auto& w) { return w.expired(); });
        sockets.push_back(sock);
        ++connections;
        asio::co_spawn(io, session(sock, peer),
                       [this, report = common::log_exception(log, std::string("control ").append(peer).append(": session failed"))](
                           std::exception_ptr e) {
                           --connections;
                           report(e);
                       });
    }
}

asio::awaitable<void> Server::Impl::session(std::shared_ptr<tcp::socket> sock, std::string peer) {
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

    const auto hello = protocol::frame(protocol::encode_hello(nonce));
    auto [wec, wn] = co_await asio::async_write(*sock, asio::buffer(hello), use_tuple);
    if (wec) co_return;

    std::vector<std::uint8_t> buf(16384);
    std::string key_id = "-";
    while (true) {
        timer.expires_after(reader.partial() ? opts.read_timeout : opts.idle_timeout);
        auto result = co_await (sock->async_read_some(asio::buffer(buf), use_tuple) || timer.async_wait(use_tuple));
        if (result.index() == 1) {
            log->info("control {}: closed after {} ({})", peer, reader.partial() ? "a frame stalled" : "idle time",
                      reader.partial() ? "read timeout" : "idle timeout");
            close();
            co_return;
        }
        auto [rec, n] = std::get<0>(result);
        if (rec) {
            if (rec != asio::error::eof && rec != asio::error::operation_aborted) log->debug("control {}: {}", peer, rec.message());
            close();
            co_return;
        }
        if (reader.feed(std::span<const std::uint8_t>(buf.data(), n))) {
            log->warn("control {}: frame larger than {} bytes; closing", peer, opts.max_frame);
            record_failure(peer_addr, "oversized frame");
            close();
            co_return;
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
            const auto out = protocol::frame(ss.reply(*w->reply));
            auto [ec2, n2] = co_await asio::async_write(*sock, asio::buffer(out), use_tuple);
            if (ec2) {
                close();
                co_return;
            }
        }
    }
}

namespace {

std::string error_reply(errc code, const std::string& message, std::uint64_t generation) {
    return json{{"ok", false}, {"generation", generation}, {"error", {{"code", code_name(code)}, {"message", message}}}}.dump();
}

}  // namespace

void Server::Impl::handle(const std::string& body, const std::string& who, std::function<void(std::string)> reply) {
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
                for (const auto& h : dev->history())
                    gens.push_back({{"generation", h.generation}, {"timestamp_ns", h.timestamp_ns}, {"bytes", h.length}});
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
        reply(json{{"ok", true}, {"generation", o.generation}, {"previous_generation", o.previous_generation}}.dump());
    });
}

}  // namespace fleetconf::blockcfg
