// The DHCP service's life cycle: its files, the lease store it opens (the journal, with what recovery
// found), start (one socket per network interface), reload and stop. The receive loop and the group commit
// are io.cpp's; the control channel and the metrics control.cpp's.
#include "service_impl.hpp"

#include "fleetconf/common/runtime.hpp"
#include "fleetconf/dhcp/pg_store.hpp"

#include <asio/co_spawn.hpp>
#include <asio/ip/udp.hpp>
#include <asio/post.hpp>

#include <algorithm>
#include <set>

#include <ifaddrs.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

namespace fleetconf::dhcp {

common::ServiceInfo service_info() { return {"dhcp", true, "DHCPv4 server (RFC 2131) with site options"}; }

namespace {
// Every IPv4 address of this host with its interface (getifaddrs), for interface_ipv4 and the check below.
std::vector<std::pair<std::string, common::Ipv4>> local_ipv4() {
    std::vector<std::pair<std::string, common::Ipv4>> out;
    ifaddrs* list = nullptr;
    if (::getifaddrs(&list) != 0) return out;
    for (ifaddrs* i = list; i; i = i->ifa_next)
        if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET)
            out.emplace_back(i->ifa_name, common::Ipv4{ntohl(reinterpret_cast<const sockaddr_in*>(i->ifa_addr)->sin_addr.s_addr)});
    ::freeifaddrs(list);
    return out;
}
}  // namespace

std::optional<common::Ipv4> interface_ipv4(const std::string& ifname) {
    for (const auto& [name, a] : local_ipv4())
        if (name == ifname) return a;
    return std::nullopt;
}

namespace {

// Safe defaults (issue 23): the server identifier (option 54) is where clients send renewals (RFC 2131
// 4.4.5). When it is not an address of this host (the gateway is a router, and no server_address is set),
// renewals go to the router and fail: say so, with the key to set.
void warn_foreign_server_ids(const common::Site& site, const Config& cfg, spdlog::logger& log) {
    const auto mine = local_ipv4();
    for (std::size_t i = 0; i < cfg.networks.size() && i < site.networks.size(); ++i) {
        const auto& n = cfg.networks[i];
        if (std::any_of(mine.begin(), mine.end(), [&](const auto& m) { return m.second == n.server_id; })) continue;
        log.warn(
            "network {}: the server identifier {} ({}) is not an address of this host: clients will send their renewals "
            "there; set /networks/{}/server_address to this server's address on {}",
            n.name, n.server_id.to_string(),
            site.networks[i].server_address ? "server_address" : "the gateway, as no server_address is set", i, n.interface);
    }
}
}  // namespace

using asio::ip::udp;

std::filesystem::path lease_file(const common::Site& site) { return site.services.data_dir / "dhcp" / "leases.journal"; }
std::filesystem::path control_socket(const common::Site& site) { return site.services.data_dir / "dhcp" / "control.sock"; }

Service::Service(asio::io_context& io, const common::Site& site, ServiceOptions opts, std::shared_ptr<spdlog::logger> log)
    : impl_(std::make_unique<Impl>(io, std::move(opts), std::move(log))) {
    impl_->owner = this;
    if (impl_->opts.lease_file.empty()) impl_->opts.lease_file = lease_file(site);
    if (impl_->opts.control_socket.empty()) impl_->opts.control_socket = control_socket(site);
    if (!impl_->opts.control_http && site.services.dhcp.control_http) {
        impl_->opts.control_http = site.services.dhcp.control_http;
        impl_->opts.control_key_file = site.services.dhcp.control_key_file;
    }
    impl_->control_limits = site.services.limits_for("dhcp-control");
    impl_->cfg = make_config(site, interface_ipv4);
    warn_foreign_server_ids(site, impl_->cfg, *impl_->log);
    impl_->site_text = site.text;
    impl_->site_digest = site.digest;
    if (impl_->opts.lease_store) {
        impl_->store = impl_->opts.lease_store();
        if (!impl_->store) throw std::runtime_error("the lease store factory returned no store");
        impl_->log->info("leases: {} in the embedder's store", impl_->store->all().size());
        return;
    }
    if (site.services.dhcp.leases.type == common::LeaseDatabase::Type::postgresql) {
        char host[256] = {};
        ::gethostname(host, sizeof host - 1);
        auto* im = impl_.get();
        impl_->store = std::make_unique<pg::PgLeaseStore>(
            site.services.dhcp.leases, std::string(host) + ":" + std::to_string(::getpid()),
            [im](std::function<void()> f) { asio::post(im->io, std::move(f)); }, impl_->log);
        return;
    }
    std::vector<std::string> warnings;
    auto j = std::make_unique<JournalLeaseStore>(impl_->opts.lease_file, &warnings);
    for (const auto& w : warnings) impl_->log->warn("{}", w);
    const auto& rec = j->recovery();
    for (const auto& r : rec.damaged)
        impl_->log->error("leases: {}: damaged region at offset {}, {} bytes: skipped; every intact record after it kept",
                          impl_->opts.lease_file.string(), r.offset, r.length);
    if (!rec.damaged.empty())
        impl_->log->error(
            "leases: {}: {} damaged region(s){}; the damaged file was copied to {} and the journal rewritten "
            "with every intact record",
            impl_->opts.lease_file.string(), rec.damaged.size(),
            rec.missing_records ? ", " + std::to_string(rec.missing_records) + " record(s) lost with them" : "", rec.damaged_copy.string());
    impl_->log->info("leases: {} ({} records replayed, {} leases)", impl_->opts.lease_file.string(), j->records(), j->size());
    impl_->journal = j.get();
    impl_->store = std::move(j);
}

