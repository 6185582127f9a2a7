// The DHCP benchmark's fast load generator: DISCOVER-OFFER-REQUEST-ACK exchanges at a fixed rate, as a
// relay agent (giaddr = the local address, replies come to port 67), the way `perfdhcp -l ADDR -r RATE -R N`
// drives a server, but with batched system calls (sendmmsg/recvmmsg) so that on a 2-core machine the
// generator is not the limit: perfdhcp needs a whole core for about 15,000 exchanges/s, this about a tenth
// of that (docs/benchmarks.md). It is only a load generator: it checks xid, chaddr and message type of each
// reply and nothing else.
//
// Open loop: DISCOVERs leave at RATE/s in 1 ms slices, whatever the server answers; a REQUEST (requested
// address = the OFFER's yiaddr, server identifier = the OFFER's option 54) leaves as soon as its OFFER arrives.
// Client i of N (chaddr 02:xx:xx:xx:xx:xx from i) is reused every N DISCOVERs, as perfdhcp's -R N does. A
// reply that has not come 1 s after its request (perfdhcp's default drop time) is a drop. Prints one JSON
// object: sent, received, drops (%) and average delays (ms) for each phase, and the exchanges/s completed.
//
// usage: dhcp_loadgen --local ADDR --server ADDR --rate R --seconds S [--clients N] [--port P] [--mac-byte B]
#include "options.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
using bench_dhcp::kCookie;
using bench_dhcp::kFixed;
constexpr int kBatch = 64;
constexpr std::size_t kPacket = 300;  // BOOTP's minimum size, as perfdhcp sends

struct Client {
    std::uint32_t xid = 0;  // of the exchange in flight (0: none)
    Clock::time_point discover_at{}, request_at{};
    bool offered = false, acked = false;
};

struct Phase {
    std::uint64_t sent = 0, received = 0, late = 0;
    double delay_sum_ms = 0;
};

void put32(std::uint8_t* p, std::uint32_t v) {
    p[0] = static_cast<std::uint8_t>(v >> 24), p[1] = static_cast<std::uint8_t>(v >> 16);
    p[2] = static_cast<std::uint8_t>(v >> 8), p[3] = static_cast<std::uint8_t>(v);
}
std::uint32_t get32(const std::uint8_t* p) {
    return std::uint32_t{p[0]} << 24 | std::uint32_t{p[1]} << 16 | std::uint32_t{p[2]} << 8 | p[3];
}

// The MAC's second byte: generators that share a lease database (two servers on one PostgreSQL) use different
// ones, so that their clients are different clients.
std::uint8_t g_mac_byte = 0x00;

// A BOOTREQUEST with option 53 = `type`; for a REQUEST also options 50 and 54.
std::size_t build(std::uint8_t* out, int type, std::uint32_t xid, std::uint32_t client, std::uint32_t giaddr, std::uint32_t requested,
                  std::uint32_t server_id) {
    std::memset(out, 0, kPacket);
    out[0] = 1, out[1] = 1, out[2] = 6, out[3] = 1;  // BOOTREQUEST, Ethernet, 6-byte chaddr, one relay hop
    put32(out + 4, xid);
    put32(out + 24, giaddr);
    out[28] = 0x02;  // a locally administered MAC from the client number
    out[29] = g_mac_byte;
    put32(out + 30, client);
    std::memcpy(out + kFixed, kCookie, 4);
    std::size_t o = kFixed + 4;
    out[o++] = 53, out[o++] = 1, out[o++] = static_cast<std::uint8_t>(type);
    if (type == 3) {
        out[o++] = 50, out[o++] = 4;
        put32(out + o, requested);
        o += 4;
        out[o++] = 54, out[o++] = 4;
        put32(out + o, server_id);
        o += 4;
    }
    out[o++] = 55, out[o++] = 3, out[o++] = 1, out[o++] = 3, out[o++] = 6;
    out[o++] = 255;
    return kPacket;
}

// The message type (option 53) and server identifier (54) of a BOOTREPLY; type 0 when it is none.
int reply_type(const std::uint8_t* p, std::size_t n, std::uint32_t& server_id) {
    int type = 0;
    bench_dhcp::for_each_option(p, n, 2, [&](std::uint8_t code, const std::uint8_t* v, std::size_t len) {
        if (code == 53 && len == 1) type = v[0];
        if (code == 54 && len == 4) server_id = get32(v);
    });
    return type;
}

