// Private: the state of a running DHCP service, shared by the packet path (io.cpp) and the control
// endpoints (control.cpp). Everything here runs on the one io_context thread.
#pragma once

#include "fleetconf/common/listener.hpp"
#include "fleetconf/dhcp/service.hpp"

#include <asio/awaitable.hpp>
#include <asio/detached.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/ip/udp.hpp>
#include <asio/steady_timer.hpp>
#include <asio/thread_pool.hpp>
#include <asio/local/stream_protocol.hpp>

#include <array>
#include <map>
#include <chrono>

namespace fleetconf::dhcp {

using asio::ip::udp;

// Counters, named as Kea names them where Kea has the same counter.
struct Stats {
    std::uint64_t received = 0;
    std::array<std::uint64_t, 9> received_by_type{};  // index: message type 1..8
    std::uint64_t parse_failed = 0;
    std::uint64_t receive_drop = 0;  // decoded but no reply (ignored, silent, exhausted)
    std::uint64_t sent = 0;
    std::array<std::uint64_t, 9> sent_by_type{};
    std::uint64_t declines = 0;
    std::uint64_t journal_syncs = 0;
    std::uint64_t journal_failures = 0;
    std::uint64_t allocation_failures = 0;  // Kea's v4-allocation-fail: DISCOVERs that found no free address
    std::uint64_t unknown_clients = 0;      // refused by a network's known_only
    std::uint64_t store_unavailable = 0;    // requests left unanswered while the lease database was unreachable
    std::uint64_t withheld_conflicts = 0;   // ACKs withheld: another server wrote the lease first
};

struct Service::Impl {
    asio::io_context& io;
    ServiceOptions opts;
    std::shared_ptr<spdlog::logger> log;
    Config cfg;
    std::unique_ptr<LeaseStore> store;
    JournalLeaseStore* journal = nullptr;
    // The lease journal's fdatasync runs here, so that the io thread decides the next packets meanwhile.
    // Declared after `store`: destroyed (joined) before it.
    asio::thread_pool sync_pool{1};
    struct Socket {
        std::string ifname;
        udp::socket sock;
        bool closed = false;  // its network left the site on reload: the receive loop ends
    };
    std::vector<std::unique_ptr<Socket>> sockets;
    // Closed on reload, kept until the service is destroyed: their receive loops and queued replies hold them.
    std::vector<std::unique_ptr<Socket>> retired;
    // Opens, binds (to the interface only) and starts receiving on one network's interface; throws with a
    // message naming the interface.
    void open_socket(const NetworkConfig& n);
    bool stopped = false;
    Stats stats;
    struct Exhaustion {
        std::uint64_t failures = 0;
        std::uint64_t last = 0;  // unix time of the last failure
        std::uint64_t unreported = 0;
        std::chrono::steady_clock::time_point warned{};
    };
    std::map<std::string, Exhaustion> exhaustion;  // by network
    void exhausted(const Decision& d);
    std::string journal_error;  // the last lease-journal failure, until a write succeeds again
    std::function<void(ReloadDone)> reload_hook;
    std::shared_ptr<const std::string> site_text;  // the running site file (config-get)
    std::string site_digest;
    // A control command as the channels run it: config-reload waits (at most a minute) for its verdict.
    asio::awaitable<nlohmann::json> run_command(const nlohmann::json& request);
    std::function<void(const LeaseEvent&)> lease_hook;
    void report(const LeaseEvent& e) {
        if (!lease_hook) return;
        try {
            lease_hook(e);
        } catch (const std::exception& ex) {
            log->error("lease hook: {}", ex.what());
        }
    }
    std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
    std::unique_ptr<asio::local::stream_protocol::acceptor> control;
    std::unique_ptr<common::TcpListener> control_http;
    common::ListenerLimits control_limits = common::default_limits("dhcp-control");  // services.limits.dhcp-control
    std::string control_password;                                                    // from control_key_file

    asio::awaitable<void> control_loop();
    asio::awaitable<void> control_session(asio::local::stream_protocol::socket s);
    asio::awaitable<void> http_session(std::shared_ptr<asio::ip::tcp::socket> s, common::AdmissionTicket ticket);
    void start_control();
    void start_control_http();

    Service* owner = nullptr;
    Impl(asio::io_context& i, ServiceOptions o, std::shared_ptr<spdlog::logger> l) : io(i), opts(std::move(o)), log(std::move(l)) {}

    asio::awaitable<void> receive_loop(Socket& s);
    void add_arp(const std::string& ifname, common::Ipv4 ip, const Message& m);

    // Durable mode: an ACK leaves only after its lease is on disk; offers and NAKs do not wait.
    // A reply encoded into its batch's buffer, with where it goes (RFC 2131 4.1).
    struct Outgoing {
        Socket* sock;
        std::size_t offset, length;  // in Batch::bytes
        std::uint32_t address;       // host byte order
        std::uint16_t port;
        MessageType type;
        std::uint32_t lease;  // yiaddr (host byte order): an ACK is withheld when its lease's write lost a race
    };
    struct Batch {
        std::vector<Outgoing> replies;
        std::vector<LeaseEvent> events;
        Bytes bytes;  // every reply's datagram, back to back; cleared (not freed) when sent
        [[nodiscard]] bool empty() const { return replies.empty() && events.empty(); }
        void clear() {
            replies.clear();
            events.clear();
            bytes.clear();
        }
    };
    // Encodes `reply` into `b`, finds its destination (an ARP entry first when it goes to a new address).
    void queue_reply(Socket& s, const Message& reply, std::size_t max_size, Batch& b);
    Batch waiting;  // ACKs (and their bound events) for the next commit
    void handle(Socket& s, std::span<const std::uint8_t> packet, const udp::endpoint& from, std::uint64_t now, Batch& now_batch);
    void send_replies(Batch& b);
    std::vector<std::uint8_t> dropped_options;  // options left out of one reply (too large)
    std::chrono::steady_clock::time_point last_commit{};
    asio::steady_timer commit_timer{io};
    bool commit_timer_armed = false;
    // The commit in flight: its ACKs, released when the sync thread has made their leases durable.
    Batch committing;
    bool sync_in_flight = false;
    void synced(const std::string& error);
    void withhold(Batch& b, const std::vector<common::Ipv4>& lost);  // on the io thread, when the sync thread is done ("" = success)
    // Set false when the service is destroyed: a sync's completion posted to the io_context touches nothing then.
    std::shared_ptr<bool> alive = std::make_shared<bool>(true);
    ~Impl() { *alive = false; }
    void pump();  // commits what waits (at most once per commit_interval); else writes offers' records
    void send_all(Batch& b);
    bool journal_write(bool sync, const std::string& consequence);  // false (failure recorded) when it failed
    void maybe_compact();
};

}  // namespace fleetconf::dhcp
