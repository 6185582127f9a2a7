#include "fleetconf/blockcfg/client.hpp"
#include "fleetconf/blockcfg/control_server.hpp"

#include "fleetconf/common/crypto.hpp"
#include "fleetconf/common/log.hpp"

#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>
#include <asio/read.hpp>
#include <asio/write.hpp>
#include "../support/deadline_io.hpp"
#include <catch2/catch.hpp>

#include <atomic>
#include <future>
#include <thread>

using namespace fleetconf::blockcfg;
using namespace std::chrono_literals;
using nlohmann::json;
namespace cm = fleetconf::common;

namespace {

protocol::Key test_key() { return {"admin", cm::random_bytes(32)}; }

// A server on 127.0.0.1 (ephemeral port) over an in-memory device, run on its own thread.
struct Fixture {
    MemoryDevice* mem = nullptr;
    std::unique_ptr<ConfigService> svc;
    asio::io_context io;
    std::unique_ptr<ControlServer> server;
    std::thread thread;
    protocol::Key key = test_key();
    cm::Endpoint ep;

    explicit Fixture(ControlServerOptions opts = {}) {
        auto dev = std::make_unique<MemoryDevice>(512, 512);
        mem = dev.get();
        REQUIRE_FALSE(Store::format(*dev, {}, to_payload(Config{})));
        std::error_code ec;
        std::string msg;
        auto store = Store::open(*dev, ec, msg);
        REQUIRE(store);
        svc = std::make_unique<ConfigService>("proxy", std::move(dev), std::move(*store), cm::log::get("block"));
        opts.listen = cm::Endpoint{cm::Ipv4{127, 0, 0, 1}, 0};
        server = std::make_unique<ControlServer>(io, std::map<std::string, ConfigService*>{{"proxy", svc.get()}}, protocol::KeyRing{{key}},
                                                 opts, cm::log::get("block"));
        server->start();
        ep = cm::Endpoint{cm::Ipv4{127, 0, 0, 1}, server->port()};
        thread = std::thread([this] { io.run(); });
    }
    ~Fixture() {
        asio::post(io, [this] { server->stop(); });
        thread.join();
    }
    Client client() { return Client(ep, key); }
    // Read on the server's own thread, as the status endpoint does.
    ControlServer::Stats server_stats() {
        std::promise<ControlServer::Stats> p;
        asio::post(io, [&] { p.set_value(server->stats()); });
        return p.get_future().get();
    }
    std::uint64_t generation() const { return svc->snapshot().gen.generation; }
};

// A raw TCP peer: reads the hello, then lets the test send arbitrary bytes.
struct Raw {
    asio::io_context io;
    asio::ip::tcp::socket s{io};
    protocol::Nonce nonce{};
    explicit Raw(const cm::Endpoint& ep, bool read_hello = true) {
        s.connect({asio::ip::make_address("127.0.0.1"), ep.port});
        if (!read_hello) return;
        const auto until = fleetconf::test::in_seconds(10);
        std::uint8_t hdr[4];
        fleetconf::test::read_exact(s, hdr, sizeof hdr, until);
        std::vector<std::uint8_t> body(37);
        fleetconf::test::read_exact(s, body.data(), body.size(), until);
        nonce = *protocol::decode_hello(body);
    }
    void send(const std::vector<std::uint8_t>& bytes) { asio::write(s, asio::buffer(bytes)); }
    std::vector<std::uint8_t> read_frame() {
        const auto until = fleetconf::test::in_seconds(10);
        std::uint8_t h[4];
        fleetconf::test::read_exact(s, h, sizeof h, until);
        std::vector<std::uint8_t> b(std::uint32_t{h[0]} << 24 | std::uint32_t{h[1]} << 16 | std::uint32_t{h[2]} << 8 | h[3]);
        fleetconf::test::read_exact(s, b.data(), b.size(), until);
        return b;
    }
    // True when the server closed the connection without a reply (within 10 s).
    bool closed_by_server() {
        std::uint8_t b;
        std::error_code ec;
        fleetconf::test::wait_readable(s, fleetconf::test::in_seconds(10));
        s.read_some(asio::buffer(&b, 1), ec);
        return ec == asio::error::eof || ec == asio::error::connection_reset;
    }
};

json add(const std::string& host, int port) { return {{"op", "add"}, {"host", host}, {"address", "10.0.0.1"}, {"port", port}}; }

}  // namespace