[[noreturn]] void usage(int rc) {
    std::fprintf(
        rc ? stderr : stdout,
        "usage: dhcp_loadgen --local ADDR --server ADDR --rate R --seconds S [--clients N] [--port P] [--mac-byte B]\n"
        "  DISCOVER-OFFER-REQUEST-ACK exchanges at R DISCOVERs/s as a relay at ADDR (binds ADDR:P, default 67),\n"
        "  N distinct clients (default 50000, MACs 02:BB:xx:xx:xx:xx with BB = B, default 0); prints JSON with sent/received/drops/delays per phase\n");
    std::exit(rc);
}

}  // namespace

int main(int argc, char** argv) {
    std::string local, server;
    double rate = 0, seconds = 0;
    std::uint32_t clients = 50000;
    int port = 67;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--help" || a == "-h") usage(0);
        if (i + 1 >= argc) usage(2);
        const char* v = argv[++i];
        if (a == "--local") local = v;
        else if (a == "--server") server = v;
        else if (a == "--rate") rate = std::atof(v);
        else if (a == "--seconds") seconds = std::atof(v);
        else if (a == "--clients") clients = static_cast<std::uint32_t>(std::atol(v));
        else if (a == "--port") port = std::atoi(v);
        else if (a == "--mac-byte") {
            const int b = std::atoi(v);
            if (b < 0 || b > 255) usage(2);
            g_mac_byte = static_cast<std::uint8_t>(b);
        } else usage(2);
    }
    in_addr la{}, sa{};
    if (::inet_pton(AF_INET, local.c_str(), &la) != 1 || ::inet_pton(AF_INET, server.c_str(), &sa) != 1 || rate <= 0 || seconds <= 0 ||
        clients == 0 || clients > (1u << 24))
        usage(2);
    const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    const int one = 1, buf = 4 << 20;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &buf, sizeof buf) != 0) ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
    if (::setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &buf, sizeof buf) != 0) ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
    sockaddr_in me{};
    me.sin_family = AF_INET;
    me.sin_port = htons(static_cast<std::uint16_t>(port));
    me.sin_addr = la;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&me), sizeof me) != 0) {
        std::fprintf(stderr, "dhcp_loadgen: bind %s:%d: %s\n", local.c_str(), port, std::strerror(errno));
        return 1;
    }
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(static_cast<std::uint16_t>(port));
    to.sin_addr = sa;
    const std::uint32_t giaddr = ntohl(la.s_addr);

    std::vector<Client> state(clients);
    Phase disc, req;
    std::array<std::array<std::uint8_t, kPacket>, kBatch> out{};
    std::array<mmsghdr, kBatch> omsg{};
    std::array<iovec, kBatch> oiov{};
    std::array<std::array<std::uint8_t, 1500>, kBatch> in{};
    std::array<mmsghdr, kBatch> imsg{};
    std::array<iovec, kBatch> iiov{};
    for (int i = 0; i < kBatch; ++i) {
        oiov[i] = {out[i].data(), kPacket};
        omsg[i].msg_hdr.msg_iov = &oiov[i];
        omsg[i].msg_hdr.msg_iovlen = 1;
        omsg[i].msg_hdr.msg_name = &to;
        omsg[i].msg_hdr.msg_namelen = sizeof to;
        iiov[i] = {in[i].data(), in[i].size()};
        imsg[i].msg_hdr.msg_iov = &iiov[i];
        imsg[i].msg_hdr.msg_iovlen = 1;
    }
    int queued = 0;
    std::uint64_t send_errors = 0;
    auto flush = [&] {
        int done = 0;
        while (done < queued) {
            const int n = ::sendmmsg(fd, omsg.data() + done, static_cast<unsigned>(queued - done), 0);
            if (n < 0) {
                if (errno == EINTR) continue;
                if (errno == EAGAIN || errno == ENOBUFS) {  // the send buffer is full: the packet is lost, as on a wire
                    ++send_errors;
                    ++done;
                    continue;
                }
                std::perror("dhcp_loadgen: sendmmsg");
                std::exit(1);
            }
            done += n;
        }
        queued = 0;
    };

    const auto start = Clock::now();
    const auto end = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
    const auto drain_until = end + std::chrono::seconds(1);
    const auto total = static_cast<std::uint64_t>(rate * seconds);
    std::uint64_t next = 0;  // DISCOVERs sent so far
    std::uint32_t xid_seq = static_cast<std::uint32_t>(::getpid()) << 16;
    const auto late = std::chrono::seconds(1);
    for (;;) {
        const auto now = Clock::now();
        if (now >= drain_until) break;
        // DISCOVERs due by now (open loop, 1 ms slices).
        const double elapsed = std::chrono::duration<double>(now - start).count();
        std::uint64_t due = std::min<std::uint64_t>(total, static_cast<std::uint64_t>(elapsed * rate) + 1);
        while (next < due) {
            const auto c = static_cast<std::uint32_t>(next % clients);
            auto& st = state[c];
            st.xid = ++xid_seq == 0 ? ++xid_seq : xid_seq;
            st.offered = st.acked = false;
            st.discover_at = now;
            build(out[queued].data(), 1, st.xid, c, giaddr, 0, 0);
            ++disc.sent;
            ++next;
            if (++queued == kBatch) flush();
        }
        // Replies: OFFER -> REQUEST, ACK -> done.
        for (;;) {
            for (int i = 0; i < kBatch; ++i) imsg[i].msg_hdr.msg_namelen = 0;
            const int n = ::recvmmsg(fd, imsg.data(), kBatch, MSG_DONTWAIT, nullptr);
            if (n <= 0) break;
            const auto t = Clock::now();
            for (int i = 0; i < n; ++i) {
                const auto* p = in[i].data();
                const std::size_t len = imsg[i].msg_len;
                std::uint32_t sid = 0;
                const int type = reply_type(p, len, sid);
                if (type == 0 || len < kFixed) continue;
                const std::uint32_t c = get32(p + 30);
                if (p[28] != 0x02 || p[29] != g_mac_byte || c >= clients) continue;
                auto& st = state[c];
                if (get32(p + 4) != st.xid) continue;  // an old exchange's reply
                if (type == 2 && !st.offered) {
                    st.offered = true;
                    const auto d = t - st.discover_at;
                    if (d > late) {
                        ++disc.late;
                        continue;
                    }
                    ++disc.received;
                    disc.delay_sum_ms += std::chrono::duration<double, std::milli>(d).count();
                    if (t < end) {  // no new REQUEST after the run: it could not be answered within the drain
                        st.request_at = t;
                        build(out[queued].data(), 3, st.xid, c, giaddr, get32(p + 16), sid);
                        ++req.sent;
                        if (++queued == kBatch) flush();
                    }
                } else if (type == 5 && st.offered && !st.acked && st.request_at != Clock::time_point{}) {
                    st.acked = true;
                    const auto d = t - st.request_at;
                    st.request_at = {};
                    if (d > late) {
                        ++req.late;
                        continue;
                    }
                    ++req.received;
                    req.delay_sum_ms += std::chrono::duration<double, std::milli>(d).count();
                }
            }
            if (n < kBatch) break;
        }
        if (queued) flush();
        // Wait for a reply or the next 1 ms slice.
        pollfd pfd{fd, POLLIN, 0};
        ::poll(&pfd, 1, next < total ? 1 : 10);
    }
    const double secs = std::chrono::duration<double>(end - start).count();
    auto drop = [](const Phase& p) {
        return p.sent ? 100.0 * static_cast<double>(p.sent - p.received) / static_cast<double>(p.sent) : 100.0;
    };
    auto avg = [](const Phase& p) { return p.received ? p.delay_sum_ms / static_cast<double>(p.received) : 0.0; };
    std::printf(
        "{\"seconds\": %.3f, \"do_sent\": %llu, \"do_recv\": %llu, \"do_late\": %llu, \"do_drop\": %.3f, \"do_delay\": %.3f, "
        "\"ra_sent\": %llu, \"ra_recv\": %llu, \"ra_late\": %llu, \"ra_drop\": %.3f, \"ra_delay\": %.3f, \"send_errors\": %llu, "
        "\"rate\": %.1f}\n",
        secs, static_cast<unsigned long long>(disc.sent), static_cast<unsigned long long>(disc.received),
        static_cast<unsigned long long>(disc.late), drop(disc), avg(disc), static_cast<unsigned long long>(req.sent),
        static_cast<unsigned long long>(req.received), static_cast<unsigned long long>(req.late), drop(req), avg(req),
        static_cast<unsigned long long>(send_errors), static_cast<double>(req.received) / secs);
    return 0;
}
