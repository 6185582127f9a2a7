#include "fleetconf/blockcfg/model.hpp"

#include <catch2/catch.hpp>

using namespace fleetconf::blockcfg;
using nlohmann::json;

namespace {

ChangeRequest change(const json& j) {
    auto r = parse_request(j);
    INFO(j.dump());
    REQUIRE(std::holds_alternative<Request>(r));
    REQUIRE(std::holds_alternative<ChangeRequest>(std::get<Request>(r)));
    return std::get<ChangeRequest>(std::get<Request>(r));
}

Failure failure(const json& j) {
    auto r = parse_request(j);
    INFO(j.dump());
    REQUIRE(std::holds_alternative<Failure>(r));
    return std::get<Failure>(r);
}

}  // namespace

TEST_CASE("host names are validated and lower-cased", "[model]") {
    CHECK(std::get<std::string>(normalize_host("WWW.Example.ORG")) == "www.example.org");
    CHECK(std::get<std::string>(normalize_host("*.example.org")) == "*.example.org");
    CHECK(std::get<std::string>(normalize_host("Default")) == "default");
    for (const char* bad : {"", "*", "a.*.b", "**.a", "-a.b", "a..b", "a_b.c", "a.b.", "*."}) {
        INFO(bad);
        CHECK(std::holds_alternative<Failure>(normalize_host(bad)));
    }
}

TEST_CASE("operations: add, update, upsert, remove, replace and their failures", "[model]") {
    Config c;
    auto run = [&](const json& j) { return apply_all(c, change(j).ops); };
    CHECK_FALSE(run({{"op", "add"}, {"host", "a.example"}, {"address", "10.0.0.1"}, {"port", 443}}));
    auto f = run({{"op", "add"}, {"host", "A.example"}, {"address", "10.0.0.2"}, {"port", 443}});
    REQUIRE(f);
    CHECK(f->code == errc::exists);
    CHECK(c.routes.at("a.example").to_string() == "10.0.0.1:443");
    auto nf = run({{"op", "update"}, {"host", "b.example"}, {"address", "10.0.0.2"}, {"port", 80}});
    REQUIRE(nf);
    CHECK(nf->code == errc::not_found);
    CHECK_FALSE(run({{"op", "update"}, {"host", "a.example"}, {"address", "2001:db8::1"}, {"port", 8443}}));
    CHECK(c.routes.at("a.example").to_string() == "[2001:db8::1]:8443");
    CHECK_FALSE(run({{"op", "upsert"}, {"host", "default"}, {"address", "10.0.0.9"}, {"port", 80}}));
    REQUIRE(c.default_route);
    CHECK(c.default_route->port == 80);
    auto gone = run({{"op", "remove"}, {"host", "nope.example"}});
    REQUIRE(gone);
    CHECK(gone->code == errc::not_found);
    CHECK_FALSE(run({{"op", "remove"}, {"host", "default"}}));
    CHECK_FALSE(c.default_route);
    CHECK_FALSE(run({{"op", "replace"}, {"routes", json::array({{{"host", "x.example"}, {"address", "10.1.1.1"}, {"port", 1}}})}}));
    CHECK(c.routes.size() == 1);
    CHECK(c.routes.contains("x.example"));
}

TEST_CASE("a transaction applies all or nothing", "[model]") {
    Config c;
    auto t = change(
        {{"op", "transaction"},
         {"ops", {{{"op", "add"}, {"host", "a.x"}, {"address", "10.0.0.1"}, {"port", 1}}, {{"op", "remove"}, {"host", "missing.x"}}}}});
    auto f = apply_all(c, t.ops);
    REQUIRE(f);
    CHECK(f->code == errc::not_found);
    CHECK(f->message == "operation 2: no route for missing.x");
    CHECK(c.routes.empty());
}