TEST_CASE("control socket: changes are durable and replies carry the generation", "[server]") {
    Fixture f;
    auto c = f.client();
    auto r = c.call(add("a.example", 443));
    CHECK(r["ok"] == true);
    CHECK(r["generation"] == 2);
    CHECK(r["previous_generation"] == 1);
    r = c.call(add("a.example", 443));
    CHECK(r["ok"] == false);
    CHECK(r["error"]["code"] == "EXISTS");
    CHECK(r["generation"] == 2);
    r = c.call({{"op", "upsert"}, {"host", "b.example"}, {"address", "10.0.0.2"}, {"port", 80}, {"expect_generation", 1}});
    CHECK(r["error"]["code"] == "CONFLICT");
    r = c.call({{"op", "list"}});
    CHECK(r["routes"].size() == 1);
    r = c.call({{"op", "get"}, {"host", "A.EXAMPLE"}});
    CHECK(r["route"]["port"] == 443);
    CHECK(c.call({{"op", "rollback"}, {"generation", 1}})["generation"] == 3);
    CHECK(c.call({{"op", "list"}})["routes"].empty());
    CHECK(c.call({{"op", "history"}})["generations"].size() == 3);
    CHECK(c.call({{"op", "status"}})["device"] == "proxy");
    CHECK(c.call({{"op", "nope"}})["error"]["code"] == "BAD_REQUEST");
    CHECK(c.call({{"op", "list"}, {"device", "other"}})["error"]["code"] == "NOT_FOUND");
    // What was acknowledged is on the device: reopen the raw bytes.
    MemoryDevice copy = *f.mem;
    std::error_code ec;
    std::string msg;
    auto s = Store::open(copy, ec, msg);
    REQUIRE(s);
    CHECK(s->generation() == 3);
    // The counters the status endpoint shows.
    const auto st = f.svc->stats();
    CHECK(st.commits == 2);
    CHECK(st.applied == 2);
    CHECK(st.refused == 2);  // EXISTS and CONFLICT
    CHECK(st.commit_failures == 0);
    CHECK(st.last_error.empty());
    CHECK(f.server_stats().requests == 11);  // every call above
    CHECK(f.server_stats().auth_failures == 0);
    CHECK(f.server_stats().listening);
}

