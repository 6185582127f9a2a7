// Private to the gitconf service: the state shared by the git:// and HTTP(S) front ends.
#pragma once

#include "fleetconf/common/files.hpp"
#include "fleetconf/common/listener.hpp"
#include "fleetconf/common/runtime.hpp"
#include "fleetconf/gitconf/auth.hpp"
#include "fleetconf/gitconf/receive_pack.hpp"
#include "fleetconf/gitconf/repo.hpp"
#include "fleetconf/gitconf/service.hpp"
#include "fleetconf/gitconf/upload_pack.hpp"

#include <asio/awaitable.hpp>
#include <asio/co_spawn.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/ssl/context.hpp>
#include <asio/steady_timer.hpp>
#include <asio/thread_pool.hpp>

#include <atomic>
#include <type_traits>
#include <future>
#include <list>
#include <set>
#include <map>
#include <mutex>
#include <unordered_map>

namespace fleetconf::gitconf {

using asio::ip::tcp;

// Push limits and policy of a repository, from a site (the service's, or an SSH session's snapshot).
PushLimits push_limits_for(const common::Site& site);
PushPolicy push_policy_for(const common::Site& site, const std::string& repo);

// Packs by PackJob key, most recently used kept within a byte budget; concurrent requests for the
// same key build it once (the others wait for the first).
class PackCache {
public:
    explicit PackCache(std::size_t limit_bytes) : limit_(limit_bytes) {}
    // Runs on a pool thread. `hit` tells whether the pack came from the cache (or another build).
    std::shared_ptr<const PackResult> get_or_build(const std::string& key, const std::function<PackResult()>& build, bool& hit);
    [[nodiscard]] std::uint64_t hits() const { return hits_; }
    [[nodiscard]] std::uint64_t misses() const { return misses_; }
    [[nodiscard]] std::size_t bytes() const;

private:
    struct Entry {
        std::shared_ptr<const PackResult> pack;
        std::list<std::string>::iterator lru;
    };
    mutable std::mutex m_;
    std::unordered_map<std::string, Entry> entries_;
    std::list<std::string> lru_;
    std::unordered_map<std::string, std::shared_future<std::shared_ptr<const PackResult>>> building_;
    std::size_t bytes_ = 0;
    std::size_t limit_;
    std::atomic<std::uint64_t> hits_{0}, misses_{0};
};

// Whole-phase deadlines (common/listener.hpp): moved when the conversation moves on, never by a byte.
using Deadline = common::SocketDeadline;

struct Service::Impl : std::enable_shared_from_this<Service::Impl> {
    Impl(asio::io_context& io, const common::Site& site, ServiceOptions opts, std::shared_ptr<spdlog::logger> log);

    asio::io_context& io;
    common::Site site;
    ServiceOptions opts;
    std::shared_ptr<spdlog::logger> log;
    asio::thread_pool pool;
    PackCache cache;

    // credentials, reloaded when the token file changes on disk (`fleetconf git token` while serving)
    TokenStore tokens;
    std::optional<common::FileStamp> tokens_stamp;  // of the token file as last loaded
    void refresh_tokens();

    // One listener per transport, each with its own budgets (services.limits.NAME; docs/limits.md).
    std::optional<common::TcpListener> http_listener, https_listener, git_listener, ssh_listener;
    void open_listener(std::optional<common::TcpListener>& l, const char* name, const std::optional<common::Endpoint>& at,
                       const char* what);
    void start_listener(common::TcpListener& l, int kind);  // 0 git, 1 http, 2 https, 3 ssh
    [[nodiscard]] std::size_t open_connections() const;
    // SSH: each session runs on its own thread with blocking libssh calls; they read this snapshot of
    // the site (replaced on reload) and never touch `site` directly.
    std::shared_ptr<const common::Site> site_snapshot;
    std::shared_ptr<const common::Site> snapshot() const { return std::atomic_load(&site_snapshot); }
    struct SshState;
    std::shared_ptr<SshState> ssh;
    std::atomic<int> ssh_sessions{0};
    std::mutex ssh_fds_mutex;
    std::set<int> ssh_fds;
    void start_ssh();
    void run_ssh_session(int fd, common::AdmissionTicket& ticket, std::string peer);
    std::optional<asio::ssl::context> tls;
    bool stopped = false;

