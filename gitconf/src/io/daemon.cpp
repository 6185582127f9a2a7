// git:// (gitprotocol-pack "Git Transport"): the request line (parsed by daemon_request.hpp), the one
// access rule for an anonymous client, then the upload-pack conversation (conversation.hpp).
#include "conversation.hpp"
#include "host.hpp"

#include "fleetconf/gitconf/daemon_request.hpp"
#include "fleetconf/gitconf/pktline.hpp"

#include <asio/experimental/as_tuple.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <array>

namespace fleetconf::gitconf {

namespace {
constexpr auto use_tuple = asio::experimental::as_tuple(asio::use_awaitable);

// git's client writes its wants and its "done" as separate small segments without TCP_NODELAY, so
// Nagle holds the second until the first is acknowledged; acknowledging at once instead of after
// the delayed-ACK timer (40 ms on Linux) takes that wait out of every git:// fetch.
void quick_ack(tcp::socket& s) {
    int one = 1;
    ::setsockopt(s.native_handle(), IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
}
}  // namespace

namespace {
// The conversation's channel on a git:// connection: the socket and the session's phase deadline.
class DaemonChannel final : public Channel {
public:
    DaemonChannel(tcp::socket& s, Deadline& d, Service::Impl::Counter& sent) : sock_(s), deadline_(d), sent_(sent) {}
    asio::awaitable<bool> read(std::string& in) override {
        auto [ec, n] = co_await sock_.async_read_some(asio::buffer(buf_), use_tuple);
        if (ec) co_return false;
        in.append(buf_.data(), n);
        quick_ack(sock_);
        co_return true;
    }
    asio::awaitable<bool> write(std::string_view out) override {
        auto [ec, n] = co_await asio::async_write(sock_, asio::buffer(out), use_tuple);
        sent_ += n;
        co_return !ec;
    }
    void phase(std::chrono::milliseconds limit, const char*) override {
        if (limit.count() == 0) deadline_.disarm();
        else deadline_.arm(limit);
    }
    [[nodiscard]] bool timed_out() const override { return deadline_.expired(); }
    [[nodiscard]] bool streaming() const override { return true; }

private:
    tcp::socket& sock_;
    Deadline& deadline_;
    Service::Impl::Counter& sent_;
    std::array<char, 16384> buf_{};
};
}  // namespace

asio::awaitable<void> Service::Impl::git_session(std::shared_ptr<tcp::socket> sock, common::AdmissionTicket ticket, std::string peer) {
    (void)ticket;  // holds the connection's slot until the session ends
    auto self = shared_from_this();
    const auto close = common::socket_closer(sock);
    Deadline deadline(io.get_executor(), close);
    deadline.arm(opts.read_timeout);
    deadline.start();
    DaemonChannel ch(*sock, deadline, bytes_sent);

    // The request line: "git-upload-pack /NAME.git\0host=HOST\0" [ "\0version=2\0" ], within read_timeout.
    std::string in;
    pkt::Packet first;
    std::size_t used = 0;
    while (true) {
        const auto ec = pkt::parse(in, first, used);
        if (!ec) break;
        if (ec != pkt::errc::need_more) {
            log->info("git {}: bad request line ({})", peer, ec.message());
            ++protocol_errors;
            co_return;
        }
        if (!co_await ch.read(in)) {
            if (ch.timed_out()) ++timeouts;
            co_return;
        }
    }
    const auto req = parse_daemon_request(first.payload);  // before anything else: the payload points into `in`
    if (!req) {
        log->info("git {}: empty request line", peer);
        ++protocol_errors;
        co_return;
    }
    auto deny = [&](const std::string& why) -> asio::awaitable<void> {
        std::string out;
        pkt::write_line(out, "ERR " + why);
        co_await ch.write(out);
        close();
    };
    const bool push = req->command == "git-receive-pack";
    if (req->command != "git-upload-pack" && !push) {
        log->info("git {}: refused \"{}\" (unknown service)", peer, req->command.substr(0, 64));
        ++forbidden;
        co_await deny("unknown service");
        co_return;
    }
    const auto& path = req->path;
    const auto name = path.size() > 1 && path[0] == '/' ? repo_name(std::string_view(path).substr(1)) : std::nullopt;
    const auto verdict = authorize(Credential::anonymous(), name ? *name : std::string_view(), name ? access(*name) : RepoAccess{},
                                   push ? Operation::push : Operation::fetch);
    if (verdict == Verdict::forbidden) {
        log->info("git {}: refused a push (git:// is read-only)", peer);
        ++forbidden;
        co_await deny("pushing over git:// is not allowed; use HTTPS or SSH");
        co_return;
    }
    if (verdict != Verdict::allow) {
        // git daemon's words, for missing and unexported repositories alike.
        log->info("git {}: {} not exported", peer, path.substr(0, 128));
        ++not_found;
        co_await deny("access denied or repository not exported: " + path.substr(0, 128));
        co_return;
    }
    in.erase(0, used);
    const Conversation c{.mode = Conversation::Mode::session,
                         .transport = "git",
                         .peer = peer,
                         .who = Credential::anonymous(),
                         .repo = *name,
                         .version = req->v2 ? 2 : 0,
                         .min_rate = site.services.limits_for("git").min_rate,
                         .site = &site,
                         .early_input = std::move(in)};
    if (co_await upload_pack(*this, ch, c) == Ending::unavailable) co_await deny("repository unavailable");
    close();
}

}  // namespace fleetconf::gitconf
