#include "fleetconf/common/log.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/sinks/ostream_sink.h>

#include <sstream>

using namespace fleetconf::common;

TEST_CASE("log level specs", "[log]") {
    log::Options o;
    CHECK_FALSE(log::parse_levels("warn,dhcp=debug,git=trace", o));
    CHECK(o.level == spdlog::level::warn);
    CHECK(o.service_levels.at("dhcp") == spdlog::level::debug);
    CHECK(o.service_levels.at("git") == spdlog::level::trace);
    log::Options bad;
    CHECK(*log::parse_levels("loud", bad) == "unknown log level in \"loud\" (use trace, debug, info, warn, error, critical, off)");
    CHECK(*log::parse_levels("=debug", bad) == "missing service name in \"=debug\"");
    CHECK(*log::parse_levels("info,dhpc=debug", bad) ==
          "unknown logger \"dhpc\" in \"dhpc=debug\" (use serve, dhcp, git, block, routes, status, console)");  // issue 23.10
    CHECK(log::parse_format("json") == log::Format::json);
    CHECK_FALSE(log::parse_format("xml"));
}

TEST_CASE("per-service levels apply to loggers", "[log]") {
    log::Options o;
    REQUIRE_FALSE(log::parse_levels("error,block=debug", o));
    log::setup(o);
    CHECK(log::get("block")->level() == spdlog::level::debug);
    CHECK(log::get("dhcp")->level() == spdlog::level::err);
    log::setup(log::Options{});
    CHECK(log::get("block")->level() == spdlog::level::info);
}

namespace {
std::string formatted(log::Format f, std::string_view payload) {
    spdlog::details::log_msg msg("dhcp", spdlog::level::info, payload);
    spdlog::memory_buf_t buf;
    log::make_formatter(f)->format(msg, buf);
    return {buf.data(), buf.size()};
}
}  // namespace

TEST_CASE("a host name with a newline cannot forge a log line (issue 16.2)", "[log]") {
    const std::string forged = "OFFER 10.0.0.5 to 02:00:00:00:00:01 (host name \"x\n2026-11-30T10:00:00.000 info  [dhcp] ACK forged\xff\")";
    const auto text = formatted(log::Format::text, forged);
    REQUIRE(text.size() > 1);
    CHECK(text.back() == '\n');
    CHECK(text.find('\n') == text.size() - 1);  // one line
    CHECK(text.find("(host name \"x\\x0a2026-11-30T10:00:00.000 info  [dhcp] ACK forged\\xff\")") != std::string::npos);
    const auto json = formatted(log::Format::json, forged);
    CHECK(json.find('\n') == json.size() - 1);
    auto j = nlohmann::json::parse(json);
    CHECK(j["msg"] == "OFFER 10.0.0.5 to 02:00:00:00:00:01 (host name \"x\\x0a2026-11-30T10:00:00.000 info  [dhcp] ACK forged\\xff\")");
    CHECK(j["service"] == "dhcp");
    CHECK(j["level"] == "info");
}

TEST_CASE("error_lines: one log line per line of a multi-line message", "[log]") {
    std::ostringstream out;
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
    sink->set_pattern("%l|%v");
    spdlog::logger l("t", sink);
    log::error_lines(l, "reload refused:", "site.json: /a: bad\nsite.json: /b: worse\n\n");
    CHECK(out.str() == "error|reload refused:\nerror|  site.json: /a: bad\nerror|  site.json: /b: worse\n");
}
