// Private: reading a blocking Asio socket with a deadline. (SO_RCVTIMEO does not bound Asio's synchronous
// reads: on EAGAIN they poll() without a timeout. So wait with poll() first, then read what is there.)
#pragma once

#include <asio/error.hpp>
#include <asio/ip/tcp.hpp>

#include <poll.h>

#include <cerrno>
#include <chrono>
#include <system_error>

namespace fleetconf::blockcfg::detail {

// Reads up to `n` bytes (exactly `n` when `exact`) before `deadline`; ec = timed_out when it passes.
inline std::size_t read_before(asio::ip::tcp::socket& s, void* data, std::size_t n, std::chrono::steady_clock::time_point deadline,
                               std::error_code& ec, bool exact = true) {
    std::size_t got = 0;
    ec = {};
    while (got < n) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
        if (left <= 0) {
            ec = asio::error::timed_out;
            return got;
        }
        pollfd p{s.native_handle(), POLLIN, 0};
        const int r = ::poll(&p, 1, static_cast<int>(left));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            ec = std::error_code(errno, std::system_category());
            return got;
        }
        if (r == 0) continue;  // the deadline check above ends it
        got += s.read_some(asio::buffer(static_cast<char*>(data) + got, n - got), ec);
        if (ec || !exact) return got;
    }
    return got;
}

}  // namespace fleetconf::blockcfg::detail