TEST_CASE("control socket: attacks close the connection and change nothing", "[server][security]") {
    ControlServerOptions opts;
    opts.read_timeout = 300ms;
    opts.max_frame = 4096;
    opts.max_auth_failures = 1000;  // this test is about single failures
    Fixture f(opts);
    const auto before = f.generation();
    const std::string body = add("evil.example", 1).dump();

    SECTION("forged tag") {
        Raw r(f.ep);
        protocol::Key wrong{"admin", cm::random_bytes(32)};
        r.send(protocol::frame(protocol::encode_request(wrong, r.nonce, 1, body)));
        CHECK(r.closed_by_server());
    }
    SECTION("unknown key id") {
        Raw r(f.ep);
        protocol::Key other{"intruder", f.key.secret};
        r.send(protocol::frame(protocol::encode_request(other, r.nonce, 1, body)));
        CHECK(r.closed_by_server());
    }
    SECTION("replay on the same connection and on a new one") {
        Raw r(f.ep);
        const auto req = protocol::frame(protocol::encode_request(f.key, r.nonce, 1, body));
        r.send(req);
        (void)r.read_frame();  // the first copy is answered (and the route added once)
        r.send(req);
        CHECK(r.closed_by_server());
        Raw r2(f.ep);
        r2.send(req);
        CHECK(r2.closed_by_server());
        CHECK(f.generation() == before + 1);
        CHECK(f.client().call({{"op", "list"}})["routes"].size() == 1);
        return;
    }
    SECTION("reordered sequence number") {
        Raw r(f.ep);
        r.send(protocol::frame(protocol::encode_request(f.key, r.nonce, 2, body)));
        CHECK(r.closed_by_server());
    }
    SECTION("length above the cap") {
        Raw r(f.ep);
        r.send({0x00, 0x10, 0x00, 0x00});
        CHECK(r.closed_by_server());
    }
    SECTION("truncated frame, then silence: read timeout") {
        Raw r(f.ep);
        auto req = protocol::frame(protocol::encode_request(f.key, r.nonce, 1, body));
        req.resize(req.size() / 2);
        r.send(req);
        CHECK(r.closed_by_server());
    }
    SECTION("garbage bytes") {
        Raw r(f.ep);
        r.send({0, 0, 0, 5, 'h', 'e', 'l', 'l', 'o'});
        CHECK(r.closed_by_server());
    }
    CHECK(f.generation() == before);
    CHECK(f.client().call({{"op", "list"}})["routes"].empty());
}

TEST_CASE("control socket: an altered reply is refused by the client", "[server][security]") {
    Fixture f;
    Raw r(f.ep);
    protocol::ClientSession c(f.key);
    REQUIRE_FALSE(c.on_hello(protocol::encode_hello(r.nonce)));
    r.send(protocol::frame(c.request(R"({"op":"list"})")));
    auto reply = r.read_frame();
    reply[reply.size() - 3] ^= 0x01;  // tamper in transit
    std::string body;
    CHECK(c.on_reply(reply, body) == errc::unauthorized);
}

TEST_CASE("control socket: repeated failures from one address are rate-limited", "[server][security]") {
    ControlServerOptions opts;
    opts.max_auth_failures = 3;
    Fixture f(opts);
    for (int i = 0; i < 3; ++i) {
        Raw r(f.ep);
        r.send(protocol::frame(protocol::encode_request({"admin", cm::random_bytes(32)}, r.nonce, 1, "{}")));
        CHECK(r.closed_by_server());
    }
    // Now even a correct client is turned away, and told why (BUSY instead of HELLO).
    try {
        f.client();
        FAIL("a blocked address was served");
    } catch (const ClientError& e) {
        CHECK(std::string(e.what()) ==
              f.ep.to_string() + ": refused: this address is refused for 60 s after repeated failed authentications");
    }
    CHECK(f.server_stats().auth_failures == 3);
}

TEST_CASE("control socket: a full server says busy; only a failed authentication suggests the key (issue 16.12)", "[server]") {
    ControlServerOptions opts;
    opts.limits.max_connections = 1;
    Fixture f(opts);
    auto first = f.client();  // holds the only slot
    REQUIRE(first.call({{"op", "list"}})["ok"] == true);
    std::string busy;
    try {
        f.client();
    } catch (const ClientError& e) {
        busy = e.what();
    }
    CHECK(busy == f.ep.to_string() + ": refused: busy: too many connections open; try again later");
    CHECK(busy.find("key") == std::string::npos);
    // The raw frame: "FCBB", version 1, reason 1, then the text.
    Raw r(f.ep, false);
    const auto frame = r.read_frame();
    auto decoded = protocol::decode_busy(frame);
    REQUIRE(decoded);
    CHECK(decoded->reason == protocol::BusyReason::too_many_connections);
    CHECK(frame[0] == 'F');
    CHECK(frame[3] == 'B');
}

