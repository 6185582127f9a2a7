#include "service_impl.hpp"

#include "fleetconf/common/runtime.hpp"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/ip/udp.hpp>
#include <asio/use_awaitable.hpp>

#include <net/if_arp.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <chrono>
#include <cstring>

namespace fleetconf::dhcp {

using asio::ip::udp;
using common::Ipv4;

namespace {

std::uint64_t unix_now() {
    return static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count());
}

constexpr auto use_tuple = asio::experimental::as_tuple(asio::use_awaitable);

}  // namespace

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
    if (impl_->opts.lease_store) {
        impl_->store = impl_->opts.lease_store();
        if (!impl_->store) throw std::runtime_error("the lease store factory returned no store");
        impl_->log->info("leases: {} in the embedder's store", impl_->store->all().size());
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

std::uint16_t Service::local_port() const { return impl_->sockets.empty() ? 0 : impl_->opts.server_port; }

void Service::reload(const common::Site& site) {
    impl_->cfg = make_config(site, interface_ipv4);
    impl_->log->info("configuration reloaded: {} networks", impl_->cfg.networks.size());
}

void Service::start() {
    impl_->start_control();
    impl_->start_control_http();
    for (const auto& n : impl_->cfg.networks) {
        auto s = std::make_unique<Impl::Socket>(Impl::Socket{n.interface, udp::socket(impl_->io)});
        auto& sock = s->sock;
        sock.open(udp::v4());
        sock.set_option(udp::socket::reuse_address(true));
        sock.set_option(asio::socket_base::broadcast(true));
        // Bound to the named device only: the server never listens on, or sends from, other interfaces.
        if (::setsockopt(sock.native_handle(), SOL_SOCKET, SO_BINDTODEVICE, n.interface.c_str(),
                         static_cast<socklen_t>(n.interface.size() + 1)) != 0)
            throw std::system_error(errno, std::generic_category(), "cannot bind to interface " + n.interface);
        sock.bind(udp::endpoint(asio::ip::address_v4::any(), impl_->opts.server_port));
        // Port 0: the system's choice, then the same port on every interface (relayed replies go to it).
        if (impl_->opts.server_port == 0) impl_->opts.server_port = sock.local_endpoint().port();
        // Room for a boot storm's burst while the journal syncs: 4 MiB (SO_RCVBUFFORCE passes the system
        // limit when the service runs with CAP_NET_ADMIN, as a DHCP server usually does).
        const int rcvbuf = 4 << 20;
        if (::setsockopt(sock.native_handle(), SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) != 0)
            ::setsockopt(sock.native_handle(), SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
        sock.non_blocking(true);  // the batch loop reads until the queue is empty
        impl_->log->info("listening on {} (network {}, server id {}, port {})", n.interface, n.name, n.server_id.to_string(),
                         impl_->opts.server_port);
        auto* raw = s.get();
        impl_->sockets.push_back(std::move(s));
        asio::co_spawn(impl_->io, impl_->receive_loop(*raw), common::log_exception(impl_->log, "receive loop ended"));
    }
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
    impl_->store->sync();
}

asio::awaitable<void> Service::Impl::receive_loop(Socket& s) {
    std::vector<std::uint8_t> buf(65536);
    Batch now_batch;  // replies that promise nothing durable: offers, NAKs, INFORM answers (and all, unsynced)
    while (!stopped) {
        udp::endpoint from;
        auto [ec, n] = co_await s.sock.async_receive_from(asio::buffer(buf), from, use_tuple);
        if (ec) {
            if (ec == asio::error::operation_aborted || stopped) co_return;
            log->warn("{}: receive: {}", s.ifname, ec.message());
            continue;
        }
        // Drain what else is already queued and decide on all of it. Replies that promise nothing leave at
        // once; an ACK waits in `waiting` for the commit that makes its lease durable (group commit: one
        // fdatasync for everything that queued up meanwhile), so no ACK leaves before its lease is on disk.
        const std::uint64_t now = unix_now();
        std::size_t len = n;
        for (int batch = 0; batch < 256; ++batch) {
            std::error_code dec;
            ++stats.received;
            auto msg = decode(std::span<const std::uint8_t>(buf.data(), len), dec);
            if (!msg) {
                ++stats.parse_failed;
                log->debug("{}: malformed packet from {}: {}", s.ifname, from.address().to_string(), dec.message());
            } else {
                if (auto t = msg->type()) ++stats.received_by_type[static_cast<std::size_t>(*t)];
                if (msg->type() == MessageType::decline) ++stats.declines;
                auto d = decide(Request{std::move(*msg), s.ifname}, now, *store, cfg);
                if (!d.reply) ++stats.receive_drop;
                if (!d.log.empty()) log->info("{}: {}", s.ifname, d.log);
                // Offers need no durability (a lost offer means a new DISCOVER): their records ride along
                // with the next commit. Anything that promises a binding waits for its commit.
                Batch& dest = (opts.durable && d.durable_before_reply) ? waiting : now_batch;
                if (!d.changes.empty()) {
                    store->apply(d.changes);
                    for (auto& e : lease_events(d.changes, d.durable_before_reply))
                        (e.kind == LeaseEvent::Kind::bound ? dest : now_batch).events.push_back(std::move(e));
                }
                if (d.reply) dest.replies.push_back({&s, std::move(*d.reply), d.max_reply_size});
            }
            std::error_code aec;
            len = s.sock.receive_from(asio::buffer(buf), from, 0, aec);
            if (aec) break;  // would_block: the queue is empty
        }
        if (opts.durable) {
            send_all(now_batch);
            pump();
        } else if (journal_write(false, "replies withheld")) {  // --no-sync: written, not synced
            send_all(now_batch);
        } else {
            now_batch = {};  // the journal failed: nothing is promised from a store that cannot be written
        }
    }
}

void Service::Impl::send_all(Batch& b) {
    for (const auto& r : b.replies) send_reply(*r.sock, r.reply, r.max_size);
    for (const auto& e : b.events) report(e);
    b.replies.clear();
    b.events.clear();
}

// Writes what was applied (and with `sync`, makes it durable); a failure is recorded for the health check
// and logged with `consequence`. The first success after a failure says so.
bool Service::Impl::journal_write(bool sync, const std::string& consequence) {
    try {
        if (sync) {
            store->sync();
            ++stats.journal_syncs;
        } else {
            store->flush();
        }
        if (!journal_error.empty()) {
            log->info("lease journal writable again");
            journal_error.clear();
        }
        return true;
    } catch (const std::exception& e) {
        ++stats.journal_failures;
        journal_error = e.what();
        log->error("lease journal: {}; {}", e.what(), consequence);
        return false;
    }
}

void Service::Impl::maybe_compact() {
    if (!journal || !journal->needs_compaction()) return;
    try {
        journal->compact();
        log->info("lease journal compacted to {} records", journal->records());
    } catch (const std::exception& e) {
        log->error("lease journal compaction: {}", e.what());
    }
}

// Durable mode: commits (one fdatasync for every ACK that waits) start at most once per commit_interval.
// A lone request is committed at once; under load the ACKs that arrive within the interval share one
// sync, which caps the syncs per second instead of paying one per batch.
void Service::Impl::pump() {
    if (stopped) return;
    if (waiting.empty()) {
        // Only offers and releases since the last commit: written now, durable with the next sync.
        journal_write(false, "offers are still sent");
        maybe_compact();
        return;
    }
    const auto t = std::chrono::steady_clock::now();
    if (t - last_commit < opts.commit_interval) {
        if (!commit_timer_armed) {
            commit_timer_armed = true;
            commit_timer.expires_at(last_commit + opts.commit_interval);
            commit_timer.async_wait([this](std::error_code ec) {
                if (ec) return;  // cancelled by stop(): touch nothing, the service may be on its way out
                commit_timer_armed = false;
                pump();
            });
        }
        return;
    }
    last_commit = t;
    Batch committing = std::move(waiting);
    waiting = {};
    // Never promise a lease that is not on disk: on a failure the ACKs are dropped and the clients ask again.
    if (!journal_write(true, std::to_string(committing.replies.size()) + " replies withheld")) return;
    send_all(committing);
    maybe_compact();
}

void Service::Impl::add_arp(const std::string& ifname, Ipv4 ip, const Message& m) {
    arpreq req{};
    auto* pa = reinterpret_cast<sockaddr_in*>(&req.arp_pa);
    pa->sin_family = AF_INET;
    pa->sin_addr.s_addr = htonl(ip.value());
    req.arp_ha.sa_family = ARPHRD_ETHER;
    std::memcpy(req.arp_ha.sa_data, m.chaddr.data(), 6);
    req.arp_flags = ATF_COM;
    std::strncpy(req.arp_dev, ifname.c_str(), sizeof req.arp_dev - 1);
    if (::ioctl(sockets.front()->sock.native_handle(), SIOCSARP, &req) != 0)
        throw std::system_error(errno, std::generic_category(), "SIOCSARP");
}

void Service::Impl::send_reply(Socket& s, const Message& reply, std::size_t max_size) {
    std::vector<std::uint8_t> dropped;
    const auto bytes = encode(reply, max_size, &dropped);
    if (!dropped.empty())
        log->warn("{}: reply to {} over {} bytes: {} option(s) left out", s.ifname, reply.mac().to_string(), max_size, dropped.size());
    const auto dest = reply_destination(reply, opts.server_port, opts.client_port);
    udp::endpoint to(asio::ip::address_v4(dest.address.value()), dest.port);
    if (dest.unicast_to_new_address) {
        // The client does not answer ARP for its new address yet: put its MAC in the ARP table.
        try {
            add_arp(s.ifname, reply.yiaddr, reply);
        } catch (const std::exception& e) {
            log->debug("{}: no ARP entry for {} ({}); broadcasting", s.ifname, reply.yiaddr.to_string(), e.what());
            to = udp::endpoint(asio::ip::address_v4::broadcast(), opts.client_port);
        }
    }
    std::error_code ec;
    s.sock.send_to(asio::buffer(bytes), to, 0, ec);
    if (ec) {
        log->warn("{}: send to {}: {}", s.ifname, to.address().to_string(), ec.message());
        return;
    }
    ++stats.sent;
    if (auto t = reply.type()) ++stats.sent_by_type[static_cast<std::size_t>(*t)];
}

}  // namespace fleetconf::dhcp
