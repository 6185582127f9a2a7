// The SSH transport (libssh, server mode): public-key authentication only, one session per thread,
// exec requests for git-upload-pack and git-receive-pack only. The git conversation is the same
// sans-I/O core as git:// (stateful) with the bytes moved over the SSH channel.
#include "conversation.hpp"
#include "host.hpp"

#include "fleetconf/common/crypto.hpp"
#include "fleetconf/common/files.hpp"
#include "fleetconf/gitconf/pktline.hpp"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <libssh/libssh.h>
#include <libssh/server.h>
#include <openssl/evp.h>

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <thread>

namespace fleetconf::gitconf {

namespace {

struct KeyDeleter {
    void operator()(ssh_key k) const { ssh_key_free(k); }
};
using KeyPtr = std::unique_ptr<std::remove_pointer_t<ssh_key>, KeyDeleter>;

// The SSH wire-format public key blob of `key`.
std::string key_blob(ssh_key key) {
    char* b64 = nullptr;
    if (!key || ssh_pki_export_pubkey_base64(key, &b64) != SSH_OK) return {};
    auto raw = common::base64_decode(b64);
    ssh_string_free_char(b64);
    return raw ? std::string(raw->begin(), raw->end()) : std::string();
}

// "ssh-ed25519 AAAA... comment" -> blob; empty on a malformed line.
std::string blob_of_line(const std::string& line) {
    const auto sp = line.find(' ');
    if (sp == std::string::npos) return {};
    auto rest = line.substr(sp + 1);
    rest = rest.substr(0, rest.find(' '));
    while (!rest.empty() && (rest.back() == '\n' || rest.back() == '\r')) rest.pop_back();
    auto raw = common::base64_decode(rest);
    return raw ? std::string(raw->begin(), raw->end()) : std::string();
}

std::string b64(std::string_view s, bool padded) { return common::base64_encode(common::as_bytes(s), padded); }

void put_ssh_string(std::string& out, std::string_view s) {
    const auto n = static_cast<std::uint32_t>(s.size());
    out.push_back(static_cast<char>(n >> 24));
    out.push_back(static_cast<char>(n >> 16));
    out.push_back(static_cast<char>(n >> 8));
    out.push_back(static_cast<char>(n));
    out.append(s);
}
}  // namespace

std::filesystem::path ssh_host_key_file(const common::Site& site) { return git_root(site) / "ssh" / "host_ed25519"; }
std::filesystem::path ssh_user_key_file(const common::Site& site, std::string_view name) {
    return git_root(site) / "ssh" / (std::string(name) + ".pub");
}

void ensure_ssh_host_key(const common::Site& site, spdlog::logger* log) {
    const auto file = ssh_host_key_file(site);
    std::error_code ec;
    if (std::filesystem::exists(file, ec)) return;
    common::ensure_directory(file.parent_path(), 0700);
    ssh_key key = nullptr;
    if (ssh_pki_generate(SSH_KEYTYPE_ED25519, 0, &key) != SSH_OK) throw std::runtime_error("cannot generate the SSH host key");
    KeyPtr k(key);
    const auto tmp = file.string() + ".tmp";
    const auto old = ::umask(077);
    const int rc = ssh_pki_export_privkey_file(k.get(), nullptr, nullptr, nullptr, tmp.c_str());
    ::umask(old);
    if (rc != SSH_OK) throw std::runtime_error("cannot write the SSH host key " + tmp);
    std::filesystem::rename(tmp, file);
    if (log) log->info("generated the SSH host key {} ({})", file.string(), ssh_host_authenticator(site));
}

std::string ssh_host_authenticator(const common::Site& site) {
    ssh_key key = nullptr;
    if (ssh_pki_import_privkey_file(ssh_host_key_file(site).c_str(), nullptr, nullptr, nullptr, &key) != SSH_OK)
        throw std::runtime_error(ssh_host_key_file(site).string() + ": cannot read the SSH host key");
    KeyPtr k(key);
    const auto digest = common::sha256(key_blob(k.get()));
    return "ed25519:" + common::base64_encode(digest, false);
}

SshKeyPair ssh_keygen(const common::Site& site, const std::string& name) {
    EVP_PKEY* pkey = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
    if (!pkey) throw std::runtime_error("cannot generate an ed25519 key");
    unsigned char seed[32], pub[32];
    std::size_t sl = sizeof seed, pl = sizeof pub;
    const bool ok = EVP_PKEY_get_raw_private_key(pkey, seed, &sl) == 1 && EVP_PKEY_get_raw_public_key(pkey, pub, &pl) == 1;
    EVP_PKEY_free(pkey);
    if (!ok || sl != 32 || pl != 32) throw std::runtime_error("cannot read the ed25519 key");
    std::string blob;
    put_ssh_string(blob, "ssh-ed25519");
    put_ssh_string(blob, std::string_view(reinterpret_cast<const char*>(pub), 32));
    SshKeyPair out;
    out.seed_base64 = common::base64_encode(std::span<const std::uint8_t>(seed, 32));
    OPENSSL_cleanse(seed, sizeof seed);
    out.public_openssh = "ssh-ed25519 " + b64(blob, true) + " " + name;
    const auto file = ssh_user_key_file(site, name);
    common::ensure_directory(file.parent_path(), 0700);
    const std::string line = out.public_openssh + "\n";
    common::write_file_atomic(file, common::as_bytes(line), 0644);
    return out;
}

struct Service::Impl::SshState {
    ssh_bind bind = nullptr;
    ~SshState() {
        if (bind) ssh_bind_free(bind);
    }
};

void Service::Impl::start_ssh() {
    ensure_ssh_host_key(site, log.get());
    ssh = std::make_shared<SshState>();
    ssh->bind = ssh_bind_new();
    ssh_key key = nullptr;
    if (ssh_pki_import_privkey_file(ssh_host_key_file(site).c_str(), nullptr, nullptr, nullptr, &key) != SSH_OK)
        throw std::runtime_error(ssh_host_key_file(site).string() + ": cannot read the SSH host key");
    // The bind takes ownership of an imported key.
    if (ssh_bind_options_set(ssh->bind, SSH_BIND_OPTIONS_IMPORT_KEY, key) != SSH_OK) {
        ssh_key_free(key);
        throw std::runtime_error("cannot use the SSH host key");
    }
    log->info("SSH host key {}", ssh_host_authenticator(site));
}

namespace {

struct Identity {
    std::string name;  // unikernel or operator name
    bool operator_key = false;
    bool writable = false;
};

// "git-upload-pack '/web.git'" -> {"git-upload-pack", "web"}; empty service when not a git command.
std::pair<std::string, std::string> parse_exec(std::string cmd) {
    const auto sp = cmd.find(' ');
    if (sp == std::string::npos) return {};
    std::string service = cmd.substr(0, sp), arg = cmd.substr(sp + 1);
    if (service == "git") {  // "git upload-pack '...'"
        const auto sp2 = arg.find(' ');
        if (sp2 == std::string::npos) return {};
        service = "git-" + arg.substr(0, sp2);
        arg = arg.substr(sp2 + 1);
    }
    if (service != "git-upload-pack" && service != "git-receive-pack") return {};
    if (arg.size() >= 2 && arg.front() == '\'' && arg.back() == '\'') arg = arg.substr(1, arg.size() - 2);
    if (arg.find('\'') != std::string::npos) return {};
    while (!arg.empty() && arg.front() == '/') arg.erase(0, 1);
    if (arg.size() > 4 && arg.substr(arg.size() - 4) == ".git") arg.resize(arg.size() - 4);
    if (!arg.empty() && arg.back() == '/') arg.pop_back();
    return {service, arg};
}

}  // namespace

namespace {
// The phase deadline of one SSH session, whose libssh calls block on their own thread: a timer on the
// service's I/O thread shuts the socket down when the phase's time is up (docs/limits.md), which makes
// the blocked call return. The session moves the deadline from phase to phase; `done` (set under the
// lock before libssh closes the socket) keeps the timer from touching a descriptor that was reused.
struct SshWatch {
    SshWatch(asio::io_context& io, int f) : timer(io), fd(f) {}
    asio::steady_timer timer;  // I/O thread only
    std::mutex m;
    std::chrono::steady_clock::time_point until;
    std::string phase;
    bool done = false, fired = false;
    int fd;

