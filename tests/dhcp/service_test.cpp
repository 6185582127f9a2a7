// The DHCP service over real sockets on loopback (no root: a RENEWING client's reply goes to its ciaddr,
// 127.0.0.5), with a lease store that fails on demand: nothing that promises a lease leaves before the
// store says it is durable, a failed write withholds the reply and fails the health check, and lease
// events (what lease-driven routes follow) come only after the sync.
#include "fleetconf/dhcp/service.hpp"

#include "fleetconf/dhcp/wire.hpp"

#include <asio/io_context.hpp>
#include <asio/ip/udp.hpp>
#include <asio/post.hpp>
#include <catch2/catch.hpp>
#include <spdlog/sinks/ostream_sink.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <future>
#include <sstream>
#include <thread>

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

using namespace fleetconf;
using namespace fleetconf::dhcp;
using asio::ip::udp;
using namespace std::chrono_literals;

namespace {

// A store in memory whose writes fail while `failing` is set; records what each sync made durable.
struct FlakyStore final : MemoryLeaseStore {
    std::atomic<bool> failing{false};
    std::atomic<int> syncs{0};
    std::map<common::Ipv4, Lease> durable;  // what the last successful sync covered
    void sync() override {
        if (failing) throw std::system_error(ENOSPC, std::generic_category(), "leases.journal: write failed");
        ++syncs;
        durable.clear();
        for (auto& l : all()) durable.emplace(l.address, l);
    }
    void flush() override {
        if (failing) throw std::system_error(ENOSPC, std::generic_category(), "leases.journal: write failed");
    }
};

const common::Mac kMac = *common::Mac::parse("02:00:00:00:00:05");
const common::Ipv4 kClient(127, 0, 0, 5);

struct Rig {
    asio::io_context io;
    std::ostringstream logs;
    std::shared_ptr<spdlog::logger> log = std::make_shared<spdlog::logger>("dhcp", std::make_shared<spdlog::sinks::ostream_sink_mt>(logs));
    FlakyStore* store = nullptr;
    udp::socket client{io};  // the unikernel: 127.0.0.5, a port of the system's choice
    std::unique_ptr<Service> service;
    std::thread thread;
    std::vector<LeaseEvent> events;
    std::vector<int> syncs_at_event;
    std::uint32_t xid = 1;

    explicit Rig(std::filesystem::path control_socket = "-") {
        client.open(udp::v4());
        client.bind(udp::endpoint(asio::ip::make_address_v4("127.0.0.5"), 0));
        const auto site = common::parse_site(R"({
          "networks": [{"name": "lo", "interface": "lo", "subnet": "127.0.0.0/8", "pools": ["127.0.0.100-127.0.0.110"],
                        "lease_time": 600}],
          "unikernels": [],
          "services": {"data_dir": "/nonexistent"}})",
                                             "/tmp", "t.json");
        ServiceOptions o;
        o.server_port = 0;
        o.client_port = client.local_endpoint().port();
        o.control_socket = control_socket;
        o.lease_store = [this] {
            auto s = std::make_unique<FlakyStore>();
            store = s.get();
            return s;
        };
        service = std::make_unique<Service>(io, site, o, log);
        service->set_lease_hook([this](const LeaseEvent& e) {
            events.push_back(e);
            syncs_at_event.push_back(store->syncs);
            // Reported only once the store holds it.
            if (e.kind == LeaseEvent::Kind::bound) CHECK(store->durable.contains(e.lease.address));
        });
        service->start();
        thread = std::thread([this] { io.run(); });
    }
    // Runs f on the service's thread and returns its result.
    template <class F>
    auto on_io(F f) {
        std::packaged_task<decltype(f())()> task(std::move(f));
        auto fut = task.get_future();
        asio::post(io, [&task] { task(); });
        return fut.get();
    }
    ~Rig() {
        on_io([this] { service->stop(); });
        io.stop();
        thread.join();
    }
    nlohmann::json command(const nlohmann::json& c) {
        return on_io([&] { return service->command(c); });
    }
    common::Health health() {
        return on_io([&] { return service->health(); });
    }

    // A REQUEST from a RENEWING client (ciaddr set, no server id): the reply goes to ciaddr.
    std::optional<Message> renew(std::chrono::milliseconds wait = 5s) {
        Message m;
        m.xid = ++xid;
        m.ciaddr = kClient;
        std::copy(kMac.bytes().begin(), kMac.bytes().end(), m.chaddr.begin());
        m.options.push_back({opt::message_type, {static_cast<std::uint8_t>(MessageType::request)}});
        send(m);
        return receive(m.xid, wait);
    }
    void send(const Message& m) {
        const auto bytes = encode(m);
        client.send_to(asio::buffer(bytes), udp::endpoint(asio::ip::make_address_v4("127.0.0.1"), service->local_port()));
    }
    std::optional<Message> receive(std::uint32_t want_xid, std::chrono::milliseconds wait) {
        const auto until = std::chrono::steady_clock::now() + wait;
        std::vector<std::uint8_t> buf(2048);
        for (;;) {
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now()).count();
            if (left <= 0) return std::nullopt;
            pollfd p{client.native_handle(), POLLIN, 0};
            if (::poll(&p, 1, static_cast<int>(left)) <= 0) return std::nullopt;
            udp::endpoint from;
            const auto n = client.receive_from(asio::buffer(buf), from);
            std::error_code ec;
            auto m = decode(std::span<const std::uint8_t>(buf.data(), n), ec);
            if (m && m->xid == want_xid) return m;
        }
    }
};

}  // namespace