TEST_CASE("request validation table", "[model]") {
    CHECK(failure(json::array()).code == errc::bad_request);
    CHECK(failure({{"op", "frobnicate"}}).message == "unknown operation \"frobnicate\"");
    CHECK(failure({{"op", "add"}, {"host", "a.x"}, {"address", "10.0.0.1"}, {"port", 0}}).message == "port 0 is outside 1-65535");
    CHECK(failure({{"op", "add"}, {"host", "a.x"}, {"address", "10.0.0.1"}, {"port", 65536}}).code == errc::invalid);
    CHECK(failure({{"op", "add"}, {"host", "a.x"}, {"address", "10.0.0.256"}, {"port", 1}}).message ==
          "\"10.0.0.256\" is not an IPv4 or IPv6 address");
    CHECK(failure({{"op", "add"}, {"host", "a x"}, {"address", "10.0.0.1"}, {"port", 1}}).code == errc::invalid);
    CHECK(failure({{"op", "add"}, {"address", "10.0.0.1"}, {"port", 1}}).message == "add needs \"host\"");
    CHECK(failure({{"op", "list"}, {"expect_generation", -1}}).code == errc::bad_request);
    CHECK(failure({{"op", "rollback"}}).code == errc::invalid);
    CHECK(failure({{"op", "transaction"}, {"ops", json::array()}}).code == errc::invalid);
    CHECK(failure({{"op", "replace"},
                   {"routes",
                    {{{"host", "a.x"}, {"address", "10.0.0.1"}, {"port", 1}}, {{"host", "A.x"}, {"address", "10.0.0.2"}, {"port", 1}}}}})
              .message == "routes[1]: host a.x is given twice");
    auto c = change({{"op", "upsert"}, {"host", "a.x"}, {"address", "10.0.0.1"}, {"port", 1}, {"expect_generation", 7}});
    CHECK(*c.expect_generation == 7);
}

TEST_CASE("payload round trip and schema check", "[model]") {
    Config c;
    c.routes["b.example"] = {*fleetconf::common::parse_ip("10.0.0.2"), 443};
    c.routes["a.example"] = {*fleetconf::common::parse_ip("::1"), 8443};
    c.default_route = Backend{*fleetconf::common::parse_ip("10.0.0.9"), 80};
    const auto p = to_payload(c);
    CHECK(p == R"({"default":{"address":"10.0.0.9","port":80},"routes":[{"address":"::1","host":"a.example","port":8443},)"
               R"({"address":"10.0.0.2","host":"b.example","port":443}],"schema":1})");
    CHECK(std::get<Config>(from_payload(p)) == c);
    CHECK(std::get<Failure>(from_payload(R"({"schema":2,"routes":[]})")).code == errc::damaged);
    CHECK(std::get<Failure>(from_payload("not json")).code == errc::damaged);
}

TEST_CASE("docs/blockcfg-protocol.md: at most 10,000 routes, by any operation", "[model][limits]") {
    Config c;
    for (std::size_t i = 0; i < kMaxRoutes; ++i)
        c.routes["h" + std::to_string(i) + ".example"] = Backend{fleetconf::common::Ipv4(10, 0, 0, 1), 443};
    // At the limit: changing an existing route and removing are fine; one more route is TOO_LARGE.
    CHECK_FALSE(apply_all(c, change({{"op", "update"}, {"host", "h0.example"}, {"address", "10.0.0.2"}, {"port", 80}}).ops));
    for (const char* op : {"add", "upsert"}) {
        INFO(op);
        auto f = apply_all(c, change({{"op", op}, {"host", "one-more.example"}, {"address", "10.0.0.2"}, {"port", 80}}).ops);
        REQUIRE(f);
        CHECK(f->code == errc::too_large);
        CHECK(f->message == "at most 10000 routes");
    }
    CHECK(c.routes.size() == kMaxRoutes);
    // The default route is not one of them.
    CHECK_FALSE(apply_all(c, change({{"op", "upsert"}, {"host", "default"}, {"address", "10.0.0.2"}, {"port", 80}}).ops));
    // replace: 10,000 accepted, 10,001 refused.
    json routes = json::array();
    for (std::size_t i = 0; i < kMaxRoutes; ++i)
        routes.push_back({{"host", "r" + std::to_string(i) + ".example"}, {"address", "10.0.0.3"}, {"port", 1}});
    CHECK_FALSE(apply_all(c, change({{"op", "replace"}, {"routes", routes}}).ops));
    routes.push_back({{"host", "last.example"}, {"address", "10.0.0.3"}, {"port", 1}});
    auto r = parse_request({{"op", "replace"}, {"routes", routes}});
    if (std::holds_alternative<Failure>(r)) {
        CHECK(std::get<Failure>(r).code == errc::too_large);
    } else {
        auto f = apply_all(c, std::get<ChangeRequest>(std::get<Request>(r)).ops);
        REQUIRE(f);
        CHECK(f->code == errc::too_large);
    }
}

