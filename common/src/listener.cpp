#include "fleetconf/common/listener.hpp"

#include "fleetconf/common/runtime.hpp"

#include <asio/co_spawn.hpp>
#include <asio/ip/v6_only.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

namespace fleetconf::common {

namespace {
constexpr auto use_tuple = asio::experimental::as_tuple(asio::use_awaitable);
}

void open_listener(asio::ip::tcp::acceptor& a, const Endpoint& at, std::string_view what, spdlog::logger& log) {
    try {
        const asio::ip::tcp::endpoint ep(asio::ip::make_address(at.host_string()), at.port);
        a.open(ep.protocol());
        a.set_option(asio::ip::tcp::acceptor::reuse_address(true));
        if (ep.address().is_v6()) a.set_option(asio::ip::v6_only(true));
        a.bind(ep);
        a.listen();
    } catch (const std::system_error& x) {
        std::error_code ec;
        a.close(ec);
        throw std::runtime_error(std::string(what) + " listener " + at.to_string() + ": " + x.code().message());
    }
    log.info("{} listening on {}{}", what, host_port(at.host, a.local_endpoint().port()),
             is_loopback(at.host) ? "" : " (NOT loopback: reachable from the network)");
}

std::string peer_of(const asio::ip::tcp::socket& s) {
    std::error_code ec;
    const auto ep = s.remote_endpoint(ec);
    if (ec) return "?";
    const auto a = ep.address();
    // Appended piece by piece: "[" + string + "]" trips GCC 12's -Wrestrict false positive at -O2.
    std::string out;
    if (a.is_v6()) out += '[';
    out += a.to_string();
    if (a.is_v6()) out += ']';
    out += ':';
    out += std::to_string(ep.port());
    return out;
}

std::function<void()> socket_closer(std::shared_ptr<asio::ip::tcp::socket> sock) {
    return [sock = std::move(sock)] {
        std::error_code ec;
        sock->shutdown(asio::ip::tcp::socket::shutdown_both, ec);
        sock->close(ec);
    };
}

void refuse_with(asio::ip::tcp::socket& s, std::string_view bytes) {
    std::error_code ec;
    s.non_blocking(true, ec);
    if (!bytes.empty()) asio::write(s, asio::buffer(bytes.data(), bytes.size()), ec);
    s.shutdown(asio::ip::tcp::socket::shutdown_send, ec);
    s.close(ec);
}

SocketDeadline::SocketDeadline(asio::any_io_executor ex, std::function<void()> close)
    : st_(std::make_shared<State>(std::move(ex), std::move(close))) {}

asio::awaitable<void> SocketDeadline::watch(std::shared_ptr<State> st) {
    while (!st->done) {
        co_await st->timer.async_wait(use_tuple);  // also wakes when arm()/disarm() move the expiry
        if (st->done) co_return;
        if (st->timer.expiry() <= asio::steady_timer::clock_type::now()) {
            st->expired = true;
            st->close();
            co_return;
        }
    }
}

void SocketDeadline::start() { asio::co_spawn(st_->timer.get_executor(), watch(st_), asio::detached); }

struct TcpListener::Impl : std::enable_shared_from_this<Impl> {
    Impl(asio::any_io_executor e, std::string n, std::shared_ptr<Admission> a, std::shared_ptr<spdlog::logger> l)
        : ex(std::move(e)), name(std::move(n)), admission(std::move(a)), log(std::move(l)), acceptor(ex) {}
    asio::any_io_executor ex;
    std::string name;
    std::shared_ptr<Admission> admission;
    std::shared_ptr<spdlog::logger> log;
    asio::ip::tcp::acceptor acceptor;
    std::list<std::weak_ptr<asio::ip::tcp::socket>> sockets;
    bool stopped = false;

    asio::awaitable<void> accept_loop(Serve serve, Refuse refuse) {
        auto self = shared_from_this();
        while (!stopped) {
            auto [ec, s] = co_await acceptor.async_accept(use_tuple);
            if (ec) {
                if (ec == asio::error::operation_aborted || stopped) co_return;
                log->warn("{} accept: {}", name, ec.message());
                continue;
            }
            std::error_code pec;
            const auto rep = s.remote_endpoint(pec);
            const std::string peer = peer_of(s);
            auto d = admission->admit(pec ? std::string("?") : rep.address().to_string());
            if (d.refused) {
                if (d.log) {
                    const auto st = admission->stats();
                    log->warn(
                        "{} {}: refused ({}: {} open, {} not yet authenticated); further refusals of {} are counted, not logged, for {} s",
                        name, peer, to_string(*d.refused), st.open, st.unauthenticated, d.key,
                        admission->limits().log_interval.count() / 1000);
                }
                if (refuse) refuse(s, *d.refused);
                s.close(pec);
                continue;
            }
            s.set_option(asio::ip::tcp::no_delay(true), pec);
            auto sock = std::make_shared<asio::ip::tcp::socket>(std::move(s));
            std::erase_if(sockets, [](const auto& w) { return w.expired(); });
            sockets.push_back(sock);
            serve(std::move(sock), AdmissionTicket(admission.get(), d.key), peer);
        }
    }
};

TcpListener::TcpListener(asio::any_io_executor ex, std::string name, ListenerLimits limits, std::shared_ptr<spdlog::logger> log)
    : name_(name), admission_(std::make_shared<Admission>(limits)) {
    impl_ = std::make_shared<Impl>(std::move(ex), std::move(name), admission_, std::move(log));
}

TcpListener::~TcpListener() { stop(); }

void TcpListener::open(const Endpoint& at, std::string_view what) { open_listener(impl_->acceptor, at, what, *impl_->log); }

void TcpListener::start(Serve serve, Refuse refuse) {
    asio::co_spawn(impl_->ex, impl_->accept_loop(std::move(serve), std::move(refuse)),
                   log_exception(impl_->log, name_ + " accept loop ended"));
}

void TcpListener::stop() {
    auto& i = *impl_;
    i.stopped = true;
    std::error_code ec;
    i.acceptor.close(ec);
    for (auto& w : i.sockets)
        if (auto s = w.lock()) s->close(ec);
    i.sockets.clear();
}

std::uint16_t TcpListener::port() const {
    std::error_code ec;
    const auto ep = impl_->acceptor.local_endpoint(ec);
    return ec ? 0 : ep.port();
}

bool TcpListener::listening() const { return !impl_->stopped && impl_->acceptor.is_open(); }

void TcpListener::metrics(std::string& out) const {
    const auto st = admission_->stats();
    const std::string l = "{listener=\"" + name_ + "\"";
    out += "fleetconf_listener_connections" + l + "} " + std::to_string(st.open) + "\n";
    out += "fleetconf_listener_unauthenticated" + l + "} " + std::to_string(st.unauthenticated) + "\n";
    for (auto r : {Refusal::listener_full, Refusal::address_full, Refusal::unauthenticated_full, Refusal::stopping}) {
        const auto it = st.refused.find(r);
        out += "fleetconf_listener_refused_total" + l + ",reason=\"" + std::string(to_string(r)) + "\"} " +
               std::to_string(it == st.refused.end() ? 0 : it->second) + "\n";
    }
}

}  // namespace fleetconf::common
