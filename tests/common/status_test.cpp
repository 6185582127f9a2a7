#include "fleetconf/common/status.hpp"

#include <asio/connect.hpp>
#include <asio/read.hpp>
#include <asio/write.hpp>
#include "../support/deadline_io.hpp"
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/sinks/null_sink.h>

#include <thread>

using namespace fleetconf::common;

namespace {
HttpRequest get(std::string url, std::string method = "GET") {
    HttpRequest r;
    r.method = std::move(method);
    r.url = std::move(url);
    return r;
}

StatusRegistry two_sources(bool second_ok) {
    StatusRegistry reg;
    reg.add({"dhcp", [] { return std::string("# TYPE fleetconf_dhcp_x counter\nfleetconf_dhcp_x 7\n"); },
             [] {
                 return Health{true, "listening on br0"};
             }});
    reg.add({"git", [] { return std::string("fleetconf_git_y 1\n"); },
             [second_ok] {
                 return Health{second_ok, second_ok ? "ok" : "not listening: http"};
             }});
    return reg;
}
}  // namespace

TEST_CASE("GET /health: 200 with every service's line, 503 when one is failing", "[status]") {
    auto reg = two_sources(true);
    auto r = status_reply(reg, get("/health"));
    CHECK(r.status == 200);
    CHECK(r.content_type == "application/json");
    auto j = nlohmann::json::parse(r.body);
    CHECK(j["status"] == "ok");
    CHECK(j["services"]["dhcp"]["detail"] == "listening on br0");
    CHECK(j["services"]["git"]["ok"] == true);

    auto bad = two_sources(false);
    auto f = status_reply(bad, get("/health?verbose=1"));
    CHECK(f.status == 503);
    auto jf = nlohmann::json::parse(f.body);
    CHECK(jf["status"] == "failing");
    CHECK(jf["services"]["git"]["detail"] == "not listening: http");
    CHECK(jf["services"]["dhcp"]["ok"] == true);
}

TEST_CASE("GET /metrics: every source, fleetconf_up per service, the process", "[status]") {
    auto reg = two_sources(false);
    reg.add({"block", []() -> std::string { throw std::runtime_error("device gone"); },
             []() -> Health { throw std::runtime_error("device gone"); }});
    auto r = status_reply(reg, get("/metrics"));
    CHECK(r.status == 200);
    CHECK_THAT(r.content_type, Catch::StartsWith("text/plain; version=0.0.4"));
    CHECK_THAT(r.body, Catch::Contains("fleetconf_dhcp_x 7\n"));
    CHECK_THAT(r.body, Catch::Contains("fleetconf_git_y 1\n"));
    CHECK_THAT(r.body, Catch::Contains("fleetconf_up{service=\"dhcp\"} 1\n"));
    CHECK_THAT(r.body, Catch::Contains("fleetconf_up{service=\"git\"} 0\n"));
    CHECK_THAT(r.body, Catch::Contains("fleetconf_up{service=\"block\"} 0\n"));  // a throwing source is down, the rest still shown
    CHECK_THAT(r.body, Catch::Contains("process_open_fds "));
    CHECK_THAT(r.body, Catch::Contains("process_resident_memory_bytes "));
    CHECK_THAT(r.body, Catch::Contains("process_start_time_seconds "));
    // The start time keeps its precision (not 1.8e+09): whole seconds at least, as Unix time.
    const auto at = r.body.find("\nprocess_start_time_seconds ") + 28;
    const double start = std::stod(r.body.substr(at, r.body.find('\n', at) - at));
    const double now =
        static_cast<double>(std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count());
    CHECK(start <= now + 1);
    CHECK(start > now - 600);
    CHECK(r.body.substr(at, r.body.find('\n', at) - at).find('e') == std::string::npos);
    auto h = nlohmann::json::parse(status_reply(reg, get("/health")).body);
    CHECK_THAT(h["services"]["block"]["detail"].get<std::string>(), Catch::Contains("device gone"));
}

TEST_CASE("other paths 404, other methods 405", "[status]") {
    auto reg = two_sources(true);
    CHECK(status_reply(reg, get("/")).status == 404);
    CHECK(status_reply(reg, get("/metrics/x")).status == 404);
    CHECK(status_reply(reg, get("/metrics", "POST")).status == 405);
    CHECK(status_reply(reg, get("/health", "HEAD")).status == 200);
}

TEST_CASE("the status server answers over a loopback socket and refuses oversized requests", "[status][socket]") {
    auto reg = two_sources(true);
    asio::io_context io;
    auto log = std::make_shared<spdlog::logger>("status", std::make_shared<spdlog::sinks::null_sink_mt>());
    StatusServer server(io, Endpoint{Ipv4{127, 0, 0, 1}, 0}, reg, log);
    server.start();
    const auto port = server.port();
    REQUIRE(port != 0);
    std::thread t([&] { io.run(); });
    auto exchange = [&](const std::string& request) {
        asio::io_context cio;
        asio::ip::tcp::socket s(cio);
        s.connect({asio::ip::make_address("127.0.0.1"), port});
        asio::write(s, asio::buffer(request));
        return fleetconf::test::read_until_close(s, fleetconf::test::in_seconds(10));  // until the server closes
    };
    auto health = exchange("GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK_THAT(health, Catch::StartsWith("HTTP/1.1 200 OK\r\n"));
    CHECK_THAT(health, Catch::Contains("\"status\": \"ok\""));
    auto head = exchange("HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK_THAT(head, Catch::StartsWith("HTTP/1.1 200 OK\r\n"));
    CHECK(head.substr(head.find("\r\n\r\n") + 4).empty());  // HEAD: headers only
    CHECK_THAT(exchange("GET /" + std::string(2000, 'a') + " HTTP/1.1\r\n\r\n"), Catch::StartsWith("HTTP/1.1 413 "));
    CHECK_THAT(exchange("BREW /pot HTCPCP/1.0\r\n\r\n"), Catch::StartsWith("HTTP/1.1 400 "));
    asio::post(io, [&] { server.stop(); });
    t.join();
}