TEST_CASE("service: a failed lease-store write withholds the ACK and fails health until a write succeeds (issue 22.11)",
          "[dhcp][service]") {
    Rig r;
    REQUIRE(r.service->local_port() != 0);
    auto add = r.command({{"command", "lease4-add"}, {"arguments", {{"ip-address", "127.0.0.5"}, {"hw-address", kMac.to_string()}}}});
    REQUIRE(add["result"] == 0);
    // lease4-add's event came after its sync.
    REQUIRE(r.on_io([&] { return r.events.size(); }) == 1);
    CHECK(r.events[0].kind == LeaseEvent::Kind::bound);
    CHECK(r.events[0].cause == "lease4-add");

    auto ack = r.renew();
    REQUIRE(ack);
    CHECK(ack->type() == MessageType::ack);
    CHECK(ack->yiaddr == kClient);
    CHECK(r.health().ok);

    r.store->failing = true;
    const int syncs_before = r.store->syncs;
    const auto events_before = r.on_io([&] { return r.events.size(); });
    CHECK_FALSE(r.renew(1500ms));  // a promise the disk does not hold is never sent
    const auto h = r.health();
    CHECK_FALSE(h.ok);
    CHECK(h.detail == "lease journal: leases.journal: write failed: No space left on device (replies withheld)");
    CHECK(r.on_io([&] { return r.events.size(); }) == events_before);  // no route for a binding that is not durable
    CHECK(r.store->syncs == syncs_before);
    CHECK(r.on_io([&] { return r.service->prometheus(); }).find("fleetconf_dhcp_journal_failures_total 1\n") != std::string::npos);
    CHECK(r.logs.str().find("lease journal: leases.journal: write failed: No space left on device; 1 replies withheld") !=
          std::string::npos);

    // The control path says so too, and promises nothing.
    auto add2 = r.command({{"command", "lease4-add"}, {"arguments", {{"ip-address", "127.0.0.6"}, {"hw-address", "02:00:00:00:00:06"}}}});
    CHECK(add2["result"] == 1);
    CHECK(add2["text"] == "lease journal: leases.journal: write failed: No space left on device; the lease is not durable yet");
    CHECK(r.on_io([&] { return r.events.size(); }) == events_before);

    r.store->failing = false;
    ack = r.renew();
    REQUIRE(ack);
    CHECK(ack->type() == MessageType::ack);
    CHECK(r.health().ok);
    CHECK(r.logs.str().find("lease journal writable again") != std::string::npos);
    // The ACK's event came after the sync that made the lease durable (checked in the hook too).
    REQUIRE(r.on_io([&] { return r.events.size(); }) > events_before);
    CHECK(r.events.back().cause == "ack");
    CHECK(r.syncs_at_event.back() > syncs_before);
}

