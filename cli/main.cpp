#include "commands.hpp"

#include "fleetconf/common/files.hpp"
#include "fleetconf/common/log.hpp"
#include "fleetconf/common/reload.hpp"

#include <nlohmann/json.hpp>

#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <iostream>

using namespace fleetconf;

namespace fleetconf::cli {
void print_error(const std::string& message) { std::cerr << "fleetconf: " << message << "\n"; }

std::optional<common::Site> load_site_or_report(const std::string& file, const std::string& data_dir) {
    try {
        return common::load_site(file, data_dir);
    } catch (const common::SiteLoadError& e) {
        std::cerr << e.what() << "\n";
        return std::nullopt;
    }
}

std::optional<common::Site> load_site_or_running(const std::string& file, const std::string& data_dir) {
    try {
        return common::load_site(file, data_dir);
    } catch (const common::SiteLoadError& e) {
        std::filesystem::path dd = data_dir;
        const auto base = std::filesystem::absolute(file).parent_path();
        if (dd.empty()) {  // the data_dir the broken file still names, when it parses as JSON at all
            std::string text;
            if (!common::read_file_limited(file, common::kMaxSiteFileBytes, text)) {
                const auto j = nlohmann::json::parse(text, nullptr, false, /*ignore_comments=*/true);
                if (j.is_object() && j.contains("services") && j["services"].is_object() && j["services"].contains("data_dir") &&
                    j["services"]["data_dir"].is_string())
                    dd = base / j["services"]["data_dir"].get<std::string>();
            }
        }
        if (dd.empty()) dd = common::kDefaultDataDir;
        const auto running = common::running_site_file(dd);
        std::string text;
        if (!common::read_file_limited(running, common::kMaxSiteFileBytes, text)) {
            try {
                auto site = common::parse_site(text, base, file);
                if (!data_dir.empty()) site.set_data_dir(data_dir);
                std::cerr << e.what() << "\n";
                print_error("warning: " + file + " is invalid (above); using the configuration the server runs, recorded in " +
                            running.string());
                return site;
            } catch (const common::SiteLoadError&) {}
        }
        std::cerr << e.what() << "\n";
        return std::nullopt;
    }
}

std::string g_command_line;
bool g_log_level_given = false;

void apply_site_log_level(const common::Site& site, spdlog::logger& log) {
    if (site.services.log_level.empty() || g_log_level_given) return;
    if (auto err = common::log::set_levels(site.services.log_level)) log.warn("services.log_level: {}", *err);
    else log.info("log levels {} (services.log_level)", common::log::levels());
}

namespace {
// A word for a shell: as it is when it is safe, else in single quotes.
std::string shell_word(const std::string& w) {
    if (!w.empty() && w.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@%+=:,./_-") == std::string::npos)
        return w;
    std::string out = "'";
    for (char c : w) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return out + "'";
}
}  // namespace
std::string shell_word_for(const std::string& w) { return shell_word(w); }
namespace {
std::string user_name(uid_t uid) {
    if (const auto* pw = ::getpwuid(uid)) return pw->pw_name;
    return "#" + std::to_string(uid);
}
}  // namespace

bool writes_as_owner(const std::filesystem::path& dir) {
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0) return true;  // made by this command, as this user
    const uid_t me = ::geteuid();
    if (st.st_uid == me) return true;
    const auto owner = user_name(st.st_uid);
    print_error(dir.string() + " belongs to " + owner + "; written as " + user_name(me) +
                ", the files would not be usable by the server that runs as " + owner + ". Run it as the owner: sudo -u " +
                shell_word(owner) + " " + g_command_line);
    return false;
}

void add_data_dir_option(CLI::App* command, std::string& data_dir) {
    command->add_option("--data-dir", data_dir,
                        "Use this data directory instead of the site file's services.data_dir; every default path under it "
                        "(leases, repositories, keys, block devices, TLS and SSH keys) moves with it");
}
}  // namespace fleetconf::cli

int main(int argc, char** argv) {
    CLI::App app{
        "fleetconf: run-time configuration for MirageOS unikernel fleets.\n"
        "One site file describes the fleet; fleetconf serves each unikernel its address and site options\n"
        "(DHCP), its configuration repository (git) and its proxy routes (block device).\n"
        "Docs: docs/README.md. Exit codes: 0 ok, 1 failure, 2 invalid input."};
    app.name("fleetconf");
    app.require_subcommand(1);
    app.set_version_flag("--version", "fleetconf " FLEETCONF_VERSION " (commit " FLEETCONF_COMMIT ")");

    std::string log_level = "info";
    std::string log_format = "text";
    bool log_syslog = false;
    app.add_option("--log-level", log_level,
                   "Log level, optionally per logger (serve, dhcp, git, block, routes, status): 'info' or 'warn,dhcp=debug,git=trace'")
        ->capture_default_str();
    app.add_option("--log-format", log_format, "Log format on stderr: text or json (one object per line)")
        ->check(CLI::IsMember({"text", "json"}))
        ->capture_default_str();
    app.add_flag("--syslog", log_syslog, "Also send logs to the local syslog");

    cli::Action action;
    cli::add_site_commands(app, action);
    cli::add_bootargs_command(app, action);
    cli::add_serve_command(app, action);
    cli::add_block_commands(app, action);
    cli::add_dhcp_commands(app, action);
    cli::add_git_commands(app, action);
    cli::add_console_commands(app, action);

    for (int i = 0; i < argc; ++i) {
        if (i) cli::g_command_line += ' ';
        cli::g_command_line += i == 0 ? std::string("fleetconf") : cli::shell_word_for(argv[i]);
    }
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        const int rc = app.exit(e);
        return rc == 0 ? cli::kExitOk : cli::kExitInvalid;
    }

    common::log::Options lo;
    lo.format = *common::log::parse_format(log_format);
    lo.syslog = log_syslog;
    cli::g_log_level_given = app.get_option("--log-level")->count() > 0;
    if (auto err = common::log::parse_levels(log_level, lo)) {
        cli::print_error("--log-level: " + *err);
        return cli::kExitInvalid;
    }
    common::log::setup(lo);

    if (!action) return cli::kExitInvalid;
    try {
        return action();
    } catch (const std::exception& e) {
        cli::print_error(e.what());
        return cli::kExitFailure;
    }
}
