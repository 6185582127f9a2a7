// The gitconf service: its state (credentials, access, the pool), its listeners and the refusals in each
// protocol's words, start/stop/reload, and metrics. The transports are daemon.cpp (git://), http.cpp
// and ssh.cpp; the conversation they share is conversation.cpp; provision.cpp, pack_cache.cpp and
// push.cpp hold the rest.
#include "host.hpp"

#include "fleetconf/gitconf/edit.hpp"

#include "fleetconf/common/files.hpp"
#include "fleetconf/gitconf/pktline.hpp"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>

#include <thread>

namespace fleetconf::gitconf {

common::ServiceInfo service_info() {
    return {"git", true, "git smart-protocol host: one repository and one credential per unikernel (HTTP(S), git://)"};
}

// ---- the service ---------------------------------------------------------------------------------

Service::Impl::Impl(asio::io_context& i, const common::Site& s, ServiceOptions o, std::shared_ptr<spdlog::logger> l)
    : io(i), site(s), opts(o), log(std::move(l)), pool(o.pack_threads), cache(std::size_t{s.services.git.pack_cache_mb} << 20) {
    if (opts.read_timeout.count() == 0) {
        opts.read_timeout = std::chrono::seconds(s.services.git.read_timeout_s);
        opts.idle_timeout = 2 * opts.read_timeout;
    }
}

void Service::Impl::refresh_tokens() {
    const auto file = token_file(site);
    const auto stamp = common::file_stamp(file);
    if (!stamp) {
        if (!tokens.records().empty()) log->warn("token file {} is gone: no HTTP credential is valid", file.string());
        tokens = TokenStore::load(file);  // empty
        tokens_stamp.reset();
        return;
    }
    if (stamp == tokens_stamp) return;
    tokens_stamp = stamp;
    try {
        tokens = TokenStore::load(file);
        log->info("loaded {} credential(s) from {}", tokens.records().size(), file.string());
    } catch (const std::exception& e) {
        log->error("{}; keeping the credentials loaded before", e.what());
    }
}

RepoAccess Service::Impl::access(std::string_view name) const {
    RepoAccess a;
    if (const auto* u = site.unikernel(std::string(name)); u && u->git.enabled) {
        a.exists = true;
        a.writable = u->git.writable;
        a.git_protocol = u->git.git_protocol;
    }
    return a;
}

std::optional<std::string> Service::Impl::repo_name(std::string_view seg) {
    if (seg.size() > 4 && seg.substr(seg.size() - 4) == ".git") seg.remove_suffix(4);
    if (!common::is_dns_label(seg)) return std::nullopt;
    return std::string(seg);
}

std::mutex& Service::Impl::push_lock(const std::string& repo) {
    std::lock_guard g(push_locks_mutex);
    auto& m = push_locks[repo];
    if (!m) m = std::make_unique<std::mutex>();
    return *m;
}

asio::awaitable<std::shared_ptr<const PackResult>> Service::Impl::pack(const std::string& repo_name, const Repository& repo,
                                                                       const PackJob& job, bool& hit) {
    const std::string key = repo_name + ":" + job.key;
    co_return co_await offload([&] {
        return cache.get_or_build(
            key,
            [&] {
                if (opts.before_pack_build) opts.before_pack_build(repo_name);
                return repo.build_pack(job.plan);
            },
            hit);
    });
}

void Service::Impl::record_fetch(const std::string& repo, const char* transport, const std::string& peer, const std::string& who) {
    const std::lock_guard lock(activity_mutex);
    auto& a = activity[repo];
    a.last_fetch = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    a.transport = transport;
    a.peer = peer;
    a.credential = who;
    ++a.fetches;
}

void Service::Impl::count_fetch(std::string_view transport) {
    if (transport == "git") ++fetches_git;
    else if (transport == "http") ++fetches_http;
    else if (transport == "https") ++fetches_https;
    else ++fetches_ssh;
}

void Service::Impl::open_listener(std::optional<common::TcpListener>& l, const char* name, const std::optional<common::Endpoint>& at,
                                  const char* what) {
    if (!at) return;
    l.emplace(io.get_executor(), name, site.services.limits_for(name), log);
    l->open(*at, what);
}

std::size_t Service::Impl::open_connections() const {
    std::size_t n = 0;
    for (const auto* l : {&git_listener, &http_listener, &https_listener, &ssh_listener})
        if (*l) n += (*l)->admission().stats().open;
    return n;
}

void Service::Impl::start_listener(common::TcpListener& l, int kind) {
    auto self = shared_from_this();
    auto serve = [self, kind](std::shared_ptr<tcp::socket> sock, common::AdmissionTicket ticket, std::string peer) {
        auto& i = *self;
        if (kind == 3) {
            // SSH: libssh drives the connection with blocking calls on a thread of its own; the ticket goes
            // with it (the login budget is left when the key is accepted).
            std::error_code ec;
            const int fd = sock->release(ec);
            if (ec) return;
            {
                std::lock_guard g(i.ssh_fds_mutex);
                i.ssh_fds.insert(fd);
            }
            std::thread([self, fd, peer, t = std::move(ticket)]() mutable {
                try {
                    self->run_ssh_session(fd, t, peer);
                } catch (const std::exception& e) {
                    self->log->error("ssh {}: session failed: {}", peer, e.what());
                }
                std::lock_guard g(self->ssh_fds_mutex);
                self->ssh_fds.erase(fd);
            }).detach();
            return;
        }
        auto report = common::log_exception(i.log, peer + ": session failed");
        if (kind == 0) asio::co_spawn(i.io, i.git_session(std::move(sock), std::move(ticket), peer), report);
        else asio::co_spawn(i.io, i.http_session(std::move(sock), std::move(ticket), peer, kind == 2), report);
    };
    // Refusals in each protocol's words: HTTP 503 with Retry-After, a git ERR line; SSH has no way to say
    // it before the key exchange, so the connection is closed.
    auto refuse = [kind](tcp::socket& s, common::Refusal why) {
        const std::string text = why == common::Refusal::address_full ? "too many connections from this address" : "too many connections";
        if (kind == 1) {
            common::refuse_with(
                s, common::http_response(503, "text/plain; charset=utf-8", "busy: " + text + "; try again later\n", "Retry-After: 5\r\n"));
        } else if (kind == 0) {
            std::string out;
            pkt::write_line(out, "ERR busy: " + text + "; try again later");
            common::refuse_with(s, out);
        }
    };
    l.start(std::move(serve), std::move(refuse));
}

Service::Service(asio::io_context& io, const common::Site& site, ServiceOptions opts, std::shared_ptr<spdlog::logger> log)
    : impl_(std::make_shared<Impl>(io, site, opts, std::move(log))) {}

Service::~Service() {
    if (impl_) {
        stop();
        impl_->pool.join();
    }
}

void Service::start() {
    auto& i = *impl_;
    ensure_repositories(i.site, i.log.get());
    archive_removed_repositories(i.site, i.log.get());
    try {
        revoke_orphan_tokens(i.site, "start", *i.log);
    } catch (const std::exception& e) {
        i.log->error("tokens: {}", e.what());
    }
    i.refresh_tokens();
    const auto& g = i.site.services.git;
    if (g.https) {
        ensure_tls_pair(i.site, i.log.get());
        i.tls.emplace(asio::ssl::context::tls_server);
        i.tls->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 | asio::ssl::context::no_sslv3 |
                           asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1 | asio::ssl::context::single_dh_use);
        try {
            i.tls->use_certificate_chain_file(tls_cert_file(i.site).string());
            i.tls->use_private_key_file(tls_key_file(i.site).string(), asio::ssl::context::pem);
        } catch (const std::system_error& e) {
            throw std::runtime_error("TLS certificate " + tls_cert_file(i.site).string() + " / key " + tls_key_file(i.site).string() +
                                     ": " + e.code().message());
        }
    }
    std::atomic_store(&i.site_snapshot, std::make_shared<const common::Site>(i.site));
    if (g.ssh) i.start_ssh();
    i.open_listener(i.git_listener, "git", g.git, "git://");
    i.open_listener(i.ssh_listener, "ssh", g.ssh, "SSH");
    i.open_listener(i.http_listener, "http", g.http, "HTTP");
    i.open_listener(i.https_listener, "https", g.https, "HTTPS");
    const auto n = repo_unikernels(i.site).size();
    i.log->info("serving {} repositor{} ({} credential(s))", n, n == 1 ? "y" : "ies", i.tokens.records().size());
    if (i.git_listener) i.start_listener(*i.git_listener, 0);
    if (i.http_listener) i.start_listener(*i.http_listener, 1);
    if (i.https_listener) i.start_listener(*i.https_listener, 2);
    if (i.ssh_listener) i.start_listener(*i.ssh_listener, 3);
}

