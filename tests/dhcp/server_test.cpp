#include "fleetconf/dhcp/server.hpp"

#include "fleetconf/common/crypto.hpp"

#include <catch2/catch.hpp>

using namespace fleetconf::dhcp;
using fleetconf::common::Ipv4;
using fleetconf::common::Mac;

namespace {

constexpr std::uint64_t kNow = 1'800'000'000;

fleetconf::common::Site site(bool authoritative = true) {
    std::string text = R"({
      "networks": [{"name": "br0", "subnet": "10.0.0.0/24", "gateway": "10.0.0.1", "dns": ["10.0.0.1"],
        "pools": ["10.0.0.100-10.0.0.102"], "lease_time": 600,
        "options": {"syslog": "10.0.0.2", "monitoring": "10.0.0.3:8094", "ntp": ["10.0.0.4"], "always_send": ["syslog"],
                    "custom": [{"code": 230, "type": "string", "value": "x"}]}}],
      "unikernels": [
        {"name": "fixed", "network": "br0", "mac": "00:80:41:00:00:01", "address": "10.0.0.10", "config_uri": "git://h/fixed.git"},
        {"name": "web", "network": "br0"},
        {"name": "cid", "network": "br0", "mac": "00:80:41:00:00:03", "client_id": "ff0102", "address": "10.0.0.12"}
      ],
      "services": {"dhcp": {"authoritative": AUTH}}
    })";
    text.replace(text.find("AUTH"), 4, authoritative ? "true" : "false");
    return fleetconf::common::parse_site(text, "/tmp", "t.json");
}

Config cfg(bool authoritative = true) {
    return make_config(site(authoritative), [](const std::string&) { return std::nullopt; });
}

Message request(MessageType t, const Mac& mac) {
    Message m;
    m.xid = 0x1234;
    std::copy(mac.bytes().begin(), mac.bytes().end(), m.chaddr.begin());
    m.options.push_back({opt::message_type, {static_cast<std::uint8_t>(t)}});
    return m;
}

// The reply of a decision, REQUIREd first: a check on a reply that is not there fails instead of reading garbage.
const Message& reply_of(const Decision& d) {
    REQUIRE(d.reply);
    return *d.reply;
}

const Mac kA = *Mac::parse("02:00:00:00:00:0a");
const Mac kB = *Mac::parse("02:00:00:00:00:0b");

struct World {
    Config c = cfg();
    MemoryLeaseStore leases;
    std::uint64_t now = kNow;
    Decision run(const Message& m) {
        auto d = decide(Request{m, "br0"}, now, leases, c);
        leases.apply(d.changes);
        return d;
    }
    // DISCOVER + REQUEST(SELECTING): the address bound.
    Ipv4 dora(const Mac& mac, Message base = {}) {
        auto disc = request(MessageType::discover, mac);
        for (const auto& o : base.options) disc.options.push_back(o);
        auto offer = run(disc);
        REQUIRE(offer.reply);
        auto req = request(MessageType::request, mac);
        for (const auto& o : base.options) req.options.push_back(o);
        req.options.push_back({opt::server_id, addr_bytes(Ipv4(10, 0, 0, 1))});
        req.options.push_back({opt::requested_address, addr_bytes(offer.reply->yiaddr)});
        auto ack = run(req);
        REQUIRE(ack.reply);
        REQUIRE(ack.reply->type() == MessageType::ack);
        REQUIRE(ack.durable_before_reply);
        return ack.reply->yiaddr;
    }
};

}  // namespace

TEST_CASE("DISCOVER -> OFFER with lease times, server id and options in PRL order", "[dhcp][decide]") {
    World w;
    auto m = request(MessageType::discover, kA);
    m.options.push_back({opt::parameter_list, {6, 3, 1, 42, 125, 230}});
    m.options.push_back({opt::client_id, {1, 2, 0, 0, 0, 0, 0x0a}});
    auto d = w.run(m);
    REQUIRE(d.reply);
    const auto& r = *d.reply;
    CHECK(r.type() == MessageType::offer);
    CHECK(r.op == 2);
    CHECK(r.xid == 0x1234);
    CHECK(r.yiaddr == Ipv4(10, 0, 0, 100));
    CHECK(*r.address_option(opt::server_id) == Ipv4(10, 0, 0, 1));
    REQUIRE(r.find(opt::lease_time));
    REQUIRE(r.find(opt::renewal_t1));
    REQUIRE(r.find(opt::rebinding_t2));
    CHECK(r.find(opt::lease_time)->data == u32_bytes(600));
    CHECK(r.find(opt::renewal_t1)->data == u32_bytes(300));
    CHECK(r.find(opt::rebinding_t2)->data == u32_bytes(525));
    std::vector<std::uint8_t> order;
    for (const auto& o : r.options) order.push_back(o.code);
    // 53, 54, lease times, then the PRL order, then always-send (7), then the client id echo (RFC 6842).
    CHECK(order == std::vector<std::uint8_t>{53, 54, 51, 58, 59, 6, 3, 1, 42, 125, 230, 7, 61});
    REQUIRE(r.find(opt::vivso));
    CHECK(fleetconf::common::to_hex(r.find(opt::vivso)->data) == "0000c2ac0f000d31302e302e302e333a38303934");
    REQUIRE(d.changes.size() == 1);
    CHECK(d.changes[0].lease.state == LeaseState::offered);
    CHECK(d.changes[0].lease.expires == kNow + 30);
    CHECK_FALSE(d.durable_before_reply);
}

