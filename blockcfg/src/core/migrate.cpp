#include "fleetconf/blockcfg/migrate.hpp"

#include <algorithm>

namespace fleetconf::blockcfg::tlstunnel {

std::variant<ReadImage, std::vector<std::string>> read_image(std::span<const std::uint8_t> image, std::size_t sector_size) {
    std::vector<std::string> problems;
    for (std::size_t ss : sector_size ? std::vector<std::size_t>{sector_size} : std::vector<std::size_t>{512, 4096}) {
        auto r = read_disk(image, ss);
        if (auto* c = std::get_if<DiskContents>(&r)) return ReadImage{std::move(*c), ss};
        for (const auto& p : std::get<std::vector<std::string>>(r)) problems.push_back(std::to_string(ss) + "-byte sectors: " + p);
    }
    return problems;
}

std::variant<Config, std::vector<std::string>> to_config(const std::vector<Sni>& snis) {
    Config cfg;
    std::vector<std::string> bad;
    for (const auto& x : snis) {
        auto host = normalize_host(x.name);
        if (auto* f = std::get_if<Failure>(&host)) bad.push_back("\"" + x.name + "\": " + f->message);
        else if (x.port < 1 || x.port > 65535) bad.push_back(x.name + ": port " + std::to_string(x.port) + " is out of range");
        else if (std::get<std::string>(host) == "default") bad.push_back("\"" + x.name + "\": names fleetconf's default route");
        else if (cfg.routes.contains(std::get<std::string>(host))) bad.push_back("\"" + x.name + "\": listed twice");
        else cfg.routes[std::get<std::string>(host)] = {x.host, static_cast<std::uint16_t>(x.port)};
    }
    if (!bad.empty()) return bad;
    return cfg;
}

Export from_config(const Config& c) {
    Export e;
    for (const auto& [h, b] : c.routes) e.snis.push_back(Sni{h, b.address, std::int64_t{b.port}});
    e.default_dropped = c.default_route.has_value();
    return e;
}

std::uint64_t next_counter(std::span<const std::uint8_t> old, std::size_t ss) {
    std::uint64_t counter = 1;
    if (ss == 0 || old.size() < ss) return counter;
    for (std::size_t sector : {std::size_t{0}, old.size() / ss - 1}) {
        std::string e;
        if (auto sb = decode_superblock(old.subspan(sector * ss, ss), e)) counter = std::max(counter, sb->counter + 1);
    }
    return counter;
}

}  // namespace fleetconf::blockcfg::tlstunnel
