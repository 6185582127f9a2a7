// fleetconf site check|show SITE
#include "commands.hpp"

#include "fleetconf/common/bootargs.hpp"

#include "fleetconf/common/site.hpp"

#include <nlohmann/json.hpp>

#include <iomanip>
#include <iostream>
#include <memory>

namespace fleetconf::cli {
namespace {

struct SiteArgs {
    std::string file;
    bool json = false;
};

int check(const SiteArgs& a) {
    try {
        auto site = common::load_site(a.file);
        std::size_t dhcp = 0, fixed = 0;
        for (const auto& u : site.unikernels) {
            if (u.dhcp) ++dhcp;
            if (u.address) ++fixed;
        }
        // What is valid but cannot work (docs/site-file.md, "Safe defaults").
        std::vector<std::string> warnings;
        if (auto w = common::loopback_uri_warning(site); !w.empty()) warnings.push_back(w);
        if (a.json) {
            nlohmann::json j{{"ok", true},
                             {"warnings", warnings},
                             {"file", a.file},
                             {"site", site.name},
                             {"networks", site.networks.size()},
                             {"unikernels", site.unikernels.size()},
                             {"dhcp", dhcp},
                             {"fixed_addresses", fixed}};
            std::cout << j.dump() << "\n";
        } else {
            std::cout << a.file << ": ok: " << (site.name.empty() ? "" : "site " + site.name + ", ") << site.networks.size()
                      << (site.networks.size() == 1 ? " network, " : " networks, ") << site.unikernels.size()
                      << (site.unikernels.size() == 1 ? " unikernel" : " unikernels") << " (" << dhcp << " on DHCP, " << fixed
                      << " with fixed addresses)\n";
            for (const auto& w : warnings) std::cerr << a.file << ": warning: " << w << "\n";
        }
        return kExitOk;
    } catch (const common::SiteLoadError& e) {
        if (a.json) {
            nlohmann::json errs = nlohmann::json::array();
            for (const auto& x : e.errors()) errs.push_back({{"pointer", x.pointer}, {"message", x.message}});
            std::cout << nlohmann::json{{"ok", false}, {"file", a.file}, {"errors", errs}}.dump() << "\n";
        } else {
            std::cerr << e.what() << "\n" << a.file << ": " << e.errors().size() << (e.errors().size() == 1 ? " error" : " errors") << "\n";
        }
        return kExitInvalid;
    }
}

int show(const SiteArgs& a) {
    auto loaded = load_site_or_report(a.file);
    if (!loaded) return kExitInvalid;
    const common::Site& site = *loaded;
    if (a.json) {
        nlohmann::json us = nlohmann::json::array();
        for (const auto& u : site.unikernels)
            us.push_back({{"name", u.name},
                          {"network", u.network},
                          {"mac", u.mac.to_string()},
                          {"mac_derived", u.mac_derived},
                          {"address", u.address ? nlohmann::json(u.address->to_string()) : nlohmann::json()},
                          {"dhcp", u.dhcp}});
        nlohmann::json ns = nlohmann::json::array();
        for (const auto& n : site.networks) {
            nlohmann::json pools = nlohmann::json::array();
            for (const auto& r : n.pools) pools.push_back(r.to_string());
            ns.push_back({{"name", n.name}, {"interface", n.interface}, {"subnet", n.subnet.to_string()}, {"pools", pools}});
        }
        std::cout << nlohmann::json{{"site", site.name}, {"networks", ns}, {"unikernels", us}}.dump(2) << "\n";
        return kExitOk;
    }
    std::cout << std::left << std::setw(20) << "UNIKERNEL" << std::setw(12) << "NETWORK" << std::setw(19) << "MAC" << std::setw(16)
              << "ADDRESS"
              << "MODE\n";
    for (const auto& u : site.unikernels)
        std::cout << std::setw(20) << u.name << std::setw(12) << u.network << std::setw(19)
                  << (u.mac.to_string() + (u.mac_derived ? "*" : "")) << std::setw(16) << (u.address ? u.address->to_string() : "(pool)")
                  << (u.dhcp ? "dhcp" : "static") << "\n";
    std::cout << "(* = MAC derived as Albatross does)\n";
    return kExitOk;
}

}  // namespace

void add_site_commands(CLI::App& app, Action& action) {
    auto* site = app.add_subcommand("site", "Validate and inspect a site file");
    site->require_subcommand(1);
    auto args = std::make_shared<SiteArgs>();

    auto* c = site->add_subcommand("check",
                                   "Validate a site file: exit 0 with a summary, or exit 2 listing every error "
                                   "as FILE: JSON-POINTER: MESSAGE");
    c->add_option("SITE", args->file, "Site file (JSON, comments allowed)")->required();
    c->add_flag("--json", args->json, "Machine-readable output");
    c->callback([&action, args] { action = [args] { return check(*args); }; });

    auto* s = site->add_subcommand("show", "List the unikernels with their MAC (derived or given), address and mode");
    s->add_option("SITE", args->file, "Site file")->required();
    s->add_flag("--json", args->json, "Machine-readable output");
    s->callback([&action, args] { action = [args] { return show(*args); }; });
}

}  // namespace fleetconf::cli
