// Lease-driven routes (blockcfg/src/io/routes.cpp) against a fake target that records every call and fails
// on demand: what RouteSync changes, when it changes nothing, retries, and how LeaseRouter maps leases.
#include "fleetconf/blockcfg/routes.hpp"

#include "../support/temp_dir.hpp"
#include <catch2/catch.hpp>
#include <spdlog/sinks/ostream_sink.h>

#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>

using namespace fleetconf;
using namespace fleetconf::blockcfg;
using namespace std::chrono_literals;

namespace {

common::Ipv4 ip(const char* s) { return *common::Ipv4::parse(s); }
Backend be(const char* s, std::uint16_t port) { return Backend{ip(s), port}; }

// The routes of a proxy, in memory. Every call is recorded; `fail` makes the next changes of a host fail,
// `throw_reads` the next reads throw, and `gate` (when closed) holds change() until opened.
struct Fake {
    std::mutex mu;
    std::condition_variable cv;
    std::map<std::string, Backend> routes;
    struct Call {
        std::string host;
        std::optional<Backend> backend;
        std::chrono::steady_clock::time_point at;
    };
    std::vector<Call> changes;
    int reads = 0;
    std::map<std::string, int> fail;
    int throw_reads = 0;
    bool gate_closed = false, in_change = false;

