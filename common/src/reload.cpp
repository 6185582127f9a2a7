#include "fleetconf/common/reload.hpp"

#include "fleetconf/common/crypto.hpp"
#include "fleetconf/common/files.hpp"
#include "fleetconf/common/log.hpp"

#include <nlohmann/json.hpp>

#include <unistd.h>

#include <ctime>

namespace fleetconf::common {

using json = nlohmann::json;

namespace {

bool same_routes(const std::optional<LeaseRoutes>& a, const std::optional<LeaseRoutes>& b) {
    if (a.has_value() != b.has_value()) return false;
    if (!a) return true;
    return a->kind == b->kind && a->device == b->device && a->endpoint == b->endpoint && a->key_file == b->key_file &&
           a->key_id == b->key_id;
}

// A listener asking for port 0 (the system's choice) keeps the port it runs on.
bool same_listen(const std::optional<Endpoint>& running, const std::optional<Endpoint>& fresh) {
    if (running == fresh) return true;
    return running && fresh && fresh->port == 0 && fresh->host == running->host;
}
bool same_listen(const Endpoint& running, const Endpoint& fresh) { return same_listen(std::optional(running), std::optional(fresh)); }

void carry_port(const std::optional<Endpoint>& running, std::optional<Endpoint>& fresh) {
    if (running && fresh && fresh->port == 0 && fresh->host == running->host) fresh->port = running->port;
}

// After a reload: what runs keeps the ports its listeners hold when the new file asks for port 0 again.
void carry_bound_ports(const Site& running, Site& fresh) {
    carry_port(running.services.status, fresh.services.status);
    auto& g = fresh.services.git;
    const auto& rg = running.services.git;
    carry_port(rg.http, g.http);
    carry_port(rg.https, g.https);
    carry_port(rg.git, g.git);
    carry_port(rg.ssh, g.ssh);
    carry_port(running.services.dhcp.control_http, fresh.services.dhcp.control_http);
    if (fresh.services.block.listen.port == 0 && fresh.services.block.listen.host == running.services.block.listen.host)
        fresh.services.block.listen.port = running.services.block.listen.port;
    if (fresh.services.dhcp.server_port == 0) fresh.services.dhcp.server_port = running.services.dhcp.server_port;
}

}  // namespace

std::vector<std::string> restart_keys(const Site& running, const Site& fresh, const Running& services) {
    std::vector<std::string> keys;
    auto check = [&](bool same, const char* key) {
        if (!same) keys.emplace_back(key);
    };
    const auto &r = running.services, &f = fresh.services;
    check(r.data_dir == f.data_dir, "/services/data_dir");
    check(same_listen(r.status, f.status), "/services/status");
    check(r.limits == f.limits, "/services/limits");
    check(r.console == f.console, "/services/console");

    const auto &rd = r.dhcp, &fd = f.dhcp;
    if (services.dhcp || (services.whole_site && rd.enabled != fd.enabled)) check(rd.enabled == fd.enabled, "/services/dhcp/enabled");
    if (services.dhcp) {
        check(rd.server_port == fd.server_port || fd.server_port == 0, "/services/dhcp/server_port");
        check(rd.client_port == fd.client_port, "/services/dhcp/client_port");
        check(same_listen(rd.control_http, fd.control_http), "/services/dhcp/control_http");
        check(rd.control_key_file == fd.control_key_file, "/services/dhcp/control_key_file");
        // The route target (its kind, device, endpoint and key) is opened at start; port, fqdn and
        // remove_on_release are read for each lease and apply.
        check(same_routes(rd.routes, fd.routes), "/services/dhcp/routes");
        check(rd.leases == fd.leases, "/services/dhcp/leases");
    }

    const auto &rg = r.git, &fg = f.git;
    if (services.git || (services.whole_site && rg.enabled != fg.enabled)) check(rg.enabled == fg.enabled, "/services/git/enabled");
    if (services.git) {
        check(same_listen(rg.http, fg.http), "/services/git/http");
        check(same_listen(rg.https, fg.https), "/services/git/https");
        check(same_listen(rg.git, fg.git), "/services/git/git");
        check(same_listen(rg.ssh, fg.ssh), "/services/git/ssh");
        check(rg.tls_cert == fg.tls_cert, "/services/git/tls_cert");
        check(rg.tls_key == fg.tls_key, "/services/git/tls_key");
        check(rg.pack_cache_mb == fg.pack_cache_mb, "/services/git/pack_cache_mb");
        check(rg.read_timeout_s == fg.read_timeout_s, "/services/git/read_timeout_s");
    }

    const auto &rb = r.block, &fb = f.block;
    if (services.block || (services.whole_site && rb.enabled != fb.enabled)) check(rb.enabled == fb.enabled, "/services/block/enabled");
    if (services.block) {
        check(same_listen(rb.listen, fb.listen), "/services/block/listen");
        check(rb.key_file == fb.key_file, "/services/block/key_file");
        check(rb.checksummed_commits == fb.checksummed_commits, "/services/block/commit_mode");
    }
    // Devices: a new one is created and served on reload, a removed one is no longer served; a served
    // device that changes file or geometry needs a restart. With no device at start the block service
    // did not start: its first device needs one.
    for (std::size_t i = 0; i < fresh.unikernels.size(); ++i) {
        const auto& u = fresh.unikernels[i];
        if (!u.block || !fb.enabled || (!services.block && !services.whole_site)) continue;
        const auto* old = running.unikernel(u.name);
        const bool changed =
            old && old->block &&
            (old->block->device != u.block->device || old->block->sector_size != u.block->sector_size || old->block->size != u.block->size);
        if (changed || !services.block) keys.push_back("/unikernels/" + std::to_string(i) + "/block");
    }
    return keys;
}

std::filesystem::path reload_verdict_file(const Site& site) { return site.services.data_dir / "reload.json"; }
std::filesystem::path running_site_file(const std::filesystem::path& data_dir) { return data_dir / "site.running.json"; }

void Reloader::record_running() const {
    if (!site_.text) return;
    try {
        write_file_atomic(running_site_file(site_.services.data_dir), as_bytes(*site_.text), 0640);
    } catch (const std::exception& e) {
        log_->warn("cannot record the running site file: {}", e.what());
    }
}

std::string to_json(const ReloadVerdict& v) {
    json j = {{"seq", v.seq},
              {"pid", v.pid},
              {"time", v.time},
              {"origin", v.origin},
              {"applied", v.applied},
              {"message", v.message},
              {"restart_keys", v.restart_keys},
              {"running_digest", v.running_digest},
              {"file_digest", v.file_digest}};
    return j.dump();
}

void write_reload_verdict(const std::filesystem::path& file, const ReloadVerdict& v) {
    const auto text = to_json(v) + "\n";
    write_file_atomic(file, as_bytes(text), 0644);
}

std::optional<ReloadVerdict> read_reload_verdict(const std::filesystem::path& file) {
    std::string text;
    if (read_file_limited(file, 1 << 20, text)) return std::nullopt;
    const auto j = json::parse(text, nullptr, false);
    if (!j.is_object()) return std::nullopt;
    try {
        ReloadVerdict v;
        v.seq = j.at("seq").get<std::uint64_t>();
        v.pid = j.at("pid").get<std::uint64_t>();
        v.time = j.at("time").get<std::int64_t>();
        v.origin = j.at("origin").get<std::string>();
        v.applied = j.at("applied").get<bool>();
        v.message = j.at("message").get<std::string>();
        v.restart_keys = j.at("restart_keys").get<std::vector<std::string>>();
        v.running_digest = j.at("running_digest").get<std::string>();
        v.file_digest = j.at("file_digest").get<std::string>();
        return v;
    } catch (const json::exception&) {
        return std::nullopt;
    }
}

std::string file_digest(const std::filesystem::path& file) {
    std::string text;
    if (read_file_limited(file, kMaxSiteFileBytes, text)) return {};
    return to_hex(sha256(text));
}

Reloader::Reloader(std::filesystem::path site_file, std::filesystem::path data_dir, Site running, Running services,
                   std::shared_ptr<spdlog::logger> log)
    : file_(std::move(site_file)), data_dir_(std::move(data_dir)), site_(std::move(running)), services_(services), log_(std::move(log)) {
    record_running();
}

void Reloader::add(std::string name, std::function<void(const Site&)> reload) { members_.push_back({std::move(name), std::move(reload)}); }

namespace {
std::string join(const std::vector<std::string>& v, const char* sep) {
    std::string out;
    for (const auto& s : v) out += (out.empty() ? "" : sep) + s;
    return out;
}
}  // namespace

ReloadVerdict Reloader::reload(const std::string& origin) {
    ReloadVerdict v;
    v.seq = (last_ ? last_->seq : 0) + 1;
    v.pid = static_cast<std::uint64_t>(::getpid());
    v.time = static_cast<std::int64_t>(std::time(nullptr));
    v.origin = origin;
    v.file_digest = file_digest(file_);
    std::optional<Site> fresh;
    try {
        fresh = load_site(file_, data_dir_);
    } catch (const SiteLoadError& e) {
        const auto& errs = e.errors();
        v.message = "refused: " + file_.string() + " is invalid: " +
                    (errs.empty() ? std::string(e.what()) : (errs[0].pointer.empty() ? "" : errs[0].pointer + ": ") + errs[0].message) +
                    (errs.size() > 1 ? " (and " + std::to_string(errs.size() - 1) + " more error(s))" : "");
        log::error_lines(*log_, "reload: the site file is invalid:", e.what());
    }
    if (fresh) {
        v.restart_keys = restart_keys(site_, *fresh, services_);
        if (!v.restart_keys.empty()) {
            v.message = "refused: changing " + join(v.restart_keys, ", ") + " needs a restart (fleetconf keeps running " +
                        "the previous configuration; restart, or put those keys back)";
        } else {
            std::size_t done = 0;
            std::string failure;
            for (; done < members_.size(); ++done) {
                try {
                    members_[done].reload(*fresh);
                } catch (const std::exception& e) {
                    failure = members_[done].name + ": " + e.what();
                    break;
                }
            }
            if (!failure.empty()) {
                // Back to what ran for those that had accepted it: all or nothing.
                for (std::size_t i = 0; i < done; ++i) {
                    try {
                        members_[i].reload(site_);
                    } catch (const std::exception& e) {
                        log_->error("reload: putting {} back on the running configuration failed: {}", members_[i].name, e.what());
                    }
                }
                v.message = "refused: " + failure;
            } else {
                carry_bound_ports(site_, *fresh);
                const bool levels_changed = fresh->services.log_level != site_.services.log_level;
                site_ = std::move(*fresh);
                record_running();
                if (!site_.services.log_level.empty() && levels_changed) {
                    log::set_levels(site_.services.log_level);
                    log_->info("log levels now {} (services.log_level)", log::levels());
                }
                for (const auto& f : applied_) {
                    try {
                        f(site_);
                    } catch (const std::exception& e) {
                        log_->error("reload: {}", e.what());
                    }
                }
                v.applied = true;
                v.message = "applied: " + std::to_string(site_.networks.size()) + " networks, " + std::to_string(site_.unikernels.size()) +
                            " unikernels";
            }
        }
    }
    v.running_digest = site_.digest;
    if (v.applied) {
        ++applied_count_;
        log_->info("reload #{} ({}): {}", v.seq, origin, v.message);
    } else {
        ++refused_count_;
        log_->error("reload #{} ({}) {}; the running configuration stays", v.seq, origin, v.message);
    }
    last_ = v;
    try {
        write_reload_verdict(reload_verdict_file(site_), v);
    } catch (const std::exception& e) {
        log_->error("reload: cannot record the verdict: {}", e.what());
    }
    return v;
}

StatusSource Reloader::status_source() const {
    return {"config",
            [this] {
                const auto disk = file_digest(file_);
                std::string o;
                o += "# HELP fleetconf_reload_total Reloads by verdict\n# TYPE fleetconf_reload_total counter\n";
                o += "fleetconf_reload_total{result=\"applied\"} " + std::to_string(applied_count_) + "\n";
                o += "fleetconf_reload_total{result=\"refused\"} " + std::to_string(refused_count_) + "\n";
                o += "# HELP fleetconf_reload_last_success 1 when the last reload applied (or none was asked for), 0 when it was refused\n"
                     "# TYPE fleetconf_reload_last_success gauge\n";
                o += "fleetconf_reload_last_success " + std::string(!last_ || last_->applied ? "1" : "0") + "\n";
                o += "# HELP fleetconf_reload_last_time_seconds Unix time of the last reload (0: none)\n"
                     "# TYPE fleetconf_reload_last_time_seconds gauge\n";
                o += "fleetconf_reload_last_time_seconds " + std::to_string(last_ ? last_->time : 0) + "\n";
                o += "# HELP fleetconf_config_info The SHA-256 of the site file that runs and of the file on disk\n"
                     "# TYPE fleetconf_config_info gauge\n";
                o += "fleetconf_config_info{running=\"" + site_.digest + "\",file=\"" + disk + "\"} 1\n";
                o += "# HELP fleetconf_config_file_differs 1 when the site file on disk is not the one that runs\n"
                     "# TYPE fleetconf_config_file_differs gauge\n";
                o += "fleetconf_config_file_differs " + std::string(disk == site_.digest ? "0" : "1") + "\n";
                return o;
            },
            [this] {
                const auto disk = file_digest(file_);
                Health h{true, "running " + file_.string() + " sha256 " + site_.digest.substr(0, 12)};
                if (disk.empty()) {
                    h.degraded = true;
                    h.detail += "; the file on disk cannot be read";
                } else if (disk != site_.digest) {
                    h.degraded = true;
                    h.detail += "; the file on disk differs (sha256 " + disk.substr(0, 12) + "): not reloaded yet";
                }
                if (last_) {
                    h.detail += "; last reload #" + std::to_string(last_->seq) + " " + last_->message;
                    if (!last_->applied) h.degraded = true;
                }
                return h;
            }};
}

}  // namespace fleetconf::common