TEST_CASE("SELECTING: ACK for the offered address, NAK for another, silence for another server", "[dhcp][decide]") {
    World w;
    CHECK(w.dora(kA) == Ipv4(10, 0, 0, 100));
    // B selects an address it was not offered.
    auto bad = request(MessageType::request, kB);
    bad.options.push_back({opt::server_id, addr_bytes(Ipv4(10, 0, 0, 1))});
    bad.options.push_back({opt::requested_address, addr_bytes(Ipv4(10, 0, 0, 100))});
    auto d = w.run(bad);
    REQUIRE(d.reply);
    CHECK(d.reply->type() == MessageType::nak);
    CHECK(d.reply->broadcast_flag());
    // B was offered something, then chose another server: the offer is withdrawn, no reply.
    w.run(request(MessageType::discover, kB));
    auto other = request(MessageType::request, kB);
    other.options.push_back({opt::server_id, addr_bytes(Ipv4(10, 0, 0, 99))});
    other.options.push_back({opt::requested_address, addr_bytes(Ipv4(10, 0, 0, 101))});
    d = w.run(other);
    CHECK_FALSE(d.reply);
    CHECK(w.leases.by_address(Ipv4(10, 0, 0, 101)) == nullptr);
}

TEST_CASE("INIT-REBOOT: ACK own address, NAK wrong network or someone else's, never ACK without a record", "[dhcp][decide]") {
    World w;
    const Ipv4 a = w.dora(kA);
    auto reboot = [&](World& world, const Mac& mac, Ipv4 addr) {
        auto m = request(MessageType::request, mac);
        m.options.push_back({opt::requested_address, addr_bytes(addr)});
        return world.run(m);
    };
    auto type_of = [](const Decision& d) {
        REQUIRE(d.reply);
        return *d.reply->type();
    };
    CHECK(type_of(reboot(w, kA, a)) == MessageType::ack);
    CHECK(type_of(reboot(w, kA, Ipv4(192, 168, 9, 9))) == MessageType::nak);  // moved to another network
    CHECK(type_of(reboot(w, kB, a)) == MessageType::nak);                     // A's address
    // RFC 2131 4.3.2: a server with no record of the client never ACKs. Authoritative: NAK (the client
    // restarts with DISCOVER, as Kea and ISC dhcpd do); nothing is bound.
    auto d = reboot(w, kB, Ipv4(10, 0, 0, 102));
    CHECK(type_of(d) == MessageType::nak);
    CHECK(d.changes.empty());
    CHECK_THAT(d.log, Catch::Contains("no record of this client"));
    CHECK(w.leases.by_address(Ipv4(10, 0, 0, 102)) == nullptr);
    // A client with a record asking for another address of this network: NAK naming its own.
    d = reboot(w, kA, Ipv4(10, 0, 0, 103));
    CHECK(type_of(d) == MessageType::nak);
    CHECK_THAT(d.log, Catch::Contains("this client's address is " + a.to_string()));

    // Not authoritative (issue 16.4, 16.5): silence for a client without a record and for an address
    // on another network, so that another server's clients on a shared segment are left alone.
    World na;
    na.c = cfg(false);
    d = reboot(na, kB, Ipv4(10, 0, 0, 101));
    CHECK_FALSE(d.reply);
    CHECK(d.changes.empty());
    CHECK_THAT(d.log, Catch::Contains("not authoritative: silent"));
    d = reboot(na, kB, Ipv4(192, 168, 9, 9));
    CHECK_FALSE(d.reply);
    CHECK_THAT(d.log, Catch::Contains("is not on network 10.0.0.0/24"));
    const Ipv4 b = na.dora(kB);
    CHECK(type_of(reboot(na, kB, b)) == MessageType::ack);  // its own record: ACK
    d = reboot(na, kB, Ipv4(192, 168, 9, 9));
    CHECK_FALSE(d.reply);  // still silent for another network, record or not
}

TEST_CASE("RENEWING and REBINDING extend; a stranger's ciaddr is NAKed", "[dhcp][decide]") {
    World w;
    const Ipv4 a = w.dora(kA);
    w.now += 400;
    auto renew = request(MessageType::request, kA);
    renew.ciaddr = a;
    auto d = w.run(renew);
    REQUIRE(d.reply);
    CHECK(d.reply->type() == MessageType::ack);
    CHECK(d.reply->ciaddr == a);
    CHECK(w.leases.by_address(a)->expires == w.now + 600);
    auto stranger = request(MessageType::request, kB);
    stranger.ciaddr = a;
    CHECK(reply_of(w.run(stranger)).type() == MessageType::nak);
}

