// fleetconf dhcp serve|leases
#include "commands.hpp"

#include "fleetconf/common/crypto.hpp"
#include "fleetconf/common/files.hpp"
#include "fleetconf/common/http.hpp"
#include "fleetconf/common/log.hpp"
#include "fleetconf/common/runtime.hpp"
#include "fleetconf/common/status.hpp"
#include "fleetconf/dhcp/pg_store.hpp"
#include "fleetconf/dhcp/service.hpp"

#include <asio/connect.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/local/stream_protocol.hpp>
#include <asio/write.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <iomanip>
#include <iostream>
#include <memory>

namespace fleetconf::cli {
namespace {

struct DhcpArgs {
    std::string site;
    std::string data_dir;
    std::string lease_file;
    bool json = false;
    bool no_sync = false;
    unsigned commit_interval_us = 1000;
    std::string command, args_json = "{}", socket, connect, password_file;
};

std::optional<common::Site> load_or_report(const DhcpArgs& a) { return load_site_or_report(a.site, a.data_dir); }
std::optional<common::Site> inspect(const DhcpArgs& a) { return load_site_or_running(a.site, a.data_dir); }

int serve(const DhcpArgs& a) {
    auto loaded = load_or_report(a);
    if (!loaded) return kExitInvalid;
    common::Site& site = *loaded;
    auto log = common::log::get("dhcp");
    apply_site_log_level(site, *log);
    const DataDirLock lock(site);  // the lease journal has one writer
    if (!lock.ok()) return kExitFailure;
    common::Runtime rt;
    dhcp::ServiceOptions o;
    o.server_port = site.services.dhcp.server_port;
    o.client_port = site.services.dhcp.client_port;
    o.durable = !a.no_sync;
    o.commit_interval = std::chrono::microseconds(a.commit_interval_us);
    if (!a.lease_file.empty()) o.lease_file = a.lease_file;
    o.site_file = std::filesystem::absolute(a.site);
    dhcp::Service svc(rt.io(), site, o, log);
    common::Running running;
    running.dhcp = true;
    running.whole_site = false;  // git and block are another process's business
    common::Reloader reloader(a.site, a.data_dir, site, running, log);
    reloader.add("dhcp", [&](const common::Site& s) { svc.reload(s); });
    svc.set_reload_hook([&](const dhcp::Service::ReloadDone& done) { done(reloader.reload("config-reload")); });
    svc.start();
    common::StatusRegistry status;
    status.add(svc.status_source());
    status.add(reloader.status_source());
    std::optional<common::StatusServer> status_server;
    if (site.services.status) {
        status_server.emplace(rt.io(), *site.services.status, status, common::log::get("status"), site.services.limits_for("status"));
        status_server->start();
    }
    if (a.no_sync) log->warn("--no-sync: leases are NOT synced before replies; a crash can lose acknowledged leases");
    rt.on_stop([&] {
        if (status_server) status_server->stop();
        svc.stop();
    });
    rt.on_reload([&] {
        common::notify_systemd("RELOADING=1");
        reloader.reload("SIGHUP");
        common::notify_systemd("READY=1");
    });
    common::notify_systemd("READY=1");
    return rt.run() ? kExitOk : kExitFailure;
}

// At most `n` bytes of `s`, not cutting a UTF-8 sequence in two.
std::string utf8_prefix(const std::string& s, std::size_t n) {
    if (s.size() <= n) return s;
    while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
    return s.substr(0, n);
}

int print_leases(const dhcp::MemoryLeaseStore& mem, bool json);

int leases(const DhcpArgs& a) {
    auto loaded = inspect(a);
    if (!loaded) return kExitInvalid;
    common::Site& site = *loaded;
    dhcp::MemoryLeaseStore mem;
    if (site.services.dhcp.leases.type == common::LeaseDatabase::Type::postgresql && a.lease_file.empty()) {
        try {  // the shared lease table, as every server of the site sees it
            dhcp::pg::Connection c(site.services.dhcp.leases);
            dhcp::pg::require_schema(c);
            std::vector<dhcp::LeaseChange> changes;
            for (auto& l : dhcp::pg::load(c)) changes.push_back({std::move(l)});
            mem.apply(changes);
        } catch (const std::exception& e) {
            print_error(e.what());
            return kExitFailure;
        }
        return print_leases(mem, a.json);
    }
    const auto file = a.lease_file.empty() ? dhcp::lease_file(site) : std::filesystem::path(a.lease_file);
    if (!std::filesystem::exists(file)) {
        print_error(file.string() + ": no lease journal (has the DHCP service run with this data directory?)");
        return kExitFailure;
    }
    // Read-only use: replay into memory without touching the file (copy it first).
    {
        std::string text;
        if (auto err = common::read_file_limited(file, std::size_t{1} << 30, text)) {
            print_error(*err);
            return kExitFailure;
        }
        // The same recovery the server does (docs/dhcp-leases.md): every intact record, damage reported.
        const auto scan = dhcp::scan_journal(text);
        mem.apply(scan.records);
        for (const auto& r : scan.damaged)
            std::cerr << "fleetconf: " << file.string() << ": damaged region at offset " << r.offset << ", " << r.length
                      << " bytes (skipped; the server copies it aside and rewrites the journal at its next start)\n";
    }
    return print_leases(mem, a.json);
}

int print_leases(const dhcp::MemoryLeaseStore& mem, bool json) {
    const auto now = static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count());
    if (json) {
        nlohmann::json arr = nlohmann::json::array();
        for (const auto& l : mem.all())
            arr.push_back({{"address", l.address.to_string()},
                           {"mac", l.mac.to_string()},
                           {"client", common::to_hex(l.client)},
                           {"hostname", l.hostname},
                           {"network", l.network},
                           {"state", dhcp::to_string(l.state)},
                           {"expires", l.expires},
                           {"active", l.expires > now}});
        std::cout << arr.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
        return kExitOk;
    }
    std::cout << std::left << std::setw(16) << "ADDRESS" << std::setw(19) << "MAC" << std::setw(20) << "HOST" << std::setw(10) << "STATE"
              << "EXPIRES IN\n";
    for (const auto& l : mem.all())
        std::cout << std::setw(16) << l.address.to_string() << std::setw(19) << l.mac.to_string() << std::setw(20)
                  << (l.hostname.empty() ? "-" : utf8_prefix(l.hostname, 19)) << std::setw(10) << dhcp::to_string(l.state)
                  << (l.expires > now ? std::to_string(l.expires - now) + " s" : "expired") << "\n";
    return kExitOk;
}

// Reads a stream socket to its end (at most 64 MiB).
template <typename Socket>
std::string read_all(Socket& s) {
    std::string in;
    char buf[65536];
    std::error_code ec;
    while (!ec && in.size() <= (64u << 20)) {
        const auto n = s.read_some(asio::buffer(buf), ec);
        in.append(buf, n);
    }
    return in;
}

// The reply of the unix control socket: one JSON object.
std::optional<std::string> ctl_unix(const std::string& path, const std::string& request) {
    asio::io_context io;
    asio::local::stream_protocol::socket s(io);
    std::error_code ec;
    s.connect(asio::local::stream_protocol::endpoint(path), ec);
    if (ec) {
        print_error(path + ": cannot connect: " + ec.message() + " (is the DHCP service running?)");
        return std::nullopt;
    }
    asio::write(s, asio::buffer(request), ec);
    s.shutdown(asio::socket_base::shutdown_send, ec);
    return read_all(s);
}

// The HTTP control channel (kea-ctrl-agent's shape): POST /, Basic authentication, a JSON array back.
std::optional<std::string> ctl_http(const std::string& where, const std::string& password, const std::string& request) {
    auto ep = common::Endpoint::parse(where);
    if (!ep) {
        print_error("--connect: \"" + where + "\" is not HOST:PORT");
        return std::nullopt;
    }
    asio::io_context io;
    asio::ip::tcp::socket s(io);
    std::error_code ec;
    s.connect(asio::ip::tcp::endpoint(asio::ip::make_address(ep->host_string(), ec), ep->port), ec);
    if (ec) {
        print_error(where + ": cannot connect: " + ec.message() + " (is services.dhcp.control_http set?)");
        return std::nullopt;
    }
    const std::string auth = common::base64_encode(common::as_bytes("fleetconf:" + password));
    const std::string out = "POST / HTTP/1.1\r\nHost: " + where + "\r\nAuthorization: Basic " + auth +
                            "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(request.size()) +
                            "\r\nConnection: close\r\n\r\n" + request;
    asio::write(s, asio::buffer(out), ec);
    const std::string in = read_all(s);
    const auto r = common::parse_http_response(in, 1 << 20);
    if (!r) {
        print_error(where + ": the reply is not HTTP");
        return std::nullopt;
    }
    if (!r->complete) {
        print_error(where + ": the reply ended early (HTTP " + std::to_string(r->status) + ")");
        return std::nullopt;
    }
    if (r->status == 401) {
        print_error(where + ": password refused (the contents of services.dhcp.control_key_file)");
        return std::nullopt;
    }
    auto j = nlohmann::json::parse(r->body, nullptr, false);
    if (r->status != 200 || !j.is_array() || j.empty()) {
        print_error(where + ": HTTP " + std::to_string(r->status) + ": " + r->body.substr(0, 200));
        return std::nullopt;
    }
    return j[0].dump();
}

int ctl(const DhcpArgs& a) {
    auto args = nlohmann::json::parse(a.args_json, nullptr, false);
    if (args.is_discarded() || !args.is_object()) {
        print_error("--args: not a JSON object: " + a.args_json);
        return kExitInvalid;
    }
    nlohmann::json req{{"command", a.command}};
    if (!args.empty()) req["arguments"] = args;
    std::optional<std::string> in;
    if (!a.connect.empty()) {
        std::string password;
        if (!a.password_file.empty()) {
            if (auto err = common::read_secret_line(a.password_file, password)) {
                print_error(*err);
                return kExitInvalid;
            }
        } else if (const char* env = std::getenv("FLEETCONF_DHCP_PASSWORD")) {
            password = env;
        } else {
            print_error("--connect needs the control password: --password-file FILE or FLEETCONF_DHCP_PASSWORD");
            return kExitInvalid;
        }
        req["service"] = {"dhcp4"};
        in = ctl_http(a.connect, password, req.dump());
    } else {
        std::string path = a.socket;
        if (path.empty()) {
            if (a.site.empty()) {
                print_error(
                    "give --site SITE (the socket is DATA_DIR/dhcp/control.sock; default site.json), --socket PATH or --connect HOST:PORT");
                return kExitInvalid;
            }
            auto site = inspect(a);
            if (!site) return kExitInvalid;
            path = dhcp::control_socket(*site).string();
        }
        in = ctl_unix(path, req.dump());
    }
    if (!in) return kExitFailure;
    auto r = nlohmann::json::parse(*in, nullptr, false);
    if (r.is_discarded() || !r.is_object()) {
        print_error("reply is not a JSON object");
        return kExitFailure;
    }
    std::cout << r.dump(2) << "\n";
    const int result = r.value("result", 1);
    return result == 0 || result == 3 ? kExitOk : kExitFailure;
}

}  // namespace

