// fleetconf::blockcfg: crash-safe configuration store on a block device, edited over an
// authenticated control socket.
#pragma once

#include <map>

#include "fleetconf/common/asio_fwd.hpp"
#include "fleetconf/common/service.hpp"

namespace fleetconf::blockcfg {

common::ServiceInfo service_info();

}  // namespace fleetconf::blockcfg

#include "fleetconf/blockcfg/control_server.hpp"
#include "fleetconf/common/site.hpp"
#include "fleetconf/common/status.hpp"

namespace fleetconf::blockcfg {

// Opens (and on first start creates and formats) one device. A device that exists but is blank is NOT
// formatted implicitly: that needs `fleetconf block format`. Throws std::runtime_error with a clear message.
std::unique_ptr<ConfigService> open_device(const std::string& name, const std::filesystem::path& path, std::uint32_t sector_size,
                                           std::optional<std::uint64_t> create_bytes, std::shared_ptr<spdlog::logger> log,
                                           CommitMode mode = CommitMode::ordered);

// blockcfg as `fleetconf serve` runs it: every unikernel with a "block" entry, one control socket.
class SiteService final : public common::Service {
public:
    SiteService(asio::io_context& io, const common::Site& site, std::shared_ptr<spdlog::logger> log);
    void start() override { server_->start(); }
    void stop() override { server_->stop(); }
    // All or nothing: the key file is re-read (rotation), the devices of new unikernels are created (or
    // opened) and served, those of removed unikernels no longer served. The listener, the key file's path
    // and a served device's file or geometry stay until a restart (common::restart_keys refuses those).
    void reload(const common::Site& site) override;
    // Re-reads the key file (rotation). On error the current keys stay and the error is thrown.
    void reload_keys() { server_->set_keys(load_key_file(key_file_)); }
    [[nodiscard]] std::uint16_t port() const { return server_->port(); }
    // Per-device generations, commits and routes, and the control socket's counters (Prometheus text).
    [[nodiscard]] std::string prometheus() const;
    // Healthy while the control socket listens and no device's last commit failed.
    [[nodiscard]] common::Health health() const;
    // Both, for the process's status endpoint ("block").
    [[nodiscard]] common::StatusSource status_source() const override;
    // The device of unikernel `name`, or nullptr.
    [[nodiscard]] ConfigService* device(const std::string& name) const {
        for (const auto& d : devices_)
            if (d->name() == name) return d.get();
        return nullptr;
    }

private:
    std::map<std::string, ConfigService*> served() const;
    std::vector<std::unique_ptr<ConfigService>> devices_;
    // No longer served after a reload, kept alive: a change queued on them, or a route target, holds them.
    struct Retired {
        std::filesystem::path image;
        std::unique_ptr<ConfigService> device;
    };
    std::vector<Retired> retired_;
    std::map<std::string, std::filesystem::path> images_;  // of the devices served, by name
    CommitMode mode_ = CommitMode::ordered;
    std::unique_ptr<ControlServer> server_;
    std::filesystem::path key_file_;
    std::shared_ptr<spdlog::logger> log_;
};

}  // namespace fleetconf::blockcfg