TEST_CASE("DECLINE puts the address on probation; the next DISCOVER gets another", "[dhcp][decide]") {
    World w;
    const Ipv4 a = w.dora(kA);
    auto dec = request(MessageType::decline, kA);
    dec.options.push_back({opt::server_id, addr_bytes(Ipv4(10, 0, 0, 1))});
    dec.options.push_back({opt::requested_address, addr_bytes(a)});
    CHECK_FALSE(w.run(dec).reply);
    CHECK(w.leases.by_address(a)->state == LeaseState::declined);
    auto d = w.run(request(MessageType::discover, kA));
    REQUIRE(d.reply);
    CHECK(d.reply->yiaddr != a);
    auto want = request(MessageType::discover, kB);
    want.options.push_back({opt::requested_address, addr_bytes(a)});
    CHECK(reply_of(w.run(want)).yiaddr != a);  // still on probation
    w.now += 3601;                             // probation over: it can be offered again
    CHECK(reply_of(w.run(want)).yiaddr == a);
}

TEST_CASE("RELEASE frees the address but the same client gets it back", "[dhcp][decide]") {
    World w;
    const Ipv4 a = w.dora(kA);
    auto rel = request(MessageType::release, kA);
    rel.ciaddr = a;
    rel.options.push_back({opt::server_id, addr_bytes(Ipv4(10, 0, 0, 1))});
    CHECK_FALSE(w.run(rel).reply);
    CHECK(w.leases.by_address(a)->state == LeaseState::released);
    // Another client prefers never-used addresses over A's released one.
    CHECK(reply_of(w.run(request(MessageType::discover, kB))).yiaddr != a);
    CHECK(w.dora(kA) == a);
}

TEST_CASE("RELEASE of a reserved address ends the lease; the reservation stays (issue 16.6)", "[dhcp][decide]") {
    World w;
    // "fixed" is reserved 10.0.0.10 by its MAC.
    const Mac web = w.c.networks[0].hosts[0].mac;  // the unikernel "fixed"
    REQUIRE(w.c.networks[0].hosts[0].fixed);
    const Ipv4 fixed = *w.c.networks[0].hosts[0].fixed;
    CHECK(w.dora(web) == fixed);
    auto rel = request(MessageType::release, web);
    rel.ciaddr = fixed;
    rel.options.push_back({opt::server_id, addr_bytes(Ipv4(10, 0, 0, 1))});
    auto d = w.run(rel);
    CHECK_FALSE(d.reply);
    REQUIRE(d.changes.size() == 1);
    CHECK(d.changes[0].lease.state == LeaseState::released);
    REQUIRE(w.leases.by_address(fixed) != nullptr);
    CHECK(w.leases.by_address(fixed)->state == LeaseState::released);
    CHECK(w.leases.by_address(fixed)->expires == w.now);
    // Another client cannot have it; the unikernel gets it again.
    auto other = request(MessageType::discover, kB);
    other.options.push_back({opt::requested_address, addr_bytes(fixed)});
    auto o = w.run(other);
    REQUIRE(o.reply);
    CHECK(o.reply->yiaddr != fixed);
    CHECK(w.dora(web) == fixed);
    CHECK(w.leases.by_address(fixed)->state == LeaseState::bound);
    // A RELEASE by a client that does not hold it changes nothing.
    auto stranger = request(MessageType::release, kB);
    stranger.ciaddr = fixed;
    d = w.run(stranger);
    CHECK(d.changes.empty());
    CHECK_THAT(d.log, Catch::Contains("not its lease, ignored"));
}

TEST_CASE("host names from the network are stored and logged escaped (issue 16.1, 16.2)", "[dhcp][decide]") {
    World w;
    Message base;
    base.options.push_back({opt::hostname, {'x', '\n', 'A', 'C', 'K', ' ', 0xff}});
    const Ipv4 a = w.dora(kA, base);
    const Lease* l = w.leases.by_address(a);
    REQUIRE(l != nullptr);
    CHECK(l->hostname == "x\\x0aACK \\xff");
    auto disc = request(MessageType::discover, kB);
    disc.options.push_back({opt::hostname, {0xff}});
    auto d = w.run(disc);
    CHECK_THAT(d.log, Catch::Contains("(host name \"\\xff\")"));
    CHECK(d.log.find('\n') == std::string::npos);
}

TEST_CASE("pool exhaustion: no offer, and the log says why", "[dhcp][decide]") {
    World w;
    for (int i = 0; i < 3; ++i) {
        auto mac = *Mac::parse(std::string("02:00:00:00:01:0").append(std::to_string(i)));
        w.dora(mac);
    }
    auto d = w.run(request(MessageType::discover, kB));
    CHECK_FALSE(d.reply);
    CHECK_THAT(d.log, Catch::Contains("pool exhausted"));
    CHECK(d.exhausted);  // counted (v4-allocation-fail) and logged at warning by the service
    CHECK(d.network == "br0");
}

