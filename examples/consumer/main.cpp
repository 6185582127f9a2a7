// A program outside fleetconf that embeds its libraries (found with find_package(fleetconf)):
//   consumer SITE NAME                       print a unikernel's MAC (fleetconf::common: the site model)
//   consumer --block IMAGE HOST ADDRESS PORT  embed the block-config store (fleetconf::blockcfg): create the
//                                            image on first use, route HOST to ADDRESS:PORT as a durable
//                                            generation, print the routes and the generation
#include <fleetconf/blockcfg/service.hpp>
#include <fleetconf/common/site.hpp>

#include <spdlog/sinks/null_sink.h>
#include <spdlog/spdlog.h>

#include <iostream>

namespace {

int block(const std::string& image, const std::string& host, const std::string& address, int port) {
    namespace bc = fleetconf::blockcfg;
    auto log = std::make_shared<spdlog::logger>("consumer", std::make_shared<spdlog::sinks::null_sink_mt>());
    auto svc = bc::open_device("proxy", image, 512, std::uint64_t{1} << 20, log);  // formats a new image
    auto addr = fleetconf::common::parse_ip(address);
    if (!addr || port < 1 || port > 65535) {
        std::cerr << "bad backend " << address << ":" << port << "\n";
        return 2;
    }
    bc::ChangeRequest req;
    req.name = "upsert";
    req.ops.push_back(bc::Op{bc::Op::Kind::upsert, host, bc::Backend{*addr, static_cast<std::uint16_t>(port)}, {}});
    const auto outcome = svc->change(std::move(req), "consumer");
    if (outcome.ec) {
        std::cerr << "change refused: " << outcome.message << "\n";
        return 1;
    }
    const auto snap = svc->snapshot();
    for (const auto& [h, b] : snap.config->routes) std::cout << h << " " << b.to_string() << "\n";
    std::cout << "generation " << outcome.generation << "\n";
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc == 6 && std::string(argv[1]) == "--block") return block(argv[2], argv[3], argv[4], std::atoi(argv[5]));
    if (argc != 3) {
        std::cerr << "usage: consumer SITE NAME | consumer --block IMAGE HOST ADDRESS PORT\n";
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
