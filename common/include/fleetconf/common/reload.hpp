// A reload is a transaction with a verdict: the new site file either applies as a whole or is refused,
// and the verdict (what was decided, why, and the digest of what runs) is recorded where the operator's
// tools read it: <data_dir>/reload.json (`fleetconf reload`, `systemctl reload`), the DHCP control
// channel's config-reload, /health and /metrics. docs/site-file.md says, per key, what a reload does.
#pragma once

#include "fleetconf/common/site.hpp"
#include "fleetconf/common/status.hpp"

#include <spdlog/logger.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace fleetconf::common {

// What `fleetconf serve` runs, so that a reload can tell what it may apply.
struct Running {
    bool dhcp = false, git = false, block = false;  // the services started
    bool whole_site = true;                         // every enabled service of the site runs here (`serve`); false: only those above
};

// The JSON pointers of every key whose change a running process cannot apply (listeners, ports, the data
// directory, the commit mode, a served device's geometry, a service started or stopped...). Empty: the
// fresh site applies on reload. Pure; tested in tests/common/reload_test.cpp.
std::vector<std::string> restart_keys(const Site& running, const Site& fresh, const Running& services);

struct ReloadVerdict {
    std::uint64_t seq = 0;  // 1 for the first reload of this process, 2 for the next...; 0: none yet
    std::uint64_t pid = 0;  // the serving process
    std::int64_t time = 0;  // unix seconds of the decision
    std::string origin;     // "SIGHUP", "config-reload"
    bool applied = false;
    std::string message;                    // one line: what was applied, or why not
    std::vector<std::string> restart_keys;  // when refused for keys that need a restart
    std::string running_digest;             // SHA-256 of the site file text that runs (after the decision)
    std::string file_digest;                // SHA-256 of the file read for this reload ("" if unreadable)
};

// <data_dir>/reload.json
std::filesystem::path reload_verdict_file(const Site& site);
// <data_dir>/site.running.json: a copy of the site file's text that runs (written at start and after each
// applied reload), for the inspection commands while the file on disk is invalid (mid-edit).
std::filesystem::path running_site_file(const std::filesystem::path& data_dir);
// Written atomically (mode 0644); read back by `fleetconf reload`. read returns nullopt when absent or unreadable.
void write_reload_verdict(const std::filesystem::path& file, const ReloadVerdict& v);
std::optional<ReloadVerdict> read_reload_verdict(const std::filesystem::path& file);
std::string to_json(const ReloadVerdict& v);

// The SHA-256 (hex) of a file's bytes, "" when it cannot be read (at most kMaxSiteFileBytes).
std::string file_digest(const std::filesystem::path& file);

// The reload transaction of a process (`fleetconf serve`, `fleetconf dhcp serve`). Not thread-safe: call
// reload() and status_source()'s functions on one thread (the process's main io_context).
class Reloader {
public:
    // `site_file` and `data_dir` as the process loaded them; `running` the site it started with.
    Reloader(std::filesystem::path site_file, std::filesystem::path data_dir, Site running, Running services,
             std::shared_ptr<spdlog::logger> log);
    // A service's reload (run where the service lives; it throws to refuse and must then leave its running
    // configuration as it was). Reloaded in the order added; when one refuses, those before it are
    // reloaded again with the running site.
    void add(std::string name, std::function<void(const Site&)> reload);
    // Runs once every service accepted the new site (the lease router's set_site).
    void on_applied(std::function<void(const Site&)> f) { applied_.push_back(std::move(f)); }
    // Reads the site file, checks it, applies it to every service or to none, records and returns the verdict.
    ReloadVerdict reload(const std::string& origin);
    [[nodiscard]] const Site& site() const { return site_; }
    [[nodiscard]] const std::optional<ReloadVerdict>& last() const { return last_; }
    // "config": /health degraded while the last reload was refused or the file on disk differs from what
    // runs; /metrics fleetconf_reload_* and fleetconf_config_*.
    [[nodiscard]] StatusSource status_source() const;

private:
    std::filesystem::path file_, data_dir_;
    Site site_;
    Running services_;
    std::shared_ptr<spdlog::logger> log_;
    struct Member {
        std::string name;
        std::function<void(const Site&)> reload;
    };
    std::vector<Member> members_;
    std::vector<std::function<void(const Site&)>> applied_;
    std::optional<ReloadVerdict> last_;
    void record_running() const;
    std::uint64_t applied_count_ = 0, refused_count_ = 0;
};

}  // namespace fleetconf::common