namespace {
// The view of a lease database that other servers share.
struct SharedView final : LeaseView {
    const LeaseView& inner;
    explicit SharedView(const LeaseView& v) : inner(v) {}
    const Lease* by_address(Ipv4 a) const override { return inner.by_address(a); }
    const Lease* by_client(const Bytes& c) const override { return inner.by_client(c); }
    std::optional<Ipv4> highest_in(Ipv4 f, Ipv4 l) const override { return inner.highest_in(f, l); }
    bool shared() const override { return true; }
};
}  // namespace

TEST_CASE("shared lease database: new clients spread over the pool, two servers seldom pick one address", "[dhcp][decide]") {
    auto text = R"({"networks": [{"name": "br0", "subnet": "10.0.0.0/16", "gateway": "10.0.0.1",
                    "pools": ["10.0.1.0-10.0.255.254"], "lease_time": 600}]})";
    const Config c = make_config(fleetconf::common::parse_site(text, "/tmp", "t.json"), [](const std::string&) { return std::nullopt; });
    // Two servers, each with its own view of the same (empty) table, offer to two different new clients at
    // the same moment: in-order allocation gives both the first address; spread allocation gives different ones.
    MemoryLeaseStore a_store, b_store;
    const SharedView a(a_store), b(b_store);
    const auto mac = [](int i) { return Mac(std::array<std::uint8_t, 6>{2, 0, 0, 0, 1, static_cast<std::uint8_t>(i)}); };
    int same = 0;
    for (int i = 0; i < 100; i += 2) {
        auto da = decide(Request{request(MessageType::discover, mac(i)), "br0"}, kNow, a, c);
        auto db = decide(Request{request(MessageType::discover, mac(i + 1)), "br0"}, kNow, b, c);
        REQUIRE(da.reply);
        REQUIRE(db.reply);
        same += da.reply->yiaddr == db.reply->yiaddr;
        CHECK(da.reply->yiaddr.value() >= Ipv4(10, 0, 1, 0).value());
        CHECK(db.reply->yiaddr.value() <= Ipv4(10, 0, 255, 254).value());
    }
    CHECK(same == 0);
    // Alone (not shared) the same two decisions collide: the reason for spreading.
    MemoryLeaseStore lone_a, lone_b;
    auto la = decide(Request{request(MessageType::discover, mac(0)), "br0"}, kNow, lone_a, c);
    auto lb = decide(Request{request(MessageType::discover, mac(1)), "br0"}, kNow, lone_b, c);
    REQUIRE(la.reply);
    REQUIRE(lb.reply);
    CHECK(la.reply->yiaddr == Ipv4(10, 0, 1, 0));
    CHECK(lb.reply->yiaddr == la.reply->yiaddr);
    // A client that already holds a lease keeps it; a used address is skipped; the same client is sent to
    // the same place by any server.
    MemoryLeaseStore store;
    const SharedView view(store);
    auto first = decide(Request{request(MessageType::discover, kA), "br0"}, kNow, view, c);
    REQUIRE(first.reply);
    auto again = decide(Request{request(MessageType::discover, kA), "br0"}, kNow, SharedView(b_store), c);
    REQUIRE(again.reply);
    CHECK(again.reply->yiaddr == first.reply->yiaddr);
    store.apply(first.changes);
    auto other = decide(Request{request(MessageType::discover, kA), "br0"}, kNow, view, c);
    REQUIRE(other.reply);
    CHECK(other.reply->yiaddr == first.reply->yiaddr);  // its own offer again
}

TEST_CASE("shared lease database: a full pool is still found by the in-order paths", "[dhcp][decide]") {
    World w;  // pool 10.0.0.100-102
    const SharedView view(w.leases);
    for (int i = 0; i < 3; ++i) {
        auto mac = *Mac::parse(std::string("02:00:00:00:01:0").append(std::to_string(i)));
        auto d = decide(Request{request(MessageType::discover, mac), "br0"}, w.now, view, w.c);
        REQUIRE(d.reply);
        w.leases.apply(d.changes);
    }
    auto d = decide(Request{request(MessageType::discover, kB), "br0"}, w.now, view, w.c);
    CHECK_FALSE(d.reply);
    CHECK(d.exhausted);
}

TEST_CASE("known_only: the site's unikernels are served, other clients get nothing (issue 23)", "[dhcp][decide]") {
    World w;
    w.c.networks[0].known_only = true;
    const Mac fixed = *Mac::parse("00:80:41:00:00:01");
    CHECK(reply_of(w.run(request(MessageType::discover, fixed))).yiaddr == Ipv4(10, 0, 0, 10));
    auto d = w.run(request(MessageType::discover, kA));  // a stranger's DISCOVER: ignored
    CHECK_FALSE(d.reply);
    CHECK(d.unknown_client);
    CHECK_THAT(d.log, Catch::Contains("serves known clients only"));
    auto req = request(MessageType::request, kA);  // its INIT-REBOOT: NAKed (authoritative)
    req.options.push_back({opt::requested_address, addr_bytes(Ipv4(10, 0, 0, 100))});
    d = w.run(req);
    CHECK(reply_of(d).type() == MessageType::nak);
    CHECK(d.unknown_client);
    CHECK(d.changes.empty());
    // The Albatross-derived MAC of "web" is known too.
    const Mac web = fleetconf::common::albatross_mac("br0", "web");
    CHECK(w.run(request(MessageType::discover, web)).reply);
}