void add_dhcp_commands(CLI::App& app, Action& action) {
    auto* d = app.add_subcommand("dhcp", "The DHCPv4 server");
    d->require_subcommand(1);
    auto a = std::make_shared<DhcpArgs>();
    auto* s = d->add_subcommand("serve", "Run the DHCP server alone, on the interfaces the site file names (SIGHUP reloads)");
    s->add_option("SITE", a->site, "Site file")->required()->check(CLI::ExistingFile);
    add_data_dir_option(s, a->data_dir);
    s->add_option("--lease-file", a->lease_file, "Lease journal (default DATA_DIR/dhcp/leases.journal)");
    s->add_flag("--no-sync", a->no_sync, "Do not sync leases before replying (benchmarks only: loses leases on a crash)");
    s->add_option("--commit-interval", a->commit_interval_us,
                  "Microseconds between the starts of two lease-journal syncs: ACKs arriving within it share one sync "
                  "(0: sync every batch)")
        ->check(CLI::Range(0u, 1000000u))
        ->capture_default_str();
    s->callback([&action, a] { action = [a] { return serve(*a); }; });
    auto* l = d->add_subcommand("leases", "List the leases (the journal's, or the PostgreSQL database's when the site uses one)");
    auto la = std::make_shared<DhcpArgs>(*a);
    l->add_option("SITE", la->site, "Site file (or --site; default site.json)");
    l->add_option("--site", la->site, "Site file (default site.json)");
    add_data_dir_option(l, la->data_dir);
    l->add_option("--lease-file", la->lease_file, "Lease journal");
    l->add_flag("--json", la->json, "JSON output");
    l->callback([&action, la] {
        if (la->site.empty()) la->site = "site.json";
        action = [la] { return leases(*la); };
    });
    auto* c = d->add_subcommand("ctl",
                                "Send a control command to a running DHCP service (Kea-compatible names: list-commands, "
                                "status-get, statistic-get-all, lease4-get, lease4-get-all, lease4-add, lease4-del, "
                                "config-get, config-reload, log-level-get, log-level-set); prints the JSON reply, exit 0 on result 0 or 3");
    c->add_option("COMMAND", a->command, "Command name")->required();
    c->add_option("--args", a->args_json, "Arguments as a JSON object, e.g. '{\"ip-address\": \"10.0.0.5\"}'");
    c->add_option("--socket", a->socket, "Control socket path");
    c->add_option("--connect", a->connect, "HOST:PORT of the HTTP control channel (services.dhcp.control_http) instead of the socket");
    c->add_option("--password-file", a->password_file, "With --connect: file holding the control password (else FLEETCONF_DHCP_PASSWORD)");
    c->add_option("--site", a->site, "Site file (the socket is DATA_DIR/dhcp/control.sock; default site.json)");
    add_data_dir_option(c, a->data_dir);
    c->callback([&action, a] {
        if (a->site.empty() && a->socket.empty() && a->connect.empty()) a->site = "site.json";
        action = [a] { return ctl(*a); };
    });
    add_dhcp_db_commands(d, action);
}

}  // namespace fleetconf::cli
