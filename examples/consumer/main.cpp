// Prints a unikernel's MAC from a site file: `consumer SITE NAME`.
#include <fleetconf/common/site.hpp>

#include <iostream>

int main(int argc, char** argv) {
    if (argc != 3) {
        std::cerr << "usage: consumer SITE NAME\n";
        return 2;
    }
    try {
        const auto site = fleetconf::common::load_site(argv[1]);
        const auto* u = site.unikernel(argv[2]);
        if (u == nullptr) {
            std::cerr << "no unikernel " << argv[2] << "\n";
            return 2;
        }
        std::cout << u->name << " " << u->mac.to_string() << "\n";
    } catch (const fleetconf::common::SiteLoadError& e) {
        std::cerr << e.what() << "\n";
        return 2;
    }
}
