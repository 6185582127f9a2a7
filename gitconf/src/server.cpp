// The gitconf service: repositories on disk, the pack cache, listeners and the git:// front end.
#include "conversation.hpp"
#include "host.hpp"

#include "fleetconf/gitconf/daemon_request.hpp"

#include "fleetconf/common/crypto.hpp"
#include "fleetconf/common/files.hpp"
#include "fleetconf/gitconf/pktline.hpp"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/ip/v6_only.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/post.hpp>
#include <asio/read.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <nlohmann/json.hpp>

#include <set>
#include <sstream>
#include <thread>

namespace fleetconf::gitconf {

namespace {
constexpr auto use_tuple = asio::experimental::as_tuple(asio::use_awaitable);

// git's client writes its wants and its "done" as separate small segments without TCP_NODELAY, so
// Nagle holds the second until the first is acknowledged; acknowledging at once instead of after
// the delayed-ACK timer (40 ms on Linux) takes that wait out of every git:// fetch.
void quick_ack(tcp::socket& s) {
    int one = 1;
    ::setsockopt(s.native_handle(), IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
}

bool path_is_symlink(const std::filesystem::path& p) {
    struct stat st {};
    return ::lstat(p.c_str(), &st) == 0 && S_ISLNK(st.st_mode);
}
}  // namespace

common::ServiceInfo service_info() {
    return {"git", true, "git smart-protocol host: one repository and one credential per unikernel (HTTP(S), git://)"};
}

// ---- locations ----------------------------------------------------------------------------------

std::filesystem::path git_root(const common::Site& site) { return site.services.data_dir / "git"; }
std::filesystem::path repo_dir(const common::Site& site, std::string_view name) {
    return git_root(site) / "repos" / (std::string(name) + ".git");
}
std::filesystem::path token_file(const common::Site& site) { return git_root(site) / "tokens.json"; }
std::filesystem::path tls_cert_file(const common::Site& site) {
    return site.services.git.tls_cert.empty() ? git_root(site) / "tls" / "cert.pem" : site.services.git.tls_cert;
}
std::filesystem::path tls_key_file(const common::Site& site) {
    return site.services.git.tls_key.empty() ? git_root(site) / "tls" / "key.pem" : site.services.git.tls_key;
}

std::vector<const common::Unikernel*> repo_unikernels(const common::Site& site) {
    std::vector<const common::Unikernel*> out;
    for (const auto& u : site.unikernels)
        if (u.git.enabled) out.push_back(&u);
    return out;
}

std::vector<std::string> ensure_repositories(const common::Site& site, spdlog::logger* log) {
    std::vector<std::string> created;
    const auto repos = git_root(site) / "repos";
    common::ensure_directory(git_root(site));
    if (path_is_symlink(repos)) throw std::runtime_error(repos.string() + " is a symbolic link; refusing to serve through it");
    common::ensure_directory(repos);
    for (const auto* u : repo_unikernels(site)) {
        const auto dir = repo_dir(site, u->name);
        std::error_code ec;
        if (path_is_symlink(dir)) throw std::runtime_error(dir.string() + " is a symbolic link; refusing to serve through it");
        if (std::filesystem::exists(dir, ec)) {
            if (!std::filesystem::is_directory(dir, ec)) throw std::runtime_error(dir.string() + " exists and is not a directory");
            continue;
        }
        Repository::create(dir, u->git.branch, true, site.services.git.template_dir);
        created.push_back(u->name);
        if (log) log->info("created repository {} (branch {})", dir.string(), u->git.branch);
    }
    return created;
}

std::vector<std::string> archive_removed_repositories(const common::Site& site, spdlog::logger* log,
                                                      std::chrono::system_clock::time_point now) {
    std::vector<std::string> archived;
    const auto repos = git_root(site) / "repos";
    std::error_code ec;
    if (!std::filesystem::is_directory(repos, ec)) return archived;
    std::set<std::string> wanted;
    for (const auto* u : repo_unikernels(site)) wanted.insert(u->name + ".git");
    const std::time_t t = std::chrono::system_clock::to_time_t(now);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char stamp[32];
    std::strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
    for (const auto& e : std::filesystem::directory_iterator(repos, ec)) {
        const std::string name = e.path().filename().string();
        if (wanted.contains(name) || name.size() <= 4 || name.substr(name.size() - 4) != ".git" || path_is_symlink(e.path()) ||
            !e.is_directory(ec))
            continue;
        const auto archive = git_root(site) / "archive";
        common::ensure_directory(archive, 0750);
        auto dest = archive / (name.substr(0, name.size() - 4) + "-" + stamp + ".git");
        for (int n = 2; std::filesystem::exists(dest, ec); ++n)
            dest = archive / (name.substr(0, name.size() - 4) + "-" + stamp + "-" + std::to_string(n) + ".git");
        std::filesystem::rename(e.path(), dest, ec);
        if (ec) {
            if (log) log->error("cannot archive {}: {}", e.path().string(), ec.message());
            continue;
        }
        archived.push_back(name.substr(0, name.size() - 4));
        if (log) log->info("repository {} archived to {} (its unikernel left the site)", e.path().string(), dest.string());
    }
    return archived;
}

// ---- TLS ------------------------------------------------------------------------------------------

namespace {
template <typename T, void (*F)(T*)>
struct Free {
    void operator()(T* p) const { F(p); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, Free<EVP_PKEY, EVP_PKEY_free>>;
using X509Ptr = std::unique_ptr<X509, Free<X509, X509_free>>;
using BioPtr = std::unique_ptr<BIO, Free<BIO, BIO_free_all>>;

std::string bio_string(BIO* b) {
    char* data = nullptr;
    const long n = BIO_get_mem_data(b, &data);
    return std::string(data, static_cast<std::size_t>(n));
}
[[noreturn]] void ssl_fail(const std::string& what) { throw std::runtime_error(what + ": OpenSSL error"); }
}  // namespace

void ensure_tls_pair(const common::Site& site, spdlog::logger* log) {
    if (!site.services.git.tls_cert.empty()) return;  // the operator's own pair
    const auto cert = tls_cert_file(site), key = tls_key_file(site);
    std::error_code ec;
    if (std::filesystem::exists(cert, ec) && std::filesystem::exists(key, ec)) return;
    common::ensure_directory(cert.parent_path(), 0700);
    PkeyPtr pkey(EVP_EC_gen("P-256"));
    if (!pkey) ssl_fail("generate key");
    X509Ptr x(X509_new());
    X509_set_version(x.get(), 2);
    std::unique_ptr<BIGNUM, Free<BIGNUM, BN_free>> serial(BN_new());
    BN_rand(serial.get(), 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY);
    BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(x.get()));
    X509_gmtime_adj(X509_getm_notBefore(x.get()), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x.get()), 60L * 60 * 24 * 3650);
    X509_set_pubkey(x.get(), pkey.get());
    const std::string host = site.services.git.public_host.empty() ? "localhost" : site.services.git.public_host;
    X509_NAME* name = X509_get_subject_name(x.get());
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(host.c_str()), -1, -1, 0);
    X509_set_issuer_name(x.get(), name);
    const std::string san = (common::parse_ip(host) ? "IP:" : "DNS:") + host;
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, x.get(), x.get(), nullptr, nullptr, 0);
    if (X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, NID_subject_alt_name, san.c_str())) {
        X509_add_ext(x.get(), ext, -1);
        X509_EXTENSION_free(ext);
    }
    if (!X509_sign(x.get(), pkey.get(), EVP_sha256())) ssl_fail("sign certificate");
    BioPtr kb(BIO_new(BIO_s_mem())), cb(BIO_new(BIO_s_mem()));
    if (!PEM_write_bio_PrivateKey(kb.get(), pkey.get(), nullptr, nullptr, 0, nullptr, nullptr)) ssl_fail("write key");
    if (!PEM_write_bio_X509(cb.get(), x.get())) ssl_fail("write certificate");
    const auto k = bio_string(kb.get()), c = bio_string(cb.get());
    common::write_file_atomic(key, common::as_bytes(k), 0600);
    common::write_file_atomic(cert, common::as_bytes(c), 0644);
    if (log) log->info("generated a self-signed TLS certificate for {} in {}", host, cert.string());
}

