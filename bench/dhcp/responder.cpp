// The DHCP benchmark's ceiling: a stateless responder that answers every DISCOVER with an OFFER and every
// REQUEST with an ACK, built from the request itself, keeping nothing. It opens its socket as the DHCP
// server does (bound to one interface, SO_REUSEADDR, a 4 MiB receive buffer), batches its system calls, and replies to the relay
// (giaddr, port 67) as a server would to perfdhcp, so a rate it cannot exceed is the harness's limit, not a
// server's. No lease store, no decision, no durability: never a DHCP server.
//
// usage: dhcp_responder INTERFACE [PORT]
#include "options.hpp"

#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

using bench_dhcp::kFixed;

// The message type (option 53) of a BOOTREQUEST, or 0.
int message_type(const std::uint8_t* p, std::size_t n) {
    int type = 0;
    bench_dhcp::for_each_option(p, n, 1, [&](std::uint8_t code, const std::uint8_t* v, std::size_t len) {
        if (code == 53 && len == 1 && type == 0) type = v[0];
    });
    return type;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
        std::fprintf(stderr,
                     "usage: dhcp_responder INTERFACE [PORT]\n  answers every DISCOVER and REQUEST on INTERFACE from a "
                     "template, keeping nothing: the DHCP benchmark's ceiling, never a DHCP server\n");
        return argc < 2 ? 2 : 0;
    }
    const std::string ifname = argv[1];
    const int port = argc > 2 ? std::atoi(argv[2]) : 67;
    const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    const int one = 1, rcvbuf = 4 << 20;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, ifname.c_str(), static_cast<socklen_t>(ifname.size() + 1)) != 0) {
        std::fprintf(stderr, "dhcp_responder: cannot bind to interface %s: %s\n", ifname.c_str(), std::strerror(errno));
        return 1;
    }
    if (::setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) != 0)
        ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        std::fprintf(stderr, "dhcp_responder: bind port %d: %s\n", port, std::strerror(errno));
        return 1;
    }
    // The server identifier: the interface's own address is not needed by perfdhcp; a fixed one will do.
    const std::uint8_t server_id[4] = {10, 99, 0, 1};
    // Batched system calls (recvmmsg/sendmmsg), so that the responder is never the slower side of the harness.
    constexpr int kBatch = 64;
    static std::array<std::array<std::uint8_t, 1500>, kBatch> in{}, out{};
    std::array<mmsghdr, kBatch> imsg{}, omsg{};
    std::array<iovec, kBatch> iiov{}, oiov{};
    std::array<sockaddr_in, kBatch> from{}, to{};
    for (int i = 0; i < kBatch; ++i) {
        iiov[i] = {in[i].data(), in[i].size()};
        imsg[i].msg_hdr.msg_iov = &iiov[i];
        imsg[i].msg_hdr.msg_iovlen = 1;
        imsg[i].msg_hdr.msg_name = &from[i];
        oiov[i] = {out[i].data(), 0};
        omsg[i].msg_hdr.msg_iov = &oiov[i];
        omsg[i].msg_hdr.msg_iovlen = 1;
        omsg[i].msg_hdr.msg_name = &to[i];
        omsg[i].msg_hdr.msg_namelen = sizeof(sockaddr_in);
    }
    std::uint32_t next = 0;
    for (;;) {
        for (auto& m : imsg) m.msg_hdr.msg_namelen = sizeof(sockaddr_in);
        const int got = ::recvmmsg(fd, imsg.data(), kBatch, MSG_WAITFORONE, nullptr);
        if (got < 0) {
            if (errno == EINTR) continue;
            std::perror("dhcp_responder: recvmmsg");
            return 1;
        }
        int replies = 0;
        for (int k = 0; k < got; ++k) {
            const std::uint8_t* req = in[k].data();
            const auto n = static_cast<std::size_t>(imsg[k].msg_len);
            const int type = message_type(req, n);
            if (type != 1 && type != 3) continue;  // DISCOVER or REQUEST
            std::uint8_t* rep = out[replies].data();
            std::memcpy(rep, req, kFixed + 4);
            rep[0] = 2;  // BOOTREPLY
            std::uint8_t yiaddr[4];
            if (type == 1) {  // a fresh address from 10.99.1.0/16 for each DISCOVER
                const std::uint32_t a = (10u << 24 | 99u << 16 | 1u << 8) + (next++ % 65000);
                yiaddr[0] = static_cast<std::uint8_t>(a >> 24), yiaddr[1] = static_cast<std::uint8_t>(a >> 16);
                yiaddr[2] = static_cast<std::uint8_t>(a >> 8), yiaddr[3] = static_cast<std::uint8_t>(a);
            } else {  // the address the REQUEST asks for (option 50), else ciaddr
                std::memcpy(yiaddr, req + 12, 4);
                bench_dhcp::for_each_option(req, n, 1, [&](std::uint8_t code, const std::uint8_t* v, std::size_t len) {
                    if (code == 50 && len == 4) std::memcpy(yiaddr, v, 4);
                });
            }
            std::memcpy(rep + 16, yiaddr, 4);
            std::size_t o = kFixed + 4;
            const std::uint8_t opts[] = {53,
                                         1,
                                         static_cast<std::uint8_t>(type == 1 ? 2 : 5),
                                         54,
                                         4,
                                         server_id[0],
                                         server_id[1],
                                         server_id[2],
                                         server_id[3],
                                         51,
                                         4,
                                         0,
                                         0,
                                         0x0e,
                                         0x10,  // 3600 s
                                         1,
                                         4,
                                         255,
                                         255,
                                         0,
                                         0,
                                         3,
                                         4,
                                         10,
                                         99,
                                         0,
                                         1,
                                         255};
            std::memcpy(rep + o, opts, sizeof opts);
            o += sizeof opts;
            while (o < 300) rep[o++] = 0;  // BOOTP's minimum size
            // To the relay (giaddr) on the server port, as a server answers a relayed request; else back to the sender.
            to[replies] = from[k];
            std::uint32_t giaddr;
            std::memcpy(&giaddr, req + 24, 4);
            if (giaddr != 0) {
                to[replies].sin_addr.s_addr = giaddr;
                to[replies].sin_port = htons(static_cast<std::uint16_t>(port));
            }
            oiov[replies].iov_len = o;
            ++replies;
        }
        for (int done = 0; done < replies;) {
            const int n = ::sendmmsg(fd, omsg.data() + done, static_cast<unsigned>(replies - done), 0);
            if (n < 0) {
                if (errno == EINTR) continue;
                ++done;  // a full send buffer loses the reply, as a server would
                continue;
            }
            done += n;
        }
    }
}