void Service::stop() {
    auto& i = *impl_;
    if (i.stopped) return;
    i.stopped = true;
    for (auto* l : {&i.git_listener, &i.http_listener, &i.https_listener, &i.ssh_listener})
        if (*l) (*l)->stop();
    for (auto& w : i.notify_timers)  // pending notifications give up (their state file says where they were)
        if (auto t = w.lock()) t->cancel();
    {
        std::lock_guard g(i.ssh_fds_mutex);  // wake SSH sessions blocked in libssh
        for (int fd : i.ssh_fds) ::shutdown(fd, SHUT_RDWR);
    }
}

void Service::reload(const common::Site& site) {
    auto& i = *impl_;
    // New repositories first: when one cannot be made the reload is refused with nothing changed.
    const auto created = ensure_repositories(site, i.log.get());
    i.site = site;
    std::atomic_store(&i.site_snapshot, std::make_shared<const common::Site>(site));
    try {
        auto archived = archive_removed_repositories(site, i.log.get());
        revoke_orphan_tokens(site, "reload", *i.log);
        i.log->info("reloaded: {} repositories, {} new, {} archived", repo_unikernels(site).size(), created.size(), archived.size());
    } catch (const std::exception& e) {
        i.log->error("reload: {}", e.what());
    }
    i.tokens_stamp.reset();
    i.refresh_tokens();
}

