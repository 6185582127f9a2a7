#include "fleetconf/blockcfg/client.hpp"

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
    explicit Impl(protocol::Key k) : session(std::move(k)) {}

    std::vector<std::uint8_t> read_frame() {
        std::uint8_t len[4];
        std::error_code ec;
        asio::read(sock, asio::buffer(len), ec);
        if (ec) throw ClientError(server + ": connection closed by the server (" + ec.message() + "); wrong key?");
        const std::uint32_t n = std::uint32_t{len[0]} << 24 | std::uint32_t{len[1]} << 16 | std::uint32_t{len[2]} << 8 | len[3];
        if (n > protocol::kDefaultMaxFrame) throw ClientError(server + ": reply frame of " + std::to_string(n) + " bytes is over the limit");
        std::vector<std::uint8_t> body(n);
        asio::read(sock, asio::buffer(body), ec);
        if (ec) throw ClientError(server + ": connection lost while reading a reply (" + ec.message() + ")");
        return body;
    }
};

Client::Client(const common::Endpoint& server, protocol::Key key, std::chrono::milliseconds timeout)
    : impl_(std::make_unique<Impl>(std::move(key))) {
    impl_->server = server.to_string();
    std::error_code ec;
    tcp::endpoint ep(asio::ip::make_address(server.host_string()), server.port);
    impl_->sock.open(ep.protocol(), ec);
    if (!ec) {
        // Blocking socket with kernel timeouts: every read and write is bounded.
        timeval tv{static_cast<time_t>(timeout.count() / 1000), static_cast<suseconds_t>((timeout.count() % 1000) * 1000)};
        ::setsockopt(impl_->sock.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        ::setsockopt(impl_->sock.native_handle(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        impl_->sock.connect(ep, ec);
    }
    if (ec) throw ClientError("cannot connect to " + impl_->server + ": " + ec.message());
    impl_->sock.set_option(tcp::no_delay(true), ec);
    auto hello = impl_->read_frame();
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
    auto frame = impl_->read_frame();
    std::string body;
    if (impl_->session.on_reply(frame, body))
        throw ClientError(impl_->server + ": reply failed authentication (wrong key, or tampered in transit)");
    auto j = nlohmann::json::parse(body, nullptr, false);
    if (j.is_discarded() || !j.is_object()) throw ClientError(impl_->server + ": reply is not a JSON object");
    return j;
}

}  // namespace fleetconf::blockcfg
