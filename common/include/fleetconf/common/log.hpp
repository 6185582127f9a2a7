// Logging on spdlog: one named logger per service ("dhcp", "git", "block", "site", "serve"),
// human text or JSON lines on stderr, optionally also to syslog.
#pragma once

#include <spdlog/formatter.h>
#include <spdlog/spdlog.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace fleetconf::common::log {

enum class Format { text, json };

struct Options {
    Format format = Format::text;
    bool syslog = false;
    spdlog::level::level_enum level = spdlog::level::info;
    std::map<std::string, spdlog::level::level_enum, std::less<>> service_levels;
};

// Parses "info" or "warn,dhcp=debug,git=trace" into `opts`; returns an error message on failure.
std::optional<std::string> parse_levels(std::string_view spec, Options& opts);
std::optional<Format> parse_format(std::string_view s);

// The line format of each log format. Both write control characters and bytes outside UTF-8 in the
// message as \xHH (common/text.hpp: log_safe), so a value from the network cannot forge a line.
std::unique_ptr<spdlog::formatter> make_formatter(Format f);

// Logs `header` at error level, then each line of `text` as its own error line (indented): a message never
// spans lines, since both formats escape newlines.
void error_lines(spdlog::logger& l, std::string_view header, std::string_view text);

// Installs the sinks and levels. Safe to call again (for example after a reload).
void setup(const Options& opts);

// Changes the levels of every logger at run time ("info,dhcp=debug", as --log-level), keeping the sinks:
// the DHCP control command log-level-set and services.log_level on reload. Returns an error (and changes
// nothing) when the spec is invalid.
std::optional<std::string> set_levels(std::string_view spec);
// The levels in force, as a spec ("info,dhcp=debug").
std::string levels();

// The logger for a service; created on first use with the current sinks and levels.
std::shared_ptr<spdlog::logger> get(std::string_view service);

}  // namespace fleetconf::common::log
