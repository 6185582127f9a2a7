#include "fleetconf/gitconf/receive_pack.hpp"

#include "fleetconf/common/text.hpp"
#include "fleetconf/gitconf/pktline.hpp"
#include "fleetconf/gitconf/upload_pack.hpp"

#include <git2.h>
#include <git2/sys/odb_backend.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <unordered_set>

namespace fleetconf::gitconf {

namespace {

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

git_oid to_git(const Oid& o) {
    git_oid g;
    std::memcpy(g.id, o.bytes.data(), 20);
    return g;
}
Oid from_git(const git_oid* g) {
    Oid o;
    std::memcpy(o.bytes.data(), g->id, 20);
    return o;
}
std::string last_error(const char* what) {
    const git_error* e = git_error_last();
    return std::string(what) + (e && e->message ? std::string(": ") + e->message : std::string());
}

bool has_word(std::string_view caps, std::string_view w) {
    std::size_t pos = 0;
    while (pos < caps.size()) {
        while (pos < caps.size() && caps[pos] == ' ') ++pos;
        auto end = caps.find(' ', pos);
        if (end == std::string_view::npos) end = caps.size();
        if (caps.substr(pos, end - pos) == w) return true;
        pos = end;
    }
    return false;
}

}  // namespace

bool PushResult::all_ok() const {
    return unpack_error.empty() && std::all_of(commands.begin(), commands.end(), [](const RefCommand& c) { return c.error.empty(); });
}

std::string advertise_receive(const RefList& refs) {
    std::string caps = "report-status delete-refs side-band-64k quiet atomic ofs-delta object-format=sha1 agent=";
    caps += kAgent;
    std::string out;
    bool first = true;
    for (const auto& r : refs.refs) {
        std::string l = r.oid.hex() + " " + r.name;
        if (first) {
            l.push_back('\0');
            l += caps;
            first = false;
        }
        pkt::write_line(out, l);
    }
    if (first) pkt::write_line(out, std::string(40, '0') + " capabilities^{}" + std::string(1, '\0') + caps);
    pkt::write_flush(out);
    return out;
}

void ReceivePack::fail(std::string msg) {
    error_ = std::move(msg);
    state_ = State::failed;
}

bool ReceivePack::needs_pack() const {
    return std::any_of(commands_.begin(), commands_.end(), [](const RefCommand& c) { return !c.is_delete(); });
}

std::size_t ReceivePack::feed(std::string_view in) {
    std::size_t total = 0;
    while (state_ == State::commands) {
        pkt::Packet p;
        std::size_t used = 0;
        const auto ec = pkt::parse(in.substr(total), p, used);
        if (ec == pkt::errc::need_more) return total;
        if (ec) {
            fail(ec.message());
            return total;
        }
        total += used;
        if (p.kind == pkt::Kind::flush) {
            if (commands_.empty()) {
                state_ = State::done;  // nothing to update
                return total;
            }
            state_ = needs_pack() ? State::pack : State::done;
            break;
        }
        if (p.kind != pkt::Kind::data) return fail("unexpected special packet"), total;
        std::string_view line = p.line();
        if (starts_with(line, "shallow ")) continue;  // a shallow client; the server has the full history
        if (starts_with(line, "push-cert")) return fail("signed pushes are not supported"), total;
        const auto nul = line.find('\0');
        const std::string_view cmd = line.substr(0, nul);
        if (commands_.empty() && nul != std::string_view::npos) {
            const auto caps = line.substr(nul + 1);
            report_status_ = has_word(caps, "report-status");
            side_band_ = has_word(caps, "side-band-64k");
            atomic_ = has_word(caps, "atomic");
        }
        if (cmd.size() < 83 || cmd[40] != ' ' || cmd[81] != ' ')
            return fail("protocol error: expected old/new/ref, got '" + std::string(cmd.substr(0, 100)) + "'"), total;
        auto o = Oid::from_hex(cmd.substr(0, 40));
        auto n = Oid::from_hex(cmd.substr(41, 40));
        if (!o || !n) return fail("protocol error: bad object id in '" + std::string(cmd.substr(0, 100)) + "'"), total;
        if (commands_.size() >= limits_.max_commands) return fail("too many ref updates in one push"), total;
        commands_.push_back({*o, *n, std::string(cmd.substr(82)), {}});
    }
    if (state_ == State::pack) {
        const auto rest = in.substr(total);
        if (pack_.size() + rest.size() > limits_.max_pack) {
            fail("pack exceeds the maximum push size (" + std::to_string(limits_.max_pack) + " bytes)");
            return in.size();
        }
        pack_.append(rest);
        total = in.size();
    }
    return total;
}

void ReceivePack::end_of_input() {
    if (state_ == State::commands) fail("the request ended before its commands");
    else if (state_ == State::pack) state_ = State::done;
}

namespace {}  // namespace

bool tree_entry_name_ok(std::string_view name) {
    if (name.empty() || name == "." || name == ".." || name.find('/') != std::string_view::npos ||
        name.find('\0') != std::string_view::npos)
        return false;
    std::string lower(name);
    for (auto& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    return lower != ".git";
}

bool symlink_target_inside(std::string_view target) {
    if (target.empty() || target.front() == '/' || target.find('\0') != std::string_view::npos) return false;
    std::size_t pos = 0;
    while (pos <= target.size()) {
        const auto slash = std::min(target.find('/', pos), target.size());
        if (target.substr(pos, slash - pos) == "..") return false;
        pos = slash + 1;
    }
    return true;
}

namespace {

struct Ctx {
    git_repository* repo;
    const PushLimits& limits;
    const PushPolicy& policy;
    std::unordered_set<Oid, OidHash> checked;  // trees and blobs already verified
    std::string error;
};

// Every object of `tree` must exist; blobs within the size limit; new *.json blobs must parse.
bool check_tree(Ctx& c, const git_oid* tree_id, const std::string& prefix, int depth) {
    const Oid key = from_git(tree_id);
    if (!c.checked.insert(key).second) return true;
    if (depth > 64) return (c.error = "trees nested too deeply"), false;
    git_tree* tree = nullptr;
    if (git_tree_lookup(&tree, c.repo, tree_id) < 0) return (c.error = "missing necessary objects: tree " + key.hex()), false;
    git_odb* odb = nullptr;
    git_repository_odb(&odb, c.repo);
    bool ok = true;
    const auto n = git_tree_entrycount(tree);
    for (std::size_t i = 0; i < n && ok; ++i) {
        const git_tree_entry* e = git_tree_entry_byindex(tree, i);
        const std::string name = git_tree_entry_name(e);
        const std::string path = prefix + name;
        if (!tree_entry_name_ok(name)) {
            c.error = "\"" + common::printable(path) + "\" is not an acceptable file name";
            ok = false;
            break;
        }
        const auto mode = git_tree_entry_filemode(e);
        if (mode == GIT_FILEMODE_COMMIT) {
            c.error = common::printable(path) + " is a gitlink (submodule), which is not accepted";
            ok = false;
            break;
        }
        if (mode == GIT_FILEMODE_LINK) {
            std::string target;
            git_blob* blob = nullptr;
            if (git_blob_lookup(&blob, c.repo, git_tree_entry_id(e)) == 0) {
                target.assign(static_cast<const char*>(git_blob_rawcontent(blob)), static_cast<std::size_t>(git_blob_rawsize(blob)));
                git_blob_free(blob);
            }
            if (!c.policy.allow_symlinks) {
                c.error = common::printable(path) + " is a symbolic link, which is not accepted (allow_symlinks is off)";
                ok = false;
                break;
            }
            if (!symlink_target_inside(target)) {
                c.error = common::printable(path) + " is a symbolic link to \"" + common::printable(target.substr(0, 100)) +
                          "\", outside the tree (absolute, or with \"..\")";
                ok = false;
                break;
            }
        } else if (mode != GIT_FILEMODE_TREE && mode != GIT_FILEMODE_BLOB && mode != GIT_FILEMODE_BLOB_EXECUTABLE) {
            c.error = common::printable(path) + " has an unknown file mode";
            ok = false;
            break;
        }
        if (git_tree_entry_type(e) == GIT_OBJECT_TREE) {
            ok = check_tree(c, git_tree_entry_id(e), path + "/", depth + 1);
            continue;
        }
        const Oid id = from_git(git_tree_entry_id(e));
        if (c.checked.count(id)) continue;
        std::size_t size = 0;
        git_object_t type;
        if (git_odb_read_header(&size, &type, odb, git_tree_entry_id(e)) < 0) {
            c.error = "missing necessary objects: " + path;
            ok = false;
            break;
        }
        if (size > c.limits.max_object) {
            c.error = path + " is " + std::to_string(size) + " bytes, over the limit of " + std::to_string(c.limits.max_object);
            ok = false;
            break;
        }
        if (c.policy.validate_json && path.size() > 5 && path.substr(path.size() - 5) == ".json") {
            git_blob* blob = nullptr;
            if (git_blob_lookup(&blob, c.repo, git_tree_entry_id(e)) == 0) {
                const auto* data = static_cast<const char*>(git_blob_rawcontent(blob));
                const auto j = nlohmann::json::parse(data, data + git_blob_rawsize(blob), nullptr, false);
                git_blob_free(blob);
                if (j.is_discarded()) {
                    c.error = path + " is not valid JSON";
                    ok = false;
                    break;
                }
            }
        }
        c.checked.insert(id);
    }
    git_odb_free(odb);
    git_tree_free(tree);
    return ok;
}

// Connectivity and validation of one new ref target: everything reachable from `tip` that no
// existing ref reaches must be present and acceptable.
std::string check_new_history(Ctx& c, const Oid& tip, const std::vector<Oid>& existing) {
    git_revwalk* walk = nullptr;
    if (git_revwalk_new(&walk, c.repo) < 0) return last_error("revwalk");
    const git_oid t = to_git(tip);
    git_object* obj = nullptr;
    if (git_object_lookup(&obj, c.repo, &t, GIT_OBJECT_ANY) < 0) {
        git_revwalk_free(walk);
        return "missing necessary objects: " + tip.hex();
    }
    const auto type = git_object_type(obj);
    git_object_free(obj);
    if (type != GIT_OBJECT_COMMIT) {
        git_revwalk_free(walk);
        return type == GIT_OBJECT_TAG ? std::string() : "a ref must point to a commit or a tag";
    }
    git_revwalk_push(walk, &t);
    for (const auto& e : existing) {
        const git_oid g = to_git(e);
        git_revwalk_hide(walk, &g);
        git_error_clear();
    }
    git_oid id;
    int rc;
    std::size_t n = 0;
    std::string err;
    while ((rc = git_revwalk_next(&id, walk)) == 0) {
        if (++n > 1'000'000) {
            err = "history too large";
            break;
        }
        git_commit* commit = nullptr;
        if (git_commit_lookup(&commit, c.repo, &id) < 0) {
            err = "missing necessary objects: commit " + from_git(&id).hex();
            break;
        }
        const bool ok = check_tree(c, git_commit_tree_id(commit), "", 0);
        git_commit_free(commit);
        if (!ok) {
            err = c.error;
            break;
        }
    }
    if (err.empty() && rc != GIT_ITEROVER) err = "missing necessary objects (" + last_error("history") + ")";
    git_revwalk_free(walk);
    return err;
}

std::optional<Oid> current(git_repository* repo, const std::string& name) {
    git_oid id;
    if (git_reference_name_to_id(&id, repo, name.c_str()) < 0) {
        git_error_clear();
        return std::nullopt;
    }
    return from_git(&id);
}

}  // namespace

PushResult apply_push(Repository& repository, std::vector<RefCommand> commands, std::string_view pack, bool atomic,
                      const PushPolicy& policy, const PushLimits& limits) {
    PushResult r;
    git_repository* repo = repository.raw();
    // 1. index the pack (thin packs are completed from the object database)
    if (!pack.empty()) {
        git_odb* odb = nullptr;
        git_odb_writepack* wp = nullptr;
        if (git_repository_odb(&odb, repo) < 0 || git_odb_write_pack(&wp, odb, nullptr, nullptr) < 0) {
            r.unpack_error = last_error("index-pack");
        } else {
            git_indexer_progress stats{};
            if (wp->append(wp, pack.data(), pack.size(), &stats) < 0 || wp->commit(wp, &stats) < 0)
                r.unpack_error = last_error("index-pack failed");
            wp->free(wp);
        }
        if (odb) git_odb_free(odb);
        git_error_clear();
    }
    if (!r.unpack_error.empty()) {
        for (auto& c : commands) c.error = "unpacker error";
        r.commands = std::move(commands);
        return r;
    }
    // 2. per-command checks: name, policy, connectivity, validation
    std::vector<Oid> existing;
    const auto refs = repository.refs();
    for (const auto& x : refs.refs) existing.push_back(x.peeled ? *x.peeled : x.oid);
    Ctx ctx{repo, limits, policy, {}, {}};
    for (auto& c : commands) {
        int valid = 0;
        git_reference_name_is_valid(&valid, c.name.c_str());
        if (!valid || !(starts_with(c.name, "refs/heads/") || starts_with(c.name, "refs/tags/"))) {
            c.error = "funny refname";
            continue;
        }
        const bool config = c.name == policy.config_branch;
        if (c.is_delete()) {
            if (config && !policy.allow_delete) c.error = "deleting the configuration branch is not allowed";
            continue;
        }
        if (auto e = check_new_history(ctx, c.new_id, existing); !e.empty()) {
            c.error = e;
            continue;
        }
        if (config && !policy.validator.argv.empty()) {
            auto run = policy.validator;
            run.env.emplace_back("FLEETCONF_REF", c.name);
            run.env.emplace_back("FLEETCONF_OLD", c.old_id.hex());
            run.env.emplace_back("FLEETCONF_NEW", c.new_id.hex());
            if (auto e = run_validator(repository, c.new_id, run); !e.empty()) {
                c.error = e;
                continue;
            }
        }
        if (config && !c.is_create() && !policy.allow_non_fast_forward && c.old_id != c.new_id) {
            const git_oid n = to_git(c.new_id), o = to_git(c.old_id);
            if (git_graph_descendant_of(repo, &n, &o) != 1) {
                git_error_clear();
                c.error = "non-fast-forward";
            }
        }
    }
    if (std::all_of(commands.begin(), commands.end(), [](const RefCommand& c) { return c.error.empty(); }) && !pack.empty() &&
        repository.disk_size() > limits.max_repo)
        for (auto& c : commands) c.error = "the repository would exceed " + std::to_string(limits.max_repo >> 20) + " MiB";
    // 3. old ids: with atomic, all of them before anything moves
    for (auto& c : commands) {
        if (!c.error.empty()) continue;
        const auto cur = current(repo, c.name);
        if (c.is_create() ? cur.has_value() : (!cur || *cur != c.old_id)) c.error = "stale info (the ref moved; fetch first)";
    }
    const bool any_error = std::any_of(commands.begin(), commands.end(), [](const RefCommand& c) { return !c.error.empty(); });
    if (atomic && any_error) {
        for (auto& c : commands)
            if (c.error.empty()) c.error = "atomic push failed";
        r.commands = std::move(commands);
        return r;
    }
    // 4. move the refs, each a compare-and-swap under libgit2's ref lock
    std::optional<Oid> config_old, config_new;
    for (auto& c : commands) {
        if (!c.error.empty()) continue;
        const git_oid n = to_git(c.new_id), o = to_git(c.old_id);
        int rc;
        if (c.is_delete()) {
            git_reference* ref = nullptr;
            rc = git_reference_lookup(&ref, repo, c.name.c_str());
            if (rc == 0) {
                if (git_reference_type(ref) != GIT_REFERENCE_DIRECT || git_oid_cmp(git_reference_target(ref), &o) != 0) rc = -1;
                else rc = git_reference_delete(ref);
                git_reference_free(ref);
            }
        } else {
            git_reference* out = nullptr;
            rc = c.is_create() ? git_reference_create(&out, repo, c.name.c_str(), &n, 0, "push")
                               : git_reference_create_matching(&out, repo, c.name.c_str(), &n, 1, &o, "push");
            if (out) git_reference_free(out);
        }
        if (rc < 0) {
            c.error = "failed to update ref (" + last_error("lock") + ")";
            git_error_clear();
            continue;
        }
        if (c.name == policy.config_branch) {
            config_old = c.old_id;
            config_new = c.new_id;
        }
    }
    // 5. what changed on the configuration branch, for the audit log
    if (config_new && !config_new->is_zero()) {
        git_tree *old_tree = nullptr, *new_tree = nullptr;
        auto tree_of = [&](const Oid& id, git_tree** t) {
            const git_oid g = to_git(id);
            git_commit* commit = nullptr;
            if (git_commit_lookup(&commit, repo, &g) == 0) {
                git_commit_tree(t, commit);
                git_commit_free(commit);
            }
        };
        if (config_old && !config_old->is_zero()) tree_of(*config_old, &old_tree);
        tree_of(*config_new, &new_tree);
        git_diff* diff = nullptr;
        if (git_diff_tree_to_tree(&diff, repo, old_tree, new_tree, nullptr) == 0) {
            const auto n = git_diff_num_deltas(diff);
            for (std::size_t i = 0; i < n && r.paths.size() < 200; ++i) {
                const git_diff_delta* d = git_diff_get_delta(diff, i);
                r.paths.emplace_back(d->new_file.path ? d->new_file.path : d->old_file.path);
            }
            git_diff_free(diff);
        }
        git_tree_free(old_tree);
        git_tree_free(new_tree);
        git_error_clear();
    }
    r.commands = std::move(commands);
    return r;
}

std::string report(const PushResult& r, bool side_band) {
    std::string body;
    pkt::write_line(body, r.unpack_error.empty() ? "unpack ok" : "unpack " + r.unpack_error);
    for (const auto& c : r.commands) pkt::write_line(body, c.error.empty() ? "ok " + c.name : "ng " + c.name + " " + c.error);
    pkt::write_flush(body);
    if (!side_band) return body;
    std::string out;
    pkt::write_sideband(out, 1, body);
    pkt::write_flush(out);
    return out;
}

}  // namespace fleetconf::gitconf
