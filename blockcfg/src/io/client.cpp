#include "fleetconf/blockcfg/client.hpp"

#include "deadline_io.hpp"

#include <asio/connect.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/read.hpp>
#include <asio/write.hpp>

#include <sys/socket.h>
#include <sys/time.h>

namespace fleetconf::blockcfg {

using asio::ip::tcp;

struct Client::Impl {
    asio::io_context io;
    tcp::socket sock{io};
    protocol::ClientSession session;
    std::string server;
    std::chrono::milliseconds timeout{10000};
    explicit Impl(protocol::Key k) : session(std::move(k)) {}

    // One frame, within the timeout (a silent server is given up on, not waited for). `closed` says what a
    // connection closed before the frame means at this point of the conversation.
    std::vector<std::uint8_t> read_frame(const char* closed) {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        while (true) {
            if (auto f = reader.next()) return std::move(*f);
            std::uint8_t buf[16384];
            std::error_code ec;
            const auto n = detail::read_before(sock, buf, sizeof buf, deadline, ec, false);
            if (ec == asio::error::timed_out) throw ClientError(server + ": no reply within " + std::to_string(timeout.count()) + " ms");
            if (ec && !reader.partial())
                throw ClientError(server + ": connection closed by the server " + closed + " (" + ec.message() + ")");
            if (ec) throw ClientError(server + ": connection lost while reading a reply (" + ec.message() + ")");
            if (reader.feed(std::span(buf, n)) == errc::too_large)
                throw ClientError(server + ": reply frame over the limit of " + std::to_string(protocol::kDefaultMaxFrame) + " bytes");
        }
    }
    protocol::FrameReader reader{protocol::kDefaultMaxFrame};  // the frames of this connection (protocol.hpp)
};

Client::Client(const common::Endpoint& server, protocol::Key key, std::chrono::milliseconds timeout)
    : impl_(std::make_unique<Impl>(std::move(key))) {
    impl_->server = server.to_string();
    impl_->timeout = timeout;
    std::error_code ec;
    tcp::endpoint ep(asio::ip::make_address(server.host_string()), server.port);
    impl_->sock.open(ep.protocol(), ec);
    if (!ec) {
        // Writes are bounded by the kernel timeout; reads by read_before's deadline.
        timeval tv{static_cast<time_t>(timeout.count() / 1000), static_cast<suseconds_t>((timeout.count() % 1000) * 1000)};
        ::setsockopt(impl_->sock.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        ::setsockopt(impl_->sock.native_handle(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        impl_->sock.connect(ep, ec);
    }
    if (ec) throw ClientError("cannot connect to " + impl_->server + ": " + ec.message());
    impl_->sock.set_option(tcp::no_delay(true), ec);
    auto hello = impl_->read_frame("before its greeting");
    if (auto busy = protocol::decode_busy(hello)) throw ClientError(impl_->server + ": refused: " + busy->message);
    if (impl_->session.on_hello(hello)) throw ClientError(impl_->server + ": not a fleetconf blockcfg server (bad hello)");
}

Client::~Client() = default;
Client::Client(Client&&) noexcept = default;
Client& Client::operator=(Client&&) noexcept = default;

nlohmann::json Client::call(const nlohmann::json& request) {
    const auto out = protocol::frame(impl_->session.request(request.dump()));
    std::error_code ec;
    asio::write(impl_->sock, asio::buffer(out), ec);
    if (ec) throw ClientError(impl_->server + ": send failed: " + ec.message());
    // The server closes without a reply exactly when the request fails authentication.
    auto frame = impl_->read_frame("after the request: authentication failed (wrong key, or a key id the server does not know)");
    std::string body;
    if (impl_->session.on_reply(frame, body))
        throw ClientError(impl_->server + ": reply failed authentication (wrong key, or tampered in transit)");
    auto j = nlohmann::json::parse(body, nullptr, false);
    if (j.is_discarded() || !j.is_object()) throw ClientError(impl_->server + ": reply is not a JSON object");
    return j;
}

}  // namespace fleetconf::blockcfg
