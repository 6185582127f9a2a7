// The PostgreSQL lease store against a real, throwaway PostgreSQL (tests/support/throwaway_pg.sh, started by
// ctest's fixture; FLEETCONF_TEST_PG names its state file). Hidden tag [.pg]: run by dhcp.postgresql_store.
#include "fleetconf/dhcp/kea_csv.hpp"
#include "fleetconf/dhcp/pg_store.hpp"

#include "fleetconf/common/log.hpp"
#include "../support/temp_dir.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <mutex>
#include <thread>

using namespace fleetconf::dhcp;
using fleetconf::common::Ipv4;
using fleetconf::common::LeaseDatabase;

namespace {

// The state file's PGDIR and PGBIN (tests/support/throwaway_pg.sh writes them).
std::string state_value(const std::string& key) {
    const char* state = std::getenv("FLEETCONF_TEST_PG");
    REQUIRE(state != nullptr);
    std::ifstream in(state);
    std::string line;
    while (std::getline(in, line))
        if (line.rfind(key + "=", 0) == 0) return line.substr(key.size() + 1);
    FAIL("no " + key + " in " + state);
    return {};
}

LeaseDatabase database() {
    const auto dir = state_value("PGDIR");
    return {LeaseDatabase::Type::postgresql, "host=" + dir + " dbname=postgres user=fleetconf", dir + "/password"};
}

void fresh_schema() {
    pg::Connection c(database());
    c.exec("DROP TABLE IF EXISTS fleetconf_lease4, fleetconf_schema_version");
    c.exec("DROP FUNCTION IF EXISTS fleetconf_lease4_notify()");
    pg::init(c);
}

// The io thread of a service, as a test drives it: posted callables queue up until run().
struct Loop {
    std::mutex m;
    std::deque<std::function<void()>> q;
    pg::PgLeaseStore::Post post() {
        return [this](std::function<void()> f) {
            std::lock_guard l(m);
            q.push_back(std::move(f));
        };
    }
    void run() {
        for (;;) {
            std::function<void()> f;
            {
                std::lock_guard l(m);
                if (q.empty()) return;
                f = std::move(q.front());
                q.pop_front();
            }
            f();
        }
    }
    // Runs what is posted until `done` holds (at most 20 s).
    template <typename F>
    bool until(F done) {
        for (int i = 0; i < 400; ++i) {
            run();
            if (done()) return true;
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        return false;
    }
};

Lease lease(std::uint8_t last, std::uint8_t client, const std::string& host = "h") {
    Lease l;
    l.address = Ipv4(10, 0, 0, last);
    l.client = {1, 2, 0, 0, 0, 0, client};
    l.mac = fleetconf::common::Mac({2, 0, 0, 0, 0, client});
    l.hostname = host;
    l.network = "n1";
    l.state = LeaseState::bound;
    l.expires = 1'800'000'000 + last;
    return l;
}

// Whether the store's listener has LISTENed and loaded the table (its first reload after LISTEN).
bool listening(const pg::PgLeaseStore& s) {
    for (const auto& [name, value] : s.counters())
        if (name == "db_reloads") return value >= 1;
    return false;
}

// begin_sync, the blocking part (as the sync thread runs it), end_sync: the addresses that lost.
std::vector<Ipv4> commit(pg::PgLeaseStore& s) {
    auto job = s.begin_sync();
    if (job) job();
    return s.end_sync(true);
}

}  // namespace

TEST_CASE("postgresql: schema init, status, refusal of a second init, upgrade", "[.pg]") {
    fresh_schema();
    pg::Connection c(database());
    const auto st = pg::status(c);
    CHECK(st.version == pg::kSchemaVersion);
    CHECK(st.leases == 0);
    CHECK(st.synchronous_commit == "on");
    CHECK_THROWS_WITH(pg::init(c), Catch::Contains("already"));
    CHECK(pg::upgrade(c) == pg::kSchemaVersion);
    c.exec("DROP TABLE fleetconf_lease4, fleetconf_schema_version");
    CHECK_THROWS_WITH(pg::require_schema(c), Catch::Contains("dhcp db init"));
    auto log = fleetconf::common::log::get("test");
    Loop loop;
    CHECK_THROWS_WITH(pg::PgLeaseStore(database(), "a", loop.post(), log), Catch::Contains("schema"));
}

TEST_CASE("postgresql: two servers share leases; a compare-and-set race has one winner", "[.pg]") {
    fresh_schema();
    auto log = fleetconf::common::log::get("test");
    Loop la, lb;
    pg::PgLeaseStore a(database(), "a", la.post(), log);
    pg::PgLeaseStore b(database(), "b", lb.post(), log);
    REQUIRE(la.until([&] { return listening(a) && !a.unavailable(); }));
    REQUIRE(lb.until([&] { return listening(b) && !b.unavailable(); }));

    // A writes; B learns of it by NOTIFY.
    a.apply({{lease(1, 1, "one")}});
    CHECK(commit(a).empty());
    REQUIRE(lb.until([&] { return b.by_address(Ipv4(10, 0, 0, 1)) != nullptr; }));
    CHECK(*b.by_address(Ipv4(10, 0, 0, 1)) == lease(1, 1, "one"));
    CHECK(b.token(Ipv4(10, 0, 0, 1)) == a.token(Ipv4(10, 0, 0, 1)));

    // Both decide on 10.0.0.2 for different clients before either hears of the other: one row wins.
    a.apply({{lease(2, 2)}});
    b.apply({{lease(2, 3)}});
    CHECK(commit(a).empty());
    const auto lost = commit(b);
    REQUIRE(lost.size() == 1);
    CHECK(lost[0] == Ipv4(10, 0, 0, 2));
    CHECK(b.by_address(Ipv4(10, 0, 0, 2))->client == lease(2, 2).client);  // B holds the winner's row now
    CHECK(b.by_client(lease(2, 3).client) == nullptr);

    // A stale token: B renews 10.0.0.1 (it knows A's token), then A, still on its old token, loses.
    b.apply({{lease(1, 1, "renewed by b")}});
    CHECK(commit(b).empty());
    a.apply({{lease(1, 1, "renewed by a")}});
    CHECK(commit(a) == std::vector<Ipv4>{Ipv4(10, 0, 0, 1)});
    CHECK(a.by_address(Ipv4(10, 0, 0, 1))->hostname == "renewed by b");

    // The change just after an in-flight one carries that one's token: when the first loses, so does it.
    la.until([&] { return a.by_address(Ipv4(10, 0, 0, 3)) == nullptr; });
    b.apply({{lease(3, 5)}});
    CHECK(commit(b).empty());
    a.apply({{lease(3, 4)}});     // A has not heard of B's row yet
    auto first = a.begin_sync();  // in flight
    a.apply({{lease(3, 4, "again")}});
    first();
    CHECK(a.end_sync(true) == std::vector<Ipv4>{Ipv4(10, 0, 0, 3)});
    CHECK(commit(a) == std::vector<Ipv4>{Ipv4(10, 0, 0, 3)});
    CHECK(a.by_address(Ipv4(10, 0, 0, 3))->client == lease(3, 5).client);

    // A client that moves releases its previous row, in the table as in memory.
    a.apply({{lease(9, 1)}});
    CHECK(commit(a).empty());
    pg::Connection c(database());
    CHECK(c.exec("SELECT count(*) FROM fleetconf_lease4 WHERE address = " + std::to_string(Ipv4(10, 0, 0, 1).value())).at(0).at(0) ==
          std::optional<std::string>("0"));
    REQUIRE(lb.until([&] { return b.by_address(Ipv4(10, 0, 0, 1)) == nullptr && b.by_address(Ipv4(10, 0, 0, 9)) != nullptr; }));

    // sync() (control commands) reports a lost race as an error.
    a.apply({{lease(20, 20)}});
    b.apply({{lease(20, 21)}});
    a.sync();
    CHECK_THROWS_WITH(b.sync(), Catch::Contains("another server"));
    CHECK(a.counters().size() == 6);
}

TEST_CASE("postgresql: the database restarted: unavailable, then back with every lease", "[.pg]") {
    fresh_schema();
    auto log = fleetconf::common::log::get("test");
    Loop loop;
    pg::PgLeaseStore s(database(), "a", loop.post(), log);
    REQUIRE(loop.until([&] { return listening(s); }));
    s.apply({{lease(1, 1)}, {lease(2, 2)}});
    CHECK(commit(s).empty());
    const std::string script = std::string(FLEETCONF_SOURCE_DIR) + "/tests/support/throwaway_pg.sh";
    const std::string state = std::getenv("FLEETCONF_TEST_PG");
    std::thread restart([&] { CHECK(std::system(("bash " + script + " restart " + state).c_str()) == 0); });
    // During the restart a write fails: its replies are withheld (end_sync(false)) and the store says why.
    CHECK(loop.until([&] { return s.unavailable().has_value(); }));
    s.apply({{lease(3, 3)}});
    CHECK_THROWS(s.begin_sync());  // nothing is handed to a database that is down
    restart.join();
    CHECK(loop.until([&] { return !s.unavailable(); }));
    CHECK(s.by_address(Ipv4(10, 0, 0, 1)) != nullptr);
    CHECK(s.by_address(Ipv4(10, 0, 0, 2)) != nullptr);
    CHECK(s.by_address(Ipv4(10, 0, 0, 3)) == nullptr);  // never written: gone with the reload
    s.apply({{lease(4, 4)}});
    CHECK(commit(s).empty());
    pg::Connection c(database());
    CHECK(pg::load(c).size() == 3);
}

TEST_CASE("postgresql: migration journal -> database -> journal, lease by lease equal", "[.pg]") {
    fresh_schema();
    fleetconf::test::TempDir dir;
    std::vector<Lease> leases;
    for (int i = 1; i <= 200; ++i) {
        auto l = lease(static_cast<std::uint8_t>(i), static_cast<std::uint8_t>(i), "host \"" + std::to_string(i) + "\" \\ {,}");
        l.state = static_cast<LeaseState>(i % 4);
        l.fqdn = i % 3 ? "" : "h" + std::to_string(i) + ".example.";
        if (i % 5 == 0) l.client = {0xFF, 1, 2, 3, static_cast<std::uint8_t>(i)};
        leases.push_back(l);
    }
    pg::Connection c(database());
    pg::replace_all(c, leases);
    auto back = pg::load(c);
    REQUIRE(back.size() == leases.size());
    for (std::size_t i = 0; i < leases.size(); ++i) CHECK(back[i] == leases[i]);
    pg::replace_all(c, {leases[0]});
    CHECK(pg::load(c).size() == 1);
}

TEST_CASE("postgresql: one server holds the site-wide duty; it moves when the holder goes", "[.pg]") {
    fresh_schema();
    auto log = fleetconf::common::log::get("test");
    Loop la, lb;
    auto a = std::make_unique<pg::PgLeaseStore>(database(), "a", la.post(), log);
    REQUIRE(la.until([&] { return a->has_duty(); }));
    pg::PgLeaseStore b(database(), "b", lb.post(), log);
    // B tries every second and is refused while A's session holds the lock.
    std::this_thread::sleep_for(std::chrono::milliseconds(2500));
    la.run();
    lb.run();
    CHECK(a->has_duty());
    CHECK_FALSE(b.has_duty());
    a.reset();  // its session ends: the lock is free
    CHECK(lb.until([&] { return b.has_duty(); }));
}