    // A phase that moves data may take one more second per min_rate bytes that arrived (a large request
    // sent at a fair rate is not cut; a trickle gains almost nothing).
    void extend(std::chrono::milliseconds d) {
        std::lock_guard g(m);
        until += d;
    }
    void set(std::chrono::milliseconds d, std::string what) {
        std::lock_guard g(m);
        until = std::chrono::steady_clock::now() + d;
        phase = std::move(what);
    }
    static asio::awaitable<void> run(std::shared_ptr<SshWatch> w, std::shared_ptr<spdlog::logger> log, std::string peer) {
        while (true) {
            std::chrono::steady_clock::time_point at;
            {
                std::lock_guard g(w->m);
                if (w->done) co_return;
                at = w->until;
            }
            w->timer.expires_at(at);
            co_await w->timer.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
            std::lock_guard g(w->m);
            if (w->done) co_return;
            if (std::chrono::steady_clock::now() >= w->until) {
                w->fired = true;
                ::shutdown(w->fd, SHUT_RDWR);
                log->info("ssh {}: closed: {} over", peer, w->phase);
                co_return;
            }
        }
    }
    // From the session's thread, before the socket is closed.
    void finish(asio::io_context& io, const std::shared_ptr<SshWatch>& self) {
        {
            std::lock_guard g(m);
            done = true;
        }
        asio::post(io, [self] { self->timer.cancel(); });
    }
};

// The conversation's channel on an SSH session: blocking libssh reads and writes on the session's thread
// (each awaitable completes at once), and the session's watch as the phase deadline.
class SshChannel final : public Channel {
public:
    SshChannel(ssh_channel ch, SshWatch& watch, std::size_t min_rate, std::chrono::milliseconds read_timeout, Service::Impl::Counter& sent)
        : ch_(ch), watch_(watch), min_rate_(min_rate), timeout_ms_(static_cast<int>(read_timeout.count())), sent_(sent) {}
    asio::awaitable<bool> read(std::string& in) override {
        const int n = ssh_channel_read_timeout(ch_, buf_.data(), static_cast<std::uint32_t>(buf_.size()), 0, timeout_ms_);
        if (n > 0) {
            in.append(buf_.data(), static_cast<std::size_t>(n));
            // A phase that moves data may take one more second per min_rate bytes received.
            if (min_rate_) watch_.extend(std::chrono::milliseconds(std::uint64_t(n) * 1000 / min_rate_));
            co_return true;
        }
        broken_ = n < 0 || !ssh_channel_is_eof(ch_);
        co_return false;
    }
    asio::awaitable<bool> write(std::string_view data) override {
        while (!data.empty()) {
            const auto n = ssh_channel_write(ch_, data.data(), static_cast<std::uint32_t>(std::min<std::size_t>(data.size(), 32768)));
            if (n <= 0) co_return false;
            data.remove_prefix(static_cast<std::size_t>(n));
            sent_ += static_cast<std::uint64_t>(n);
        }
        co_return true;
    }
    void phase(std::chrono::milliseconds limit, const char* what) override {
        watch_.set(limit.count() == 0 ? std::chrono::hours(24 * 365) : limit, what);
    }
    [[nodiscard]] bool timed_out() const override { return broken_; }
    [[nodiscard]] bool streaming() const override { return true; }

private:
    ssh_channel ch_;
    SshWatch& watch_;
    std::size_t min_rate_;
    int timeout_ms_;
    Service::Impl::Counter& sent_;
    std::array<char, 32768> buf_{};
    bool broken_ = false;
};
}  // namespace

void Service::Impl::run_ssh_session(int fd, common::AdmissionTicket& ticket, std::string peer) {
    auto site_now = snapshot();
    const auto limits = site_now->services.limits_for("ssh");
    auto watch = std::make_shared<SshWatch>(io, fd);
    watch->set(limits.login_grace, "login grace");  // key exchange and authentication, together
    asio::co_spawn(io, SshWatch::run(watch, log, peer), asio::detached);
    ssh_session session = ssh_new();
    const long timeout_s = static_cast<long>(std::max<std::int64_t>(1, opts.read_timeout.count() / 1000));
    ssh_options_set(session, SSH_OPTIONS_TIMEOUT, &timeout_s);
    struct Cleanup {
        ssh_session s;
        int fd;
        std::function<void()> before_close;
        ssh_channel ch = nullptr;
        ~Cleanup() {
            if (ch) {
                // As sshd does: send CLOSE, then wait (briefly) for the client's CLOSE, so that the socket is not
                // closed while the client still writes (which would reset the connection and lose our last bytes).
                ssh_channel_close(ch);
                char sink[4096];
                const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(2);
                while (!ssh_channel_is_closed(ch) && std::chrono::steady_clock::now() < until)
                    if (ssh_channel_read_timeout(ch, sink, sizeof sink, 0, 200) == SSH_ERROR) break;
                ssh_channel_free(ch);
                // Then let the client end the connection, as OpenSSH's does once its last channel is closed (its
                // DISCONNECT, then FIN): closing first races that DISCONNECT, which then meets a reset and makes
                // the client exit 255 after a complete answer. What arrives now is only the end of the
                // connection, so it is read and dropped; at most 3 s.
                const auto linger = std::chrono::steady_clock::now() + std::chrono::seconds(3);
                for (auto now = std::chrono::steady_clock::now(); now < linger; now = std::chrono::steady_clock::now()) {
                    pollfd p{fd, POLLIN, 0};
                    const int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(linger - now).count());
                    if (::poll(&p, 1, std::max(left, 1)) <= 0) break;
                    if (::recv(fd, sink, sizeof sink, MSG_DONTWAIT) <= 0) break;  // EOF (or the watch closed it): done
                }
            }
            before_close();
            ssh_disconnect(s);
            ssh_free(s);
        }
    } cleanup{session, fd, [&] { watch->finish(io, watch); }};
    if (ssh_bind_accept_fd(ssh->bind, session, fd) != SSH_OK) {
        watch->finish(io, watch);
        cleanup.before_close = [] {};
        ::close(fd);
        log->info("ssh {}: {}", peer, ssh_get_error(ssh->bind));
        return;
    }
    if (ssh_handle_key_exchange(session) != SSH_OK) {
        log->info("ssh {}: key exchange failed: {}", peer, ssh_get_error(session));
        return;
    }
    ssh_set_auth_methods(session, SSH_AUTH_METHOD_PUBLICKEY);

