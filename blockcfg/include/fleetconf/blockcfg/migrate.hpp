// Offline migration between a tlstunnel configuration disk and fleetconf's routes, without files or
// devices (the command line reads and writes those): which sector size an image has, what its routes
// become in fleetconf (and what fleetconf cannot take), what a fleetconf configuration becomes on a
// tlstunnel disk, and which superblock counter a rewritten image must carry.
#pragma once

#include "fleetconf/blockcfg/model.hpp"
#include "fleetconf/blockcfg/tlstunnel.hpp"

#include <cstdint>
#include <span>
#include <string>
#include <variant>
#include <vector>

namespace fleetconf::blockcfg::tlstunnel {

struct ReadImage {
    DiskContents contents;
    std::size_t sector_size = 0;
};
// read_disk() with the given sector size, or (0) with 512 then 4096. On failure: every problem, each
// prefixed with the sector size it was read with.
std::variant<ReadImage, std::vector<std::string>> read_image(std::span<const std::uint8_t> image, std::size_t sector_size);

// tlstunnel's routes as a fleetconf configuration: host names normalized, ports checked. All or nothing:
// on failure, one line per route fleetconf cannot take.
std::variant<Config, std::vector<std::string>> to_config(const std::vector<Sni>& snis);

struct Export {
    std::vector<Sni> snis;
    bool default_dropped = false;  // tlstunnel has no default route
};
Export from_config(const Config& c);

// The counter for an image written over `old`: one more than its newest verified superblock (first or
// last sector), or 1 when none verifies (or there is no old image).
std::uint64_t next_counter(std::span<const std::uint8_t> old, std::size_t sector_size);

}  // namespace fleetconf::blockcfg::tlstunnel
