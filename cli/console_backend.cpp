// The console's backend for `fleetconf serve` (console_backend.hpp). Views are rebuilt once a second (fleet,
// networks) or every 10 s (repositories, devices) by the console; the DHCP thread is asked for a copy of the
// leases at most once per tick, files (audit logs, notification states) are read again only when they changed.
#include "console_backend.hpp"

#include "fleetconf/blockcfg/error.hpp"
#include "fleetconf/blockcfg/model.hpp"
#include "fleetconf/blockcfg/service.hpp"
#include "fleetconf/common/bootargs.hpp"
#include "fleetconf/common/crypto.hpp"
#include "fleetconf/common/text.hpp"
#include "fleetconf/dhcp/service.hpp"
#include "fleetconf/gitconf/auth.hpp"
#include "fleetconf/gitconf/edit.hpp"
#include "fleetconf/gitconf/repo.hpp"
#include "fleetconf/gitconf/service.hpp"

#include <algorithm>
#include <chrono>
#include <fstream>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <system_error>
#include <vector>

namespace fleetconf::cli {

namespace {

using json = nlohmann::json;
using console::ActionError;
using console::number_field;
using console::text_field;
constexpr std::chrono::seconds kWait{2};
constexpr std::size_t kAuditShown = 10;          // audit entries per repository in the views
constexpr std::size_t kHistoryShown = 20;        // generations per device
constexpr std::uintmax_t kTailBytes = 64 << 10;  // the part of an audit log read for its last entries

std::int64_t now_s() {
    return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// A file's parsed content, read again only when its size or modification time changed.
struct CachedFile {
    std::uintmax_t size = 0;
    std::filesystem::file_time_type mtime;
    std::vector<json> entries;  // audit log: its last JSON lines, oldest first; state file: one object
};

struct State {
    std::shared_ptr<ConsoleParts> p;
    std::map<std::filesystem::path, CachedFile> files;
    std::vector<dhcp::Lease> leases;  // the last copy from the DHCP thread
    std::chrono::steady_clock::time_point leases_at{};
    bool leases_valid = false;

    const common::Site& site() const { return *p->site; }

    // The leases, copied on the DHCP thread; the views of one tick (fleet, networks) share one copy.
    const std::vector<dhcp::Lease>& all_leases() {
        const auto now = std::chrono::steady_clock::now();
        if (!p->dhcp) {
            leases.clear();
            return leases;
        }
        if (leases_valid && now - leases_at < std::chrono::milliseconds(100)) return leases;
        auto copy = p->dhcp_thread->try_call([d = p->dhcp] { return d->leases().all(); }, kWait);
        if (!copy) throw std::runtime_error("no answer from the dhcp thread within 2 s");
        leases = std::move(*copy);
        leases_at = now;
        leases_valid = true;
        return leases;
    }
    void leases_changed() { leases_valid = false; }

    // The last JSON lines of a file (an audit log), or its one JSON object (a state file: `whole`).
    const std::vector<json>& read(const std::filesystem::path& file, bool whole) {
        std::error_code ec;
        const auto size = std::filesystem::file_size(file, ec);
        const auto mtime = ec ? std::filesystem::file_time_type{} : std::filesystem::last_write_time(file, ec);
        auto& c = files[file];
        if (ec) {
            c = {};
            return c.entries;
        }
        if (c.size == size && c.mtime == mtime) return c.entries;
        c = {size, mtime, {}};
        std::ifstream in(file, std::ios::binary);
        const auto from = !whole && size > kTailBytes ? size - kTailBytes : 0;
        if (whole && size > kTailBytes) return c.entries;  // a state file is small; a big one is not ours
        in.seekg(static_cast<std::streamoff>(from));
        std::string text(static_cast<std::size_t>(size - from), '\0');
        in.read(text.data(), static_cast<std::streamsize>(text.size()));
        text.resize(static_cast<std::size_t>(in.gcount()));
        if (whole) {
            auto j = json::parse(text, nullptr, false);
            if (j.is_object()) c.entries.push_back(std::move(j));
            return c.entries;
        }
        std::size_t pos = 0;
        if (from > 0) pos = text.find('\n') == std::string::npos ? text.size() : text.find('\n') + 1;  // a cut first line
        while (pos < text.size()) {
            auto end = text.find('\n', pos);
            if (end == std::string::npos) end = text.size();
            auto j = json::parse(std::string_view(text).substr(pos, end - pos), nullptr, false);
            if (j.is_object()) c.entries.push_back(std::move(j));
            pos = end + 1;
        }
        if (c.entries.size() > 64) c.entries.erase(c.entries.begin(), c.entries.end() - 64);
        return c.entries;
    }

    std::filesystem::path audit_file(const std::string& repo) const { return gitconf::git_root(site()) / "audit" / (repo + ".jsonl"); }

    blockcfg::ConfigService* device(const std::string& name) const {
        if (!p->block) return nullptr;
        auto d = p->block_thread->try_call([b = p->block, name] { return b->device(name); }, kWait);
        if (!d) throw std::runtime_error("no answer from the block thread within 2 s");
        return *d;
    }
};

std::string lease_state(const dhcp::Lease& l, std::int64_t now) {
    if ((l.state == dhcp::LeaseState::bound || l.state == dhcp::LeaseState::offered) && static_cast<std::int64_t>(l.expires) <= now)
        return "expired";
    return std::string(dhcp::to_string(l.state));
}

// How current a lease is: bound beats offered beats anything else, then the later expiry.
int rank(const dhcp::Lease& l, std::int64_t now) {
    const bool live = static_cast<std::int64_t>(l.expires) > now;
    if (live && l.state == dhcp::LeaseState::bound) return 3;
    if (live && l.state == dhcp::LeaseState::offered) return 2;
    return 1;
}

std::string client_id(const dhcp::Lease& l) {
    // The identity is 0xFF + the identifier the client sent (option 61), else htype + chaddr: no identifier.
    if (l.client.empty() || l.client[0] != 0xFF) return {};
    return common::to_hex(std::span(l.client).subspan(1));
}

json lease_json(const dhcp::Lease& l, std::int64_t now) {
    return {{"address", l.address.to_string()}, {"mac", l.mac.to_string()}, {"client_id", client_id(l)}, {"hostname", l.hostname},
            {"state", lease_state(l, now)},     {"expires", l.expires},     {"network", l.network}};
}

std::uint16_t route_port(const common::Site& site, const common::Unikernel& u) {
    return u.backend_port.value_or(site.services.dhcp.routes ? site.services.dhcp.routes->port : 80);
}

// The last push of a repository (its audit log's last entry with a result) and why it was refused.
json last_push(const std::vector<json>& audit) {
    for (auto it = audit.rbegin(); it != audit.rend(); ++it) {
        if (text_field(*it, "result").empty()) continue;
        std::string reason;
        if (const auto unpack = text_field(*it, "unpack"); !unpack.empty() && unpack != "ok") reason = "unpack: " + unpack;
        if (const auto refs = it->find("refs"); refs != it->end() && refs->is_array())
            for (const auto& r : *refs)
                if (reason.empty() && r.is_object() && !text_field(r, "reason").empty())
                    reason = text_field(r, "ref") + ": " + text_field(r, "reason");
        return {{"time", number_field(*it, "time")},
                {"credential", text_field(*it, "credential")},
                {"transport", text_field(*it, "transport")},
                {"result", text_field(*it, "result")},
                {"reason", reason}};
    }
    return nullptr;
}

// The latest delivery of the hook or the webhook (<root>/notify/NAME.json).
json last_notification(const std::vector<json>& state) {
    if (state.empty()) return nullptr;
    json best = nullptr;
    for (const auto& [kind, v] : state.front().items()) {
        if (!v.is_object()) continue;
        if (!best.is_null() && number_field(best, "time") > number_field(v, "time")) continue;
        const auto st = text_field(v, "state");
        best = {{"kind", kind},
                {"ok", st == "delivered"},
                {"result", st},
                {"time", number_field(v, "time")},
                {"detail", text_field(v, "detail")},
                {"attempts", number_field(v, "attempts")}};
    }
    return best;
}

json fleet(State& s) {
    const auto& site = s.site();
    const auto now = now_s();
    // Each unikernel's most current lease, by MAC address or client identifier.
    std::map<common::Mac, const dhcp::Lease*> by_mac;
    // Client identities as strings of bytes: a map keyed by std::vector<std::uint8_t> trips GCC 12's
    // -Wstringop-overread false positive at -O2 (its inlined memcmp in operator<=>).
    const auto bytes_key = [](std::span<const std::uint8_t> b) { return std::string(b.begin(), b.end()); };
    std::map<std::string, const dhcp::Lease*> by_client;
    auto better = [now](const dhcp::Lease* a, const dhcp::Lease& b) {
        return !a || rank(b, now) > rank(*a, now) || (rank(b, now) == rank(*a, now) && b.expires > a->expires);
    };
    for (const auto& l : s.all_leases()) {
        if (better(by_mac[l.mac], l)) by_mac[l.mac] = &l;
        if (auto& slot = by_client[bytes_key(l.client)]; better(slot, l)) slot = &l;
    }
    std::map<std::string, gitconf::RepoActivity> activity;
    if (s.p->git) activity = s.p->git->activity();
    // The proxy's routes, when the lease router writes them to a device of this process.
    const auto& lr = site.services.dhcp.routes;
    std::optional<blockcfg::Config> proxy;
    if (lr && lr->kind == common::LeaseRoutes::Kind::local)
        if (auto* d = s.device(lr->device)) proxy = *d->snapshot().config;

    json out = json::array();
    for (const auto& u : site.unikernels) {
        std::vector<std::string> bad, warn;
        const dhcp::Lease* l = nullptr;
        if (!u.client_id.empty()) {
            std::string key(1, '\xFF');
            key.append(u.client_id.begin(), u.client_id.end());
            auto it = by_client.find(key);
            if (it != by_client.end()) l = it->second;
        }
        if (!l)
            if (auto it = by_mac.find(u.mac); it != by_mac.end()) l = it->second;
        const auto* net = site.network(u.network);
        json j{{"name", u.name}, {"network", u.network}, {"mac", u.mac.to_string()},    {"mac_derived", u.mac_derived},
               {"dhcp", u.dhcp}, {"git", u.git.enabled}, {"block", u.block.has_value()}};
        const bool live = l && rank(*l, now) == 3;
        j["address"] = live ? l->address.to_string() : u.address ? u.address->to_string() : "";
        if (l) {
            j["lease"] = {{"address", l->address.to_string()}, {"state", lease_state(*l, now)}, {"expires", l->expires}};
            // The last exchange that set this expiry: the lease time before it (ACK or OFFER).
            const auto lt = net ? net->lease_time : common::kDefaultLeaseTime;
            j["last_dhcp"] = l->expires > lt ? l->expires - lt : 0;
        } else {
            j["lease"] = nullptr;
            j["last_dhcp"] = nullptr;
        }
        if (u.dhcp && s.p->dhcp && !live) warn.push_back(l ? "lease " + lease_state(*l, now) : "no lease");
        // git: the last fetch (since start), the last push and notification (from the files).
        j["fetch"] = nullptr;
        j["push"] = nullptr;
        j["notification"] = nullptr;
        if (u.git.enabled) {
            if (auto a = activity.find(u.name); a != activity.end() && a->second.fetches)
                j["fetch"] = {{"time", a->second.last_fetch},
                              {"transport", a->second.transport},
                              {"peer", a->second.peer},
                              {"credential", a->second.credential},
                              {"count", a->second.fetches}};
            j["push"] = last_push(s.read(s.audit_file(u.name), false));
            j["notification"] = last_notification(s.read(gitconf::notify_state_file(site, u.name), true));
            if (j["push"].is_object() && j["push"]["result"] != "accepted")
                warn.push_back("last push " + j["push"]["result"].get<std::string>());
            if (j["notification"].is_object() && !j["notification"]["ok"].get<bool>())
                (j["notification"]["result"] == "failed" ? bad : warn)
                    .push_back("notification " + j["notification"]["result"].get<std::string>());
        }
        // Routes: each public host name should lead to the leased address while the lease is bound.
        json routes = json::array();
        bool match = true;
        if (lr && u.dhcp) {
            for (const auto& h : u.public_hosts) {
                auto n = blockcfg::normalize_host(h);
                const auto host = std::holds_alternative<std::string>(n) ? std::get<std::string>(n) : h;
                json expected = nullptr, actual = nullptr;
                if (live) expected = l->address.to_string() + ":" + std::to_string(route_port(site, u));
                bool ok = true, checked = proxy.has_value();
                if (proxy) {
                    if (auto r = proxy->routes.find(host); r != proxy->routes.end()) actual = r->second.to_string();
                    ok = expected == actual || (expected.is_null() && !lr->remove_on_release);
                }
                if (!ok) match = false;
                routes.push_back({{"host", host}, {"expected", expected}, {"actual", actual}, {"ok", ok}, {"checked", checked}});
            }
        }
        if (!match) bad.emplace_back("routes do not match the lease");
        j["routes"] = std::move(routes);
        j["routes_match"] = match;
        std::string detail;
        for (const auto* v : {&bad, &warn})
            for (const auto& w : *v) detail += (detail.empty() ? "" : "; ") + w;
        const bool seen = s.p->dhcp || s.p->git;
        j["health"] = !bad.empty() ? "bad" : !warn.empty() ? "warn" : seen ? "ok" : "unknown";
        j["health_detail"] = detail.empty() ? std::string(seen ? "all well" : "no service of this process knows it") : detail;
        out.push_back(std::move(j));
    }
    return {{"now", now},
            {"site", site.source},
            {"services", {{"dhcp", s.p->dhcp != nullptr}, {"git", s.p->git != nullptr}, {"block", s.p->block != nullptr}}},
            {"unikernels", std::move(out)}};
}

json networks(State& s) {
    const auto& site = s.site();
    const auto now = now_s();
    const auto& leases = s.all_leases();
    json out = json::array();
    for (const auto& n : site.networks) {
        json pools = json::array();
        for (const auto& r : n.pools) {
            std::uint64_t bound = 0, offered = 0, declined = 0;
            for (const auto& l : leases) {
                if (l.network != n.name || !r.contains(l.address) || static_cast<std::int64_t>(l.expires) <= now) continue;
                bound += l.state == dhcp::LeaseState::bound;
                offered += l.state == dhcp::LeaseState::offered;
                declined += l.state == dhcp::LeaseState::declined;
            }
            const auto used = bound + offered + declined;
            pools.push_back({{"first", r.first().to_string()},
                             {"last", r.last().to_string()},
                             {"size", r.size()},
                             {"bound", bound},
                             {"offered", offered},
                             {"declined", declined},
                             {"free", r.size() > used ? r.size() - used : 0}});
        }
        out.push_back({{"name", n.name}, {"subnet", n.subnet.to_string()}, {"lease_time", n.lease_time}, {"pools", std::move(pools)}});
    }
    return {{"now", now}, {"dhcp", s.p->dhcp != nullptr}, {"networks", std::move(out)}};
}

std::string lower(std::string_view v) {
    std::string o(v);
    std::transform(o.begin(), o.end(), o.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return o;
}

json leases(State& s, const std::string& query, std::size_t limit) {
    const auto now = now_s();
    const auto q = lower(query);
    std::vector<const dhcp::Lease*> hits;
    for (const auto& l : s.all_leases()) {
        if (!q.empty()) {
            const std::string text = l.address.to_string() + " " + l.mac.to_string() + " " + client_id(l) + " " + lower(l.hostname) + " " +
                                     lease_state(l, now) + " " + l.network;
            if (text.find(q) == std::string::npos) continue;
        }
        hits.push_back(&l);
    }
    std::sort(hits.begin(), hits.end(), [](const auto* a, const auto* b) { return a->address < b->address; });
    json out = json::array();
    for (std::size_t i = 0; i < hits.size() && i < limit; ++i) out.push_back(lease_json(*hits[i], now));
    return {{"now", now}, {"total", hits.size()}, {"shown", out.size()}, {"leases", std::move(out)}};
}

json repositories(State& s) {
    const auto& site = s.site();
    std::map<std::string, gitconf::RepoActivity> activity;
    if (s.p->git) activity = s.p->git->activity();
    json out = json::array();
    for (const auto* u : gitconf::repo_unikernels(site)) {
        json j{{"name", u->name}, {"branch", u->git.branch}, {"writable", u->git.writable}, {"head", nullptr}, {"size_bytes", 0}};
        try {
            const auto repo = gitconf::Repository::open(gitconf::repo_dir(site, u->name));
            for (const auto& r : repo.refs().refs)
                if (r.name == "refs/heads/" + u->git.branch) j["head"] = r.oid.hex();
            j["size_bytes"] = repo.disk_size();
        } catch (const std::exception& e) {
            j["error"] = common::printable(e.what());
        }
        const auto a = activity.find(u->name);
        j["fetches"] = a == activity.end() ? 0 : a->second.fetches;
        j["pushes"] = a == activity.end() ? 0 : a->second.pushes;
        j["last_fetch"] = a == activity.end() ? 0 : a->second.last_fetch;
        json audit = json::array();
        const auto& entries = s.read(s.audit_file(u->name), false);
        for (auto it = entries.rbegin(); it != entries.rend() && audit.size() < kAuditShown; ++it) audit.push_back(*it);
        j["audit"] = std::move(audit);
        out.push_back(std::move(j));
    }
    return {{"now", now_s()}, {"git", s.p->git != nullptr}, {"repositories", std::move(out)}};
}

json device_json(const std::string& name, const blockcfg::ConfigService& d) {
    const auto snap = d.snapshot();
    json history = json::array();
    auto gens = d.history();
    std::sort(gens.begin(), gens.end(), [](const auto& a, const auto& b) { return a.generation > b.generation; });
    for (const auto& g : gens) {
        if (history.size() >= kHistoryShown) break;
        std::string by;
        json what = json::array();
        for (const auto& c : d.change_of(g.generation)) {
            if (by.empty()) by = c.by;
            what.push_back(c.what);
        }
        history.push_back({{"generation", g.generation}, {"time", g.timestamp_ns / 1000000000}, {"by", by}, {"what", what}});
    }
    return {{"name", name},
            {"generation", snap.gen.generation},
            {"time", snap.gen.timestamp_ns / 1000000000},
            {"routes", blockcfg::routes_json(*snap.config)},
            {"history", std::move(history)}};
}

json devices(State& s) {
    json out = json::array();
    for (const auto& u : s.site().unikernels) {
        if (!u.block) continue;
        if (auto* d = s.device(u.name)) out.push_back(device_json(u.name, *d));
    }
    return {{"now", now_s()}, {"block", s.p->block != nullptr}, {"devices", std::move(out)}};
}

std::map<std::string, double> counters(State& s) {
    std::map<std::string, double> c;
    if (s.p->dhcp)
        if (auto acks = s.p->dhcp_thread->try_call([d = s.p->dhcp] { return d->acks_sent(); }, std::chrono::milliseconds(500)))
            c["dhcp_acks"] = static_cast<double>(*acks);
    if (s.p->git) {
        double fetches = 0, pushes = 0;
        for (const auto& [name, a] : s.p->git->activity()) {
            fetches += static_cast<double>(a.fetches);
            pushes += static_cast<double>(a.pushes);
        }
        c["git_fetches"] = fetches;
        c["git_pushes"] = pushes;
    }
    if (s.p->block) {
        double applied = 0;
        for (const auto& u : s.site().unikernels)
            if (u.block)
                if (auto* d = s.device(u.name)) applied += static_cast<double>(d->stats().applied);
        c["route_changes"] = applied;
    }
    return c;
}

// Arguments of the actions, each checked with a message the page can show.
std::string text_arg(const json& a, const char* key, std::size_t max) {
    const auto it = a.find(key);
    if (it == a.end() || !it->is_string()) throw ActionError(400, std::string("missing \"") + key + "\" (a string)");
    const auto v = it->get<std::string>();
    if (v.empty() || v.size() > max) throw ActionError(400, std::string("\"") + key + "\": 1 to " + std::to_string(max) + " characters");
    return v;
}

std::uint64_t number_arg(const json& a, const char* key, std::uint64_t min, std::uint64_t max) {
    const auto it = a.find(key);
    if (it == a.end() || !it->is_number_unsigned() || it->get<std::uint64_t>() < min || it->get<std::uint64_t>() > max)
        throw ActionError(400, std::string("\"") + key + "\": a whole number from " + std::to_string(min) + " to " + std::to_string(max));
    return it->get<std::uint64_t>();
}

blockcfg::ConfigService& device_arg(State& s, const json& a) {
    const auto name = text_arg(a, "device", 63);
    const auto* u = s.site().unikernel(name);
    if (!u || !u->block) throw ActionError(404, "no unikernel " + common::printable(name) + " with a block device in the site file");
    auto* d = s.device(name);
    if (!d) throw ActionError(404, "the block device of " + name + " is not served by this process");
    return *d;
}

json change(blockcfg::ConfigService& d, blockcfg::ChangeRequest req, const std::string& who) {
    const auto what = blockcfg::describe(req);
    const auto o = d.change(std::move(req), who.starts_with("console@") ? who : "console:" + who);
    if (o.ec) {
        const auto code = static_cast<blockcfg::errc>(o.ec.value());
        throw ActionError(code == blockcfg::errc::not_found ? 404 : code == blockcfg::errc::invalid ? 400 : 409, o.message);
    }
    return {{"message", d.name() + ": " + what + " (generation " + std::to_string(o.generation) + ")"},
            {"device", d.name()},
            {"generation", o.generation},
            {"warnings", o.warnings}};
}

void add_actions(console::Backend& b, const std::shared_ptr<State>& st) {
    const auto& p = *st->p;
    if (p.block) {
        b.actions["route-add"] = [st](const json& a, const std::string& who) {
            auto& d = device_arg(*st, a);
            auto host = blockcfg::normalize_host(text_arg(a, "host", 253));
            if (auto* f = std::get_if<blockcfg::Failure>(&host)) throw ActionError(400, f->message);
            const auto addr = common::parse_ip(text_arg(a, "address", 45));
            if (!addr) throw ActionError(400, "\"address\": not an IPv4 or IPv6 address");
            blockcfg::Op op{blockcfg::Op::Kind::upsert,
                            std::get<std::string>(host),
                            {*addr, static_cast<std::uint16_t>(number_arg(a, "port", 1, 65535))},
                            {}};
            return change(d, {"set", {std::move(op)}, std::nullopt, std::nullopt}, who);
        };
        b.actions["route-remove"] = [st](const json& a, const std::string& who) {
            auto& d = device_arg(*st, a);
            auto host = blockcfg::normalize_host(text_arg(a, "host", 253));
            if (auto* f = std::get_if<blockcfg::Failure>(&host)) throw ActionError(400, f->message);
            blockcfg::Op op{blockcfg::Op::Kind::remove, std::get<std::string>(host), {}, {}};
            return change(d, {"remove", {std::move(op)}, std::nullopt, std::nullopt}, who);
        };
        b.actions["rollback"] = [st](const json& a, const std::string& who) {
            auto& d = device_arg(*st, a);
            const auto gen = number_arg(a, "generation", 1, UINT64_MAX);
            return change(d, {"rollback", {}, gen, std::nullopt}, who);
        };
    }
    if (p.git)
        b.actions["token-rotate"] = [st](const json& a, const std::string& who) {
            const auto& site = st->site();
            const auto name = text_arg(a, "unikernel", 63);
            const auto* u = site.unikernel(name);
            if (!u || !u->git.enabled)
                throw ActionError(404, "no unikernel " + common::printable(name) + " with a git repository in the site file");
            constexpr std::int64_t kOverlap = 3600;
            auto tokens = gitconf::TokenStore::load(gitconf::token_file(site));
            const bool rotated = tokens.has(name);
            const auto token = tokens.issue(name, kOverlap);
            gitconf::append_audit(site, name,
                                  gitconf::credential_event_line(name, rotated ? "token rotated" : "token issued", "console " + who,
                                                                 rotated ? "the previous token stays valid 3600 s" : std::string()));
            return json{{"message", std::string(rotated ? "rotated" : "issued") + " the git token of " + name +
                                        (rotated ? "; the previous one stays valid for an hour" : "")},
                        {"unikernel", name},
                        {"user", name},
                        {"token", token},
                        {"remote", common::git_remote(site, *u, token)}};
        };
    if (p.dhcp)
        b.actions["lease-release"] = [st](const json& a, const std::string& who) {
            const auto addr = common::Ipv4::parse(text_arg(a, "address", 15));
            if (!addr) throw ActionError(400, "\"address\": not an IPv4 address");
            const json cmd{{"command", "lease4-del"}, {"arguments", {{"ip-address", addr->to_string()}}}};
            const auto answer = st->p->dhcp_thread->call([d = st->p->dhcp, &cmd] { return d->command(cmd); });
            st->leases_changed();
            const int result = answer.value("result", 1);
            if (result == 3) throw ActionError(404, "no lease for " + addr->to_string());
            if (result != 0) throw ActionError(409, answer.value("text", std::string("refused")));
            return json{{"message", "released the lease of " + addr->to_string() + " (by " + who + ")"}, {"address", addr->to_string()}};
        };
}

}  // namespace

console::Backend make_console_backend(std::shared_ptr<ConsoleParts> parts) {
    auto st = std::make_shared<State>();
    st->p = std::move(parts);
    console::Backend b;
    b.fleet = [st] { return fleet(*st); };
    b.networks = [st] { return networks(*st); };
    b.repositories = [st] { return repositories(*st); };
    b.devices = [st] { return devices(*st); };
    if (st->p->dhcp) b.leases = [st](const std::string& q, std::size_t limit) { return leases(*st, q, limit); };
    if (st->p->block)
        b.device_history = [st](const std::string& name) {
            const auto* u = st->site().unikernel(name);
            auto* d = u && u->block ? st->device(name) : nullptr;
            if (!d) throw ActionError(404, "no block device " + common::printable(name) + " served by this process");
            return device_json(name, *d);
        };
    b.counters = [st] { return counters(*st); };
    add_actions(b, st);
    return b;
}

}  // namespace fleetconf::cli
