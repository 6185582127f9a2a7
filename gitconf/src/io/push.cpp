// Pushes, whatever the transport: the site's policy and limits, the push itself on the pool under the
// repository's writer lock, the audit log (synced on the pool), then logs and notifications.
#include "host.hpp"

#include "fleetconf/common/files.hpp"

#include <asio/post.hpp>
#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace fleetconf::gitconf {

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

}  // namespace fleetconf::gitconf