    // Who may log in: each unikernel's key (its own repository) and the operators' keys (all).
    std::vector<std::pair<std::string, Identity>> keys;
    for (const auto* u : repo_unikernels(*site_now)) {
        std::string line;
        if (!common::read_file_limited(ssh_user_key_file(*site_now, u->name), 16384, line))
            if (auto blob = blob_of_line(line); !blob.empty()) keys.push_back({blob, {u->name, false, u->git.writable}});
    }
    for (const auto& op : site_now->services.git.operators)
        if (auto blob = blob_of_line(op.key); !blob.empty()) keys.push_back({blob, {op.name, true, op.writable}});
    auto identify = [&](ssh_key key) -> std::optional<Identity> {
        const auto blob = key_blob(key);
        std::optional<Identity> found;
        for (const auto& [b, id] : keys)  // every entry compared, in constant time per entry
            if (b.size() == blob.size() && common::constant_time_equal(common::as_bytes(b), common::as_bytes(blob)) && !found) found = id;
        return found;
    };

    std::optional<Identity> who;
    ssh_channel channel = nullptr;
    std::string service, repo_name, git_protocol;
    int auth_attempts = 0;
    while (true) {
        ssh_message msg = ssh_message_get(session);
        if (!msg) {
            log->info("ssh {}: disconnected before a command{}", peer, who ? " (authenticated as " + who->name + ")" : "");
            return;
        }
        const int type = ssh_message_type(msg), sub = ssh_message_subtype(msg);
        bool handled = false;
        if (type == SSH_REQUEST_AUTH) {
            if (sub == SSH_AUTH_METHOD_PUBLICKEY && !who && ++auth_attempts <= 10) {
// libssh 0.10 marks its message API deprecated in favour of callbacks; this blocking, one-thread-
// per-session server reads the same two fields the callbacks would be given.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
                const auto id = identify(ssh_message_auth_pubkey(msg));
                const auto state = ssh_message_auth_publickey_state(msg);
#pragma GCC diagnostic pop
                if (id && state == SSH_PUBLICKEY_STATE_NONE) {
                    ssh_message_auth_reply_pk_ok_simple(msg);
                    handled = true;
                } else if (id && state == SSH_PUBLICKEY_STATE_VALID) {
                    ssh_message_auth_reply_success(msg, 0);
                    who = id;
                    handled = true;
                    ticket.authenticated();
                    watch->set(opts.read_timeout, "read timeout (no command after login)");
                    log->debug("ssh {}: authenticated as {} {}", peer, id->operator_key ? "operator" : "unikernel", id->name);
                } else if (!id && state == SSH_PUBLICKEY_STATE_VALID) {
                    ++unauthorized;
                    log->info("ssh {}: unknown key refused (user \"{}\")", peer, std::string(ssh_message_auth_user(msg)).substr(0, 64));
                }
            }
            if (!handled) {
                ssh_message_auth_set_methods(msg, SSH_AUTH_METHOD_PUBLICKEY);
                ssh_message_reply_default(msg);
                handled = true;
            }
        } else if (who && type == SSH_REQUEST_CHANNEL_OPEN && sub == SSH_CHANNEL_SESSION && !channel) {
            channel = ssh_message_channel_request_open_reply_accept(msg);
            cleanup.ch = channel;
            handled = channel != nullptr;
        } else if (who && channel && type == SSH_REQUEST_CHANNEL && sub == SSH_CHANNEL_REQUEST_ENV) {
            if (std::string(ssh_message_channel_request_env_name(msg)) == "GIT_PROTOCOL") {
                git_protocol = std::string(ssh_message_channel_request_env_value(msg)).substr(0, 64);
                ssh_message_channel_request_reply_success(msg);
                handled = true;
            }
        } else if (who && channel && type == SSH_REQUEST_CHANNEL && sub == SSH_CHANNEL_REQUEST_EXEC) {
            const std::string cmd = ssh_message_channel_request_command(msg);
            std::tie(service, repo_name) = parse_exec(cmd.substr(0, 1024));
            if (!service.empty()) {
                ssh_message_channel_request_reply_success(msg);
                ssh_message_free(msg);
                break;
            }
            ++forbidden;
            log->info("ssh {} {}: refused command \"{}\"", peer, who->name, cmd.substr(0, 128));
        } else if (type == SSH_REQUEST_CHANNEL && who) {
            log->info("ssh {} {}: refused a channel request (shell, pty, subsystem or similar)", peer, who->name);
        } else if (type == SSH_REQUEST_CHANNEL_OPEN || type == SSH_REQUEST_GLOBAL) {
            log->info("ssh {}: refused a channel or forwarding request", peer);
        }
        if (!handled) ssh_message_reply_default(msg);
        ssh_message_free(msg);
    }

