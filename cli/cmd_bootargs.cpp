// fleetconf bootargs NAME --site SITE
#include "commands.hpp"

#include "fleetconf/common/bootargs.hpp"
#include "fleetconf/common/site.hpp"

#include <nlohmann/json.hpp>

#include <iostream>
#include <memory>

namespace fleetconf::cli {
namespace {

struct BootargsArgs {
    std::string name;
    std::string site = "site.json";
    std::string tap;
    bool json = false;
};

std::string join(const std::vector<std::string>& v) {
    std::string s;
    for (const auto& x : v) s += (s.empty() ? "" : " ") + x;
    return s;
}

int run(const BootargsArgs& a) {
    auto loaded = load_site_or_report(a.site);
    if (!loaded) return kExitInvalid;
    const common::Site& site = *loaded;
    const auto* u = site.unikernel(a.name);
    if (!u) {
        print_error(a.site + ": no unikernel named \"" + a.name + "\" (see: fleetconf site show " + a.site + ")");
        return kExitInvalid;
    }
    const auto args = common::boot_args(site, *u, a.tap.empty() ? common::default_tap_name(u->name) : a.tap);
    if (a.json) {
        std::cout << nlohmann::json{{"name", u->name}, {"tender", args.tender}, {"unikernel", args.unikernel}, {"notes", args.notes}}.dump(2)
                  << "\n";
        return kExitOk;
    }
    std::cout << "# " << u->name << ": solo5-hvt " << join(args.tender) << " " << u->name << ".hvt " << join(args.unikernel) << "\n";
    for (const auto& n : args.notes) std::cout << "# " << n << "\n";
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
    c->add_flag("--json", a->json, "Machine-readable output: {name, tender[], unikernel[], notes[]}");
    c->callback([&action, a] { action = [a] { return run(*a); }; });
}

}  // namespace fleetconf::cli
