// Pushes, whatever the transport: the site's policy and limits, the push itself on the pool under the
// repository's writer lock, the audit log (synced on the pool), then logs and notifications.
#include "host.hpp"

#include "fleetconf/gitconf/auth.hpp"
#include "fleetconf/gitconf/edit.hpp"

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

std::string audit_line(const std::string& repo, const std::string& transport, const std::string& peer, const std::string& who,
                       const PushResult& r) {
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
    return line.dump() + "\n";
}

void append_audit(const common::Site& site, const std::string& repo, const std::string& text) {
    const auto dir = git_root(site) / "audit";
    common::ensure_directory(dir);
    const auto file = dir / (repo + ".jsonl");
    const int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0) throw std::runtime_error(file.string() + ": " + std::strerror(errno));
    const bool written = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && ::fdatasync(fd) == 0;
    ::close(fd);
    if (!written) throw std::runtime_error(file.string() + ": write failed");
}

std::string credential_event_line(const std::string& repo, const std::string& event, const std::string& by, const std::string& detail) {
    const auto now = std::chrono::system_clock::now();
    return nlohmann::json{{"time", std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count()},
                          {"repository", repo},
                          {"event", event},
                          {"by", by},
                          {"detail", detail}}
               .dump() +
           "\n";
}

std::vector<std::string> revoke_orphan_tokens(const common::Site& site, const std::string& by, spdlog::logger& log) {
    std::vector<std::string> gone;
    const auto file = token_file(site);
    if (!std::filesystem::exists(file)) return gone;
    auto store = TokenStore::load(file);
    for (const auto& [name, r] : store.records())
        if (const auto* u = site.unikernel(name); !u || !u->git.enabled) gone.push_back(name);
    for (const auto& name : gone) {
        store.revoke(name);
        log.info("revoked the token of {}: it has no repository in the site file any more", name);
        try {
            append_audit(site, name, credential_event_line(name, "token revoked", by, "no repository in the site file"));
        } catch (const std::exception& e) {
            log.error("audit log for {}: {}", name, e.what());
        }
    }
    return gone;
}

EditResult edit_file(const common::Site& site, const std::string& repo, const std::string& path, const std::string* content,
                     const Author& author, const std::string& message, const std::string& who) {
    const auto* u = site.unikernel(repo);
    if (!u || !u->git.enabled) throw GitError(repo + " has no repository in the site file");
    auto repository = Repository::open(repo_dir(site, repo));
    const auto edit = repository.prepare_edit(u->git.branch, path, content, author, message);
    EditResult out;
    out.change.name = "refs/heads/" + u->git.branch;
    out.change.old_id = edit.old_id;
    out.change.new_id = edit.new_id;
    out.push = apply_push(repository, {out.change}, {}, true, push_policy_for(site, repo), push_limits_for(site));
    if (!out.push.commands.empty()) out.change = out.push.commands.front();
    append_audit(site, repo, audit_line(repo, "cli", "local", who, out.push));
    return out;
}

asio::awaitable<void> Service::Impl::audit_push(const common::Site& at, const std::string& repo, const std::string& transport,
                                                const std::string& peer, const std::string& who, const PushResult& r) {
    const std::string text = audit_line(repo, transport, peer, who, r);
    std::string error;
    co_await offload([&] {
        try {
            append_audit(at, repo, text);
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
    {
        const std::lock_guard lock(activity_mutex);
        ++activity[repo].pushes;
    }
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
