#include "fleetconf/blockcfg/service.hpp"

#include "fleetconf/common/files.hpp"

#include <algorithm>

namespace fleetconf::blockcfg {

common::ServiceInfo service_info() { return {"block", true, "block-device configuration store with an authenticated control socket"}; }

std::unique_ptr<ConfigService> open_device(const std::string& name, const std::filesystem::path& path, std::uint32_t sector_size,
                                           std::optional<std::uint64_t> create_bytes, std::shared_ptr<spdlog::logger> log,
                                           CommitMode mode) {
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

namespace {
std::unique_ptr<ConfigService> open_unikernel_device(const common::Unikernel& u, const std::shared_ptr<spdlog::logger>& log,
                                                     CommitMode mode) {
    return open_device(u.name, u.block->device, u.block->sector_size,
                       u.block->device_given ? std::nullopt : std::optional<std::uint64_t>(u.block->size), log, mode);
}
}  // namespace

SiteService::SiteService(asio::io_context& io, const common::Site& site, std::shared_ptr<spdlog::logger> log)
    : mode_(site.services.block.checksummed_commits ? CommitMode::checksummed : CommitMode::ordered), log_(log) {
    for (const auto& u : site.unikernels)
        if (u.block) {
            devices_.push_back(open_unikernel_device(u, log, mode_));
            images_[u.name] = u.block->device;
        }
    if (devices_.empty()) throw std::runtime_error("no unikernel in the site file has a \"block\" device");
    const auto& kf = site.services.block.key_file;
    key_file_ = kf;
    if (!site.services.block.key_file_given && !std::filesystem::exists(kf)) {
        common::ensure_directory(kf.parent_path(), 0700);
        auto k = create_key_file(kf);
        log->info("created control key file {} (key id \"{}\")", kf.string(), k.id);
    }
    ControlServerOptions opts;
    opts.listen = site.services.block.listen;
    opts.limits = site.services.limits_for("block");
    server_ = std::make_unique<ControlServer>(io, served(), load_key_file(kf), opts, log);
}

std::string SiteService::prometheus() const {
    std::string out;
    struct Family {
        const char* name;
        const char* help;
        const char* type;
        std::string lines;
    };
    Family fam[] = {
        {"fleetconf_block_generation", "Current configuration generation", "gauge", {}},
        {"fleetconf_block_routes", "Routes in the current configuration (the default route included)", "gauge", {}},
        {"fleetconf_block_payload_bytes", "Size of the current configuration", "gauge", {}},
        {"fleetconf_block_payload_max_bytes", "Largest configuration a slot holds", "gauge", {}},
        {"fleetconf_block_commits_total", "Generations written", "counter", {}},
        {"fleetconf_block_commit_failures_total", "Commits the device failed to store", "counter", {}},
        {"fleetconf_block_changes_total", "Changes by outcome", "counter", {}},
    };
    for (const auto& d : devices_) {
        const auto snap = d->snapshot();
        const auto st = d->stats();
        const std::string l = "{device=\"" + d->name() + "\"}";
        fam[0].lines += fam[0].name + l + " " + std::to_string(snap.gen.generation) + "\n";
        fam[1].lines += fam[1].name + l + " " + std::to_string(snap.config->routes.size() + (snap.config->default_route ? 1 : 0)) + "\n";
        fam[2].lines += fam[2].name + l + " " + std::to_string(snap.gen.length) + "\n";
        fam[3].lines += fam[3].name + l + " " + std::to_string(d->geometry().max_payload()) + "\n";
        fam[4].lines += fam[4].name + l + " " + std::to_string(st.commits) + "\n";
        fam[5].lines += fam[5].name + l + " " + std::to_string(st.commit_failures) + "\n";
        fam[6].lines += std::string(fam[6].name) + "{device=\"" + d->name() + "\",result=\"applied\"} " + std::to_string(st.applied) + "\n";
        fam[6].lines += std::string(fam[6].name) + "{device=\"" + d->name() + "\",result=\"refused\"} " + std::to_string(st.refused) + "\n";
    }
    for (const auto& f : fam) out += std::string("# HELP ") + f.name + " " + f.help + "\n# TYPE " + f.name + " " + f.type + "\n" + f.lines;
    const auto s = server_->stats();
    out +=
        "# HELP fleetconf_block_requests_total Authenticated control requests answered\n# TYPE fleetconf_block_requests_total counter\n"
        "fleetconf_block_requests_total " +
        std::to_string(s.requests) + "\n";
    out +=
        "# HELP fleetconf_block_auth_failures_total Control frames that failed authentication\n"
        "# TYPE fleetconf_block_auth_failures_total counter\nfleetconf_block_auth_failures_total " +
        std::to_string(s.auth_failures) + "\n";
    out +=
        "# HELP fleetconf_block_connections Open control connections\n# TYPE fleetconf_block_connections gauge\n"
        "fleetconf_block_connections " +
        std::to_string(s.connections) + "\n";
    server_->metrics(out);
    return out;
}

common::Health SiteService::health() const {
    if (!server_->stats().listening) return {false, "control socket not listening"};
    std::string failing;
    for (const auto& d : devices_)
        if (auto st = d->stats(); !st.last_error.empty())
            failing += (failing.empty() ? "" : "; ") + d->name() + ": last commit failed: " + st.last_error;
    if (!failing.empty()) return {false, failing};
    return {true, std::to_string(devices_.size()) + " device(s); control socket on port " + std::to_string(server_->port())};
}

common::StatusSource SiteService::status_source() const {
    return {"block", [this] { return prometheus(); }, [this] { return health(); }};
}

std::map<std::string, ConfigService*> SiteService::served() const {
    std::map<std::string, ConfigService*> m;
    for (const auto& d : devices_) m[d->name()] = d.get();
    return m;
}

void SiteService::reload(const common::Site& site) {
    auto keys = load_key_file(key_file_);  // throws: nothing changed yet
    std::vector<std::unique_ptr<ConfigService>> added;
    for (const auto& u : site.unikernels) {
        if (!u.block || device(u.name)) continue;
        // A unikernel that comes back gets the device it had (never two writers on one image).
        auto old = std::find_if(retired_.begin(), retired_.end(), [&](const auto& r) { return r.device->name() == u.name; });
        if (old != retired_.end() && old->image == u.block->device) {
            added.push_back(std::move(old->device));
            retired_.erase(old);
        } else {
            added.push_back(open_unikernel_device(u, log_, mode_));
        }
    }
    server_->set_keys(std::move(keys));
    std::size_t removed = 0;
    for (auto it = devices_.begin(); it != devices_.end();) {
        const auto* u = site.unikernel((*it)->name());
        if (u && u->block) {
            ++it;
            continue;
        }
        log_->info("{}: no longer served (its unikernel has no block device in the site file); the image stays on disk", (*it)->name());
        const auto name = (*it)->name();
        retired_.push_back({images_[name], std::move(*it)});
        images_.erase(name);
        it = devices_.erase(it);
        ++removed;
    }
    for (auto& d : added) {
        log_->info("{}: served from now on", d->name());
        images_[d->name()] = site.unikernel(d->name())->block->device;
        devices_.push_back(std::move(d));
    }
    server_->set_devices(served());
    log_->info("reloaded: {} device(s) ({} removed); control keys from {}", devices_.size(), removed, key_file_.string());
}

}  // namespace fleetconf::blockcfg
