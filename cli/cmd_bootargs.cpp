// fleetconf bootargs NAME --site SITE
#include "commands.hpp"

#include "fleetconf/common/bootargs.hpp"
#include "fleetconf/common/files.hpp"
#include "fleetconf/common/site.hpp"
#include "fleetconf/gitconf/service.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <memory>

namespace fleetconf::cli {
namespace {

struct BootargsArgs {
    std::string name;
    std::string site = "site.json";
    std::string tap;
    std::string token_file;
    std::string ssh_key_file;
    std::string data_dir;
    std::string mode;
    bool json = false;
};

std::string join(const std::vector<std::string>& v) {
    std::string s;
    for (const auto& x : v) s += (s.empty() ? "" : " ") + x;
    return s;
}

int run(const BootargsArgs& a) {
    auto loaded = load_site_or_running(a.site, a.data_dir);
    if (!loaded) return kExitInvalid;
    const common::Site& site = *loaded;
    const auto* u = site.unikernel(a.name);
    if (u && u->git.enabled && u->config_uri.empty())
        if (auto w = common::loopback_uri_warning(site); !w.empty()) std::cerr << "fleetconf: warning: " << w << "\n";
    if (!u) {
        print_error(a.site + ": no unikernel named \"" + a.name + "\" (see: fleetconf site show " + a.site + ")");
        return kExitInvalid;
    }
    common::GitBootInfo git;
    if (!a.token_file.empty()) {
        std::string text;
        if (auto err = common::read_secret_line(a.token_file, text)) {
            print_error(*err);
            return kExitInvalid;
        }
        git.token = text;
    } else if (const char* env = std::getenv("FLEETCONF_GIT_TOKEN"); env && *env) {
        git.token = env;
    }
    if (site.services.git.ssh) {
        std::error_code ec;
        git.ssh_key = std::filesystem::exists(gitconf::ssh_user_key_file(site, u->name), ec);
        if (std::filesystem::exists(gitconf::ssh_host_key_file(site), ec)) {
            try {
                git.ssh_authenticator = gitconf::ssh_host_authenticator(site);
            } catch (const std::exception& e) {
                print_error(e.what());
                return kExitFailure;
            }
        }
        if (!a.ssh_key_file.empty()) {
            std::string text;
            if (auto err = common::read_secret_line(a.ssh_key_file, text)) {
                print_error(*err);
                return kExitInvalid;
            }
            if (text.rfind("--ssh-key=ed25519:", 0) == 0) text.erase(0, 18);
            if (text.rfind("ed25519:", 0) == 0) text.erase(0, 8);
            git.ssh_seed = text;
        }
    }
    if (site.services.git.https) {
        std::error_code ec;
        const auto cert = gitconf::tls_cert_file(site);
        if (std::filesystem::exists(cert, ec)) {
            try {
                git.tls_authenticator = gitconf::tls_key_fingerprint(cert);
            } catch (const std::exception& e) {
                print_error(e.what());
                return kExitFailure;
            }
        }
    }
    const auto modes = common::boot_modes(site, *u);
    auto mode = modes.front();
    if (!a.mode.empty()) {
        const auto m = common::parse_boot_mode(a.mode);
        if (!m || std::find(modes.begin(), modes.end(), *m) == modes.end()) {
            std::string valid;
            for (auto x : modes) valid += (valid.empty() ? "" : ", ") + std::string(common::to_string(x));
            print_error("unikernel " + u->name + " cannot boot in mode \"" + a.mode + "\"; its modes: " + valid +
                        (u->dhcp ? "" : " (it does not use DHCP)"));
            return kExitInvalid;
        }
        mode = *m;
    }
    const std::string tap = a.tap.empty() ? common::default_tap_name(u->name) : a.tap;
    const auto args = common::boot_args(site, *u, tap, git, mode);
    if (a.json) {
        nlohmann::json all = nlohmann::json::object();
        for (auto m : modes) all[common::to_string(m)] = common::boot_args(site, *u, tap, git, m).unikernel;
        std::cout << nlohmann::json{{"name", u->name},       {"mode", common::to_string(mode)},
                                    {"tender", args.tender}, {"unikernel", args.unikernel},
                                    {"notes", args.notes},   {"modes", all}}
                         .dump(2)
                  << "\n";
        return kExitOk;
    }
    std::cout << "# " << u->name << " (mode " << common::to_string(mode) << "): solo5-hvt " << join(args.tender) << " " << u->name
              << ".hvt " << join(args.unikernel) << "\n";
    for (const auto& n : args.notes) std::cout << "# " << n << "\n";
    for (auto m : modes)
        if (m != mode) {
            const auto other = common::boot_args(site, *u, tap, git, m).unikernel;
            std::cout << "# mode " << common::to_string(m) << ": " << (other.empty() ? "(no arguments)" : join(other)) << "\n";
        }
    std::cout << join(args.unikernel) << "\n";
    return kExitOk;
}

}  // namespace

void add_bootargs_command(CLI::App& app, Action& action) {
    auto a = std::make_shared<BootargsArgs>();
    auto* c = app.add_subcommand("bootargs",
                                 "Print the boot arguments a unikernel still needs: the unikernel's own arguments on the last "
                                 "line, the full solo5-hvt command and notes as # comments above it");
    c->add_option("NAME", a->name, "Unikernel name from the site file")->required();
    c->add_option("--site", a->site, "Site file")->capture_default_str();
    c->add_option("--tap", a->tap, "Tap device for solo5-hvt (default: tap-NAME, cut to 15 characters)");
    c->add_option("--git-token-file", a->token_file,
                  "File holding the unikernel's git token (from `fleetconf git token NAME`), put into --remote; "
                  "the environment variable FLEETCONF_GIT_TOKEN works too")
        ->check(CLI::ExistingFile);
    c->add_option("--ssh-key-file", a->ssh_key_file,
                  "File holding the unikernel's SSH key seed (as printed by `fleetconf git keygen NAME`)")
        ->check(CLI::ExistingFile);
    add_data_dir_option(c, a->data_dir);
    c->add_option("--mode", a->mode,
                  "How the unikernel learns its settings: static (no DHCP), dhcp (address from DHCP, the rest on the command "
                  "line: today's MirageOS), dhcp-config (built to read DHCP options 7, 125 and the configuration URI: only "
                  "the credential and trust anchors remain). Default: static or dhcp; the other modes are listed as comments")
        ->check(CLI::IsMember({"static", "dhcp", "dhcp-config"}));
    c->add_flag("--json", a->json, "Machine-readable output: {name, mode, tender[], unikernel[], notes[], modes: {MODE: [args]}}");
    c->callback([&action, a] { action = [a] { return run(*a); }; });
}

}  // namespace fleetconf::cli