namespace {
std::optional<common::Endpoint> bound(const std::optional<common::TcpListener>& l, const std::optional<common::Endpoint>& configured) {
    if (!l || !configured || !l->port()) return std::nullopt;
    return common::Endpoint{configured->host, l->port()};
}
}  // namespace

std::optional<common::Endpoint> Service::http_endpoint() const { return bound(impl_->http_listener, impl_->site.services.git.http); }
std::optional<common::Endpoint> Service::https_endpoint() const { return bound(impl_->https_listener, impl_->site.services.git.https); }
std::optional<common::Endpoint> Service::git_endpoint() const { return bound(impl_->git_listener, impl_->site.services.git.git); }
std::optional<common::Endpoint> Service::ssh_endpoint() const { return bound(impl_->ssh_listener, impl_->site.services.git.ssh); }

std::map<std::string, RepoActivity> Service::activity() const {
    const std::lock_guard lock(impl_->activity_mutex);
    return impl_->activity;
}

std::string Service::prometheus() const {
    const auto& i = *impl_;
    std::ostringstream o;
    auto counter = [&](const char* name, const char* help, std::uint64_t v, const std::string& labels = "") {
        o << "# HELP " << name << " " << help << "\n# TYPE " << name << " counter\n" << name << labels << " " << v << "\n";
    };
    o << "# HELP fleetconf_git_fetches_total Completed fetches (packs sent) by transport\n# TYPE fleetconf_git_fetches_total counter\n"
      << "fleetconf_git_fetches_total{transport=\"http\"} " << i.fetches_http << "\n"
      << "fleetconf_git_fetches_total{transport=\"https\"} " << i.fetches_https << "\n"
      << "fleetconf_git_fetches_total{transport=\"git\"} " << i.fetches_git << "\n"
      << "fleetconf_git_fetches_total{transport=\"ssh\"} " << i.fetches_ssh << "\n";
    counter("fleetconf_git_advertisements_total", "Reference advertisements and ls-refs answers", i.advertisements + i.ls_refs);
    o << "# HELP fleetconf_git_refused_total Refused requests by reason\n# TYPE fleetconf_git_refused_total counter\n"
      << "fleetconf_git_refused_total{reason=\"unauthorized\"} " << i.unauthorized << "\n"
      << "fleetconf_git_refused_total{reason=\"not_found\"} " << i.not_found << "\n"
      << "fleetconf_git_refused_total{reason=\"forbidden\"} " << i.forbidden << "\n"
      << "fleetconf_git_refused_total{reason=\"protocol\"} " << i.protocol_errors << "\n"
      << "fleetconf_git_refused_total{reason=\"timeout\"} " << i.timeouts << "\n";
    counter("fleetconf_git_sent_bytes_total", "Response bytes written", i.bytes_sent);
    o << "# HELP fleetconf_git_pushes_total Pushes by outcome\n# TYPE fleetconf_git_pushes_total counter\n"
      << "fleetconf_git_pushes_total{result=\"accepted\"} " << i.pushes_accepted << "\n"
      << "fleetconf_git_pushes_total{result=\"rejected\"} " << i.pushes_rejected << "\n";
    o << "# HELP fleetconf_git_notifications_total Hook and webhook delivery attempts by outcome (failed: the last attempt failed)\n"
         "# TYPE fleetconf_git_notifications_total counter\n"
      << "fleetconf_git_notifications_total{result=\"delivered\"} " << i.notify_delivered << "\n"
      << "fleetconf_git_notifications_total{result=\"retried\"} " << i.notify_retried << "\n"
      << "fleetconf_git_notifications_total{result=\"failed\"} " << i.notify_failed << "\n";
    counter("fleetconf_git_pack_cache_hits_total", "Packs served from the cache (or a concurrent build)", i.cache.hits());
    counter("fleetconf_git_pack_cache_misses_total", "Packs built", i.cache.misses());
    o << "# HELP fleetconf_git_pack_cache_bytes Bytes held by the pack cache\n# TYPE fleetconf_git_pack_cache_bytes gauge\n"
      << "fleetconf_git_pack_cache_bytes " << i.cache.bytes() << "\n";
    o << "# HELP fleetconf_git_connections Open connections\n# TYPE fleetconf_git_connections gauge\nfleetconf_git_connections "
      << i.open_connections() << "\n";
    std::string listeners;
    for (const auto* l : {&i.git_listener, &i.http_listener, &i.https_listener, &i.ssh_listener})
        if (*l) (*l)->metrics(listeners);
    o << listeners;
    return o.str();
}

common::Health Service::health() const {
    const auto& i = *impl_;
    if (i.stopped) return {false, "stopped"};
    std::string open, closed;
    auto check = [&](const char* what, const std::optional<common::TcpListener>& l, const std::optional<common::Endpoint>& configured) {
        if (!configured) return;
        auto& list = l && l->listening() ? open : closed;
        list += (list.empty() ? "" : ", ") + std::string(what) + " " + configured->to_string();
    };
    check("http", i.http_listener, i.site.services.git.http);
    check("https", i.https_listener, i.site.services.git.https);
    check("git", i.git_listener, i.site.services.git.git);
    check("ssh", i.ssh_listener, i.site.services.git.ssh);
    if (!closed.empty()) return {false, "not listening: " + closed};
    return {true, "listening on " + open + "; " + std::to_string(i.open_connections()) + " connections"};
}

common::StatusSource Service::status_source() const {
    return {"git", [this] { return prometheus(); }, [this] { return health(); }};
}

}  // namespace fleetconf::gitconf