TEST_CASE("docs/blockcfg-protocol.md: at most 1,000 operations in a transaction", "[model][limits]") {
    auto tx = [](std::size_t n) {
        json ops = json::array();
        for (std::size_t i = 0; i < n; ++i)
            ops.push_back({{"op", "upsert"}, {"host", "t" + std::to_string(i) + ".example"}, {"address", "10.0.0.1"}, {"port", 1}});
        return json{{"op", "transaction"}, {"ops", ops}};
    };
    CHECK(change(tx(1000)).ops.size() == 1000);
    const auto f = failure(tx(1001));
    CHECK(f.code == errc::too_large);
    CHECK(f.message == "at most 1000 operations in a transaction");
}

TEST_CASE("a batch of queued changes: in order, no lost update, rollbacks read their generation", "[model][batch]") {
    Config start;
    REQUIRE_FALSE(apply(start, change({{"op", "add"}, {"host", "a.x"}, {"address", "10.0.0.1"}, {"port", 1}}).ops[0]));
    auto add_b = change({{"op", "add"}, {"host", "b.x"}, {"address", "10.0.0.2"}, {"port", 2}});
    auto add_a = change({{"op", "add"}, {"host", "a.x"}, {"address", "10.0.0.9"}, {"port", 9}});  // exists: refused
    auto cas_ok = change({{"op", "upsert"}, {"host", "c.x"}, {"address", "10.0.0.3"}, {"port", 3}, {"expect_generation", 7}});
    std::vector<std::string> reads;
    auto no_history = [&](std::uint64_t g) -> std::optional<std::string> {
        reads.push_back(std::to_string(g));
        return std::nullopt;
    };

    SECTION("a compare-and-swap first is accepted; after an accepted change it is a conflict") {
        auto r = apply_batch(start, 7, {&cas_ok, &add_a, &add_b}, no_history);
        REQUIRE(r.refused.size() == 3);
        CHECK_FALSE(r.refused[0]);
        REQUIRE(r.refused[1]);
        CHECK(r.refused[1]->code == errc::exists);
        CHECK_FALSE(r.refused[2]);
        CHECK(r.changed);
        CHECK(r.config.routes.size() == 3);
        CHECK(r.config.routes.at("a.x").to_string() == "10.0.0.1:1");  // the refused add changed nothing

        auto late = apply_batch(start, 7, {&add_b, &cas_ok}, no_history);
        CHECK_FALSE(late.refused[0]);
        REQUIRE(late.refused[1]);
        CHECK(late.refused[1]->code == errc::conflict);
        CHECK(late.refused[1]->message == "expected generation 7, the configuration is at 8 (being committed)");
        CHECK_FALSE(late.config.routes.contains("c.x"));
    }
    SECTION("a stale generation is a conflict; nothing accepted, nothing to commit") {
        auto r = apply_batch(start, 8, {&cas_ok}, no_history);
        REQUIRE(r.refused[0]);
        CHECK(r.refused[0]->message == "expected generation 7, the configuration is at 8");
        CHECK_FALSE(r.changed);
        CHECK(r.config.routes.size() == 1);
    }
    SECTION("a rollback takes its generation's configuration, or is refused when it is gone") {
        auto rb = change({{"op", "rollback"}, {"generation", 3}});
        REQUIRE(rb.rollback_to == 3u);
        auto gone = apply_batch(start, 7, {&rb}, no_history);
        REQUIRE(gone.refused[0]);
        CHECK(gone.refused[0]->code == errc::not_found);
        CHECK(reads == std::vector<std::string>{"3"});
        auto future = change({{"op", "rollback"}, {"generation", 99}});
        auto never = apply_batch(start, 7, {&future}, no_history);
        REQUIRE(never.refused[0]);
        CHECK(never.refused[0]->message == "generation 99 was never written (the configuration is at 7)");  // issue 23.12
        CHECK(reads.size() == 1);                                                                           // not even looked up
        Config old;
        REQUIRE_FALSE(apply(old, change({{"op", "add"}, {"host", "old.x"}, {"address", "10.0.0.4"}, {"port", 4}}).ops[0]));
        auto back = apply_batch(start, 7, {&rb, &add_b}, [&](std::uint64_t) { return std::optional<std::string>(to_payload(old)); });
        CHECK_FALSE(back.refused[0]);
        CHECK_FALSE(back.refused[1]);
        CHECK(back.config.routes.size() == 2);  // old.x, then b.x on top
        CHECK(back.config.routes.contains("old.x"));
        CHECK_FALSE(back.config.routes.contains("a.x"));
    }
}