TEST_CASE("control socket: a wrong key is reported as an authentication failure", "[server]") {
    Fixture f;
    Client wrong(f.ep, test_key());  // same id, another secret
    try {
        wrong.call({{"op", "list"}});
        FAIL("a wrong key was served");
    } catch (const ClientError& e) {
        CHECK(std::string(e.what()).find("after the request: authentication failed (wrong key, or a key id the server does not know)") !=
              std::string::npos);
    }
}

TEST_CASE("8 clients doing compare-and-swap increments lose no update", "[server][concurrency]") {
    Fixture f;
    REQUIRE(f.client().call({{"op", "add"}, {"host", "counter.example"}, {"address", "10.0.0.1"}, {"port", 1000}})["ok"] == true);
    constexpr int kClients = 8, kEach = 20;
    std::vector<std::thread> threads;
    std::atomic<bool> ordered{true}, only_conflicts{true};
    std::atomic<int> conflicts{0};
    for (int t = 0; t < kClients; ++t)
        threads.emplace_back([&] {
            auto c = f.client();
            std::uint64_t last = 0;
            for (int done = 0; done < kEach;) {
                auto g = c.call({{"op", "get"}, {"host", "counter.example"}});
                const std::uint64_t gen = g["generation"];
                if (gen < last) ordered = false;
                last = gen;
                const int port = g["route"]["port"];
                auto r = c.call({{"op", "update"},
                                 {"host", "counter.example"},
                                 {"address", "10.0.0.1"},
                                 {"port", port + 1},
                                 {"expect_generation", gen}});
                if (r["ok"] == true) {
                    const std::uint64_t ng = r["generation"];
                    if (ng <= last) ordered = false;
                    last = ng;
                    ++done;
                } else {
                    if (r["error"]["code"] != "CONFLICT") only_conflicts = false;
                    ++conflicts;
                }
            }
        });
    for (auto& t : threads) t.join();
    auto r = f.client().call({{"op", "get"}, {"host", "counter.example"}});
    CHECK(r["route"]["port"] == 1000 + kClients * kEach);
    CHECK(ordered);
    CHECK(only_conflicts);
    CHECK(f.generation() == 2 + kClients * kEach);
}

// ---- docs/blockcfg-protocol.md: every limit, timeout and default ----
TEST_CASE("docs/blockcfg-protocol.md: the documented defaults are the code's", "[server][limits]") {
    const ControlServerOptions o;
    CHECK(o.listen == cm::Endpoint{cm::Ipv4{127, 0, 0, 1}, 7300});  // loopback
    CHECK(o.max_frame == 1u << 20);                                 // 1 MiB
    CHECK(protocol::kDefaultMaxFrame == 1u << 20);
    CHECK(o.read_timeout == 10s);
    CHECK(o.idle_timeout == 60s);
    CHECK(o.limits.max_connections == 256);
    CHECK(o.limits.max_per_address == 32);
    CHECK(o.limits.max_unauthenticated == 64);
    CHECK(o.limits.login_grace == 10s);
    CHECK(o.max_auth_failures == 5);
    CHECK(o.failure_window == 60s);
    CHECK(o.block_time == 60s);
    CHECK(kMaxRoutes == 10000);
}

TEST_CASE("docs/blockcfg-protocol.md: a frame of exactly 1 MiB is read, one byte more closes before the body", "[server][limits]") {
    Fixture f;  // the default cap
    {
        Raw r(f.ep);
        // A request padded to exactly the cap: {"op":"list","pad":"xxx..."} (the pad is refused, but only after the
        // whole frame was read, authenticated and answered).
        const std::string head = R"({"op":"list","pad":")", tail = R"("})";
        auto empty = protocol::encode_request(f.key, r.nonce, 1, head + tail);
        const std::size_t pad = (1u << 20) - empty.size();
        auto req = protocol::encode_request(f.key, r.nonce, 1, head + std::string(pad, 'x') + tail);
        REQUIRE(req.size() == 1u << 20);
        r.send(protocol::frame(req));
        const auto reply = r.read_frame();  // answered, not closed
        CHECK_FALSE(reply.empty());
    }
    {
        Raw r(f.ep);
        const std::uint32_t over = (1u << 20) + 1;
        r.send({static_cast<std::uint8_t>(over >> 24), static_cast<std::uint8_t>(over >> 16), static_cast<std::uint8_t>(over >> 8),
                static_cast<std::uint8_t>(over)});
        CHECK(r.closed_by_server());  // on the length alone: no body byte was sent
    }
}

