#include "fleetconf/blockcfg/service.hpp"

#include "fleetconf/common/files.hpp"

namespace fleetconf::blockcfg {

common::ServiceInfo service_info() {
    return {"block", true, "block-device configuration store with an authenticated control socket"};
}

std::unique_ptr<ConfigService> open_device(const std::string& name, const std::filesystem::path& path,
                                           std::uint32_t sector_size, std::optional<std::uint64_t> create_bytes,
                                           std::shared_ptr<spdlog::logger> log, CommitMode mode) {
    bool created = false;
    if (create_bytes && !std::filesystem::exists(path)) {
        common::ensure_directory(path.parent_path());
        FileDevice::create_image(path, *create_bytes);
        created = true;
    }
    auto dev = FileDevice::open(path, created ? sector_size : 0);
    if (created) {
        std::string msg;
        if (auto ec = Store::format(*dev, {}, to_payload(Config{}), &msg))
            throw std::runtime_error(path.string() + ": format failed: " + (msg.empty() ? ec.message() : msg));
        log->info("{}: created and formatted {} ({} bytes, {}-byte sectors)", name, path.string(), *create_bytes, sector_size);
    }
    std::error_code ec;
    std::string msg;
    std::vector<std::string> warnings;
    auto store = Store::open(*dev, ec, msg, &warnings);
    if (!store) throw std::runtime_error(path.string() + ": " + msg);
    for (const auto& w : warnings) log->warn("{}: {}", name, w);
    store->set_commit_mode(mode);
    log->info("{}: {} at generation {} ({} commits)", name, path.string(), store->generation(),
              mode == CommitMode::ordered ? "ordered" : "checksummed");
    return std::make_unique<ConfigService>(name, std::move(dev), std::move(*store), log);
}

SiteService::SiteService(asio::io_context& io, const common::Site& site, std::shared_ptr<spdlog::logger> log) {
    std::map<std::string, ConfigService*> by_name;
    for (const auto& u : site.unikernels) {
        if (!u.block) continue;
        devices_.push_back(open_device(u.name, u.block->device, u.block->sector_size,
                                       u.block->device_given ? std::nullopt : std::optional<std::uint64_t>(u.block->size), log,
                                       site.services.block.checksummed_commits ? CommitMode::checksummed : CommitMode::ordered));
        by_name[u.name] = devices_.back().get();
    }
    if (devices_.empty()) throw std::runtime_error("no unikernel in the site file has a \"block\" device");
    const auto& kf = site.services.block.key_file;
    key_file_ = kf;
    if (!site.services.block.key_file_given && !std::filesystem::exists(kf)) {
        common::ensure_directory(kf.parent_path(), 0700);
        auto k = create_key_file(kf);
        log->info("created control key file {} (key id \"{}\")", kf.string(), k.id);
    }
    ServerOptions opts;
    opts.listen = site.services.block.listen;
    server_ = std::make_unique<Server>(io, std::move(by_name), load_key_file(kf), opts, log);
}

}  // namespace fleetconf::blockcfg
