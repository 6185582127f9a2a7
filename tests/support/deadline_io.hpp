// Blocking reads with a deadline for tests: a server that never answers fails the test within seconds
// instead of hanging it until ctest's timeout (Asio's blocking reads ignore SO_RCVTIMEO, so each read waits
// in poll() first).
#pragma once

#include <asio/ip/tcp.hpp>

#include <poll.h>

#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace fleetconf::test {

using Deadline = std::chrono::steady_clock::time_point;

inline Deadline in_seconds(int s) { return std::chrono::steady_clock::now() + std::chrono::seconds(s); }

// Waits until the socket is readable (or closed); throws when the deadline passes first.
inline void wait_readable(asio::ip::tcp::socket& s, Deadline until) {
    while (true) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now()).count();
        if (left <= 0) throw std::runtime_error("test socket: no data before the deadline");
        pollfd p{s.native_handle(), POLLIN, 0};
        const int n = ::poll(&p, 1, static_cast<int>(left));
        if (n > 0) return;
        if (n < 0 && errno != EINTR) throw std::runtime_error("test socket: poll failed");
    }
}

// Exactly n bytes; throws on EOF or the deadline.
inline void read_exact(asio::ip::tcp::socket& s, void* data, std::size_t n, Deadline until) {
    auto* p = static_cast<std::uint8_t*>(data);
    while (n > 0) {
        wait_readable(s, until);
        std::error_code ec;
        const auto got = s.read_some(asio::buffer(p, n), ec);
        if (ec) throw std::runtime_error("test socket: " + ec.message());
        p += got;
        n -= got;
    }
}

// Everything until the peer closes (or an error); throws when the deadline passes first.
inline std::string read_until_close(asio::ip::tcp::socket& s, Deadline until) {
    std::string out;
    char buf[4096];
    while (true) {
        wait_readable(s, until);
        std::error_code ec;
        const auto got = s.read_some(asio::buffer(buf), ec);
        out.append(buf, got);
        if (ec) return out;
    }
}

}  // namespace fleetconf::test