    std::vector<Call> changes_of(const std::string& host) {
        std::lock_guard lk(mu);
        std::vector<Call> v;
        for (const auto& c : changes)
            if (c.host == host) v.push_back(c);
        return v;
    }
    std::optional<Backend> route(const std::string& host) {
        std::lock_guard lk(mu);
        auto it = routes.find(host);
        return it == routes.end() ? std::nullopt : std::optional(it->second);
    }
    void open_gate() {
        std::lock_guard lk(mu);
        gate_closed = false;
        cv.notify_all();
    }
    bool wait_in_change() {
        std::unique_lock lk(mu);
        return cv.wait_for(lk, 10s, [&] { return in_change; });
    }
};

class FakeDriver final : public RouteDriver {
public:
    explicit FakeDriver(Fake& f) : f_(f) {}
    std::string describe() const override { return "fake proxy"; }
    std::optional<Backend> current(const std::string& host) override {
        std::lock_guard lk(f_.mu);
        ++f_.reads;
        if (f_.throw_reads > 0) {
            --f_.throw_reads;
            throw std::runtime_error("fake proxy: connection refused");
        }
        auto it = f_.routes.find(host);
        return it == f_.routes.end() ? std::nullopt : std::optional(it->second);
    }
    Outcome change(const std::string& host, const std::optional<Backend>& backend, const std::string&) override {
        std::unique_lock lk(f_.mu);
        f_.in_change = true;
        f_.cv.notify_all();
        f_.cv.wait(lk, [&] { return !f_.gate_closed; });
        f_.in_change = false;
        f_.changes.push_back({host, backend, std::chrono::steady_clock::now()});
        if (auto it = f_.fail.find(host); it != f_.fail.end() && it->second > 0) {
            --it->second;
            return {false, "INTERNAL: disk on fire"};
        }
        if (backend) f_.routes[host] = *backend;
        else f_.routes.erase(host);
        return {true, "generation " + std::to_string(f_.changes.size())};
    }

private:
    Fake& f_;
};

struct Harness;
void wait_retrying(Harness& h);

struct Harness {
    Fake fake;
    std::ostringstream logs;
    std::shared_ptr<spdlog::logger> log =
        std::make_shared<spdlog::logger>("routes", std::make_shared<spdlog::sinks::ostream_sink_mt>(logs));
    RouteSync sync;
    explicit Harness(Backoff b = {10ms, 80ms}) : sync(std::make_unique<FakeDriver>(fake), log, b) {}
    void idle() { REQUIRE(sync.wait_idle(10s)); }
};

// Until some host waits for a retry (its change failed), at most 10 s.
void wait_retrying(Harness& h) {
    const auto until = std::chrono::steady_clock::now() + 10s;
    while (h.sync.counters().retrying == 0 && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(2ms);
    REQUIRE(h.sync.counters().retrying > 0);
}

LeaseFacts lease(const char* address, const char* mac, std::uint64_t expires = 2000) {
    LeaseFacts l;
    l.address = ip(address);
    l.mac = *common::Mac::parse(mac);
    l.client = {1};
    l.client.insert(l.client.end(), l.mac.bytes().begin(), l.mac.bytes().end());
    l.expires = expires;
    return l;
}

common::Site site_with_routes(bool remove_on_release = true) {
    common::Site s;
    common::LeaseRoutes r;
    r.port = 80;
    r.fqdn = true;
    r.remove_on_release = remove_on_release;
    s.services.dhcp.routes = r;
    common::Unikernel web;
    web.name = "web";
    web.mac = *common::Mac::parse("02:00:00:00:00:01");
    web.public_hosts = {"www.example.org", "web.example.org"};
    web.backend_port = 8080;
    s.unikernels.push_back(web);
    common::Unikernel api;
    api.name = "api";
    api.mac = *common::Mac::parse("02:00:00:00:00:02");
    api.client_id = {0x01, 0x02, 0x03};
    api.public_hosts = {"api.example.org"};
    s.unikernels.push_back(api);
    return s;
}

}  // namespace

TEST_CASE("routes: the retry schedule doubles from `first` and stops at `max`", "[routes]") {
    const Backoff b;  // the documented default: 1 s doubling to 60 s
    CHECK(b.after(1) == 1000ms);
    CHECK(b.after(2) == 2000ms);
    CHECK(b.after(6) == 32000ms);
    CHECK(b.after(7) == 60000ms);
    CHECK(b.after(1000) == 60000ms);
}

TEST_CASE("routes: a change is applied once; the same route again writes nothing", "[routes]") {
    Harness h;
    h.sync.set("www.example.org", be("10.0.0.5", 443), "lease of 10.0.0.5");
    h.idle();
    REQUIRE(h.fake.route("www.example.org") == be("10.0.0.5", 443));
    CHECK(h.fake.changes_of("www.example.org").size() == 1);
    // A renewal asks for the same route: read, not written.
    h.sync.set("www.example.org", be("10.0.0.5", 443), "renewal");
    h.idle();
    CHECK(h.fake.changes_of("www.example.org").size() == 1);
    const auto c = h.sync.counters();
    CHECK(c.applied == 1);
    CHECK(c.unchanged == 1);
    CHECK(c.failed == 0);
    CHECK(c.pending == 0);
    CHECK(h.logs.str().find("routes: www.example.org -> 10.0.0.5:443 on fake proxy (generation 1; lease of 10.0.0.5)") !=
          std::string::npos);
}

TEST_CASE("routes: removal only while the route still points at the lease's address", "[routes]") {
    Harness h;
    h.fake.routes["www.example.org"] = be("10.0.0.9", 443);  // a newer lease elsewhere
    h.sync.clear("www.example.org", ip("10.0.0.5"), "release of");
    h.idle();
    CHECK(h.fake.route("www.example.org") == be("10.0.0.9", 443));
    CHECK(h.fake.changes_of("www.example.org").empty());
    CHECK(h.sync.counters().unchanged == 1);
    h.sync.clear("www.example.org", ip("10.0.0.9"), "release of");
    h.idle();
    CHECK_FALSE(h.fake.route("www.example.org"));
    REQUIRE(h.fake.changes_of("www.example.org").size() == 1);
    CHECK_FALSE(h.fake.changes_of("www.example.org")[0].backend);
    // Removing what is not there writes nothing.
    h.sync.clear("gone.example.org", ip("10.0.0.9"), "release of");
    h.idle();
    CHECK(h.fake.changes_of("gone.example.org").empty());
}

TEST_CASE("routes: only the latest wish per host is applied", "[routes]") {
    Harness h;
    h.fake.gate_closed = true;
    h.sync.set("a.example.org", be("10.0.0.1", 80), "first");
    REQUIRE(h.fake.wait_in_change());  // the worker is inside the change of a.example.org
    h.sync.set("b.example.org", be("10.0.0.2", 80), "old");
    h.sync.set("b.example.org", be("10.0.0.3", 80), "newer");
    h.sync.clear("b.example.org", ip("10.0.0.2"), "stale removal");  // replaced by the next one too
    h.sync.set("b.example.org", be("10.0.0.4", 80), "newest");
    CHECK(h.sync.counters().pending == 2);  // a.example.org being applied, b.example.org queued once
    h.fake.open_gate();
    h.idle();
    const auto b = h.fake.changes_of("b.example.org");
    REQUIRE(b.size() == 1);
    CHECK(b[0].backend == be("10.0.0.4", 80));
    CHECK(h.fake.route("a.example.org") == be("10.0.0.1", 80));
}

TEST_CASE("routes: a failed change is retried with backoff and reported unhealthy meanwhile", "[routes]") {
    Harness h(Backoff{150ms, 300ms});
    h.fake.fail["www.example.org"] = 3;
    h.sync.set("www.example.org", be("10.0.0.5", 443), "lease of 10.0.0.5");
    // While it waits for a retry: not healthy, and the health text says why.
    wait_retrying(h);
    const auto health = h.sync.status_source().health();
    CHECK_FALSE(health.ok);
    CHECK(health.detail == "1 host(s) waiting to retry a failed change on fake proxy");
    h.idle();
    const auto calls = h.fake.changes_of("www.example.org");
    REQUIRE(calls.size() == 4);
    // Delays between attempts follow the schedule (lower bounds only: a loaded machine is only slower).
    CHECK(calls[1].at - calls[0].at >= 150ms);
    CHECK(calls[2].at - calls[1].at >= 300ms);
    CHECK(calls[3].at - calls[2].at >= 300ms);  // capped at max
    CHECK(h.fake.route("www.example.org") == be("10.0.0.5", 443));
    const auto c = h.sync.counters();
    CHECK(c.failed == 3);
    CHECK(c.applied == 1);
    CHECK(c.retrying == 0);
    CHECK(h.sync.status_source().health().ok);
    CHECK(h.logs.str().find("routes: www.example.org -> 10.0.0.5:443 on fake proxy: INTERNAL: disk on fire") != std::string::npos);
    CHECK(h.logs.str().find("routes: www.example.org will be retried in 150 ms") != std::string::npos);
    const auto metrics = h.sync.status_source().metrics();
    CHECK(metrics.find("fleetconf_routes_changes_total{result=\"failed\"} 3\n") != std::string::npos);
    CHECK(metrics.find("fleetconf_routes_changes_total{result=\"applied\"} 1\n") != std::string::npos);
}

TEST_CASE("routes: a target that cannot be asked is retried; a newer wish replaces a failing one", "[routes]") {
    Harness h(Backoff{20ms, 40ms});
    h.fake.throw_reads = 2;
    h.sync.set("a.example.org", be("10.0.0.1", 80), "lease");
    h.idle();
    CHECK(h.fake.route("a.example.org") == be("10.0.0.1", 80));
    CHECK(h.sync.counters().failed == 2);
    CHECK(h.logs.str().find("routes: a.example.org (lease): fake proxy: connection refused") != std::string::npos);

    h.fake.fail["b.example.org"] = 1000000;  // this backend never goes in
    h.sync.set("b.example.org", be("10.0.0.2", 80), "old lease");
    wait_retrying(h);
    {
        std::lock_guard lk(h.fake.mu);
        h.fake.fail.erase("b.example.org");
    }
    h.sync.set("b.example.org", be("10.0.0.3", 80), "new lease");
    h.idle();
    CHECK(h.fake.route("b.example.org") == be("10.0.0.3", 80));
    const auto calls = h.fake.changes_of("b.example.org");
    REQUIRE(!calls.empty());
    CHECK(calls.back().backend == be("10.0.0.3", 80));
    for (const auto& c : calls) CHECK((c.backend == be("10.0.0.2", 80) || &c == &calls.back()));
}

TEST_CASE("routes: stop leaves unapplied changes and says so", "[routes]") {
    Harness h(Backoff{10s, 10s});
    h.fake.fail["a.example.org"] = 1;
    h.sync.set("a.example.org", be("10.0.0.1", 80), "lease");
    wait_retrying(h);
    h.sync.stop();
    CHECK(h.logs.str().find("routes: 1 change(s) not applied at stop") != std::string::npos);
}

TEST_CASE("LeaseRouter: a unikernel's public hosts follow its lease (MAC, client id, option 81)", "[routes]") {
    Harness h;
    LeaseRouter router(site_with_routes(), h.sync);

    router.bound(lease("10.0.0.5", "02:00:00:00:00:01"));
    h.idle();
    CHECK(h.fake.route("www.example.org") == be("10.0.0.5", 8080));  // backend_port
    CHECK(h.fake.route("web.example.org") == be("10.0.0.5", 8080));

    auto api = lease("10.0.0.6", "02:99:99:99:99:99");  // another MAC, but the reserved client id
    api.client = {0xFF, 0x01, 0x02, 0x03};
    router.bound(api);
    auto laptop = lease("10.0.0.7", "02:00:00:00:00:33");
    laptop.fqdn = "laptop.t.example";
    router.bound(laptop);
    auto stranger = lease("10.0.0.8", "02:00:00:00:00:44");
    router.bound(stranger);  // no public hosts, no option 81: no route
    h.idle();
    CHECK(h.fake.route("api.example.org") == be("10.0.0.6", 80));  // routes.port
    CHECK(h.fake.route("laptop.t.example") == be("10.0.0.7", 80));
    CHECK(h.fake.routes.size() == 4);

    // A renewal of the same lease writes nothing.
    const auto before = h.fake.changes.size();
    router.bound(lease("10.0.0.5", "02:00:00:00:00:01"));
    h.idle();
    CHECK(h.fake.changes.size() == before);

    // RELEASE (and DECLINE, lease4-del: the same call) removes them.
    router.released(lease("10.0.0.5", "02:00:00:00:00:01"), "release of");
    router.released(laptop, "decline of");
    h.idle();
    CHECK_FALSE(h.fake.route("www.example.org"));
    CHECK_FALSE(h.fake.route("web.example.org"));
    CHECK_FALSE(h.fake.route("laptop.t.example"));
    CHECK(h.fake.route("api.example.org"));
}

TEST_CASE("LeaseRouter: an address now leased to another client loses the old client's routes", "[routes]") {
    Harness h;
    LeaseRouter router(site_with_routes(), h.sync);
    const auto l = lease("10.0.0.5", "02:00:00:00:00:01", 1000);
    router.bound(l);
    h.idle();
    router.sweep({l}, 999);  // still live: nothing
    h.idle();
    CHECK(h.fake.route("www.example.org") == be("10.0.0.5", 8080));
    router.sweep({lease("10.0.0.5", "02:00:00:00:00:77", 5000)}, 1001);
    h.idle();
    CHECK_FALSE(h.fake.route("www.example.org"));
    CHECK_FALSE(h.fake.route("web.example.org"));
}

TEST_CASE("LeaseRouter: a moved binding keeps its routes when the old address expires", "[routes]") {
    Harness h;
    LeaseRouter router(site_with_routes(), h.sync);
    router.bound(lease("10.0.0.5", "02:00:00:00:00:01", 1000));
    h.idle();
    router.bound(lease("10.0.0.9", "02:00:00:00:00:01", 3000));  // the same unikernel, a new address
    h.idle();
    CHECK(h.fake.route("www.example.org") == be("10.0.0.9", 8080));
    // The old lease expires: nothing routed to it is left, so nothing changes.
    router.sweep({lease("10.0.0.9", "02:00:00:00:00:01", 3000)}, 1500);
    h.idle();
    CHECK(h.fake.route("www.example.org") == be("10.0.0.9", 8080));
    // The new one expires too: its routes go.
    router.sweep({}, 3500);
    h.idle();
    CHECK_FALSE(h.fake.route("www.example.org"));
    CHECK(h.fake.routes.empty());
}

TEST_CASE("LeaseRouter: remove_on_release=false keeps routes on RELEASE and expiry (docs/lease-routes.md)", "[routes]") {
    Harness h;
    LeaseRouter router(site_with_routes(false), h.sync);
    const auto l = lease("10.0.0.5", "02:00:00:00:00:01", 1000);
    router.bound(l);
    h.idle();
    router.released(l, "release of");
    h.idle();
    CHECK(h.fake.route("www.example.org") == be("10.0.0.5", 8080));
    router.bound(l);
    h.idle();
    router.sweep({l}, 999);  // still live: nothing
    h.idle();
    CHECK(h.fake.route("www.example.org"));
    auto other = lease("10.0.0.5", "02:00:00:00:00:77", 5000);
    router.sweep({other}, 1001);
    h.idle();
    // Another client holds the address now; with remove_on_release=false the routes stay all the same.
    CHECK(h.fake.route("www.example.org") == be("10.0.0.5", 8080));
}

TEST_CASE("LeaseRouter: at start every live binding is routed; routes already right are not written", "[routes]") {
    Harness h;
    h.fake.routes["www.example.org"] = be("10.0.0.5", 8080);
    h.fake.routes["web.example.org"] = be("10.0.0.5", 8080);
    LeaseRouter router(site_with_routes(), h.sync);
    auto api = lease("10.0.0.6", "02:00:00:00:00:02", 5000);
    auto old = lease("10.0.0.7", "02:00:00:00:00:55", 100);
    old.fqdn = "old.t.example";
    router.start({lease("10.0.0.5", "02:00:00:00:00:01", 5000), api, old}, 1000);
    h.idle();
    CHECK(h.fake.route("api.example.org") == be("10.0.0.6", 80));
    CHECK_FALSE(h.fake.route("old.t.example"));  // expired before the start
    CHECK(h.fake.changes_of("www.example.org").empty());
    CHECK(h.fake.changes_of("web.example.org").empty());
    CHECK(h.fake.changes.size() == 1);
}

TEST_CASE("LeaseRouter: taking the duty over removes stale routes of site hosts another holder set", "[routes]") {
    Harness h;
    auto s = site_with_routes();
    common::Unikernel proxy;  // no DHCP: its public host is routed by the operator, never touched
    proxy.name = "proxy";
    proxy.dhcp = false;
    proxy.mac = *common::Mac::parse("02:00:00:00:00:03");
    proxy.public_hosts = {"admin.example.org"};
    s.unikernels.push_back(proxy);
    // What the previous holder left: web's hosts at a lease that ended while it held the duty, api's at
    // its live lease, the operator's own routes.
    h.fake.routes["www.example.org"] = be("10.0.0.9", 8080);
    h.fake.routes["web.example.org"] = be("10.0.0.9", 8080);
    h.fake.routes["api.example.org"] = be("10.0.0.6", 80);
    h.fake.routes["admin.example.org"] = be("10.0.0.3", 443);
    h.fake.routes["static.example.org"] = be("10.0.0.4", 443);
    LeaseRouter router(s, h.sync, {}, h.log);  // a fresh record: this process never routed web
    router.take_over({lease("10.0.0.6", "02:00:00:00:00:02", 5000)}, 1000);
    h.idle();
    CHECK_FALSE(h.fake.route("www.example.org"));
    CHECK_FALSE(h.fake.route("web.example.org"));
    CHECK(h.fake.route("api.example.org") == be("10.0.0.6", 80));
    CHECK(h.fake.route("admin.example.org") == be("10.0.0.3", 443));
    CHECK(h.fake.route("static.example.org") == be("10.0.0.4", 443));
    CHECK(h.fake.changes.size() == 2);  // the two removals; api's route was already right
    CHECK(h.logs.str().find("duty taken") != std::string::npos);
    // Taken again with nothing stale: nothing is written.
    router.take_over({lease("10.0.0.6", "02:00:00:00:00:02", 5000)}, 1001);
    h.idle();
    CHECK(h.fake.changes.size() == 2);
}

TEST_CASE("LeaseRouter: without services.dhcp.routes nothing is routed", "[routes]") {
    Harness h;
    auto s = site_with_routes();
    s.services.dhcp.routes.reset();
    LeaseRouter router(s, h.sync);
    router.bound(lease("10.0.0.5", "02:00:00:00:00:01"));
    h.idle();
    CHECK(h.fake.changes.empty());
    CHECK(h.fake.reads == 0);
}

TEST_CASE("LeaseRouter: reconciled on reload: a removed unikernel's and a renamed host's routes go, new ones come", "[routes]") {
    Harness h;
    auto s = site_with_routes();
    LeaseRouter router(s, h.sync, {}, h.log);
    const auto web = lease("10.0.0.5", "02:00:00:00:00:01", 5000);
    const auto api = lease("10.0.0.6", "02:00:00:00:00:02", 5000);
    router.bound(web);
    router.bound(api);  // by MAC: no client id in this lease, and the MAC matches api's
    h.idle();
    REQUIRE(h.fake.route("api.example.org") == be("10.0.0.6", 80));
    // web renames one of its hosts; api leaves the site.
    s.unikernels[0].public_hosts = {"www.example.org", "shop.example.org"};
    s.unikernels.pop_back();
    router.set_site(s, {web, api}, 1000);
    h.idle();
    CHECK(h.fake.route("www.example.org") == be("10.0.0.5", 8080));
    CHECK(h.fake.route("shop.example.org") == be("10.0.0.5", 8080));
    CHECK_FALSE(h.fake.route("web.example.org"));
    CHECK_FALSE(h.fake.route("api.example.org"));
    CHECK(router.owned()->size() == 2);
    // api's old address now goes to a client the site does not know: it gets no route.
    router.sweep({web}, 1001);
    router.bound(lease("10.0.0.6", "02:00:00:00:00:99", 6000));
    h.idle();
    CHECK(h.fake.routes.size() == 2);
    CHECK_FALSE(h.fake.route("api.example.org"));
}

TEST_CASE("LeaseRouter: the owned routes survive a restart; what lost its reason meanwhile is removed", "[routes]") {
    Harness h;
    fleetconf::test::TempDir d;
    const auto state = d.path / "routes.json";
    auto s = site_with_routes();
    {
        LeaseRouter router(s, h.sync, state, h.log);
        router.bound(lease("10.0.0.5", "02:00:00:00:00:01", 5000));
        router.bound(lease("10.0.0.6", "02:00:00:00:00:02", 5000));
        h.idle();
    }
    REQUIRE(std::filesystem::exists(state));
    CHECK(h.fake.routes.size() == 3);
    // Down: api is removed from the site file. Up again: its route goes, web's stays (and is not rewritten).
    s.unikernels.pop_back();
    const auto writes = h.fake.changes.size();
    LeaseRouter again(s, h.sync, state, h.log);
    CHECK(again.owned()->size() == 3);  // as recorded
    again.start({lease("10.0.0.5", "02:00:00:00:00:01", 5000), lease("10.0.0.6", "02:00:00:00:00:02", 5000)}, 1000);
    h.idle();
    CHECK_FALSE(h.fake.route("api.example.org"));
    CHECK(h.fake.route("www.example.org") == be("10.0.0.5", 8080));
    CHECK(h.fake.changes.size() == writes + 1);  // only the removal
    CHECK(again.owned()->size() == 2);
    // A damaged state file is ignored (logged), not fatal.
    std::ofstream(state, std::ios::trunc) << "{\"owned\": [{\"address\": 7}]}";
    LeaseRouter third(s, h.sync, state, h.log);
    CHECK(third.owned()->empty());
    CHECK(h.logs.str().find("not a state file") != std::string::npos);
}

TEST_CASE("LeaseRouter: after a rollback the routes it owns are set again; missing() names what the rollback took", "[routes]") {
    Harness h;
    LeaseRouter router(site_with_routes(), h.sync, {}, h.log);
    router.bound(lease("10.0.0.5", "02:00:00:00:00:01", 5000));
    h.idle();
    Config rolled;
    rolled.routes["www.example.org"] = be("10.0.0.5", 8080);
    rolled.routes["web.example.org"] = be("10.0.0.77", 8080);
    CHECK(LeaseRouter::missing(*router.owned(), rolled) == std::vector<std::string>{"web.example.org"});
    h.fake.routes.erase("www.example.org");  // what a rollback on the target does
    h.fake.routes["web.example.org"] = be("10.0.0.77", 8080);
    router.restore("after rollback to generation 3");
    h.idle();
    CHECK(h.fake.route("www.example.org") == be("10.0.0.5", 8080));
    CHECK(h.fake.route("web.example.org") == be("10.0.0.5", 8080));
}
