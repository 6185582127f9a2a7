#include "fleetconf/blockcfg/routes.hpp"

#include "deadline_io.hpp"

#include "fleetconf/blockcfg/client.hpp"
#include "fleetconf/blockcfg/control_server.hpp"
#include "fleetconf/common/crypto.hpp"
#include "fleetconf/common/files.hpp"

#include <asio/connect.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/write.hpp>

#include <algorithm>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <sys/socket.h>
#include <sys/time.h>

namespace fleetconf::blockcfg {

using common::LeaseRoutes;

std::string RouteTarget::describe() const {
    switch (kind) {
        case LeaseRoutes::Kind::local: return "device " + device + " (this process)";
        case LeaseRoutes::Kind::blockcfg: return "blockcfg editor " + endpoint.to_string() + (device.empty() ? "" : " device " + device);
        case LeaseRoutes::Kind::tlstunnel: return "tlstunnel " + endpoint.to_string();
    }
    return "?";
}

RouteTarget make_route_target(const LeaseRoutes& r, const std::function<ConfigService*(const std::string&)>& local_device) {
    RouteTarget t;
    t.kind = r.kind;
    t.device = r.device;
    if (r.endpoint) t.endpoint = *r.endpoint;
    switch (r.kind) {
        case LeaseRoutes::Kind::local:
            t.local = local_device(r.device);
            if (!t.local)
                throw std::runtime_error("routes: the block device of \"" + r.device + "\" is not served here (is the block service on?)");
            break;
        case LeaseRoutes::Kind::blockcfg: {
            auto ring = load_key_file(r.key_file);
            const auto* k = r.key_id.empty() ? &ring.keys.front() : ring.find(r.key_id);
            if (!k) throw std::runtime_error(r.key_file.string() + ": no key with id \"" + r.key_id + "\"");
            t.key = *k;
            break;
        }
        case LeaseRoutes::Kind::tlstunnel: {
            std::string key;
            if (auto err = common::read_secret_line(r.key_file, key, common::Trim::one_newline)) throw std::runtime_error(*err);
            t.tlstunnel_key = std::move(key);
            break;
        }
    }
    return t;
}

tlstunnel::Command tlstunnel_call(const common::Endpoint& proxy, const std::string& key, const tlstunnel::Command& cmd) {
    const auto frame = tlstunnel::frame_request(common::as_bytes(key), tlstunnel::encode(cmd));
    asio::io_context io;
    asio::ip::tcp::socket sock(io);
    std::error_code ec;
    sock.connect({asio::ip::make_address(proxy.host_string()), proxy.port}, ec);
    if (ec) throw std::runtime_error(proxy.to_string() + ": cannot connect: " + ec.message());
    const timeval tv{10, 0};  // writes: the kernel bounds them; reads: the deadline below
    ::setsockopt(sock.native_handle(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    asio::write(sock, asio::buffer(frame), ec);
    // The proxy answers at once: never hang on a silent peer.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    std::vector<std::uint8_t> in;
    std::optional<tlstunnel::Bytes> der;
    std::string err;
    std::uint8_t buf[65536];
    while (!ec && !der && err.empty()) {
        const auto n = detail::read_before(sock, buf, sizeof buf, deadline, ec, false);
        in.insert(in.end(), buf, buf + n);
        der = tlstunnel::parse_reply(in, err);
    }
    if (!der) throw std::runtime_error(proxy.to_string() + ": " + (!err.empty() ? err : "no complete reply (" + ec.message() + ")"));
    auto reply = tlstunnel::decode(*der, err);
    if (!reply) throw std::runtime_error(proxy.to_string() + ": the reply is not a tlstunnel command: " + err);
    return *reply;
}

std::chrono::milliseconds Backoff::after(int attempts) const {
    auto d = first;
    for (int i = 1; i < attempts && d < max; ++i) d *= 2;
    return std::min(d, max);
}

namespace {

// This process's device: an ordinary change, durable and logged there.
class LocalDriver final : public RouteDriver {
public:
    explicit LocalDriver(RouteTarget t) : t_(std::move(t)) {}
    std::string describe() const override { return t_.describe(); }
    std::optional<Backend> current(const std::string& host) override {
        auto snap = t_.local->snapshot();
        auto it = snap.config->routes.find(host);
        if (it == snap.config->routes.end()) return std::nullopt;
        return it->second;
    }
    Outcome change(const std::string& host, const std::optional<Backend>& backend, const std::string& why) override {
        ChangeRequest req;
        req.name = backend ? "upsert" : "remove";
        req.ops.push_back(Op{backend ? Op::Kind::upsert : Op::Kind::remove, host, backend.value_or(Backend{}), {}});
        auto o = t_.local->change(std::move(req), "dhcp lease (" + why + ")");
        if (o.ec) return {false, o.ec.message() + " " + o.message};
        return {true, "generation " + std::to_string(o.generation)};
    }

private:
    RouteTarget t_;
};

// A blockcfg editor elsewhere, over its authenticated control protocol (one connection per call).
class BlockcfgDriver final : public RouteDriver {
public:
    explicit BlockcfgDriver(RouteTarget t) : t_(std::move(t)) {}
    std::string describe() const override { return t_.describe(); }
    std::optional<Backend> current(const std::string& host) override {
        Client c(t_.endpoint, t_.key);
        nlohmann::json req{{"op", "get"}, {"host", host}};
        if (!t_.device.empty()) req["device"] = t_.device;
        const auto r = c.call(req);
        if (r.value("ok", false) != true) return std::nullopt;  // NOT_FOUND (other errors show at the change)
        auto a = common::parse_ip(r["route"].value("address", ""));
        if (!a) return std::nullopt;
        return Backend{*a, static_cast<std::uint16_t>(r["route"].value("port", 0))};
    }
    Outcome change(const std::string& host, const std::optional<Backend>& backend, const std::string&) override {
        Client c(t_.endpoint, t_.key);
        nlohmann::json req{{"op", backend ? "upsert" : "remove"}, {"host", host}};
        if (backend) {
            req["address"] = common::to_string(backend->address);
            req["port"] = backend->port;
        }
        if (!t_.device.empty()) req["device"] = t_.device;
        const auto r = c.call(req);
        if (r.value("ok", false) != true) return {false, r.value("error", nlohmann::json::object()).dump()};
        return {true, "generation " + std::to_string(r.value("generation", 0))};
    }

private:
    RouteTarget t_;
};

// A tlstunnel proxy, as a client of its own protocol.
class TlstunnelDriver final : public RouteDriver {
public:
    explicit TlstunnelDriver(RouteTarget t) : t_(std::move(t)) {}
    std::string describe() const override { return t_.describe(); }
    std::optional<Backend> current(const std::string& host) override {
        auto r = tlstunnel_call(t_.endpoint, t_.tlstunnel_key, tlstunnel::List{});
        if (const auto* l = std::get_if<tlstunnel::Snis>(&r)) {
            for (const auto& s : l->snis)
                if (s.name == host && s.port >= 0 && s.port <= 65535) return Backend{s.host, static_cast<std::uint16_t>(s.port)};
            return std::nullopt;
        }
        throw std::runtime_error("tlstunnel list: " + tlstunnel::describe(r));
    }
    Outcome change(const std::string& host, const std::optional<Backend>& backend, const std::string&) override {
        tlstunnel::Command cmd = backend ? tlstunnel::Command{tlstunnel::Add{{host, backend->address, backend->port}}}
                                         : tlstunnel::Command{tlstunnel::Remove{host}};
        auto r = tlstunnel_call(t_.endpoint, t_.tlstunnel_key, cmd);
        const auto* res = std::get_if<tlstunnel::Result>(&r);
        if (!res || res->exit != 0) return {false, tlstunnel::describe(r)};
        return {true, "tlstunnel's protocol has no replay protection"};
    }

private:
    RouteTarget t_;
};

}  // namespace

std::unique_ptr<RouteDriver> make_route_driver(RouteTarget target) {
    switch (target.kind) {
        case LeaseRoutes::Kind::local: return std::make_unique<LocalDriver>(std::move(target));
        case LeaseRoutes::Kind::blockcfg: return std::make_unique<BlockcfgDriver>(std::move(target));
        case LeaseRoutes::Kind::tlstunnel: return std::make_unique<TlstunnelDriver>(std::move(target));
    }
    throw std::logic_error("route target kind");
}

RouteSync::RouteSync(RouteTarget target, std::shared_ptr<spdlog::logger> log)
    : RouteSync(make_route_driver(std::move(target)), std::move(log)) {}

RouteSync::RouteSync(std::unique_ptr<RouteDriver> driver, std::shared_ptr<spdlog::logger> log, Backoff backoff)
    : driver_(std::move(driver)), log_(std::move(log)), backoff_(backoff), worker_([this] { run(); }) {
    log_->info("lease-driven routes go to {}", driver_->describe());
}

RouteSync::~RouteSync() { stop(); }

void RouteSync::stop() {
    {
        std::lock_guard lk(mu_);
        if (stopping_) return;
        stopping_ = true;
    }
    cv_.notify_all();
    if (worker_.joinable()) worker_.join();
    std::lock_guard lk(mu_);
    if (!wishes_.empty())
        log_->warn("routes: {} change(s) not applied at stop (they are made again from the leases at the next start)", wishes_.size());
}

void RouteSync::set(const std::string& host, const Backend& backend, std::string why) {
    {
        std::lock_guard lk(mu_);
        wishes_[host] = Wish{backend, backend.address, std::move(why)};
    }
    cv_.notify_all();
}

void RouteSync::clear(const std::string& host, const common::IpAddress& address, std::string why) {
    {
        std::lock_guard lk(mu_);
        wishes_[host] = Wish{std::nullopt, address, std::move(why)};
    }
    cv_.notify_all();
}

void RouteSync::clear_any(const std::string& host, std::string why) {
    {
        std::lock_guard lk(mu_);
        Wish w{std::nullopt, {}, std::move(why)};
        w.anywhere = true;
        wishes_[host] = std::move(w);
    }
    cv_.notify_all();
}

bool RouteSync::wait_idle(std::chrono::milliseconds timeout) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    std::unique_lock lk(mu_);
    while (!wishes_.empty() || busy_) {
        if (std::chrono::steady_clock::now() >= until) return false;
        lk.unlock();
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        lk.lock();
    }
    return true;
}

RouteSync::Counters RouteSync::counters() const {
    std::lock_guard lk(mu_);
    auto c = counters_;
    c.pending = wishes_.size() + (busy_ ? 1 : 0);
    c.retrying =
        static_cast<std::size_t>(std::count_if(wishes_.begin(), wishes_.end(), [](const auto& w) { return w.second.attempts > 0; }));
    return c;
}

common::StatusSource RouteSync::status_source() const {
    auto metrics = [this] {
        const auto c = counters();
        return "# HELP fleetconf_routes_changes_total Lease-driven route changes by outcome\n"
               "# TYPE fleetconf_routes_changes_total counter\n"
               "fleetconf_routes_changes_total{result=\"applied\"} " +
               std::to_string(c.applied) +
               "\n"
               "fleetconf_routes_changes_total{result=\"unchanged\"} " +
               std::to_string(c.unchanged) +
               "\n"
               "fleetconf_routes_changes_total{result=\"failed\"} " +
               std::to_string(c.failed) +
               "\n"
               "# HELP fleetconf_routes_pending Hosts whose route change is not applied yet\n"
               "# TYPE fleetconf_routes_pending gauge\nfleetconf_routes_pending " +
               std::to_string(c.pending) + "\n";
    };
    auto health = [this]() -> common::Health {
        const auto c = counters();
        if (c.retrying > 0)
            return {false, std::to_string(c.retrying) + " host(s) waiting to retry a failed change on " + driver_->describe()};
        return {true, "to " + driver_->describe() + "; " + std::to_string(c.applied) + " changes applied, " + std::to_string(c.pending) +
                          " pending"};
    };
    return {"routes", metrics, health};
}

void RouteSync::run() {
    std::unique_lock lk(mu_);
    while (!stopping_) {
        // The next wish that is due; wait for one otherwise.
        auto now = std::chrono::steady_clock::now();
        auto due = wishes_.end();
        auto earliest = std::chrono::steady_clock::time_point::max();
        for (auto it = wishes_.begin(); it != wishes_.end(); ++it) {
            if (it->second.not_before <= now) {
                due = it;
                break;
            }
            earliest = std::min(earliest, it->second.not_before);
        }
        if (due == wishes_.end()) {
            if (earliest == std::chrono::steady_clock::time_point::max()) cv_.wait(lk);
            else cv_.wait_until(lk, earliest);
            continue;
        }
        const std::string host = due->first;
        Wish w = due->second;
        wishes_.erase(due);
        busy_ = true;
        lk.unlock();
        bool ok = false;
        try {
            ok = apply(host, w);
        } catch (const std::exception& e) {
            log_->warn("routes: {} ({}): {}", host, w.why, e.what());
        }
        lk.lock();
        busy_ = false;
        if (!ok) {
            ++counters_.failed;
            // Retry unless a newer wish for this host arrived meanwhile.
            if (!wishes_.contains(host)) {
                w.attempts++;
                const auto delay = backoff_.after(w.attempts);
                w.not_before = std::chrono::steady_clock::now() + delay;
                log_->warn("routes: {} will be retried in {} ms", host, delay.count());
                wishes_[host] = w;
            }
        }
    }
}

bool RouteSync::apply(const std::string& host, const Wish& w) {
    const auto now = driver_->current(host);
    // Nothing to do: the route is already there, or (removal) gone or no longer points at the lease's address.
    if (w.backend ? (now && *now == *w.backend) : (!now || (!w.anywhere && now->address != w.if_at))) {
        std::lock_guard lk(mu_);
        ++counters_.unchanged;
        return true;
    }
    const std::string what = w.backend ? host + " -> " + w.backend->to_string() : "remove " + host;
    const auto o = driver_->change(host, w.backend, w.why);
    if (!o.ok) {
        log_->warn("routes: {} on {}: {}", what, driver_->describe(), o.detail);
        return false;
    }
    log_->info("routes: {} on {} ({}; {})", what, driver_->describe(), o.detail, w.why);
    std::lock_guard lk(mu_);
    ++counters_.applied;
    return true;
}

std::vector<std::string> LeaseRouter::hosts_of(const LeaseFacts& l, std::uint16_t& port) const {
    std::vector<std::string> hosts;
    if (!site_.services.dhcp.routes) return hosts;
    const auto& r = *site_.services.dhcp.routes;
    port = r.port;
    for (const auto& u : site_.unikernels) {
        const bool by_cid = !u.client_id.empty() && l.client.size() == u.client_id.size() + 1 && l.client[0] == 0xFF &&
                            std::equal(u.client_id.begin(), u.client_id.end(), l.client.begin() + 1);
        if (by_cid || u.mac == l.mac) {
            hosts = u.public_hosts;
            if (u.backend_port) port = *u.backend_port;
            break;
        }
    }
    if (r.fqdn && !l.fqdn.empty() && std::find(hosts.begin(), hosts.end(), l.fqdn) == hosts.end()) hosts.push_back(l.fqdn);
    return hosts;
}

LeaseRouter::LeaseRouter(const common::Site& site, RouteSync& sync, std::filesystem::path state_file, std::shared_ptr<spdlog::logger> log)
    : site_(site), sync_(sync), state_file_(std::move(state_file)), log_(log ? std::move(log) : spdlog::default_logger()) {
    load();
}

namespace {
bool contains(const std::vector<std::string>& v, const std::string& s) { return std::find(v.begin(), v.end(), s) != v.end(); }
}  // namespace

// The state file: {"owned": [{"address", "mac", "client" (hex), "fqdn", "expires", "hosts": [...], "port"}]}
// (docs/lease-routes.md). A file that cannot be read is logged and ignored: the routes it named stay on the
// proxy until their hosts are routed again.
void LeaseRouter::load() {
    if (state_file_.empty()) return;
    std::string text;
    if (auto err = common::read_file_limited(state_file_, 64u << 20, text)) {
        if (std::filesystem::exists(state_file_)) log_->warn("routes: {}: ignored", *err);
        return;
    }
    const auto j = nlohmann::json::parse(text, nullptr, false);
    try {
        for (const auto& o : j.at("owned")) {
            Entry e;
            e.lease.address = *common::Ipv4::parse(o.at("address").get<std::string>());
            e.lease.mac = *common::Mac::parse(o.at("mac").get<std::string>());
            e.lease.client = *common::from_hex(o.at("client").get<std::string>());
            e.lease.fqdn = o.at("fqdn").get<std::string>();
            e.lease.expires = o.at("expires").get<std::uint64_t>();
            e.hosts = o.at("hosts").get<std::vector<std::string>>();
            e.port = o.at("port").get<std::uint16_t>();
            routed_[e.lease.address] = std::move(e);
        }
    } catch (const std::exception& ex) {
        log_->warn("routes: {}: not a state file ({}): ignored", state_file_.string(), ex.what());
        routed_.clear();
    }
    changed();
}

void LeaseRouter::changed() {
    auto owned = std::make_shared<Owned>();
    for (const auto& [a, e] : routed_)
        for (const auto& h : e.hosts) (*owned)[h] = Backend{e.lease.address, e.port};
    // A renewal changes nothing owned: no snapshot swap, no file write (the common case on the DHCP thread).
    if (*owned == *owned_snapshot_) return;
    std::atomic_store(&owned_snapshot_, std::shared_ptr<const Owned>(std::move(owned)));
    if (state_file_.empty()) return;
    nlohmann::json list = nlohmann::json::array();
    for (const auto& [a, e] : routed_)
        list.push_back({{"address", a.to_string()},
                        {"mac", e.lease.mac.to_string()},
                        {"client", common::to_hex(e.lease.client)},
                        {"fqdn", e.lease.fqdn},
                        {"expires", e.lease.expires},
                        {"hosts", e.hosts},
                        {"port", e.port}});
    try {
        const auto text = nlohmann::json{{"owned", list}}.dump(1) + "\n";
        common::write_file_atomic(state_file_, common::as_bytes(text), 0640);
    } catch (const std::exception& e) {
        log_->error("routes: cannot record the owned routes: {}", e.what());
    }
}

void LeaseRouter::drop(const Entry& e, const std::vector<std::string>& keep, const std::string& why) {
    for (const auto& h : e.hosts)
        if (!contains(keep, h)) sync_.clear(h, e.lease.address, why);
}

void LeaseRouter::route(const LeaseFacts& l, bool reconcile) {
    std::uint16_t port = 0;
    auto hosts = hosts_of(l, port);
    const std::string why = "lease of " + l.address.to_string() + " to " + l.mac.to_string();
    // A binding that moved: the old address's routes that the new set does not replace go.
    for (auto it = routed_.begin(); it != routed_.end();) {
        if (it->first != l.address && it->second.lease.client == l.client) {
            drop(it->second, hosts, "binding of " + l.mac.to_string() + " moved to " + l.address.to_string());
            it = routed_.erase(it);
        } else {
            ++it;
        }
    }
    // What this address routed before (another client, or hosts the site no longer gives it).
    if (auto it = routed_.find(l.address); it != routed_.end()) {
        const auto reason = it->second.lease.client != l.client ? "address " + l.address.to_string() + " now leased to " + l.mac.to_string()
                            : reconcile                         ? std::string("no longer in the site file for ") + l.mac.to_string()
                                                                : "lease of " + l.address.to_string() + " changed";
        drop(it->second, hosts, reason);
        routed_.erase(it);
    }
    if (!hosts.empty()) {
        routed_[l.address] = Entry{l, hosts, port};
        for (const auto& h : hosts) sync_.set(h, Backend{l.address, port}, why);
    }
    changed();
}

void LeaseRouter::start(const std::vector<LeaseFacts>& active, std::uint64_t now) { reconcile(active, now, "start"); }

void LeaseRouter::set_site(const common::Site& site, const std::vector<LeaseFacts>& active, std::uint64_t now) {
    site_ = site;
    reconcile(active, now, "reload");
}

void LeaseRouter::reconcile(const std::vector<LeaseFacts>& active, std::uint64_t now, const std::string& why) {
    sweep(active, now);
    for (const auto& l : active)
        if (l.expires > now) route(l, true);
    log_->info("routes: reconciled at {}: {} lease(s) own {} route(s)", why, routed_.size(), owned()->size());
}

void LeaseRouter::bound(const LeaseFacts& l) { route(l, false); }

void LeaseRouter::released(const LeaseFacts& l, const std::string& why) {
    auto it = routed_.find(l.address);
    if (it == routed_.end()) return;
    const Entry e = std::move(it->second);
    routed_.erase(it);
    if (site_.services.dhcp.routes && site_.services.dhcp.routes->remove_on_release)
        drop(e, {}, why + " " + l.address.to_string() + " by " + l.mac.to_string());
    changed();
}

void LeaseRouter::sweep(const std::vector<LeaseFacts>& active, std::uint64_t now) {
    std::map<common::Ipv4, const LeaseFacts*> live;
    for (const auto& l : active)
        if (l.expires > now) live[l.address] = &l;
    std::vector<LeaseFacts> gone;
    for (const auto& [a, e] : routed_) {
        auto it = live.find(a);
        if (it == live.end() || it->second->client != e.lease.client) gone.push_back(e.lease);
    }
    for (const auto& l : gone) released(l, "expiry of");
}

void LeaseRouter::follow(const std::vector<LeaseFacts>& active, std::uint64_t now) {
    sweep(active, now);
    for (const auto& l : active)
        if (l.expires > now)
            if (auto it = routed_.find(l.address); it == routed_.end() || it->second.lease.client != l.client) route(l, false);
}

void LeaseRouter::take_over(const std::vector<LeaseFacts>& active, std::uint64_t now) {
    reconcile(active, now, "duty taken");
    if (!site_.services.dhcp.routes) return;
    const auto owned = this->owned();
    std::size_t checked = 0;
    for (const auto& u : site_.unikernels) {
        if (!u.dhcp) continue;  // its routes are the operator's, not a lease's
        for (const auto& h : u.public_hosts)
            if (!owned->contains(h)) {
                sync_.clear_any(h, "no active lease of " + u.name + " owns it (duty taken over)");
                ++checked;
            }
    }
    if (checked) log_->info("routes: duty taken: {} public host(s) without an active lease are checked for a stale route", checked);
}

void LeaseRouter::restore(const std::string& why) {
    for (const auto& [a, e] : routed_)
        for (const auto& h : e.hosts) sync_.set(h, Backend{a, e.port}, why);
}

std::vector<std::string> LeaseRouter::missing(const Owned& owned, const Config& config) {
    std::vector<std::string> out;
    for (const auto& [h, b] : owned)
        if (auto it = config.routes.find(h); it == config.routes.end() || !(it->second == b)) out.push_back(h);
    return out;
}

}  // namespace fleetconf::blockcfg
