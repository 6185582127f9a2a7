// fleetconf serve SITE: every service present in this build, on one site file, in one process.
#include "commands.hpp"
#include "console_backend.hpp"
#include "fleetconf/common/clock.hpp"

#include "fleetconf/blockcfg/routes.hpp"
#include "fleetconf/blockcfg/service.hpp"
#include "fleetconf/common/bootargs.hpp"
#include "fleetconf/common/files.hpp"
#include "fleetconf/common/log.hpp"
#include "fleetconf/common/reload.hpp"
#include "fleetconf/common/runtime.hpp"
#include "fleetconf/common/site.hpp"
#include "fleetconf/common/status.hpp"
#include "fleetconf/console/console.hpp"
#include "fleetconf/dhcp/service.hpp"
#include "fleetconf/dhcp/wire.hpp"
#include "fleetconf/gitconf/service.hpp"

#include <asio/post.hpp>
#include <asio/steady_timer.hpp>

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <chrono>
#include <iostream>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

namespace fleetconf::cli {

using common::unix_now;
namespace {

blockcfg::LeaseFacts facts(const dhcp::Lease& l) { return {l.address, l.mac, l.client, l.fqdn, l.expires}; }

// The bound, unexpired leases, as the router sees them.
std::vector<blockcfg::LeaseFacts> active_leases(const dhcp::Service& d) {
    std::vector<blockcfg::LeaseFacts> v;
    const auto now = unix_now();
    for (const auto& l : d.leases().all())
        if (l.state == dhcp::LeaseState::bound && l.expires > now) v.push_back(facts(l));
    return v;
}

}  // namespace

std::filesystem::path pid_file(const common::Site& site) { return site.services.data_dir / "fleetconf.pid"; }

DataDirLock::DataDirLock(const common::Site& site) {
    std::string error;
    try {
        common::ensure_directory(site.services.data_dir, 0750);
        fd_ = common::hold_pid_file(pid_file(site), error);
    } catch (const std::exception& e) {
        error = e.what();
    }
    if (fd_ < 0) print_error(error);
}

DataDirLock::~DataDirLock() {
    if (fd_ >= 0) ::close(fd_);
}

namespace {

struct ServeArgs {
    std::string site;
    std::string data_dir;
    bool no_dhcp = false, no_git = false, no_block = false;
    unsigned wait_s = 30;  // reload: how long to wait for the server's verdict
};

common::Site load(const ServeArgs& a) { return common::load_site(a.site, a.data_dir); }

// A service's status source, asked on the service's own thread (its state is that thread's alone).
constexpr std::chrono::seconds kAnswer{2};

common::StatusSource on_thread(common::StatusSource s, common::ServiceThread& t) {
    const std::string name = s.name;
    return {s.name, [m = std::move(s.metrics), &t] { return m ? t.try_call(m, kAnswer).value_or("") : std::string(); },
            [h = std::move(s.health), &t, name] {
                return t.try_call(h, kAnswer).value_or(common::Health{false, "no answer from the " + name + " thread within 2 s"});
            }};
}

int run(const ServeArgs& a) {
    auto log = common::log::get("serve");
    common::Site site;
    try {
        site = load(a);
    } catch (const common::SiteLoadError& e) {
        std::cerr << e.what() << "\n";
        return kExitInvalid;
    }
    apply_site_log_level(site, *log);
    log->info("site {}: {} networks, {} unikernels, data in {}", a.site, site.networks.size(), site.unikernels.size(),
              site.services.data_dir.string());
    const DataDirLock lock(site);
    if (!lock.ok()) return kExitFailure;
    if (auto w = common::loopback_uri_warning(site); !w.empty() && site.services.git.enabled && !a.no_git) log->warn("{}", w);

    common::Runtime rt;
    // Each service on its own thread (docs/architecture.md): a git walk or a journal sync never delays
    // another service. The status endpoint, reloads and the stop run on the main thread and reach a
    // service through its thread (ServiceThread::call).
    struct Slot {
        explicit Slot(std::string name) : thread(std::move(name)) {}
        common::ServiceThread thread;
        std::unique_ptr<common::Service> service;
    };
    std::vector<std::unique_ptr<Slot>> slots;    // in start order; stopped in reverse
    std::unique_ptr<common::Reloader> reloader;  // made once the services run (config-reload reaches it later)
    dhcp::Service* dhcp_service = nullptr;       // the lease-driven routes connect these two
    blockcfg::SiteService* block = nullptr;
    gitconf::Service* git_service = nullptr;
    common::ServiceThread* dhcp_thread = nullptr;
    common::ServiceThread* block_thread = nullptr;
    // Constructs and starts one service on a thread of its own; false (after a one-line error) if it fails.
    auto launch = [&](std::string_view name, const std::function<std::unique_ptr<common::Service>(asio::io_context&)>& make) {
        auto slot = std::make_unique<Slot>(std::string(name));
        try {
            slot->service = make(slot->thread.io());
            slot->service->start();
        } catch (const std::exception& e) {
            print_error(std::string(name) + ": " + e.what());
            return false;
        }
        slots.push_back(std::move(slot));
        return true;
    };
    const bool any_device = std::any_of(site.unikernels.begin(), site.unikernels.end(), [](const auto& u) { return u.block.has_value(); });
    struct Entry {
        common::ServiceInfo info;
        bool enabled;
        const char* not_started;  // why an enabled service is not started, or nullptr
        std::function<std::unique_ptr<common::Service>(asio::io_context&)> make;
    };
    const Entry services[] = {
        {dhcp::service_info(), site.services.dhcp.enabled && !a.no_dhcp, nullptr,
         [&](asio::io_context& io) -> std::unique_ptr<common::Service> {
             dhcp::ServiceOptions o;
             o.server_port = site.services.dhcp.server_port;
             o.client_port = site.services.dhcp.client_port;
             o.site_file = std::filesystem::absolute(a.site);
             auto d = std::make_unique<dhcp::Service>(io, site, o, common::log::get("dhcp"));
             // config-reload: the transaction runs on the main thread, its verdict goes back to the DHCP thread.
             d->set_reload_hook([&rt, &io, &reloader](dhcp::Service::ReloadDone done) {
                 asio::post(rt.io(), [&io, &reloader, done = std::move(done)] {
                     auto v = reloader->reload("config-reload");
                     asio::post(io, [done, v] { done(v); });
                 });
             });
             dhcp_service = d.get();
             return d;
         }},
        {gitconf::service_info(), site.services.git.enabled && !a.no_git, nullptr,
         [&](asio::io_context& io) -> std::unique_ptr<common::Service> {
             auto g = std::make_unique<gitconf::Service>(io, site, gitconf::ServiceOptions{}, common::log::get("git"));
             git_service = g.get();
             return g;
         }},
        {blockcfg::service_info(), site.services.block.enabled && !a.no_block,
         any_device ? nullptr : "no unikernel in the site file has a block device; not started",
         [&](asio::io_context& io) -> std::unique_ptr<common::Service> {
             auto b = std::make_unique<blockcfg::SiteService>(io, site, common::log::get("block"));
             block = b.get();
             return b;
         }},
    };
    int running = 0;
    for (const auto& s : services) {
        if (!s.enabled) log->info("{}: disabled", s.info.name);
        else if (!s.info.available) log->warn("{}: {}", s.info.name, s.info.summary);
        else if (s.not_started) log->info("{}: {}", s.info.name, s.not_started);
        else if (!launch(s.info.name, s.make)) return kExitFailure;
        else ++running;
    }
    for (const auto& slot : slots) {
        if (slot->service.get() == dhcp_service) dhcp_thread = &slot->thread;
        if (slot->service.get() == block) block_thread = &slot->thread;
    }

    // Lease-driven routes: DHCP bindings become proxy routes (services.dhcp.routes).
    std::unique_ptr<blockcfg::RouteSync> route_sync;
    std::unique_ptr<blockcfg::LeaseRouter> router;
    std::optional<asio::steady_timer> sweep_timer;  // the router lives on the DHCP thread, with the leases
    std::function<void()> sweep;
    std::function<void()> take_duty;  // the duty taken (at start or later): everything reconciled
    bool shared_leases = false;       // leases in PostgreSQL: routes follow the duty (the advisory lock)
    bool had_duty = false;
    blockcfg::ConfigService* observed = nullptr;  // the proxy device whose rollbacks the router watches
    if (dhcp_service && site.services.dhcp.routes) {
        try {
            auto target = blockcfg::make_route_target(*site.services.dhcp.routes,
                                                      [&](const std::string& name) { return block ? block->device(name) : nullptr; });
            route_sync = std::make_unique<blockcfg::RouteSync>(std::move(target), common::log::get("routes"));
            router = std::make_unique<blockcfg::LeaseRouter>(site, *route_sync, site.services.data_dir / "routes.json",
                                                             common::log::get("routes"));
        } catch (const std::exception& e) {
            print_error("routes: " + std::string(e.what()));
            return kExitFailure;
        }
        // Bindings made while the process was down are routed now (setting an existing route changes nothing),
        // and routes owned before whose lease or reason went meanwhile are removed.
        shared_leases = site.services.dhcp.leases.type == common::LeaseDatabase::Type::postgresql;
        had_duty = dhcp_service->has_duty();
        take_duty = [&] {
            if (shared_leases) router->take_over(active_leases(*dhcp_service), unix_now());
            else router->start(active_leases(*dhcp_service), unix_now());
        };
        if (had_duty) take_duty();
        // A rollback on this process's proxy device that takes lease-owned routes away: the operator is
        // told (the reply's warnings, the log) and the routes are set again, since they follow the leases.
        if (site.services.dhcp.routes->kind == common::LeaseRoutes::Kind::local && block)
            if ((observed = block->device(site.services.dhcp.routes->device)))
                observed->set_observer([&r = *router, &io = dhcp_thread->io()](const blockcfg::ChangeRequest& req,
                                                                               const blockcfg::Config& now,
                                                                               std::uint64_t generation) -> std::vector<std::string> {
                    if (!req.rollback_to) return {};
                    const auto gone = blockcfg::LeaseRouter::missing(*r.owned(), now);
                    if (gone.empty()) return {};
                    std::string hosts;
                    for (const auto& h : gone) hosts += (hosts.empty() ? "" : ", ") + h;
                    const auto why = "rollback to generation " + std::to_string(*req.rollback_to);
                    asio::post(io, [&r, why] { r.restore("after " + why); });
                    return {why + " (now generation " + std::to_string(generation) + ") changed lease-owned route(s) " + hosts +
                            ": the lease router sets them again (they follow the DHCP leases, not the rollback)"};
                });
        // With leases shared in PostgreSQL, one server of the site holds the duty (the database's advisory
        // lock): it alone changes routes, for its own bindings at once and for the others' at the next sweep.
        // The duty taken over: everything reconciled, as at start, and stale routes of site hosts removed.
        dhcp_service->set_lease_hook([&](const dhcp::LeaseEvent& e) {
            if (!dhcp_service->has_duty()) return;
            if (e.kind == dhcp::LeaseEvent::Kind::bound) router->bound(facts(e.lease));
            else router->released(facts(e.lease), dhcp::why_released(e));
        });
        sweep_timer.emplace(dhcp_thread->io());
        sweep = [&] {
            sweep_timer->expires_after(std::chrono::seconds(shared_leases ? 1 : 5));
            sweep_timer->async_wait([&](std::error_code ec) {
                if (ec) return;
                const bool duty = dhcp_service->has_duty();
                if (duty && !had_duty) take_duty();
                else if (duty && shared_leases) router->follow(active_leases(*dhcp_service), unix_now());
                else if (duty) router->sweep(active_leases(*dhcp_service), unix_now());
                had_duty = duty;
                sweep();
            });
        };
        sweep();
    }
    // One operator endpoint for all of them: GET /health and GET /metrics (services.status), each service
    // asked on its own thread, with an answer within 2 s or a failing health line that says so.
    common::StatusRegistry status;
    for (const auto& slot : slots) status.add(on_thread(slot->service->status_source(), slot->thread));
    if (route_sync) status.add(on_thread(route_sync->status_source(), *dhcp_thread));
    std::unique_ptr<common::StatusServer> status_server;
    if (site.services.status && !status.empty()) {
        try {
            status_server = std::make_unique<common::StatusServer>(rt.io(), *site.services.status, status, common::log::get("status"),
                                                                   site.services.limits_for("status"));
            status_server->start();
        } catch (const std::exception& e) {
            print_error(std::string(e.what()));
            return kExitFailure;
        }
    }
    // The operator console (services.console): on the main thread, with the status endpoint and reloads; it
    // reaches each service through its thread (cli/console_backend.cpp).
    auto console_parts = std::make_shared<ConsoleParts>();
    std::unique_ptr<console::ConsoleServer> console_server;
    if (site.services.console.enabled) {
        const auto& c = site.services.console;
        *console_parts = {std::make_shared<const common::Site>(site), dhcp_service, dhcp_thread, git_service, block, block_thread};
        console::Options o;
        o.listen = c.listen;
        o.tls_cert = c.tls_cert;
        o.tls_key = c.tls_key;
        o.password_file = c.password_file;
        o.audit_file = site.services.data_dir / "console" / "audit.jsonl";
        o.limits = site.services.limits_for("console");
        try {
            common::ensure_directory(o.audit_file.parent_path(), 0750);
            console_server =
                std::make_unique<console::ConsoleServer>(rt.io(), o, make_console_backend(console_parts), common::log::get("console"));
            console_server->start();
        } catch (const std::exception& e) {
            print_error("console: " + std::string(e.what()));
            return kExitFailure;
        }
        status.add({"console", [&console_server] { return console_server->metrics(); },
                    [&console_server] {
                        return common::Health{true, "listening on port " + std::to_string(console_server->port())};
                    }});
    }
    // What runs, as a reload compares it: a listener configured with port 0 runs on the port the system
    // chose, and a site file that names that port changes nothing.
    common::Site running_site = site;
    auto pin = [](std::optional<common::Endpoint>& e, std::optional<common::Endpoint> bound) {
        if (e && e->port == 0 && bound) e = bound;
    };
    if (git_service) {
        auto& g = running_site.services.git;
        pin(g.http, git_service->http_endpoint());
        pin(g.https, git_service->https_endpoint());
        pin(g.git, git_service->git_endpoint());
        pin(g.ssh, git_service->ssh_endpoint());
    }
    if (block && running_site.services.block.listen.port == 0) running_site.services.block.listen.port = block->port();
    if (status_server) pin(running_site.services.status, common::Endpoint{site.services.status->host, status_server->port()});
    if (console_server && running_site.services.console.listen.port == 0)
        running_site.services.console.listen.port = console_server->port();
    if (dhcp_service && running_site.services.dhcp.server_port == 0) running_site.services.dhcp.server_port = dhcp_service->local_port();
    for (const auto& slot : slots) slot->thread.start();
    log->info("{} service(s) running, each on its own thread; SIGHUP reloads {}, SIGINT/SIGTERM stops", running, a.site);

    // A reload is a transaction (common::Reloader): keys that need a restart refuse it, a service that
    // refuses the new site puts the others back; the verdict goes to the log, <data_dir>/reload.json
    // (`fleetconf reload` waits for it), config-reload's answer, /health and /metrics ("config").
    common::Running running_services;
    for (const auto& slot : slots) {
        const auto name = slot->thread.name();
        if (name == "dhcp") running_services.dhcp = true;
        if (name == "git") running_services.git = true;
        if (name == "block") running_services.block = true;
    }
    reloader = std::make_unique<common::Reloader>(a.site, a.data_dir, running_site, running_services, log);
    for (const auto& slot : slots)
        reloader->add(slot->thread.name(),
                      [&t = slot->thread, &svc = *slot->service](const common::Site& s) { t.call([&] { svc.reload(s); }); });
    if (router)
        reloader->on_applied(
            [&](const common::Site& s) { dhcp_thread->call([&] { router->set_site(s, active_leases(*dhcp_service), unix_now()); }); });
    reloader->on_applied([&](const common::Site& s) {
        if (auto w = common::loopback_uri_warning(s); !w.empty()) log->warn("{}", w);
        if (console_server) console_parts->site = std::make_shared<const common::Site>(s);
    });
    status.add(reloader->status_source());
    rt.on_reload([&] {
        common::notify_systemd("RELOADING=1");
        const auto v = reloader->reload("SIGHUP");
        common::notify_systemd("READY=1\nSTATUS=reload #" + std::to_string(v.seq) + " " + v.message.substr(0, 200));
    });
    rt.on_stop([&] {
        common::notify_systemd("STOPPING=1");
        log->info("stopping");
        if (status_server) status_server->stop();
        if (console_server) console_server->stop();
        if (dhcp_service)
            dhcp_thread->call([&] {
                if (sweep_timer) sweep_timer->cancel();
                dhcp_service->set_lease_hook({});
            });
        if (observed) observed->set_observer({});
        if (route_sync) route_sync->wait_idle(std::chrono::seconds(3));
        for (auto it = slots.rbegin(); it != slots.rend(); ++it) (*it)->thread.call([&] { (*it)->service->stop(); });
    });
    // systemd (Type=notify): ready once every socket is bound.
    common::notify_systemd("READY=1\nSTATUS=" + std::to_string(running) + " service(s) running");
    bool clean = rt.run();
    // The services were told to stop; each thread gets the same grace to finish what it was doing.
    for (const auto& slot : slots) clean = slot->thread.finish(std::chrono::seconds(5)) && clean;
    log->info("stopped{}", clean ? "" : " (forced)");
    return clean ? kExitOk : kExitFailure;
}

}  // namespace

namespace {

int reload(const ServeArgs& a) {
    common::Site site;
    try {
        site = load(a);
    } catch (const common::SiteLoadError& e) {
        std::cerr << e.what() << "\n";
        print_error("nothing sent: fix the site file first (the running server would refuse it and keep its configuration)");
        return kExitInvalid;
    }
    const auto file = pid_file(site);
    const auto pid = common::locked_pid(file);
    if (!pid) {
        print_error("no fleetconf server runs with data directory " + site.services.data_dir.string() + " (" + file.string() +
                    " is not held)");
        return kExitFailure;
    }
    const auto verdict_file = common::reload_verdict_file(site);
    const auto before = common::read_reload_verdict(verdict_file);
    auto is_new = [&](const std::optional<common::ReloadVerdict>& v) {
        return v && v->pid == static_cast<std::uint64_t>(*pid) &&
               (!before || before->pid != static_cast<std::uint64_t>(*pid) || v->seq > before->seq);
    };
    if (::kill(static_cast<pid_t>(*pid), SIGHUP) != 0) {
        print_error("cannot signal pid " + std::to_string(*pid) + ": " + std::strerror(errno));
        return kExitFailure;
    }
    // The server records its verdict in <data_dir>/reload.json; wait for the one this signal asked for.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(a.wait_s);
    std::optional<common::ReloadVerdict> v;
    while (!is_new(v = common::read_reload_verdict(verdict_file))) {
        if (std::chrono::steady_clock::now() >= deadline) {
            print_error("reload sent to pid " + std::to_string(*pid) + " but no verdict in " + verdict_file.string() + " within " +
                        std::to_string(a.wait_s) + " s; see the server's log");
            return kExitFailure;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (!v->applied) {
        print_error("pid " + std::to_string(*pid) + " " + v->message);
        return kExitFailure;
    }
    std::cout << "pid " << *pid << " reloaded " << a.site << " (reload #" << v->seq << "): " << v->message.substr(v->message.find(": ") + 2)
              << "; sha256 " << v->running_digest << "\n";
    return kExitOk;
}

}  // namespace

void add_serve_command(CLI::App& app, Action& action) {
    auto a = std::make_shared<ServeArgs>();
    auto* c = app.add_subcommand("serve",
                                 "Run the services of a site file in the foreground until SIGINT/SIGTERM; "
                                 "SIGHUP reloads the site file");
    c->add_option("SITE", a->site, "Site file")->required()->check(CLI::ExistingFile);
    add_data_dir_option(c, a->data_dir);
    c->add_flag("--no-dhcp", a->no_dhcp, "Do not start the DHCP server");
    c->add_flag("--no-git", a->no_git, "Do not start the git host");
    c->add_flag("--no-block", a->no_block, "Do not start the block-config editor");
    c->callback([&action, a] { action = [a] { return run(*a); }; });

    auto r = std::make_shared<ServeArgs>();
    auto* rc = app.add_subcommand("reload",
                                  "Check a site file, make the running server of its data directory reload it (SIGHUP) "
                                  "and print its verdict: exit 0 when applied, 1 when the server refused it (keys that "
                                  "need a restart, an interface it cannot bind...), 2 without signalling when the file "
                                  "is invalid");
    rc->add_option("SITE", r->site, "Site file")->required()->check(CLI::ExistingFile);
    rc->add_option("--wait", r->wait_s, "Seconds to wait for the server's verdict")->default_val(30)->check(CLI::Range(1, 3600));
    add_data_dir_option(rc, r->data_dir);
    rc->callback([&action, r] { action = [r] { return reload(*r); }; });
}

}  // namespace fleetconf::cli