TEST_CASE("reservations: by MAC, by client id, by Albatross-derived MAC; fixed wins over the pool", "[dhcp][decide]") {
    World w;
    const Mac fixed = *Mac::parse("00:80:41:00:00:01");
    auto d = w.run(request(MessageType::discover, fixed));
    REQUIRE(d.reply);
    CHECK(d.reply->yiaddr == Ipv4(10, 0, 0, 10));
    REQUIRE(d.reply->string_option(224));
    CHECK(*d.reply->string_option(224) == "git://h/fixed.git");  // the configuration URI option, always sent
    // Client id reservation, whatever the hardware address.
    auto cid = request(MessageType::discover, kB);
    cid.options.push_back({opt::client_id, {0xff, 0x01, 0x02}});
    CHECK(reply_of(w.run(cid)).yiaddr == Ipv4(10, 0, 0, 12));
    // "web" has no MAC in the site file: the Albatross-derived one is recognised, with its host name.
    const Mac web = fleetconf::common::albatross_mac("br0", "web");
    auto m = request(MessageType::discover, web);
    m.options.push_back({opt::hostname, {'w', 'e', 'b'}});
    d = w.run(m);
    CHECK(d.log.find("(web)") != std::string::npos);
    // The name alone, from the wrong MAC, is not trusted and is logged.
    auto spoof = request(MessageType::discover, kA);
    spoof.options.push_back({opt::hostname, {'w', 'e', 'b'}});
    d = w.run(spoof);
    CHECK_THAT(d.log, Catch::Contains("not its Albatross-derived MAC"));
    // A reserved address is never offered to anyone else, even when requested.
    auto greedy = request(MessageType::discover, kB);
    greedy.options.push_back({opt::requested_address, addr_bytes(Ipv4(10, 0, 0, 10))});
    CHECK(reply_of(w.run(greedy)).yiaddr != Ipv4(10, 0, 0, 10));
}

TEST_CASE("relayed requests: network by giaddr, option 82 echoed last, unknown relay ignored", "[dhcp][decide]") {
    World w;
    auto m = request(MessageType::discover, kA);
    m.giaddr = Ipv4(10, 0, 0, 254);
    m.options.push_back({opt::relay_agent, {1, 2, 'a', 'b'}});
    auto d = decide(Request{m, "some-other-if"}, kNow, w.leases, w.c);
    REQUIRE(d.reply);
    CHECK(d.reply->giaddr == Ipv4(10, 0, 0, 254));
    CHECK(d.reply->options.back().code == opt::relay_agent);
    m.giaddr = Ipv4(172, 16, 0, 1);
    CHECK_FALSE(decide(Request{m, "br0"}, kNow, w.leases, w.c).reply);
}

TEST_CASE("INFORM answers options without a lease; client identity rules", "[dhcp][decide]") {
    World w;
    auto m = request(MessageType::inform, kA);
    m.ciaddr = Ipv4(10, 0, 0, 50);
    m.options.push_back({opt::parameter_list, {1, 3}});
    auto d = w.run(m);
    REQUIRE(d.reply);
    CHECK(d.reply->type() == MessageType::ack);
    CHECK(d.reply->yiaddr.is_unspecified());
    CHECK_FALSE(d.reply->find(opt::lease_time));
    CHECK(d.changes.empty());
    // Client id beats hardware address, unless ignored.
    auto with_cid = request(MessageType::discover, kA);
    with_cid.options.push_back({opt::client_id, {1, 2, 3}});
    CHECK(client_key(with_cid, false) != client_key(with_cid, true));
    CHECK(client_key(with_cid, true) == client_key(request(MessageType::discover, kA), false));
    // Non-requests and messages without a type are ignored.
    auto reply = request(MessageType::offer, kA);
    CHECK_FALSE(w.run(reply).reply);
    Message no_type;
    CHECK_FALSE(w.run(no_type).reply);
}

TEST_CASE("ignore-client-id: a client that changes its client id keeps one lease", "[dhcp][decide]") {
    auto s = site();
    s.networks[0].ignore_client_id = true;
    World w;
    w.c = make_config(s, [](const std::string&) { return std::nullopt; });
    Message first;
    first.options.push_back({opt::client_id, {1, 1, 1}});
    const Ipv4 a = w.dora(kA, first);
    Message second;
    second.options.push_back({opt::client_id, {2, 2, 2}});
    CHECK(w.dora(kA, second) == a);
    CHECK(w.leases.all().size() == 1);
}

