// The server kit: what every TCP listener of fleetconf shares (git://, HTTP, HTTPS, SSH, the blockcfg
// control socket, the DHCP control channel over HTTP, the status endpoint). One routine opens a listener,
// one accept loop admits connections through the listener's budgets (admission.hpp) and tells a refused
// client why in its own protocol, one deadline type bounds each phase of a conversation. docs/limits.md.
#pragma once

#include "fleetconf/common/admission.hpp"
#include "fleetconf/common/net.hpp"

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>
#include <spdlog/logger.h>

#include <chrono>
#include <functional>
#include <list>
#include <memory>
#include <string>
#include <string_view>

namespace fleetconf::common {

// Opens `a` on `at` (IPv4, or IPv6 only), binds and listens; logs "WHAT listening on ADDR:PORT" with a
// warning when the address is not loopback. Throws std::runtime_error "WHAT listener ADDR: REASON".
void open_listener(asio::ip::tcp::acceptor& a, const Endpoint& at, std::string_view what, spdlog::logger& log);

// "ADDR:PORT" or "[ADDR6]:PORT" of the peer, "?" when the socket has none.
std::string peer_of(const asio::ip::tcp::socket& s);

// Writes `bytes` to a freshly accepted socket without waiting (a new socket's send buffer takes a short
// refusal at once; otherwise it is dropped), then closes it.
void refuse_with(asio::ip::tcp::socket& s, std::string_view bytes);
// A session's way out: shuts the socket down both ways and closes it, errors ignored (the peer may be gone);
// what a SocketDeadline calls when a phase's time is up, and a session at its end.
std::function<void()> socket_closer(std::shared_ptr<asio::ip::tcp::socket> sock);

// Closes a socket when a deadline passes. arm() sets the deadline of a whole phase (request headers, a
// body, a negotiation, sending a reply): it is moved when the conversation moves to its next phase, never
// because a byte arrived, so a client trickling one byte at a time is cut when the phase's time is up.
// The watcher shares the state, so it may outlive the session that owns the deadline.
class SocketDeadline {
public:
    SocketDeadline(asio::any_io_executor ex, std::function<void()> close);
    ~SocketDeadline() { cancel(); }
    SocketDeadline(const SocketDeadline&) = delete;
    SocketDeadline& operator=(const SocketDeadline&) = delete;
    void arm(std::chrono::milliseconds d) { st_->timer.expires_after(d); }
    void disarm() { st_->timer.expires_at(asio::steady_timer::time_point::max()); }
    void start();  // spawns the watcher
    void cancel() {
        st_->done = true;
        st_->timer.cancel();
    }
    [[nodiscard]] bool expired() const { return st_->expired; }

private:
    struct State {
        State(asio::any_io_executor ex, std::function<void()> c) : timer(ex), close(std::move(c)) {}
        asio::steady_timer timer;
        std::function<void()> close;
        bool done = false;
        bool expired = false;
    };
    static asio::awaitable<void> watch(std::shared_ptr<State> st);
    std::shared_ptr<State> st_;
};

// One TCP listener: the acceptor, its budgets, the open sockets (closed by stop()), and the accept loop.
class TcpListener {
public:
    using Socket = std::shared_ptr<asio::ip::tcp::socket>;
    // Runs the conversation of an admitted connection. The ticket holds its slot until destroyed: keep it
    // in the session; call ticket.authenticated() once the client proved who it is.
    using Serve = std::function<void(Socket, AdmissionTicket, std::string peer)>;
    // Tells a refused client why, in the protocol's words (HTTP 503, a git ERR line, blockcfg BUSY), with
    // refuse_with(); the socket is closed afterwards either way.
    using Refuse = std::function<void(asio::ip::tcp::socket&, Refusal)>;

    // `name` is the metrics label and log prefix ("git", "http", "https", "ssh", "block", "dhcp-control", "status").
    TcpListener(asio::any_io_executor ex, std::string name, ListenerLimits limits, std::shared_ptr<spdlog::logger> log);
    ~TcpListener();
    TcpListener(const TcpListener&) = delete;
    TcpListener& operator=(const TcpListener&) = delete;

    void open(const Endpoint& at, std::string_view what);  // throws, see open_listener
    void start(Serve serve, Refuse refuse = {});
    void stop();
    [[nodiscard]] std::uint16_t port() const;
    [[nodiscard]] bool listening() const;
    [[nodiscard]] const std::string& name() const { return name_; }
    Admission& admission() { return *admission_; }
    [[nodiscard]] const Admission& admission() const { return *admission_; }
    // Prometheus text: fleetconf_listener_connections{listener=NAME}, ..._unauthenticated{...},
    // fleetconf_listener_refused_total{listener=NAME,reason=R} for every reason.
    void metrics(std::string& out) const;

private:
    struct Impl;
    std::shared_ptr<Impl> impl_;
    std::string name_;
    std::shared_ptr<Admission> admission_;
};

}  // namespace fleetconf::common
