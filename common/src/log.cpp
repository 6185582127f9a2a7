#include "fleetconf/common/log.hpp"

#include "fleetconf/common/text.hpp"

#include <nlohmann/json.hpp>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/syslog_sink.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <mutex>
#include <vector>

namespace fleetconf::common::log {
namespace {

// One JSON object per line: {"ts":"2026-11-26T15:38:11.123Z","level":"info","service":"dhcp","msg":"..."}
class JsonFormatter final : public spdlog::formatter {
public:
    void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
        using namespace std::chrono;
        const auto t = msg.time;
        const auto secs = time_point_cast<seconds>(t);
        const auto ms = duration_cast<milliseconds>(t - secs).count();
        const std::time_t tt = system_clock::to_time_t(secs);
        std::tm tm{};
        gmtime_r(&tt, &tm);
        char ts[80];
        std::snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                      tm.tm_min, tm.tm_sec, static_cast<int>(ms));
        nlohmann::ordered_json j;  // keys in this order, ts first
        j["ts"] = ts;
        j["level"] = std::string(spdlog::level::to_string_view(msg.level).data(), spdlog::level::to_string_view(msg.level).size());
        j["service"] = std::string(msg.logger_name.data(), msg.logger_name.size());
        j["msg"] = log_safe(std::string_view(msg.payload.data(), msg.payload.size()));
        const auto s = j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
        dest.append(s.data(), s.data() + s.size());
        dest.push_back('\n');
    }
    std::unique_ptr<spdlog::formatter> clone() const override { return std::make_unique<JsonFormatter>(); }
};

// %* : the message with control characters and bytes outside UTF-8 written as \xHH, so that no value
// taken from the network (a host name with a newline, say) can split or forge a text log line.
class SafePayload final : public spdlog::custom_flag_formatter {
public:
    void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
        const auto s = log_safe(std::string_view(msg.payload.data(), msg.payload.size()));
        dest.append(s.data(), s.data() + s.size());
    }
    std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<SafePayload>(); }
};

std::unique_ptr<spdlog::formatter> text_formatter(const std::string& pattern) {
    auto f = std::make_unique<spdlog::pattern_formatter>();
    f->add_flag<SafePayload>('*').set_pattern(pattern);
    return f;
}

std::mutex g_mutex;
Options g_opts;
std::vector<spdlog::sink_ptr> g_sinks;

void make_sinks() {
    g_sinks.clear();
    auto err = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
    err->set_formatter(make_formatter(g_opts.format));
    g_sinks.push_back(err);
    if (g_opts.syslog) {
        auto sys = std::make_shared<spdlog::sinks::syslog_sink_mt>("fleetconf", LOG_PID, LOG_DAEMON, true);
        sys->set_formatter(text_formatter("[%n] %*"));
        g_sinks.push_back(sys);
    }
}

spdlog::level::level_enum level_for(std::string_view service) {
    auto it = g_opts.service_levels.find(service);
    return it != g_opts.service_levels.end() ? it->second : g_opts.level;
}

std::optional<spdlog::level::level_enum> parse_level(std::string_view s) {
    static const std::pair<std::string_view, spdlog::level::level_enum> names[] = {
        {"trace", spdlog::level::trace},       {"debug", spdlog::level::debug},  {"info", spdlog::level::info},
        {"warn", spdlog::level::warn},         {"warning", spdlog::level::warn}, {"error", spdlog::level::err},
        {"critical", spdlog::level::critical}, {"off", spdlog::level::off}};
    for (auto [n, l] : names)
        if (n == s) return l;
    return std::nullopt;
}

}  // namespace

std::unique_ptr<spdlog::formatter> make_formatter(Format f) {
    if (f == Format::json) return std::make_unique<JsonFormatter>();
    return text_formatter("%Y-%m-%dT%H:%M:%S.%e %^%-5l%$ [%n] %*");
}

void error_lines(spdlog::logger& l, std::string_view header, std::string_view text) {
    l.error("{}", header);
    for (std::size_t at = 0; at < text.size();) {
        const auto nl = std::min(text.find('\n', at), text.size());
        if (nl > at) l.error("  {}", text.substr(at, nl - at));
        at = nl + 1;
    }
}

std::optional<Format> parse_format(std::string_view s) {
    if (s == "text") return Format::text;
    if (s == "json") return Format::json;
    return std::nullopt;
}

namespace {
// The loggers a per-service level may name ("dhcp=debug"); any other name is refused.
constexpr std::array<std::string_view, 7> kLoggers{"serve", "dhcp", "git", "block", "routes", "status", "console"};

std::string logger_list() {
    std::string s;
    for (const auto n : kLoggers) s += (s.empty() ? "" : ", ") + std::string(n);
    return s;
}
}  // namespace

std::optional<std::string> parse_levels(std::string_view spec, Options& opts) {
    while (!spec.empty()) {
        auto comma = spec.find(',');
        auto item = spec.substr(0, comma);
        spec = comma == std::string_view::npos ? std::string_view{} : spec.substr(comma + 1);
        auto eq = item.find('=');
        auto lvl = parse_level(eq == std::string_view::npos ? item : item.substr(eq + 1));
        if (!lvl) return "unknown log level in \"" + std::string(item) + "\" (use trace, debug, info, warn, error, critical, off)";
        if (eq == std::string_view::npos) opts.level = *lvl;
        else if (item.substr(0, eq).empty()) return "missing service name in \"" + std::string(item) + "\"";
        else if (std::find(kLoggers.begin(), kLoggers.end(), item.substr(0, eq)) == kLoggers.end())
            return "unknown logger \"" + std::string(item.substr(0, eq)) + "\" in \"" + std::string(item) + "\" (use " + logger_list() +
                   ")";
        else opts.service_levels[std::string(item.substr(0, eq))] = *lvl;
    }
    return std::nullopt;
}

void setup(const Options& opts) {
    std::lock_guard lock(g_mutex);
    g_opts = opts;
    make_sinks();
    spdlog::apply_all([](const std::shared_ptr<spdlog::logger>& l) {
        l->sinks() = g_sinks;
        l->set_level(level_for(l->name()));
    });
}

std::optional<std::string> set_levels(std::string_view spec) {
    Options parsed;
    if (auto err = parse_levels(spec, parsed)) return err;
    std::lock_guard lock(g_mutex);
    g_opts.level = parsed.level;
    g_opts.service_levels = parsed.service_levels;
    spdlog::apply_all([](const std::shared_ptr<spdlog::logger>& l) { l->set_level(level_for(l->name())); });
    return std::nullopt;
}

std::string levels() {
    std::lock_guard lock(g_mutex);
    std::string out(spdlog::level::to_string_view(g_opts.level).data(), spdlog::level::to_string_view(g_opts.level).size());
    for (const auto& [name, l] : g_opts.service_levels) {
        const auto v = spdlog::level::to_string_view(l);
        out += "," + name + "=" + std::string(v.data(), v.size());
    }
    return out;
}

std::shared_ptr<spdlog::logger> get(std::string_view service) {
    std::lock_guard lock(g_mutex);
    if (auto l = spdlog::get(std::string(service))) return l;
    if (g_sinks.empty()) make_sinks();
    auto l = std::make_shared<spdlog::logger>(std::string(service), g_sinks.begin(), g_sinks.end());
    l->set_level(level_for(service));
    l->flush_on(spdlog::level::warn);
    spdlog::register_logger(l);
    return l;
}

}  // namespace fleetconf::common::log