TEST_CASE("service: DECLINE, RELEASE and lease4-del report released leases with their cause", "[dhcp][service]") {
    Rig r;
    REQUIRE(r.command({{"command", "lease4-add"},
                       {"arguments", {{"ip-address", "127.0.0.5"}, {"hw-address", kMac.to_string()}}}})["result"] == 0);
    REQUIRE(r.renew());

    Message rel;
    rel.xid = 77;
    rel.ciaddr = kClient;
    std::copy(kMac.bytes().begin(), kMac.bytes().end(), rel.chaddr.begin());
    rel.options.push_back({opt::message_type, {static_cast<std::uint8_t>(MessageType::release)}});
    rel.options.push_back({opt::server_id, addr_bytes(common::Ipv4(127, 0, 0, 1))});
    r.send(rel);
    const auto until = std::chrono::steady_clock::now() + 5s;
    auto released = [&] {
        return r.on_io([&] {
            return std::count_if(r.events.begin(), r.events.end(),
                                 [](const LeaseEvent& e) { return e.kind == LeaseEvent::Kind::released; });
        });
    };
    while (released() == 0 && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(10ms);
    REQUIRE(released() == 1);
    CHECK(r.events.back().cause == "release");
    CHECK(why_released(r.events.back()) == "release of");

    // DECLINE of an address the client was given.
    REQUIRE(r.command({{"command", "lease4-add"},
                       {"arguments", {{"ip-address", "127.0.0.5"}, {"hw-address", kMac.to_string()}}}})["result"] == 0);
    Message dec = rel;
    dec.xid = 78;
    dec.ciaddr = common::Ipv4();
    dec.options = {{opt::message_type, {static_cast<std::uint8_t>(MessageType::decline)}},
                   {opt::server_id, addr_bytes(common::Ipv4(127, 0, 0, 1))},
                   {opt::requested_address, addr_bytes(kClient)}};
    r.send(dec);
    const auto until2 = std::chrono::steady_clock::now() + 5s;
    while (released() < 2 && std::chrono::steady_clock::now() < until2) std::this_thread::sleep_for(10ms);
    REQUIRE(released() == 2);
    CHECK(r.events.back().cause == "decline");

    // lease4-del, after its sync.
    REQUIRE(r.command({{"command", "lease4-add"},
                       {"arguments", {{"ip-address", "127.0.0.7"}, {"hw-address", "02:00:00:00:00:07"}}}})["result"] == 0);
    const int syncs = r.store->syncs;
    REQUIRE(r.command({{"command", "lease4-del"}, {"arguments", {{"ip-address", "127.0.0.7"}}}})["result"] == 0);
    REQUIRE(released() == 3);
    CHECK(r.events.back().cause == "lease4-del");
    CHECK(r.events.back().lease.address == common::Ipv4(127, 0, 0, 7));
    CHECK(r.syncs_at_event.back() == syncs + 1);
}

TEST_CASE("lease_events: an ACK's binding only when the reply promises it; offers make none", "[dhcp][service]") {
    Lease l;
    l.address = common::Ipv4(10, 0, 0, 5);
    l.state = LeaseState::bound;
    CHECK(lease_events({{l}}, false).empty());  // not promised by this reply (e.g. an update in passing)
    auto e = lease_events({{l}}, true);
    REQUIRE(e.size() == 1);
    CHECK(e[0].kind == LeaseEvent::Kind::bound);
    l.state = LeaseState::offered;
    CHECK(lease_events({{l}}, true).empty());
    l.state = LeaseState::declined;
    e = lease_events({{l}}, false);
    REQUIRE(e.size() == 1);
    CHECK(e[0].kind == LeaseEvent::Kind::released);
    CHECK(e[0].cause == "decline");
    CHECK(lease_events({{l, true}}, true).empty());  // a removed record is not an event
}

namespace {

// One exchange on the unix control socket: write `request` (then half-close when `half_close`), read the reply.
std::string unix_exchange(const std::filesystem::path& path, const std::string& request, bool half_close = true) {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::strncpy(sa.sun_path, path.c_str(), sizeof sa.sun_path - 1);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
    const timeval tv{10, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    for (std::size_t off = 0; off < request.size();) {
        const auto n = ::send(fd, request.data() + off, request.size() - off, MSG_NOSIGNAL);
        if (n <= 0) break;  // the server may answer and close before the rest (over the limit)
        off += static_cast<std::size_t>(n);
    }
    if (half_close) ::shutdown(fd, SHUT_WR);
    std::string out;
    char buf[65536];
    for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) out.append(buf, static_cast<std::size_t>(n));
    ::close(fd);
    return out;
}

}  // namespace

TEST_CASE("docs/dhcp-control.md: the unix socket's limits and errors, at and past each", "[dhcp][service][limits]") {
    const auto dir = std::filesystem::temp_directory_path() / ("fc-ctl-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    {
        Rig r(dir / "control.sock");
        // A document of exactly 1 MiB is read whole and answered (the padding member is ignored).
        const std::string head = R"({"command": "list-commands", "pad": ")", tail = R"("})";
        const std::string exact = head + std::string((1u << 20) - head.size() - tail.size(), 'x') + tail;
        REQUIRE(exact.size() == 1u << 20);
        auto reply = nlohmann::json::parse(unix_exchange(dir / "control.sock", exact));
        CHECK(reply["result"] == 0);
        // One byte more: refused, said so.
        const std::string over = head + std::string((1u << 20) - head.size() - tail.size() + 1, 'x') + tail;
        reply = nlohmann::json::parse(unix_exchange(dir / "control.sock", over));
        CHECK(reply == nlohmann::json{{"result", 1}, {"text", "command larger than 1 MiB"}});
        // Ends before a complete document.
        reply = nlohmann::json::parse(unix_exchange(dir / "control.sock", R"({"command": "status-get", )"));
        CHECK(reply == nlohmann::json{{"result", 1}, {"text", "invalid JSON: the command is not a complete JSON document"}});
        // Shapes and codes (dhcp-control.md: 0 success, 1 error, 2 unsupported, 3 empty).
        const std::pair<const char*, nlohmann::json> cases[] = {
            {R"([1])", {{"result", 1}, {"text", "invalid command: expected {\"command\": NAME, \"arguments\": {...}}"}}},
            {R"({"command": 7})", {{"result", 1}, {"text", "invalid command: expected {\"command\": NAME, \"arguments\": {...}}"}}},
            {R"({"command": "lease4-get", "arguments": []})", {{"result", 1}, {"text", "\"arguments\" must be an object"}}},
            {R"({"command": "nope"})", {{"result", 2}, {"text", "'nope' command not supported."}}},
            {R"({"command": "lease4-get", "arguments": {"ip-address": "127.0.0.9"}})", {{"result", 3}, {"text", "Lease not found."}}},
            {R"({"command": "lease4-del", "arguments": {"ip-address": "300.1.1.1"}})",
             {{"result", 1}, {"text", "'300.1.1.1' is not an IPv4 address"}}},
        };
        for (const auto& [req, want] : cases) {
            INFO(req);
            CHECK(nlohmann::json::parse(unix_exchange(dir / "control.sock", req)) == want);
        }
        // The command is answered without waiting for the half-close (the document is complete).
        reply = nlohmann::json::parse(unix_exchange(dir / "control.sock", R"({"command": "status-get"})", false));
        CHECK(reply["result"] == 0);
    }
    std::filesystem::remove_all(dir);
}