    // statistics
    // statistics (atomic: the SSH sessions run on their own threads)
    using Counter = std::atomic<std::uint64_t>;
    Counter fetches_http{0}, fetches_https{0}, fetches_git{0}, fetches_ssh{0}, ls_refs{0}, advertisements{0};
    Counter unauthorized{0}, not_found{0}, forbidden{0}, protocol_errors{0}, timeouts{0}, bytes_sent{0};
    mutable std::mutex activity_mutex;
    std::map<std::string, RepoActivity> activity;  // under activity_mutex (SSH sessions fetch on their own threads)
    void record_fetch(const std::string& repo, const char* transport, const std::string& peer, const std::string& who);

    RepoAccess access(std::string_view name) const;

    // pushes: one writer per repository at a time
    std::mutex push_locks_mutex;
    std::map<std::string, std::unique_ptr<std::mutex>> push_locks;
    std::mutex& push_lock(const std::string& repo);
    Counter pushes_accepted{0}, pushes_rejected{0};
    // Runs a push on the pool (under the repository's writer lock); resumes on the caller's executor.
    asio::awaitable<PushResult> push(const common::Site& site, const std::string& repo, const ReceivePack& rp);
    // Appends one JSON line to <data_dir>/git/audit/NAME.jsonl (synced, on the pool), then counts, logs and
    // notifies on the I/O thread (posted there when the caller is an SSH session's thread).
    asio::awaitable<void> audit_push(const common::Site& site, const std::string& repo, const std::string& transport,
                                     const std::string& peer, const std::string& who, const PushResult& r);
    void announce_push(const std::string& repo, const std::string& transport, const std::string& peer, const std::string& who,
                       const PushResult& r);
    // After an accepted change of the configuration branch: the hook and the webhook (notify.cpp).
    void notify(const std::string& repo, const RefCommand& change, const std::string& who);
    Counter notify_delivered{0}, notify_retried{0}, notify_failed{0};
    std::list<std::weak_ptr<asio::steady_timer>> notify_timers;  // I/O thread only
    static asio::awaitable<void> deliver(std::shared_ptr<Impl> self, std::string repo, std::string kind, std::string url,
                                         std::string request, std::filesystem::path state_file, std::string oid);
    // A repository name from a URL path segment: "NAME.git" or "NAME", NAME a DNS label.
    static std::optional<std::string> repo_name(std::string_view segment);

    // Builds (or takes from the cache) the pack of `job` on the pool; resumes on the caller's executor.
    asio::awaitable<std::shared_ptr<const PackResult>> pack(const std::string& repo_name, const Repository& repo, const PackJob& job,
                                                            bool& hit);

    // Runs `f` on the pool and resumes the caller on its own executor when it returns (or throws):
    // libgit2 opens, negotiation walks, pack builds and synced writes never hold the I/O thread that the
    // other clients (and, in one process, the other services) wait on. `f` lives in the caller's frame.
    template <typename F>
    asio::awaitable<std::invoke_result_t<F&>> offload(F&& f) {
        using R = std::invoke_result_t<F&>;
        auto* fp = &f;
        // Captures a pointer only (GCC 12 destroys non-trivial captures of a coroutine lambda twice).
        co_return co_await asio::co_spawn(
            pool, [fp]() -> asio::awaitable<R> { co_return (*fp)(); }, asio::use_awaitable);
    }
    void count_fetch(std::string_view transport);

    asio::awaitable<void> git_session(std::shared_ptr<tcp::socket> sock, common::AdmissionTicket ticket, std::string peer);
    asio::awaitable<void> http_session(std::shared_ptr<tcp::socket> sock, common::AdmissionTicket ticket, std::string peer, bool tls);
};

}  // namespace fleetconf::gitconf