namespace {

Config cfg_vivso() {
    auto s = fleetconf::common::parse_site(R"({
      "networks": [{"name": "br0", "subnet": "10.0.0.0/24", "gateway": "10.0.0.1", "domain": "fleet.example",
        "pools": ["10.0.0.100-10.0.0.102"],
        "options": {"monitoring": "10.0.0.3:8094",
                    "vivso": [{"code": 1, "type": "string", "value": "acme"}, {"code": 7, "type": "hex", "value": "0102"}]}}],
      "unikernels": [{"name": "web", "network": "br0", "mac": "02:00:00:00:00:0c",
                      "options": {"vivso": [{"code": 7, "type": "hex", "value": "ff", "always_send": true}]}}]
    })",
                                           "/tmp", "t.json");
    return make_config(s, [](const std::string&) { return std::nullopt; });
}

}  // namespace

TEST_CASE("option 125: the monitoring sink and the site's sub-options in one enterprise-49836 block", "[dhcp][decide][vivso]") {
    MemoryLeaseStore leases;
    const auto c = cfg_vivso();
    auto m = request(MessageType::discover, kA);
    m.options.push_back({opt::parameter_list, {1, 3, 125}});
    auto d = decide(Request{m, "br0"}, kNow, leases, c);
    REQUIRE(d.reply);
    // 49836 = 0x0000c2ac, 25 bytes: sub-option 0 "10.0.0.3:8094", 1 "acme", 7 01 02
    REQUIRE(d.reply);
    REQUIRE(d.reply->find(opt::vivso));
    CHECK(fleetconf::common::to_hex(d.reply->find(opt::vivso)->data) ==
          "0000c2ac19"
          "000d31302e302e302e333a38303934"
          "010461636d65"
          "07020102");
    auto blocks = parse_vivso(d.reply->find(opt::vivso)->data);
    REQUIRE(blocks);
    REQUIRE(blocks->size() == 1);
    CHECK((*blocks)[0].second.size() == 3);
    // Not asked for: not sent to an unknown client ...
    auto quiet = request(MessageType::discover, kB);
    quiet.options.push_back({opt::parameter_list, {1, 3}});
    CHECK_FALSE(reply_of(decide(Request{quiet, "br0"}, kNow, leases, c)).find(opt::vivso));
    // ... but the unikernel's own sub-option 7 replaces the network's and is always sent.
    auto web = request(MessageType::discover, *Mac::parse("02:00:00:00:00:0c"));
    web.options.push_back({opt::parameter_list, {1, 3}});
    d = decide(Request{web, "br0"}, kNow, leases, c);
    REQUIRE(d.reply);
    REQUIRE(d.reply->find(opt::vivso));
    CHECK(fleetconf::common::to_hex(d.reply->find(opt::vivso)->data) ==
          "0000c2ac18"
          "000d31302e302e302e333a38303934"
          "010461636d65"
          "0701ff");
}

TEST_CASE("site vivso sub-options: codes 1-255, each once, bounded", "[site][vivso]") {
    auto errors = [](const std::string& vivso) {
        try {
            fleetconf::common::parse_site(
                R"({"networks": [{"name": "br0", "subnet": "10.0.0.0/24", "options": {"vivso": )" + vivso + "}}]}", "/tmp", "t.json");
        } catch (const fleetconf::common::SiteLoadError& e) {
            return e.errors();
        }
        return std::vector<fleetconf::common::SiteError>{};
    };
    CHECK(errors(R"([{"code": 0, "type": "string", "value": "x"}])").at(0).pointer == "/networks/0/options/vivso/0/code");
    CHECK(errors(R"([{"code": 3, "type": "u8", "value": 1}, {"code": 3, "type": "u8", "value": 2}])").at(0).message ==
          "code 3 is given twice");
    const std::string big = R"([{"code": 1, "type": "string", "value": ")" + std::string(220, 'a') + R"("}])";
    CHECK_THAT(errors(big).at(0).message, Catch::Contains("at most 200"));
    CHECK(errors(R"([{"code": 255, "type": "hex", "value": "00"}])").empty());
}