TEST_CASE("docs/blockcfg-protocol.md: 4 failed authentications leave an address served, the 5th blocks it", "[server][limits]") {
    Fixture f;  // the defaults: 5 within 60 s
    auto fail_once = [&] {
        Raw r(f.ep);
        r.send(protocol::frame(protocol::encode_request({"admin", cm::random_bytes(32)}, r.nonce, 1, "{}")));
        REQUIRE(r.closed_by_server());
    };
    for (int i = 0; i < 4; ++i) fail_once();
    CHECK(f.client().call({{"op", "list"}})["ok"] == true);  // at 4: still served
    fail_once();
    try {
        f.client();
        FAIL("served after 5 failures");
    } catch (const ClientError& e) {
        CHECK(std::string(e.what()) ==
              f.ep.to_string() + ": refused: this address is refused for 60 s after repeated failed authentications");
    }
}

TEST_CASE("docs/blockcfg-protocol.md: a stalled frame and an idle connection are closed after their timeouts, not before",
          "[server][limits]") {
    ControlServerOptions opts;  // the mechanism, on a shorter clock than the defaults checked above
    opts.read_timeout = 400ms;
    opts.idle_timeout = 800ms;
    opts.limits.login_grace = 800ms;  // before the first request, idle time is the login grace
    Fixture f(opts);
    auto closed_after = [](Raw& r) {
        const auto t0 = std::chrono::steady_clock::now();
        REQUIRE(r.closed_by_server());
        return std::chrono::steady_clock::now() - t0;
    };
    {
        Raw r(f.ep);
        r.send({0, 0, 0, 100, 1, 2, 3});  // a frame started and left
        CHECK(closed_after(r) >= 400ms - 50ms);
    }
    {
        Raw r(f.ep);  // nothing sent after the hello
        CHECK(closed_after(r) >= 800ms - 50ms);
    }
    {
        Raw r(f.ep);  // an answered request, then idle: the idle timeout again
        protocol::ClientSession c(f.key);
        REQUIRE_FALSE(c.on_hello(protocol::encode_hello(r.nonce)));
        r.send(protocol::frame(c.request(R"({"op":"list"})")));
        (void)r.read_frame();
        CHECK(closed_after(r) >= 800ms - 50ms);
    }
}

// ---- issue 17: budgets per address, before login, and whole-phase deadlines ----

namespace {
// A raw connection from a chosen loopback address; says whether the server greeted it (HELLO) or refused
// it (BUSY, with its text).
struct From {
    asio::io_context io;
    asio::ip::tcp::socket s{io};
    std::string busy;  // the BUSY text, empty when greeted
    From(const cm::Endpoint& ep, const char* source) {
        s.open(asio::ip::tcp::v4());
        s.bind({asio::ip::make_address(source), 0});
        s.connect({asio::ip::make_address("127.0.0.1"), ep.port});
        const auto until = fleetconf::test::in_seconds(10);
        std::uint8_t h[4];
        fleetconf::test::read_exact(s, h, sizeof h, until);
        std::vector<std::uint8_t> b(std::uint32_t{h[2]} << 8 | h[3]);
        fleetconf::test::read_exact(s, b.data(), b.size(), until);
        if (auto d = protocol::decode_busy(b)) busy = d->message;
    }
    bool greeted() const { return busy.empty(); }
};
}  // namespace