std::string tls_key_fingerprint(const std::filesystem::path& cert_pem) {
    std::string text;
    if (auto err = common::read_file_limited(cert_pem, 1 << 20, text)) throw std::runtime_error(*err);
    BioPtr b(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
    X509Ptr x(PEM_read_bio_X509(b.get(), nullptr, nullptr, nullptr));
    if (!x) throw std::runtime_error(cert_pem.string() + ": not a PEM certificate");
    unsigned char* der = nullptr;
    const int n = i2d_PUBKEY(X509_get0_pubkey(x.get()), &der);
    if (n <= 0) throw std::runtime_error(cert_pem.string() + ": cannot encode its public key");
    const auto digest = common::sha256(std::span<const std::uint8_t>(der, static_cast<std::size_t>(n)));
    OPENSSL_free(der);
    return "key-fp:SHA256:" + common::base64_encode(digest);
}

// ---- the pack cache --------------------------------------------------------------------------------

std::shared_ptr<const PackResult> PackCache::get_or_build(const std::string& key, const std::function<PackResult()>& build, bool& hit) {
    std::unique_lock lock(m_);
    if (auto it = entries_.find(key); it != entries_.end()) {
        lru_.splice(lru_.begin(), lru_, it->second.lru);
        ++hits_;
        hit = true;
        return it->second.pack;
    }
    if (auto it = building_.find(key); it != building_.end()) {
        auto f = it->second;
        lock.unlock();
        ++hits_;
        hit = true;
        return f.get();  // the builder is already running on another pool thread
    }
    std::promise<std::shared_ptr<const PackResult>> promise;
    building_.emplace(key, promise.get_future().share());
    lock.unlock();
    ++misses_;
    hit = false;
    std::shared_ptr<const PackResult> result;
    try {
        result = std::make_shared<const PackResult>(build());
    } catch (...) {
        lock.lock();
        building_.erase(key);
        lock.unlock();
        promise.set_exception(std::current_exception());
        throw;
    }
    lock.lock();
    building_.erase(key);
    const auto size = result->data.size() + key.size();
    if (limit_ > 0 && size <= limit_ / 4) {
        lru_.push_front(key);
        entries_.emplace(key, Entry{result, lru_.begin()});
        bytes_ += size;
        while (bytes_ > limit_ && !lru_.empty()) {
            auto victim = entries_.find(lru_.back());
            bytes_ -= victim->second.pack->data.size() + victim->first.size();
            entries_.erase(victim);
            lru_.pop_back();
        }
    }
    lock.unlock();
    promise.set_value(result);
    return result;
}

std::size_t PackCache::bytes() const {
    std::lock_guard lock(m_);
    return bytes_;
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

PushLimits push_limits_for(const common::Site& site) {
    const auto& g = site.services.git;
    PushLimits l;
    l.max_pack = std::size_t{g.max_pack_mb} << 20;
    l.max_object = std::size_t{g.max_object_mb} << 20;
    l.max_repo = std::uint64_t{g.max_repo_mb} << 20;
    return l;
}

PushPolicy push_policy_for(const common::Site& site, const std::string& repo) {
    PushPolicy p;
    if (const auto* u = site.unikernel(repo)) {
        p.config_branch = "refs/heads/" + u->git.branch;
        p.allow_non_fast_forward = u->git.allow_non_fast_forward;
        p.allow_delete = u->git.allow_delete;
        p.allow_symlinks = u->git.allow_symlinks;
        p.validator.argv = u->git.validator;
        p.validator.timeout = std::chrono::seconds(site.services.git.validator_timeout_s);
        p.validator.scratch = git_root(site) / "tmp";
        p.validator.env = {{"FLEETCONF_REPOSITORY", repo}};
    }
    return p;
}

asio::awaitable<PushResult> Service::Impl::push(const common::Site& at, const std::string& repo, const ReceivePack& rp) {
    auto* self = this;
    const auto dir = repo_dir(at, repo);
    const auto policy = push_policy_for(at, repo);
    const auto limits = push_limits_for(at);
    co_return co_await offload([&] {
        std::lock_guard lock(self->push_lock(repo));
        PushResult r;
        try {
            auto repository = Repository::open(dir);
            r = apply_push(repository, rp.commands(), rp.pack(), rp.atomic(), policy, limits);
        } catch (const std::exception& e) {
            r.unpack_error = e.what();
            r.commands = rp.commands();
            for (auto& c : r.commands) c.error = "server error";
        }
        return r;
    });
}

asio::awaitable<void> Service::Impl::audit_push(const common::Site& at, const std::string& repo, const std::string& transport,
                                                const std::string& peer, const std::string& who, const PushResult& r) {
    nlohmann::json refs = nlohmann::json::array();
    std::size_t ok = 0;
    for (const auto& c : r.commands) {
        refs.push_back({{"ref", c.name},
                        {"old", c.old_id.hex()},
                        {"new", c.new_id.hex()},
                        {"status", c.error.empty() ? "ok" : "ng"},
                        {"reason", c.error}});
        if (c.error.empty()) ++ok;
    }
    const char* result = r.all_ok() ? "accepted" : ok ? "partial" : "rejected";
    const auto now = std::chrono::system_clock::now();
    const nlohmann::json line{{"time", std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count()},
                              {"repository", repo},
                              {"transport", transport},
                              {"peer", peer},
                              {"credential", who},
                              {"result", result},
                              {"unpack", r.unpack_error.empty() ? "ok" : r.unpack_error},
                              {"refs", refs},
                              {"paths", r.paths}};
    const auto dir = git_root(at) / "audit";
    const std::string text = line.dump() + "\n";
    std::string error;
    co_await offload([&] {
        try {
            common::ensure_directory(dir);
            const auto file = dir / (repo + ".jsonl");
            const int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
            if (fd < 0) throw std::runtime_error(file.string() + ": " + std::strerror(errno));
            const bool written = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && ::fdatasync(fd) == 0;
            ::close(fd);
            if (!written) throw std::runtime_error(file.string() + ": write failed");
        } catch (const std::exception& e) {
            error = e.what();
        }
    });
    if (!error.empty()) log->error("audit log for {}: {}", repo, error);
    if (io.get_executor().running_in_this_thread()) {
        announce_push(repo, transport, peer, who, r);
    } else {
        asio::post(io, [self = shared_from_this(), repo, transport, peer, who, r] { self->announce_push(repo, transport, peer, who, r); });
    }
}

void Service::Impl::announce_push(const std::string& repo, const std::string& transport, const std::string& peer, const std::string& who,
                                  const PushResult& r) {
    std::size_t ok = 0;
    for (const auto& c : r.commands) ok += c.error.empty();
    const char* result = r.all_ok() ? "accepted" : ok ? "partial" : "rejected";
    (r.all_ok() ? pushes_accepted : pushes_rejected)++;
    std::string summary;
    for (const auto& c : r.commands)
        summary += " " + c.name + " " + c.old_id.hex().substr(0, 12) + ".." + c.new_id.hex().substr(0, 12) +
                   (c.error.empty() ? " ok" : " REFUSED (" + c.error + ")");
    const auto policy = push_policy_for(site, repo);
    for (const auto& c : r.commands)
        if (c.error.empty() && c.name == policy.config_branch && !c.is_delete()) notify(repo, c, who);
    if (r.all_ok())
        log->info("push {} {} credential {} repo {}:{} ({} path(s) changed)", transport, peer, who, repo, summary, r.paths.size());
    else
        log->warn("push {} {} credential {} repo {} {}:{}{}", transport, peer, who, repo, result, summary,
                  r.unpack_error.empty() ? "" : " unpack: " + r.unpack_error);
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

// git:// (gitprotocol-pack "Git Transport"): one request line, then the upload-pack conversation.
namespace {
// The conversation's channel on a git:// connection: the socket and the session's phase deadline.
class DaemonChannel final : public Channel {
public:
    DaemonChannel(tcp::socket& s, Deadline& d, Service::Impl::Counter& sent) : sock_(s), deadline_(d), sent_(sent) {}
    asio::awaitable<bool> read(std::string& in) override {
        auto [ec, n] = co_await sock_.async_read_some(asio::buffer(buf_), use_tuple);
        if (ec) co_return false;
        in.append(buf_.data(), n);
        quick_ack(sock_);
        co_return true;
    }
    asio::awaitable<bool> write(std::string_view out) override {
        auto [ec, n] = co_await asio::async_write(sock_, asio::buffer(out), use_tuple);
        sent_ += n;
        co_return !ec;
    }
    void phase(std::chrono::milliseconds limit, const char*) override {
        if (limit.count() == 0) deadline_.disarm();
        else deadline_.arm(limit);
    }
    [[nodiscard]] bool timed_out() const override { return deadline_.expired(); }
    [[nodiscard]] bool streaming() const override { return true; }

private:
    tcp::socket& sock_;
    Deadline& deadline_;
    Service::Impl::Counter& sent_;
    std::array<char, 16384> buf_{};
};
}  // namespace

asio::awaitable<void> Service::Impl::git_session(std::shared_ptr<tcp::socket> sock, common::AdmissionTicket ticket, std::string peer) {
    (void)ticket;  // holds the connection's slot until the session ends
    auto self = shared_from_this();
    auto close = [sock] {
        std::error_code ec;
        sock->shutdown(tcp::socket::shutdown_both, ec);
        sock->close(ec);
    };
    Deadline deadline(io.get_executor(), close);
    deadline.arm(opts.read_timeout);
    deadline.start();
    DaemonChannel ch(*sock, deadline, bytes_sent);

    // The request line: "git-upload-pack /NAME.git\0host=HOST\0" [ "\0version=2\0" ], within read_timeout.
    std::string in;
    pkt::Packet first;
    std::size_t used = 0;
    while (true) {
        const auto ec = pkt::parse(in, first, used);
        if (!ec) break;
        if (ec != pkt::errc::need_more) {
            log->info("git {}: bad request line ({})", peer, ec.message());
            ++protocol_errors;
            co_return;
        }
        if (!co_await ch.read(in)) {
            if (ch.timed_out()) ++timeouts;
            co_return;
        }
    }
    const auto req = parse_daemon_request(first.payload);  // before anything else: the payload points into `in`
    if (!req) {
        log->info("git {}: empty request line", peer);
        ++protocol_errors;
        co_return;
    }
    auto deny = [&](const std::string& why) -> asio::awaitable<void> {
        std::string out;
        pkt::write_line(out, "ERR " + why);
        co_await ch.write(out);
        close();
    };
    const bool push = req->command == "git-receive-pack";
    if (req->command != "git-upload-pack" && !push) {
        log->info("git {}: refused \"{}\" (unknown service)", peer, req->command.substr(0, 64));
        ++forbidden;
        co_await deny("unknown service");
        co_return;
    }
    const auto& path = req->path;
    const auto name = path.size() > 1 && path[0] == '/' ? repo_name(std::string_view(path).substr(1)) : std::nullopt;
    const auto verdict = authorize(Credential::anonymous(), name ? *name : std::string_view(), name ? access(*name) : RepoAccess{},
                                   push ? Operation::push : Operation::fetch);
    if (verdict == Verdict::forbidden) {
        log->info("git {}: refused a push (git:// is read-only)", peer);
        ++forbidden;
        co_await deny("pushing over git:// is not allowed; use HTTPS or SSH");
        co_return;
    }
    if (verdict != Verdict::allow) {
        // git daemon's words, for missing and unexported repositories alike.
        log->info("git {}: {} not exported", peer, path.substr(0, 128));
        ++not_found;
        co_await deny("access denied or repository not exported: " + path.substr(0, 128));
        co_return;
    }
    in.erase(0, used);
    const Conversation c{.mode = Conversation::Mode::session,
                         .transport = "git",
                         .peer = peer,
                         .who = Credential::anonymous(),
                         .repo = *name,
                         .version = req->v2 ? 2 : 0,
                         .min_rate = site.services.limits_for("git").min_rate,
                         .site = &site,
                         .early_input = std::move(in)};
    if (co_await upload_pack(*this, ch, c) == Ending::unavailable) co_await deny("repository unavailable");
    close();
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
    i.site = site;
    std::atomic_store(&i.site_snapshot, std::make_shared<const common::Site>(site));
    try {
        auto created = ensure_repositories(site, i.log.get());
        auto archived = archive_removed_repositories(site, i.log.get());
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