TEST_CASE("option 81 (RFC 4702): decoded, answered N=1 (no DNS updates), O when the client asked, E kept", "[dhcp][decide][fqdn]") {
    MemoryLeaseStore leases;
    const auto c = cfg_vivso();
    auto reply81 = [&](Bytes value) {
        auto m = request(MessageType::discover, kA);
        m.options.push_back({opt::client_fqdn, std::move(value)});
        auto d = decide(Request{m, "br0"}, kNow, leases, c);
        REQUIRE(d.reply);
        const Option* o = d.reply->find(opt::client_fqdn);
        return o ? fleetconf::common::to_hex(o->data) : std::string("absent");
    };
    // ASCII, S set (busybox udhcpc -F laptop): partial name completed with the network's domain.
    CHECK(reply81({0x01, 0, 0, 'l', 'a', 'p', 't', 'o', 'p'}) ==
          "0affff" + fleetconf::common::to_hex(fleetconf::common::as_bytes("laptop.fleet.example.")));
    // Wire format (E), fully qualified: kept as sent; flags N|E|O.
    CHECK(reply81({0x05, 0, 0, 3, 'w', 'e', 'b', 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 0}) == "0effff03776562076578616d706c6500");
    // Wire format, partial: completed, then the root label.
    CHECK(reply81({0x04, 0, 0, 1, 'h'}) ==
          "0cffff"
          "0168"
          "05666c656574"
          "076578616d706c65"
          "00");
    // The client asks for no updates (N): N, no O.
    CHECK(reply81({0x08, 0, 0, 'a', '.'}) == "08ffff612e");
    // Malformed wire name (a label runs past the end): no option 81, the offer still goes out.
    CHECK(reply81({0x04, 0, 0, 9, 'x'}) == "absent");
    CHECK(reply81({0x04, 0, 0, 1, 'x', 0, 1}) == "absent");  // bytes after the root label
    CHECK(reply81({0x01, 0}) == "absent");
    // The codec alone.
    auto f = parse_fqdn(Bytes{0x05, 0, 0, 3, 'w', 'e', 'b', 0});
    REQUIRE(f);
    CHECK(*f == ClientFqdn{0x05, "web", true});
    CHECK(fqdn_bytes(ClientFqdn{0x0e, "web", true}) == Bytes{0x0e, 255, 255, 3, 'w', 'e', 'b', 0});
    CHECK(parse_fqdn(Bytes{0x01, 0, 0, 'x', 'y', 0})->name == "xy");  // a NUL-terminated ASCII name
    // Without option 12 the lease takes its host name from the FQDN's first label.
    World w;
    Message base;
    base.options.push_back({opt::client_fqdn, {0x01, 0, 0, 'l', 'a', 'p', '.', 'x', '.'}});
    const auto a = w.dora(kB, base);
    CHECK(w.leases.by_address(a)->hostname == "lap");
}

TEST_CASE("the repository's URI, without its secret, goes in option 224 when the unikernel asks for it", "[dhcp][decide]") {
    const auto s = fleetconf::common::parse_site(R"({
      "networks": [{"name": "br0", "subnet": "10.0.0.0/24", "gateway": "10.0.0.1", "pools": ["10.0.0.100-10.0.0.102"]}],
      "unikernels": [{"name": "web", "network": "br0", "git": {}}],
      "services": {"git": {"http": "10.0.0.1:8080"}}})",
                                                 "/tmp", "t.json");
    World w;
    w.c = make_config(s, [](const std::string&) { return std::nullopt; });
    const Mac web = fleetconf::common::albatross_mac("br0", "web");
    auto plain = w.run(request(MessageType::discover, web));
    REQUIRE(plain.reply);
    CHECK_FALSE(plain.reply->string_option(224));  // not asked for: not sent (RFC 2131 4.3.1)
    auto asking = request(MessageType::discover, web);
    asking.options.push_back({opt::parameter_list, {1, 3, 224}});
    auto d = w.run(asking);
    REQUIRE(d.reply);
    REQUIRE(d.reply->string_option(224));
    CHECK(*d.reply->string_option(224) == "http://web@10.0.0.1:8080/web.git");  // user name only: no token on the wire
}

// ---- docs/dhcp-options.md "Encoding replies": the defaults and floors, table-driven ----
TEST_CASE("docs/dhcp-options.md: without a parameter request list, 1, 3, 6 and 15 (and always-send) are sent", "[dhcp][decide][limits]") {
    World w;
    const auto d = w.run(request(MessageType::discover, kA));
    const auto& offer = reply_of(d);
    std::vector<std::uint8_t> codes;
    for (const auto& o : offer.options) codes.push_back(o.code);
    // 53, 54, 51/58/59, then 1, 3, 6 (no domain in this site: no 15), then always-send (7: syslog), then 61's echo is
    // absent (no 61 sent). 42 (NTP) and 230 (custom) are not sent without being asked for.
    CAPTURE(std::vector<int>(codes.begin(), codes.end()));
    CHECK(codes ==
          std::vector<std::uint8_t>{opt::message_type, opt::server_id, opt::lease_time, opt::renewal_t1, opt::rebinding_t2, 1, 3, 6, 7});
}

TEST_CASE("docs/dhcp-options.md: option 57 is honoured down to 576 and never below", "[dhcp][decide][limits]") {
    struct Case {
        std::optional<std::uint16_t> option57;
        std::size_t reply_limit;  // bytes of DHCP message (57 minus 28 for the IP and UDP headers)
    };
    const Case cases[] = {
        {std::nullopt, 576 - 28}, {0, 576 - 28}, {575, 576 - 28}, {576, 576 - 28}, {577, 577 - 28}, {1500, 1500 - 28}, {65535, 65535 - 28},
    };
    for (const auto& c : cases) {
        INFO(c.option57.value_or(0));
        World w;
        auto m = request(MessageType::discover, kA);
        if (c.option57)
            m.options.push_back({opt::max_size, {static_cast<std::uint8_t>(*c.option57 >> 8), static_cast<std::uint8_t>(*c.option57)}});
        const auto d = w.run(m);
        REQUIRE(d.reply);
        CHECK(d.max_reply_size == c.reply_limit);
    }
    // A malformed option 57 (not two bytes) counts as absent.
    World w;
    auto m = request(MessageType::discover, kA);
    m.options.push_back({opt::max_size, {0x05}});
    CHECK(w.run(m).max_reply_size == 576 - 28);
}

