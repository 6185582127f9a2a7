// The `fleetconf` command line: each subcommand registers itself on the CLI11 app and runs as a thin
// layer over a library call. Exit codes: 0 success, 1 runtime failure, 2 invalid input or usage.
#pragma once

#include "fleetconf/common/site.hpp"

#include <CLI/CLI.hpp>
#include <spdlog/logger.h>

#include <optional>

#include <functional>
#include <string>

namespace fleetconf::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitInvalid = 2;

// The action to run once parsing succeeded; set by whichever subcommand was selected.
using Action = std::function<int()>;

void add_site_commands(CLI::App& app, Action& action);
void add_bootargs_command(CLI::App& app, Action& action);
void add_serve_command(CLI::App& app, Action& action);
void add_block_commands(CLI::App& app, Action& action);
void add_dhcp_commands(CLI::App& app, Action& action);
void add_dhcp_db_commands(CLI::App* dhcp, Action& action);  // db init|upgrade|status, migrate, import
void add_git_commands(CLI::App& app, Action& action);
void add_console_commands(CLI::App& app, Action& action);  // console passwd

// <data_dir>/fleetconf.pid: held (flock) by the running `serve` or `dhcp serve` of that data directory.
std::filesystem::path pid_file(const common::Site& site);

// Holds pid_file(site) for its lifetime: one server per data directory (two would share the lease journal
// and the devices), and `fleetconf reload` finds it. ok() is false after the reason has been printed.
class DataDirLock {
public:
    explicit DataDirLock(const common::Site& site);
    ~DataDirLock();
    DataDirLock(const DataDirLock&) = delete;
    DataDirLock& operator=(const DataDirLock&) = delete;
    [[nodiscard]] bool ok() const { return fd_ >= 0; }

private:
    int fd_ = -1;
};

// Prints "fleetconf: <message>" to stderr (one line, for the operator).
void print_error(const std::string& message);

// Loads a site file, with the data directory moved to data_dir when given (every command's --data-dir:
// common::Site::set_data_dir); on failure prints every error (FILE: POINTER: MESSAGE) and returns nullopt,
// for the caller to exit with kExitInvalid.
std::optional<common::Site> load_site_or_report(const std::string& file, const std::string& data_dir = {});
// Before a command writes under the data directory: true when this process runs as the directory's owner
// (or the directory does not exist yet). Otherwise prints why and the exact `sudo -u OWNER ...` line to run
// instead (files written as another user, root included, would be unreadable or unwritable to the server)
// and returns false, for the caller to exit with kExitFailure. docs/cli.md, "Ownership".
bool writes_as_owner(const std::filesystem::path& dir);
// services.log_level at start, unless --log-level was given (which then wins until a reload changes the key).
extern bool g_log_level_given;
void apply_site_log_level(const common::Site& site, spdlog::logger& log);
// The command line as it was given (for messages such as the one above).
extern std::string g_command_line;
std::string shell_word_for(const std::string& word);

// For the inspection commands (dhcp leases, dhcp ctl, git list/status, bootargs): as load_site_or_report,
// but when the file on disk is invalid (an edit in progress) it prints the errors as a warning and falls
// back to the configuration the running server recorded (common::running_site_file under --data-dir, the
// data_dir the broken file still names, or the default).
std::optional<common::Site> load_site_or_running(const std::string& file, const std::string& data_dir = {});

// The --data-dir option, the same on every command that reads the site file.
void add_data_dir_option(CLI::App* command, std::string& data_dir);

}  // namespace fleetconf::cli
