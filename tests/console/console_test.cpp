// The console's access rules and decision (console::Console) without sockets: password hashes against an
// independent scrypt (Python's hashlib), the limiter, sessions, and what each request is answered.
#include "fleetconf/console/auth.hpp"
#include "fleetconf/console/console.hpp"

#include "fleetconf/common/log.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <filesystem>
#include <fstream>

using namespace fleetconf;
using namespace fleetconf::console;
using nlohmann::json;

namespace {

// The test vector of docs/console.md, computed with Python's hashlib.scrypt.
constexpr const char* kVector = "admin:scrypt:10:8:1:MDEyMzQ1Njc4OWFiY2RlZg==:xXt6EAFzAOlee5Hgl8R5+kLA6sDARjRcMGtm6fZJsa8=";

struct TempDir {
    std::filesystem::path path;
    TempDir() {
        char t[] = "/tmp/fleetconf-console-XXXXXX";
        path = ::mkdtemp(t);
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
};

void write_secret(const std::filesystem::path& p, const std::string& text) {
    std::ofstream(p) << text;
    std::filesystem::permissions(p, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
}

common::HttpRequest request(std::string method, std::string url, std::string host = "127.0.0.1:9468") {
    common::HttpRequest r;
    r.method = std::move(method);
    r.url = std::move(url);
    r.headers["host"] = std::move(host);
    return r;
}

// A backend that records what the actions were asked.
struct Fake {
    json fleet = {{"unikernels", json::array({{{"name", "web"}, {"hostname", "<img src=x onerror=alert(1)>"}}})}};
    double acks = 0;
    std::vector<json> calls;
    Backend backend() {
        Backend b;
        b.fleet = [this] { return fleet; };
        b.networks = [] { return json{{"networks", json::array()}}; };
        b.counters = [this] { return std::map<std::string, double>{{"dhcp_acks", acks}}; };
        b.leases = [](const std::string& q, std::size_t limit) { return json{{"q", q}, {"limit", limit}}; };
        b.actions["route-add"] = [this](const json& a, const std::string& who) {
            calls.push_back({{"args", a}, {"who", who}});
            if (a.value("host", "") == "bad") throw ActionError(400, "invalid host");
            return json{{"message", "added"}};
        };
        return b;
    }
};

std::shared_ptr<spdlog::logger> logger() { return common::log::get("console-test"); }

// The session cookie and CSRF token the page gets from GET /api/v1/session (no-login mode).
std::pair<std::string, std::string> session(Console& c, Console::Clock::time_point now) {
    auto r = c.handle(request("GET", "/api/v1/session"), "127.0.0.1:5000", false, now);
    REQUIRE(r.status == 200);
    const auto at = r.headers.find("fleetconf_console=");
    REQUIRE(at != std::string::npos);
    const auto token = r.headers.substr(at + 18, r.headers.find(';', at) - at - 18);
    return {token, json::parse(r.body)["csrf"].get<std::string>()};
}

common::HttpRequest post(const std::string& url, const std::string& body, const std::string& cookie, const std::string& csrf) {
    auto r = request("POST", url);
    r.headers["content-type"] = "application/json";
    r.headers["cookie"] = "fleetconf_console=" + cookie;
    if (!csrf.empty()) r.headers["x-csrf-token"] = csrf;
    r.body = body;
    return r;
}

}  // namespace

TEST_CASE("console: scrypt password lines match an independent implementation", "[console]") {
    CHECK(hash_password_line("admin", "correct horse battery", {10, 8, 1}, "0123456789abcdef") == kVector);
    const auto f = PasswordFile::parse(std::string("# operators\n") + kVector + "\n");
    CHECK(f.size() == 1);
    CHECK(f.verify("admin", "correct horse battery"));
    CHECK_FALSE(f.verify("admin", "correct horse batterY"));
    CHECK_FALSE(f.verify("nobody", "correct horse battery"));
    CHECK_FALSE(f.verify("", ""));
}

TEST_CASE("console: a damaged password file is refused with its line", "[console]") {
    CHECK_THROWS_WITH(PasswordFile::parse("admin:plain:secret\n"), Catch::Contains("line 1"));
    CHECK_THROWS_WITH(PasswordFile::parse("\nadmin:scrypt:30:8:1:MDEyMzQ1Njc4OWFiY2RlZg==:xXt6\n"), Catch::Contains("line 2"));
    CHECK_THROWS(PasswordFile::parse("a b:scrypt:10:8:1:MDEyMzQ1Njc4OWFiY2RlZg==:xXt6EAFzAOlee5Hgl8R5+kLA6sDARjRcMGtm6fZJsa8="));
    CHECK_THROWS(PasswordFile::parse("admin:scrypt:10:8:1:not-base64:xXt6EAFzAOlee5Hgl8R5+kLA6sDARjRcMGtm6fZJsa8="));
    // with_line replaces the same user's line and keeps the others.
    const auto two = PasswordFile::with_line(kVector + std::string("\n"), hash_password_line("ops", "another password", {10, 8, 1}));
    const auto f = PasswordFile::parse(two);
    CHECK(f.size() == 2);
    const auto replaced = PasswordFile::with_line(two, hash_password_line("admin", "new password!", {10, 8, 1}));
    const auto g = PasswordFile::parse(replaced);
    CHECK(g.size() == 2);
    CHECK(g.verify("admin", "new password!"));
    CHECK_FALSE(g.verify("admin", "correct horse battery"));
    CHECK(g.verify("ops", "another password"));
}

TEST_CASE("console: a password file readable by others is refused", "[console]") {
    TempDir d;
    const auto p = d.path / "passwords";
    std::ofstream(p) << kVector << "\n";
    std::filesystem::permissions(
        p, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write | std::filesystem::perms::others_read);
    CHECK_THROWS(PasswordFile::load(p));
    std::filesystem::permissions(p, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
    CHECK(PasswordFile::load(p).size() == 1);
}

TEST_CASE("console: the login limiter blocks an address after 5 failures in a minute, and only it", "[console]") {
    LoginLimiter l;
    const auto t0 = LoginLimiter::Clock::time_point{} + std::chrono::hours(1);
    for (int i = 0; i < 5; ++i) {
        CHECK_FALSE(l.blocked("10.0.0.1", t0 + std::chrono::seconds(i)));
        l.failed("10.0.0.1", t0 + std::chrono::seconds(i));
    }
    const auto wait = l.blocked("10.0.0.1", t0 + std::chrono::seconds(5));
    REQUIRE(wait);
    CHECK(wait->count() == 55);
    CHECK_FALSE(l.blocked("10.0.0.2", t0 + std::chrono::seconds(5)));
    CHECK_FALSE(l.blocked("10.0.0.1", t0 + std::chrono::seconds(61)));  // the first failure left the window
    // Bounded: many addresses do not grow it without limit.
    LoginLimiter small(5, std::chrono::seconds(60), 8);
    for (int i = 0; i < 100; ++i) small.failed("10.1.0." + std::to_string(i), t0);
    for (int i = 0; i < 5; ++i) small.failed("10.2.0.1", t0);
    CHECK(small.blocked("10.2.0.1", t0));
}

TEST_CASE("console: sessions end when idle, at their absolute limit, and beyond the maximum", "[console]") {
    Sessions s(std::chrono::seconds(60), std::chrono::seconds(300), 2);
    const auto t0 = Sessions::Clock::time_point{} + std::chrono::hours(1);
    const auto a = s.open("admin", t0);
    CHECK(a.size() == 43);  // 32 bytes, unpadded base64url
    REQUIRE(s.find(a, t0 + std::chrono::seconds(50)));
    CHECK(s.find(a, t0 + std::chrono::seconds(100)));  // used at 50: not idle for 60 s
    CHECK_FALSE(s.find(a, t0 + std::chrono::seconds(161)));
    const auto b = s.open("admin", t0);
    for (int i = 1; i < 6; ++i) CHECK(s.find(b, t0 + std::chrono::seconds(50 * i)));
    CHECK_FALSE(s.find(b, t0 + std::chrono::seconds(301)));  // absolute limit
    const auto t1 = t0 + std::chrono::seconds(400);
    const auto c1 = s.open("x", t1), c2 = s.open("y", t1 + std::chrono::seconds(1)), c3 = s.open("z", t1 + std::chrono::seconds(2));
    CHECK(s.size() == 2);
    CHECK_FALSE(s.valid(c1, t1 + std::chrono::seconds(2)));  // the least recently used went
    CHECK(s.valid(c3, t1 + std::chrono::seconds(2)));
    (void)c2;
    CHECK(cookie_value("a=1; fleetconf_console=abc; b=2", "fleetconf_console") == "abc");
    CHECK(cookie_value("xfleetconf_console=abc", "fleetconf_console").empty());
    CHECK(same_secret("abc", "abc"));
    CHECK_FALSE(same_secret("abc", "abd"));
    CHECK_FALSE(same_secret("abc", "abcd"));
}

TEST_CASE("console: without a login only loopback host names are answered", "[console]") {
    Fake f;
    Console c({}, f.backend(), logger());
    const auto now = Console::Clock::now();
    CHECK(c.handle(request("GET", "/"), "127.0.0.1:5000", false, now).status == 200);
    CHECK(c.handle(request("GET", "/", "localhost:9468"), "127.0.0.1:5000", false, now).status == 200);
    CHECK(c.handle(request("GET", "/", "[::1]:9468"), "[::1]:5000", false, now).status == 200);
    // DNS rebinding: a name of another site that resolves to 127.0.0.1.
    CHECK(c.handle(request("GET", "/", "evil.example:9468"), "127.0.0.1:5000", false, now).status == 421);
    CHECK(c.handle(request("GET", "/api/v1/fleet", "127.0.0.2.evil.example"), "127.0.0.1:5000", false, now).status == 421);
    const auto page = c.handle(request("GET", "/"), "127.0.0.1:5000", false, now);
    CHECK(page.content_type.starts_with("text/html"));
    CHECK(page.headers.find("Content-Security-Policy: default-src 'none'; script-src 'self'") != std::string::npos);
    CHECK(page.headers.find("X-Frame-Options: DENY") != std::string::npos);
    CHECK(c.handle(request("GET", "/assets/app.js"), "127.0.0.1:5000", false, now).content_type.starts_with("text/javascript"));
    CHECK(c.handle(request("GET", "/assets/../../etc/passwd"), "127.0.0.1:5000", false, now).status == 404);
    CHECK(c.handle(request("POST", "/"), "127.0.0.1:5000", false, now).status == 405);
    CHECK(c.handle(request("GET", "/api/v2/fleet"), "127.0.0.1:5000", false, now).status == 404);
}

TEST_CASE("console: views, the lease search's limits, and the activity series", "[console]") {
    Fake f;
    Console c({}, f.backend(), logger());
    const auto now = Console::Clock::now();
    auto fleet = c.handle(request("GET", "/api/v1/fleet"), "127.0.0.1:5000", false, now);
    REQUIRE(fleet.status == 200);
    // A host name from the network is data: JSON-escaped, never markup the server builds.
    CHECK(json::parse(fleet.body)["unikernels"][0]["hostname"] == "<img src=x onerror=alert(1)>");
    CHECK(fleet.headers.find("Cache-Control: no-store") != std::string::npos);
    auto l = c.handle(request("GET", "/api/v1/leases?q=web%20app&limit=5"), "127.0.0.1:5000", false, now);
    REQUIRE(l.status == 200);
    CHECK(json::parse(l.body) == json{{"q", "web app"}, {"limit", 5}});
    CHECK(c.handle(request("GET", "/api/v1/leases?limit=0"), "127.0.0.1:5000", false, now).status == 400);
    CHECK(c.handle(request("GET", "/api/v1/leases?limit=1001"), "127.0.0.1:5000", false, now).status == 400);
    CHECK(c.handle(request("GET", "/api/v1/leases?limit=-1"), "127.0.0.1:5000", false, now).status == 400);
    CHECK(c.handle(request("GET", "/api/v1/leases?q=%zz"), "127.0.0.1:5000", false, now).status == 400);
    CHECK(c.handle(request("GET", "/api/v1/leases?q=" + std::string(300, 'a')), "127.0.0.1:5000", false, now).status == 400);
    CHECK(c.handle(request("GET", "/api/v1/repositories"), "127.0.0.1:5000", false, now).status == 404);  // not served
    CHECK(c.handle(request("GET", "/api/v1/devices/web/history"), "127.0.0.1:5000", false, now).status == 404);
    // Once a second: the counters' increments; the first sample only sets the base.
    f.acks = 10;
    auto events = c.tick(1000);
    CHECK(events.size() >= 2);  // activity, fleet, networks (the first time every view is new)
    f.acks = 35;
    events = c.tick(1001);
    bool fleet_sent = false;
    for (const auto& e : events) fleet_sent = fleet_sent || e.starts_with("event: fleet\n");
    CHECK_FALSE(fleet_sent);  // unchanged views are not sent again
    auto a = json::parse(c.handle(request("GET", "/api/v1/activity"), "127.0.0.1:5000", false, now).body);
    CHECK(a["series"]["dhcp_acks"] == json::array({0.0, 25.0}));
    CHECK(a["end"] == 1001);
    for (int i = 0; i < 4000; ++i) c.tick(1002 + i);
    a = json::parse(c.handle(request("GET", "/api/v1/activity"), "127.0.0.1:5000", false, now).body);
    CHECK(a["series"]["dhcp_acks"].size() == Console::kHistory);  // bounded
    CHECK(c.initial_events().size() >= 2);
}

TEST_CASE("console: an action needs the session's CSRF token, JSON, the same origin and a confirmation", "[console]") {
    TempDir d;
    Fake f;
    Options o;
    o.audit_file = d.path / "audit.jsonl";
    Console c(o, f.backend(), logger());
    const auto now = Console::Clock::now();
    const auto [cookie, csrf] = session(c, now);
    const std::string body = R"({"confirm": true, "device": "proxy", "host": "www.example.org", "address": "10.0.0.5", "port": 443})";
    CHECK(c.handle(post("/api/v1/actions/route-add", body, cookie, ""), "127.0.0.1:5000", false, now).status == 403);
    CHECK(c.handle(post("/api/v1/actions/route-add", body, cookie, csrf + "x"), "127.0.0.1:5000", false, now).status == 403);
    CHECK(c.handle(post("/api/v1/actions/route-add", body, "other", csrf), "127.0.0.1:5000", false, now).status == 403);
    auto form = post("/api/v1/actions/route-add", body, cookie, csrf);
    form.headers["content-type"] = "application/x-www-form-urlencoded";
    CHECK(c.handle(form, "127.0.0.1:5000", false, now).status == 415);
    auto cross = post("/api/v1/actions/route-add", body, cookie, csrf);
    cross.headers["origin"] = "http://evil.example";
    CHECK(c.handle(cross, "127.0.0.1:5000", false, now).status == 403);
    auto site = post("/api/v1/actions/route-add", body, cookie, csrf);
    site.headers["sec-fetch-site"] = "cross-site";
    CHECK(c.handle(site, "127.0.0.1:5000", false, now).status == 403);
    CHECK(c.handle(post("/api/v1/actions/route-add", R"({"device": "proxy"})", cookie, csrf), "127.0.0.1:5000", false, now).status == 400);
    CHECK(c.handle(post("/api/v1/actions/route-add", "[1]", cookie, csrf), "127.0.0.1:5000", false, now).status == 400);
    CHECK(c.handle(post("/api/v1/actions/nothing", body, cookie, csrf), "127.0.0.1:5000", false, now).status == 404);
    CHECK(f.calls.empty());
    auto same = post("/api/v1/actions/route-add", body, cookie, csrf);
    same.headers["origin"] = "http://127.0.0.1:9468";
    const auto ok = c.handle(same, "127.0.0.1:5000", false, now);
    CHECK(ok.status == 200);
    REQUIRE(f.calls.size() == 1);
    CHECK(f.calls[0]["who"] == "console@127.0.0.1");
    const auto refused =
        c.handle(post("/api/v1/actions/route-add", R"({"confirm": true, "host": "bad"})", cookie, csrf), "127.0.0.1:5000", false, now);
    CHECK(refused.status == 400);
    CHECK(json::parse(refused.body)["error"] == "invalid host");
    // Both are in the audit log (file and API), the refused one with its reason, without "confirm".
    std::ifstream in(o.audit_file);
    std::string line;
    std::vector<json> lines;
    while (std::getline(in, line)) lines.push_back(json::parse(line));
    REQUIRE(lines.size() == 2);
    CHECK(lines[0]["action"] == "route-add");
    CHECK(lines[0]["result"] == "ok");
    CHECK(lines[0]["args"]["host"] == "www.example.org");
    CHECK_FALSE(lines[0]["args"].contains("confirm"));
    CHECK(lines[1]["result"] == "refused");
    CHECK(lines[1]["message"] == "invalid host");
    CHECK(json::parse(c.handle(request("GET", "/api/v1/audit"), "127.0.0.1:5000", false, now).body).size() == 2);
    // Logout ends the session: its token no longer passes.
    CHECK(c.handle(post("/api/v1/logout", "{}", cookie, csrf), "127.0.0.1:5000", false, now).status == 200);
    CHECK(c.handle(post("/api/v1/actions/route-add", body, cookie, csrf), "127.0.0.1:5000", false, now).status == 403);
}

TEST_CASE("console: with a password file every view needs a login, and failed logins are limited", "[console]") {
    TempDir d;
    write_secret(d.path / "passwords", std::string(kVector) + "\n");
    Fake f;
    Options o;
    o.listen = {common::Ipv4{10, 0, 0, 1}, 9468};
    o.password_file = d.path / "passwords";
    Console c(o, f.backend(), logger());
    auto now = Console::Clock::now();
    auto get = [&](const std::string& url, const std::string& cookie = {}) {
        auto r = request("GET", url, "10.0.0.1:9468");
        if (!cookie.empty()) r.headers["cookie"] = "fleetconf_console=" + cookie;
        return c.handle(r, "10.0.0.9:4000", true, now);
    };
    CHECK(get("/").status == 200);  // the page itself (it shows the login form)
    for (const auto* v : {"/api/v1/fleet", "/api/v1/networks", "/api/v1/leases", "/api/v1/activity", "/api/v1/audit", "/api/v1/events"})
        CHECK(get(v).status == 401);
    const auto s = json::parse(get("/api/v1/session").body);
    CHECK(s["login_required"] == true);
    CHECK(s["authenticated"] == false);
    auto login = [&](const std::string& user, const std::string& password, const std::string& from = "10.0.0.9:4000") {
        auto r = request("POST", "/api/v1/login", "10.0.0.1:9468");
        r.headers["content-type"] = "application/json";
        r.body = json{{"user", user}, {"password", password}}.dump();
        return c.handle(r, from, true, now);
    };
    for (int i = 0; i < 5; ++i) CHECK(login("admin", "wrong").status == 401);
    const auto throttled = login("admin", "correct horse battery");
    CHECK(throttled.status == 429);
    CHECK(throttled.headers.find("Retry-After:") != std::string::npos);
    CHECK(login("admin", "correct horse battery", "10.0.0.10:4000").status == 200);  // another address is not blocked
    now += std::chrono::seconds(61);
    const auto ok = login("admin", "correct horse battery");
    REQUIRE(ok.status == 200);
    CHECK(ok.headers.find("HttpOnly; SameSite=Strict; Secure") != std::string::npos);
    const auto at = ok.headers.find("fleetconf_console=");
    const auto token = ok.headers.substr(at + 18, ok.headers.find(';', at) - at - 18);
    CHECK(get("/api/v1/fleet", token).status == 200);
    CHECK(get("/api/v1/fleet", token + "x").status == 401);
    CHECK(json::parse(get("/api/v1/session", token).body)["user"] == "admin");
    CHECK(get("/").headers.find("Strict-Transport-Security") != std::string::npos);
    CHECK(c.counters().login_failures == 5);
    CHECK(c.counters().login_throttled == 1);
}