TEST_CASE("docs/dhcp-options.md: options that do not fit are left out, last ones first", "[dhcp][wire][limits]") {
    Message m;
    m.op = 2;
    m.options.push_back({opt::message_type, {static_cast<std::uint8_t>(MessageType::offer)}});
    for (std::uint8_t code = 200; code < 210; ++code) m.options.push_back({code, std::vector<std::uint8_t>(40, code)});
    // 240 bytes of header and cookie, 3 for 53, 42 per option, 1 for END: 9 options need 240+3+378+1 = 622 bytes.
    std::vector<std::uint8_t> dropped;
    const auto at = encode(m, 240 + 3 + 9 * 42 + 1, &dropped);
    CHECK(at.size() == 240 + 3 + 9 * 42 + 1);
    CHECK(dropped == std::vector<std::uint8_t>{209});  // the last one out
    dropped.clear();
    const auto fits = encode(m, 240 + 3 + 10 * 42 + 1, &dropped);
    CHECK(dropped.empty());
    CHECK(fits.size() == 240 + 3 + 10 * 42 + 1);
    dropped.clear();
    const auto small = encode(m, 300, &dropped);  // a limit below 576 - 28 counts as 576 - 28 (RFC 2131's minimum)
    CHECK(small.size() <= 576 - 28);
    CHECK(dropped == std::vector<std::uint8_t>{207, 208, 209});  // 240 + 3 + 7 * 42 + 1 = 538 fit
}

TEST_CASE("reply destination, RFC 2131 4.1: relay, NAK, ciaddr, broadcast flag, new address", "[dhcp][destination]") {
    const Ipv4 bcast(255, 255, 255, 255);
    auto reply = [](MessageType t) {
        Message m = request(t, kA);
        m.op = 2;
        return m;
    };
    auto offer = reply(MessageType::offer);
    offer.yiaddr = Ipv4(10, 0, 0, 50);
    CHECK(reply_destination(offer, 67, 68) == ReplyDestination{Ipv4(10, 0, 0, 50), 68, true});  // unicast, ARP first
    auto flagged = offer;
    flagged.flags = 0x8000;
    CHECK(reply_destination(flagged, 67, 68) == ReplyDestination{bcast, 68, false});
    auto not_ethernet = offer;
    not_ethernet.htype = 6;
    CHECK(reply_destination(not_ethernet, 67, 68) == ReplyDestination{bcast, 68, false});
    auto relayed = flagged;
    relayed.giaddr = Ipv4(10, 0, 1, 1);
    CHECK(reply_destination(relayed, 67, 68) == ReplyDestination{Ipv4(10, 0, 1, 1), 67, false});  // the relay's port: 67
    auto renew_ack = reply(MessageType::ack);
    renew_ack.ciaddr = renew_ack.yiaddr = Ipv4(10, 0, 0, 7);
    CHECK(reply_destination(renew_ack, 67, 68) == ReplyDestination{Ipv4(10, 0, 0, 7), 68, false});
    auto nak = reply(MessageType::nak);
    nak.ciaddr = Ipv4(10, 0, 0, 7);
    CHECK(reply_destination(nak, 67, 68) == ReplyDestination{bcast, 68, false});  // a NAK is broadcast, even with ciaddr
    nak.giaddr = Ipv4(10, 0, 1, 1);
    CHECK(reply_destination(nak, 1067, 1068) == ReplyDestination{Ipv4(10, 0, 1, 1), 1067, false});  // unless relayed
    auto no_address = reply(MessageType::ack);  // an INFORM's ACK without ciaddr: nothing to unicast to
    CHECK(reply_destination(no_address, 67, 68) == ReplyDestination{bcast, 68, false});
}

TEST_CASE("lease events: bindings only when the reply promises them; releases and declines at once", "[dhcp][events]") {
    auto lease = [](int last, LeaseState st) {
        Lease l;
        l.address = Ipv4(10, 0, 0, static_cast<std::uint8_t>(last));
        l.state = st;
        return l;
    };
    const std::vector<LeaseChange> changes{{lease(1, LeaseState::bound), false},
                                           {lease(2, LeaseState::offered), false},
                                           {lease(3, LeaseState::released), false},
                                           {lease(4, LeaseState::declined), false},
                                           {lease(5, LeaseState::bound), true}};  // removed: no event
    const auto with_ack = lease_events(changes, true);
    REQUIRE(with_ack.size() == 3);
    CHECK(with_ack[0].kind == LeaseEvent::Kind::bound);
    CHECK(with_ack[0].lease.address == Ipv4(10, 0, 0, 1));
    CHECK(with_ack[0].cause == "ack");
    CHECK(with_ack[1].kind == LeaseEvent::Kind::released);
    CHECK(why_released(with_ack[1]) == "release of");
    CHECK(with_ack[2].cause == "decline");
    const auto offer_only = lease_events(changes, false);  // an OFFER binds nothing
    REQUIRE(offer_only.size() == 2);
    CHECK(offer_only[0].cause == "release");
}
