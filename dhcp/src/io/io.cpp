// The DHCP service's I/O: the receive loop (decode, decide), the group commit that makes leases durable
// before the replies that promise them, and sending each reply where RFC 2131 4.1 says (reply_destination).
#include "service_impl.hpp"
#include "fleetconf/common/clock.hpp"

#include "fleetconf/common/crypto.hpp"
#include "fleetconf/common/runtime.hpp"
#include "fleetconf/common/text.hpp"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/ip/udp.hpp>
#include <asio/post.hpp>
#include <asio/use_awaitable.hpp>

#include <net/if_arp.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdio>
#include <algorithm>
#include <cstring>
#include <memory>

namespace fleetconf::dhcp {

using common::unix_now;

using asio::ip::udp;
using common::Ipv4;

namespace {

constexpr auto use_tuple = asio::experimental::as_tuple(asio::use_awaitable);

// dhcp=debug: one line per packet in and out, as dnsmasq's log-dhcp and Kea's packet logger give them.
std::string codes(const Message& m) {
    std::string out;
    for (const auto& o : m.options) {
        if (!out.empty()) out += ',';
        out += std::to_string(o.code);
    }
    return out.empty() ? "-" : out;
}

std::string trace_request(const Message& m, const std::string& ifname, const udp::endpoint& from) {
    std::string t = ifname + ": received " + (m.type() ? std::string(to_string(*m.type())) : std::string("(no type)")) + " from " +
                    from.address().to_string() + ":" + std::to_string(from.port()) + " chaddr " + m.mac().to_string();
    char xid[16];
    std::snprintf(xid, sizeof xid, "%08x", m.xid);
    t += " xid " + std::string(xid);
    if (const auto* cid = m.find(61)) t += " client-id " + common::to_hex(cid->data);
    if (const auto* prl = m.find(55)) {
        std::string list;
        for (auto c : prl->data) {
            if (!list.empty()) list += ',';
            list += std::to_string(c);
        }
        t += " requested-options " + list;
    }
    if (auto a = m.address_option(50)) t += " requested-address " + a->to_string();
    if (auto a = m.address_option(54)) t += " server-id " + a->to_string();
    if (!m.ciaddr.is_unspecified()) t += " ciaddr " + m.ciaddr.to_string();
    if (!m.giaddr.is_unspecified()) t += " giaddr " + m.giaddr.to_string();
    if (auto h = m.string_option(12)) t += " hostname \"" + common::printable(*h).substr(0, 64) + "\"";
    t += " options " + codes(m);
    return t;
}

}  // namespace

void Service::Impl::exhausted(const Decision& d) {
    auto& e = exhaustion[d.network];
    ++e.failures;
    ++stats.allocation_failures;
    e.last = unix_now();
    const auto now = std::chrono::steady_clock::now();
    // At warning level, at most once per 10 s per network: a client retrying its DISCOVER does not flood the log.
    if (now - e.warned < std::chrono::seconds(10)) {
        ++e.unreported;
        return;
    }
    log->warn(
        "{}{}", d.log,
        e.unreported ? " (and " + std::to_string(e.unreported) + " more unanswered DISCOVER(s) since the last warning)" : std::string());
    e.warned = now;
    e.unreported = 0;
}

// One packet: decode, decide, apply; its reply goes to `now_batch` or, when it promises a binding that is
// not on disk yet, to `waiting` (the next group commit).
void Service::Impl::handle(Socket& s, std::span<const std::uint8_t> packet, const udp::endpoint& from, std::uint64_t now,
                           Batch& now_batch) {
    std::error_code dec;
    ++stats.received;
    auto msg = decode(packet, dec);
    if (!msg) {
        ++stats.parse_failed;
        log->debug("{}: malformed packet from {}: {}", s.ifname, from.address().to_string(), dec.message());
        return;
    }
    if (auto t = msg->type()) ++stats.received_by_type[static_cast<std::size_t>(*t)];
    if (msg->type() == MessageType::decline) ++stats.declines;
    // A lease database that cannot be reached: nothing is offered or promised from a copy that cannot be
    // checked, and nothing released or declined that cannot be written. INFORM needs no lease.
    if (msg->type() != MessageType::inform)
        if (auto why = store->unavailable()) {
            ++stats.store_unavailable;
            ++stats.receive_drop;
            log->debug("{}: {} from {} not answered: {}", s.ifname, msg->type() ? to_string(*msg->type()) : "(no type)",
                       msg->mac().to_string(), *why);
            return;
        }
    const bool trace = log->should_log(spdlog::level::debug);
    if (trace) log->debug("{}", trace_request(*msg, s.ifname, from));
    // The decision's log line is built only when it will be written (info, or a warning it always carries).
    auto d = decide(Request{std::move(*msg), s.ifname, log->should_log(spdlog::level::info)}, now, *store, cfg);
    if (!d.reply) ++stats.receive_drop;
    if (d.unknown_client) ++stats.unknown_clients;
    if (d.exhausted) exhausted(d);
    else if (!d.log.empty()) log->info("{}: {}", s.ifname, d.log);
    if (trace && d.reply)
        log->debug("{}: decided: {}; sending {} yiaddr {} options {}", s.ifname, d.log.empty() ? "-" : d.log,
                   d.reply->type() ? to_string(*d.reply->type()) : "?", d.reply->yiaddr.to_string(), codes(*d.reply));
    else if (trace) log->debug("{}: decided: {}; no reply", s.ifname, d.log.empty() ? "-" : d.log);
    // Offers need no durability (a lost offer means a new DISCOVER): their records ride along with the next
    // commit. Anything that promises a binding waits for its commit.
    Batch& dest = (opts.durable && d.durable_before_reply) ? waiting : now_batch;
    if (!d.changes.empty()) {
        store->apply(d.changes);
        if (lease_hook)
            for (auto& e : lease_events(d.changes, d.durable_before_reply))
                (e.kind == LeaseEvent::Kind::bound ? dest : now_batch).events.push_back(std::move(e));
    }
    if (d.reply) queue_reply(s, *d.reply, d.max_reply_size, dest);
}

asio::awaitable<void> Service::Impl::receive_loop(Socket& s) {
    // recvmmsg: up to kSlots datagrams per system call, each slot as large as the largest UDP payload. The
    // slots are not initialised: only the pages a datagram is written to become resident.
    constexpr unsigned kSlots = 32;
    // Datagrams decided per wake-up before the replies go out and the journal is committed: with a sync that
    // takes about 1-2 ms, fewer per commit would make the sync, not the packets, the limit under load.
    constexpr unsigned kDrain = 1024;
    constexpr std::size_t kSlotSize = 65536;
    auto slots = std::make_unique_for_overwrite<std::uint8_t[]>(kSlots * kSlotSize);
    std::array<mmsghdr, kSlots> msgs{};
    std::array<iovec, kSlots> iov{};
    std::array<sockaddr_in, kSlots> peers{};
    for (unsigned i = 0; i < kSlots; ++i) {
        iov[i] = {slots.get() + i * kSlotSize, kSlotSize};
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_name = &peers[i];
    }
    Batch now_batch;  // replies that promise nothing durable: offers, NAKs, INFORM answers (and all, unsynced)
    while (!stopped && !s.closed) {
        auto [ec] = co_await s.sock.async_wait(udp::socket::wait_read, use_tuple);
        if (ec) {
            if (ec == asio::error::operation_aborted || stopped || s.closed) co_return;
            log->warn("{}: receive: {}", s.ifname, ec.message());
            continue;
        }
        if (stopped || s.closed) co_return;
        // Drain what is queued (at most kDrain datagrams, then the other sockets get their turn) and decide on
        // all of it. Replies that promise nothing leave at once; an ACK waits in `waiting` for the commit that
        // makes its lease durable (group commit: one fdatasync for everything that queued up meanwhile), so no
        // ACK leaves before its lease is on disk.
        const std::uint64_t now = unix_now();
        for (unsigned round = 0; round < kDrain / kSlots; ++round) {
            for (auto& m : msgs) m.msg_hdr.msg_namelen = sizeof(sockaddr_in);
            const int n = ::recvmmsg(s.sock.native_handle(), msgs.data(), kSlots, MSG_DONTWAIT, nullptr);
            if (n < 0) {
                if (errno == EINTR) continue;
                if (errno != EAGAIN && errno != EWOULDBLOCK) log->warn("{}: receive: {}", s.ifname, std::strerror(errno));
                break;
            }
            for (int i = 0; i < n; ++i) {
                const auto& peer = peers[static_cast<std::size_t>(i)];
                const udp::endpoint from(asio::ip::address_v4(ntohl(peer.sin_addr.s_addr)), ntohs(peer.sin_port));
                const auto& h = msgs[static_cast<std::size_t>(i)];
                if (h.msg_hdr.msg_flags & MSG_TRUNC) {  // cannot happen for UDP over IPv4 (65,507 bytes at most)
                    ++stats.received;
                    ++stats.parse_failed;
                    continue;
                }
                handle(s, {static_cast<const std::uint8_t*>(h.msg_hdr.msg_iov->iov_base), h.msg_len}, from, now, now_batch);
            }
            if (static_cast<unsigned>(n) < kSlots) break;  // the queue is empty
        }
        if (opts.durable) {
            send_all(now_batch);
            pump();
        } else if (journal_write(false, "replies withheld")) {  // --no-sync: written, not synced
            send_all(now_batch);
        } else {
            now_batch.clear();  // the journal failed: nothing is promised from a store that cannot be written
        }
    }
}

void Service::Impl::send_all(Batch& b) {
    send_replies(b);
    for (const auto& e : b.events) report(e);
    b.clear();
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
    if (sync_in_flight || !journal || !journal->needs_compaction()) return;  // never under a sync in flight
    try {
        journal->compact();
        log->info("lease journal compacted to {} records", journal->records());
    } catch (const std::exception& e) {
        log->error("lease journal compaction: {}", e.what());
    }
}

// Durable mode: commits start at most once per commit_interval, one at a time. A commit writes what was
// applied, then the sync thread makes it durable while this thread goes on deciding; the ACKs of the commit
// leave when it is done (synced()), and what queued up meanwhile forms the next commit. A lone request is
// committed at once; under load each sync covers every ACK that arrived during the previous one.
void Service::Impl::pump() {
    if (stopped || sync_in_flight) return;  // synced() calls pump() again
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
    std::function<void()> job;
    try {
        job = store->begin_sync();
    } catch (const std::exception& e) {
        // Never promise a lease that is not on disk: on a failure the ACKs are dropped and the clients ask again.
        ++stats.journal_failures;
        journal_error = e.what();
        log->error("lease journal: {}; {} replies withheld", e.what(), waiting.replies.size());
        waiting.clear();
        return;
    }
    std::swap(committing, waiting);  // `waiting` takes the emptied batch (and keeps its capacity)
    if (!job) {                      // durable already (a store that syncs in begin_sync)
        synced("");
        return;
    }
    sync_in_flight = true;
    asio::post(sync_pool, [this, job = std::move(job), alive = alive] {
        std::string error;
        try {
            job();
        } catch (const std::exception& e) {
            error = *e.what() ? e.what() : "sync failed";
        } catch (...) {
            error = "sync failed";
        }
        asio::post(io, [this, alive, error = std::move(error)] {
            if (*alive) synced(error);
        });
    });
}

void Service::Impl::synced(const std::string& error) {
    sync_in_flight = false;
    const auto lost = store->end_sync(error.empty());
    if (!lost.empty()) withhold(committing, lost);
    if (!error.empty()) {
        ++stats.journal_failures;
        journal_error = error;
        log->error("lease journal: {}; {} replies withheld", error, committing.replies.size());
        committing.clear();
    } else {
        ++stats.journal_syncs;
        if (!journal_error.empty()) {
            log->info("lease journal writable again");
            journal_error.clear();
        }
        if (!stopped) send_all(committing);
        committing.clear();
    }
    maybe_compact();
    pump();
}

// Drops the ACKs (and bound events) of leases whose write lost a compare-and-set to another server: the
// client asks again and is answered from the winner's lease (a NAK, then a new address).
void Service::Impl::withhold(Batch& b, const std::vector<Ipv4>& lost) {
    auto is_lost = [&](std::uint32_t a) { return std::find(lost.begin(), lost.end(), Ipv4(a)) != lost.end(); };
    const auto before = b.replies.size();
    std::erase_if(b.replies, [&](const Outgoing& o) { return o.type == MessageType::ack && is_lost(o.lease); });
    std::erase_if(b.events, [&](const LeaseEvent& e) { return e.kind == LeaseEvent::Kind::bound && is_lost(e.lease.address.value()); });
    stats.withheld_conflicts += before - b.replies.size();
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

void Service::Impl::queue_reply(Socket& s, const Message& reply, std::size_t max_size, Batch& b) {
    dropped_options.clear();
    const std::size_t offset = b.bytes.size();
    encode_append(reply, b.bytes, max_size, &dropped_options);
    if (!dropped_options.empty())
        log->warn("{}: reply to {} over {} bytes: {} option(s) left out", s.ifname, reply.mac().to_string(), max_size,
                  dropped_options.size());
    const auto dest = reply_destination(reply, opts.server_port, opts.client_port);
    Outgoing o{&s,
               offset,
               b.bytes.size() - offset,
               dest.address.value(),
               dest.port,
               reply.type().value_or(MessageType::ack),
               reply.yiaddr.value()};
    if (dest.unicast_to_new_address) {
        // The client does not answer ARP for its new address yet: put its MAC in the ARP table.
        try {
            add_arp(s.ifname, reply.yiaddr, reply);
        } catch (const std::exception& e) {
            log->debug("{}: no ARP entry for {} ({}); broadcasting", s.ifname, reply.yiaddr.to_string(), e.what());
            o.address = 0xFFFFFFFFu;
            o.port = opts.client_port;
        }
    }
    b.replies.push_back(o);
}

// Sends a batch's replies with one sendmmsg per run of up to 64 that leave by the same socket.
void Service::Impl::send_replies(Batch& b) {
    constexpr std::size_t kMax = 64;
    std::array<mmsghdr, kMax> msgs{};
    std::array<iovec, kMax> iov{};
    std::array<sockaddr_in, kMax> to{};
    std::size_t i = 0;
    while (i < b.replies.size()) {
        Socket* sock = b.replies[i].sock;
        const std::size_t first = i;
        std::size_t k = 0;
        for (; i < b.replies.size() && k < kMax && b.replies[i].sock == sock; ++i, ++k) {
            const Outgoing& r = b.replies[i];
            to[k] = {};
            to[k].sin_family = AF_INET;
            to[k].sin_addr.s_addr = htonl(r.address);
            to[k].sin_port = htons(r.port);
            iov[k] = {b.bytes.data() + r.offset, r.length};
            msgs[k] = {};
            msgs[k].msg_hdr.msg_name = &to[k];
            msgs[k].msg_hdr.msg_namelen = sizeof(sockaddr_in);
            msgs[k].msg_hdr.msg_iov = &iov[k];
            msgs[k].msg_hdr.msg_iovlen = 1;
        }
        if (sock->closed) continue;  // its network left the site: the replies are not sent
        const int fd = sock->sock.native_handle();
        for (std::size_t done = 0; done < k;) {
            const int n = ::sendmmsg(fd, msgs.data() + done, static_cast<unsigned>(k - done), MSG_DONTWAIT);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                // The send buffer is full: wait for room (at most 100 ms), else the reply is lost as on a busy wire.
                pollfd p{fd, POLLOUT, 0};
                if (::poll(&p, 1, 100) > 0) continue;
            }
            if (n < 0) {  // this datagram could not be sent: say so and go on with the next
                log->warn("{}: send to {}: {}", sock->ifname, common::Ipv4(b.replies[first + done].address).to_string(),
                          std::strerror(errno));
                ++done;
                continue;
            }
            for (std::size_t j = done; j < done + static_cast<std::size_t>(n); ++j) {
                ++stats.sent;
                ++stats.sent_by_type[static_cast<std::size_t>(b.replies[first + j].type)];
            }
            done += static_cast<std::size_t>(n);
        }
    }
}

}  // namespace fleetconf::dhcp