    auto finish = [&](int status, const std::string& err = {}) {
        watch->set(std::chrono::seconds(6), "closing");  // the drain below bounds itself (5 s)
        if (!err.empty()) {
            const std::string line = "fleetconf: " + err + "\n";
            ssh_channel_write_stderr(channel, line.data(), static_cast<std::uint32_t>(line.size()));
        }
        ssh_channel_request_send_exit_status(channel, status);
        ssh_channel_send_eof(channel);
        // Read (and drop) what the client still sends until its EOF, at most 64 MiB or 5 s: closing with unread
        // data would reset the connection, and a refused client could then miss the error line written above.
        char sink[32768];
        std::size_t drained = 0;
        const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        while (!ssh_channel_is_eof(channel) && !ssh_channel_is_closed(channel) && drained < (std::size_t{64} << 20)) {
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now()).count();
            if (left <= 0) break;
            const int n = ssh_channel_read_timeout(channel, sink, sizeof sink, 0, static_cast<int>(std::min<long long>(left, 500)));
            if (n == SSH_ERROR) break;
            drained += static_cast<std::size_t>(std::max(n, 0));
        }
    };
    const bool push = service == "git-receive-pack";
    const auto credential = who->operator_key ? Credential::operator_key(who->name, who->writable) : Credential::unikernel(who->name);
    const auto* u = common::is_dns_label(repo_name) ? site_now->unikernel(repo_name) : nullptr;
    const RepoAccess acc{u && u->git.enabled, u && u->git.writable, u && u->git.git_protocol};
    const auto verdict = authorize(credential, repo_name, acc, push ? Operation::push : Operation::fetch);
    if (verdict == Verdict::not_found) {
        ++not_found;
        log->info("ssh {} {}: {} '{}' refused (not found)", peer, who->name, service, repo_name.substr(0, 128));
        finish(128, "repository '" + repo_name.substr(0, 128) + "' not found");
        return;
    }
    if (verdict != Verdict::allow) {
        ++forbidden;
        log->info("ssh {} {}: push to {} refused (read-only key)", peer, who->name, repo_name);
        finish(128, "this key is read-only");
        return;
    }

    // The conversation runs as a coroutine on this thread's own executor: the channel's reads and writes
    // block in libssh here, and the driver's libgit2 work goes to the pool as for every transport.
    SshChannel ch(channel, *watch, limits.min_rate, opts.read_timeout, bytes_sent);
    const Conversation c{.mode = Conversation::Mode::session,
                         .transport = "ssh",
                         .peer = peer,
                         .who = credential,
                         .repo = repo_name,
                         .version = git_protocol.find("version=2") != std::string::npos   ? 2
                                    : git_protocol.find("version=1") != std::string::npos ? 1
                                                                                          : 0,
                         .min_rate = limits.min_rate,
                         .site = site_now.get(),
                         .early_input = {}};
    asio::io_context here;
    Ending ending = Ending::done;
    std::exception_ptr error;
    asio::co_spawn(
        here,
        [&]() -> asio::awaitable<void> {
            if (push) ending = co_await receive_pack(*this, ch, c);
            else ending = co_await upload_pack(*this, ch, c);
        },
        [&](std::exception_ptr e) { error = e; });
    here.run();
    if (error) std::rethrow_exception(error);
    if (ending == Ending::unavailable) finish(128, "repository unavailable");
    else finish(ending == Ending::done ? 0 : 128);
}

}  // namespace fleetconf::gitconf