TEST_CASE("control socket: silent connections from one address leave the other slots to other addresses", "[server][limits][issue17]") {
    ControlServerOptions opts;
    opts.limits.max_connections = 8;
    opts.limits.max_per_address = 3;
    opts.limits.max_unauthenticated = 8;
    Fixture f(opts);
    std::vector<std::unique_ptr<From>> flood;
    for (int i = 0; i < 3; ++i) {
        flood.push_back(std::make_unique<From>(f.ep, "127.0.0.1"));
        CHECK(flood.back()->greeted());
    }
    From fourth(f.ep, "127.0.0.1");
    CHECK(fourth.busy == "busy: too many connections from this address");
    // Another address is served at once, and a real client from it logs in and works.
    From other(f.ep, "127.0.0.2");
    CHECK(other.greeted());
    // A real client from 127.0.0.1 is refused while the flood holds that address's share.
    CHECK_THROWS_WITH(f.client().call({{"op", "list"}}), Catch::Contains("too many connections from this address"));
    flood.clear();  // the flood ends: its address is served again
    for (int i = 0; i < 50 && f.server_stats().connections > 1; ++i) std::this_thread::sleep_for(20ms);
    CHECK(f.client().call({{"op", "list"}})["ok"] == true);
}

TEST_CASE("control socket: connections that never log in cannot hold more than the login budget", "[server][limits][issue17]") {
    ControlServerOptions opts;
    opts.limits.max_connections = 16;
    opts.limits.max_per_address = 0;
    opts.limits.max_unauthenticated = 2;
    Fixture f(opts);
    auto logged_in = f.client();
    REQUIRE(logged_in.call({{"op", "list"}})["ok"] == true);  // authenticated: not in the login budget
    From a(f.ep, "127.0.0.2"), b(f.ep, "127.0.0.3");
    CHECK(a.greeted());
    CHECK(b.greeted());
    From c(f.ep, "127.0.0.4");
    CHECK(c.busy == "busy: too many connections are logging in; try again in a few seconds");
    CHECK(logged_in.call({{"op", "list"}})["ok"] == true);  // the logged-in admin keeps working
}

TEST_CASE("control socket: a client trickling a frame is cut when the login grace is over, not kept by each byte",
          "[server][limits][issue17]") {
    ControlServerOptions opts;
    opts.read_timeout = 10s;
    opts.limits.login_grace = 300ms;
    Fixture f(opts);
    Raw r(f.ep);
    // One byte of a 100-byte frame every 50 ms: a per-read timeout would never fire; 60 bytes take 3 s.
    const std::vector<std::uint8_t> frame = {0, 0, 0, 100};
    bool cut = false;
    for (int i = 0; i < 60 && !cut; ++i) {
        std::error_code ec;
        const std::uint8_t byte = i < 4 ? frame[static_cast<std::size_t>(i)] : 0x55;
        asio::write(r.s, asio::buffer(&byte, 1), ec);
        if (ec) cut = true;
        r.s.non_blocking(true);
        std::uint8_t b;
        r.s.read_some(asio::buffer(&b, 1), ec);
        r.s.non_blocking(false);
        if (ec == asio::error::eof || ec == asio::error::connection_reset) cut = true;
        std::this_thread::sleep_for(50ms);
    }
    CHECK(cut);
}

TEST_CASE("control socket: refusals are counted by reason in /metrics", "[server][limits][issue17]") {
    ControlServerOptions opts;
    opts.limits.max_per_address = 1;
    Fixture f(opts);
    From a(f.ep, "127.0.0.1");
    From b(f.ep, "127.0.0.1");
    CHECK(!b.greeted());
    std::promise<std::string> p;
    asio::post(f.io, [&] {
        std::string out;
        f.server->metrics(out);
        p.set_value(out);
    });
    const auto m = p.get_future().get();
    CHECK(m.find("fleetconf_listener_refused_total{listener=\"block\",reason=\"address_full\"} 1\n") != std::string::npos);
    CHECK(m.find("fleetconf_listener_connections{listener=\"block\"} 1\n") != std::string::npos);
}