Service::~Service() = default;

const LeaseStore& Service::leases() const { return *impl_->store; }

bool Service::has_duty() const { return impl_->store->has_duty(); }

std::uint64_t Service::acks_sent() const { return impl_->stats.sent_by_type[5]; }

std::uint16_t Service::local_port() const { return impl_->sockets.empty() ? 0 : impl_->opts.server_port; }

// A reload is all or nothing: the new configuration is built and every new interface's socket opened
// before anything changes; a failure (an interface that does not exist, a network without a server
// address) throws and leaves the running configuration and sockets as they were.
void Service::reload(const common::Site& site) {
    auto& im = *impl_;
    auto cfg = make_config(site, interface_ipv4);
    std::set<std::string> wanted, have;
    for (const auto& n : cfg.networks) wanted.insert(n.interface);
    for (const auto& s : im.sockets) have.insert(s->ifname);
    const auto before = im.sockets.size();
    try {
        for (const auto& n : cfg.networks)
            if (!have.count(n.interface)) {
                im.open_socket(n);
                have.insert(n.interface);
            }
    } catch (...) {
        std::error_code ec;
        for (auto i = before; i < im.sockets.size(); ++i) {
            im.sockets[i]->closed = true;
            im.sockets[i]->sock.close(ec);
            im.retired.push_back(std::move(im.sockets[i]));
        }
        im.sockets.resize(before);
        throw;
    }
    // A network whose pools changed is no longer known to be exhausted (its counter stays).
    for (const auto& n : cfg.networks) {
        auto e = im.exhaustion.find(n.name);
        if (e == im.exhaustion.end()) continue;
        for (const auto& old : im.cfg.networks)
            if (old.name == n.name && !(old.pools == n.pools)) e->second.last = 0;
    }
    im.cfg = std::move(cfg);
    warn_foreign_server_ids(site, im.cfg, *im.log);
    im.site_text = site.text;
    im.site_digest = site.digest;
    for (auto it = im.sockets.begin(); it != im.sockets.end();) {
        if (wanted.count((*it)->ifname)) {
            ++it;
            continue;
        }
        std::error_code ec;
        (*it)->closed = true;
        (*it)->sock.close(ec);
        im.log->info("no longer listening on {}: no network of the site uses it", (*it)->ifname);
        im.retired.push_back(std::move(*it));
        it = im.sockets.erase(it);
    }
    im.log->info("configuration reloaded: {} networks on {} interface(s)", im.cfg.networks.size(), im.sockets.size());
}

void Service::Impl::open_socket(const NetworkConfig& n) {
    auto s = std::make_unique<Socket>(Socket{n.interface, udp::socket(io)});
    auto& sock = s->sock;
    sock.open(udp::v4());
    sock.set_option(udp::socket::reuse_address(true));
    sock.set_option(asio::socket_base::broadcast(true));
    // Bound to the named device only: the server never listens on, or sends from, other interfaces.
    if (::setsockopt(sock.native_handle(), SOL_SOCKET, SO_BINDTODEVICE, n.interface.c_str(),
                     static_cast<socklen_t>(n.interface.size() + 1)) != 0)
        throw std::system_error(errno, std::generic_category(), "network " + n.name + ": cannot bind to interface " + n.interface);
    sock.bind(udp::endpoint(asio::ip::address_v4::any(), opts.server_port));
    // Port 0: the system's choice, then the same port on every interface (relayed replies go to it).
    if (opts.server_port == 0) opts.server_port = sock.local_endpoint().port();
    // Room for a boot storm's burst while the journal syncs: 4 MiB (SO_RCVBUFFORCE passes the system
    // limit when the service runs with CAP_NET_ADMIN, as a DHCP server usually does).
    const int rcvbuf = 4 << 20;
    if (::setsockopt(sock.native_handle(), SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) != 0)
        ::setsockopt(sock.native_handle(), SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    sock.non_blocking(true);  // the batch loop reads until the queue is empty
    log->info("listening on {} (network {}, server id {}, port {})", n.interface, n.name, n.server_id.to_string(), opts.server_port);
    auto* raw = s.get();
    sockets.push_back(std::move(s));
    asio::co_spawn(io, receive_loop(*raw), common::log_exception(log, "receive loop ended"));
}

void Service::start() {
    impl_->start_control();
    impl_->start_control_http();
    std::set<std::string> opened;  // two networks on one interface (a shared segment) share its socket
    for (const auto& n : impl_->cfg.networks)
        if (opened.insert(n.interface).second) impl_->open_socket(n);
}

void Service::stop() {
    impl_->stopped = true;
    std::error_code ec;
    for (auto& s : impl_->sockets) s->sock.close(ec);
    if (impl_->control) {
        impl_->control->close(ec);
        std::filesystem::remove(impl_->opts.control_socket, ec);
    }
    if (impl_->control_http) impl_->control_http->stop();
    impl_->commit_timer.cancel();
    try {
        impl_->store->sync();  // what was offered or released since the last commit
    } catch (const std::exception& e) {
        impl_->log->error("leases at stop: {}", e.what());
    }
}

}  // namespace fleetconf::dhcp
