#include "fleetconf/gitconf/upload_pack.hpp"

#include "fleetconf/common/crypto.hpp"
#include "fleetconf/gitconf/pktline.hpp"

#include <algorithm>
#include <charconv>
#include <deque>

namespace fleetconf::gitconf {

namespace {

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

// "want <oid> caps..." -> the caps part after the id (v0 puts them after a space; very old clients
// after a NUL).
bool has_feature(std::string_view features, std::string_view name) {
    std::size_t pos = 0;
    while (pos < features.size()) {
        while (pos < features.size() && (features[pos] == ' ' || features[pos] == '\0')) ++pos;
        auto end = features.find_first_of(std::string_view(" \0", 2), pos);
        if (end == std::string_view::npos) end = features.size();
        auto word = features.substr(pos, end - pos);
        if (word == name || (starts_with(word, name) && word.size() > name.size() && word[name.size()] == '=')) return true;
        pos = end;
    }
    return false;
}

template <typename T>
bool parse_number(std::string_view s, T& out) {
    if (s.empty()) return false;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc() && p == s.data() + s.size();
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// The negotiation core shared by v0/v1 and v2.
class Negotiation {
public:
    Negotiation(const Repository& repo, const RefList& refs, const UploadLimits& lim) : repo_(repo), refs_(refs), lim_(lim) {
        for (const auto& r : refs_.refs) {
            tips_.insert(r.oid);
            if (r.peeled) tips_.insert(*r.peeled);
        }
        if (refs_.head) tips_.insert(*refs_.head);
    }

    // Returns an error message or "".
    std::string want(const Oid& id) {
        if (wants_.size() >= lim_.max_wants) return "too many wants (limit " + std::to_string(lim_.max_wants) + ")";
        if (!repo_.has(id)) return "upload-pack: not our ref " + id.hex();
        if (std::find(wants_.begin(), wants_.end(), id) == wants_.end()) wants_.push_back(id);
        return {};
    }
    // Wants that are not ref tips must be reachable from one (stateless HTTP: the tips may have moved
    // since the advertisement). Otherwise: "not our ref".
    std::string check_wants(bool allow_reachable) {
        std::vector<Oid> non_tip;
        for (const auto& w : wants_)
            if (!tips_.count(w)) non_tip.push_back(w);
        if (non_tip.empty()) return {};
        if (!allow_reachable) return "upload-pack: not our ref " + non_tip.front().hex();
        std::unordered_set<Oid, OidHash> seen;
        std::deque<Oid> q;
        for (const auto& t : tips_) {
            auto p = repo_.peel(t);
            if (p && seen.insert(*p).second) q.push_back(*p);
        }
        std::size_t missing = non_tip.size();
        std::unordered_set<Oid, OidHash> want_set(non_tip.begin(), non_tip.end());
        while (!q.empty() && missing) {
            const Oid c = q.front();
            q.pop_front();
            if (want_set.count(c)) --missing;
            const auto* info = commit(c);
            if (!info) continue;
            if (!budget()) return "history too large to walk";
            for (const auto& p : info->parents)
                if (seen.insert(p).second) q.push_back(p);
        }
        for (const auto& w : non_tip)
            if (!seen.count(w) && !tips_.count(w)) return "upload-pack: not our ref " + w.hex();
        return {};
    }

    std::string client_shallow(const Oid& id) {
        if (client_shallows_.size() >= lim_.max_shallows) return "too many shallow lines";
        auto t = repo_.type_of(id);
        if (!t) return {};  // git: unknown shallow commits are ignored
        if (*t != ObjectType::commit) return "invalid shallow object " + id.hex();
        if (client_shallow_set_.insert(id).second) client_shallows_.push_back(id);
        return {};
    }

    int depth = 0;
    bool deepen_relative = false;
    std::optional<std::int64_t> deepen_since;
    std::vector<Oid> deepen_not;

    std::string add_deepen_not(std::string_view ref) {
        for (const char* prefix : {"", "refs/", "refs/tags/", "refs/heads/"}) {
            const std::string name = std::string(prefix) + std::string(ref);
            for (const auto& r : refs_.refs)
                if (r.name == name) {
                    deepen_not.push_back(r.peeled ? *r.peeled : r.oid);
                    return {};
                }
        }
        return "git upload-pack: ambiguous deepen-not: " + std::string(ref);
    }

    [[nodiscard]] bool rev_list_mode() const { return deepen_since.has_value() || !deepen_not.empty(); }
    [[nodiscard]] bool deepening() const { return depth > 0 || rev_list_mode(); }
    [[nodiscard]] bool has_shallow_info() const { return deepening() || !client_shallows_.empty(); }

    // git's send_shallow_list: appends "shallow X" / "unshallow X" lines. Returns an error or "".
    std::string compute_shallow(std::string& out) {
        if (depth > 0 && rev_list_mode()) return "git upload-pack: deepen and deepen-since (or deepen-not) cannot be used together";
        std::vector<Oid> result;
        std::unordered_set<Oid, OidHash> not_shallow;
        if (depth > 0) {
            if (deepen_relative) {
                std::vector<Oid> heads;
                for (const auto& s : client_shallows_)
                    if (reachable_from_wants(s)) heads.push_back(s);
                if (!shallow_by_depth(heads, depth + 1, result, not_shallow)) return "history too large to walk";
            } else {
                if (!shallow_by_depth(want_commits(), depth, result, not_shallow)) return "history too large to walk";
            }
        } else if (rev_list_mode()) {
            auto err = shallow_by_rev_list(result, not_shallow);
            if (!err.empty()) return err;
        }
        for (const auto& c : result) {
            if (client_shallow_set_.count(c) || not_shallow.count(c)) continue;
            pkt::write_line(out, "shallow " + c.hex());
            boundaries_.insert(c);
        }
        for (const auto& s : client_shallows_) {
            if (not_shallow.count(s)) {
                pkt::write_line(out, "unshallow " + s.hex());
                // The client gets the history below this commit: its parents become wants and the
                // commit itself an edge the client has.
                if (const auto* info = commit(s))
                    for (const auto& p : info->parents) extra_wants_.push_back(p);
                extra_edges_.push_back(s);
            }
            boundaries_.insert(s);  // the traversal follows the client's view of history
        }
        return {};
    }
    // Without deepening, the client's shallow commits still bound the traversal.
    void register_client_shallows() {
        for (const auto& s : client_shallows_) boundaries_.insert(s);
    }

    // git's got_oid: -1 the client has what we do not, 0 already known, 1 a new common object.
    int have(const Oid& id) {
        ++haves_seen_;
        const auto type = repo_.type_of(id);
        if (!type) return -1;
        if (*type == ObjectType::commit) {
            const auto* info = commit(id);
            const bool knew = they_have_.count(id) > 0;
            they_have_.insert(id);
            if (info) {
                if (!oldest_have_ || info->time < *oldest_have_) oldest_have_ = info->time;
                for (const auto& p : parents_of(id, *info)) they_have_.insert(p);
            }
            if (knew) return 0;
        } else if (std::find(commons_.begin(), commons_.end(), id) != commons_.end()) {
            return 0;
        }
        commons_.push_back(id);
        return 1;
    }
    [[nodiscard]] std::size_t haves_seen() const { return haves_seen_; }
    [[nodiscard]] const std::vector<Oid>& commons() const { return commons_; }

    // git's ok_to_give_up: every wanted commit reaches a commit the client has. As in git (v0/v1, where the
    // shallow lines are computed before the haves): the parents of unshallowed commits are wants too, and
    // the shallow commits (the client's, and the new ones) have no parents for this walk.
    bool ok_to_give_up() {
        if (they_have_.empty()) return false;
        auto wants = want_commits();
        wants.insert(wants.end(), extra_wants_.begin(), extra_wants_.end());
        for (const auto& w : wants) {
            if (known_common_.count(w)) continue;
            std::unordered_set<Oid, OidHash> seen{w};
            std::deque<Oid> q{w};
            bool found = false;
            while (!q.empty() && !found) {
                const Oid c = q.front();
                q.pop_front();
                if (they_have_.count(c)) {
                    found = true;
                    break;
                }
                const auto* info = commit(c);
                if (!info || !budget()) continue;
                if (oldest_have_ && info->time < *oldest_have_) continue;  // older than anything they have
                for (const auto& p : parents_of(c, *info))
                    if (seen.insert(p).second) q.push_back(p);
            }
            if (!found) return false;
            known_common_.insert(w);
        }
        return true;
    }

    // Builds the pack plan from the wants, the commons and the shallow boundaries.
    std::string plan(PackJob& job, bool include_tag, std::size_t sideband, bool progress) {
        std::vector<Oid> starts;
        std::vector<Oid> extra;
        for (const auto& w : wants_) {
            Oid cur = w;
            // Wanted tags are sent as they are, and what they point to is walked.
            for (int i = 0; i < 32; ++i) {
                auto t = repo_.type_of(cur);
                if (!t) return "object " + cur.hex() + " is missing";
                if (*t == ObjectType::tag) {
                    extra.push_back(cur);
                    cur = *repo_.tag_target(cur);
                    continue;
                }
                if (*t == ObjectType::commit) starts.push_back(cur);
                else extra.push_back(cur);
                break;
            }
        }
        starts.insert(starts.end(), extra_wants_.begin(), extra_wants_.end());

        // Everything the client has: ancestors of the commons and of unshallowed commits.
        std::unordered_set<Oid, OidHash> uninteresting;
        std::deque<Oid> q;
        for (const auto& c : commons_)
            if (repo_.type_of(c) == ObjectType::commit && uninteresting.insert(c).second) q.push_back(c);
        for (const auto& c : extra_edges_)
            if (uninteresting.insert(c).second) q.push_back(c);
        while (!q.empty()) {
            const Oid c = q.front();
            q.pop_front();
            if (boundaries_.count(c)) continue;
            const auto* info = commit(c);
            if (!info) continue;
            if (!budget()) return "history too large to walk";
            for (const auto& p : info->parents)
                if (uninteresting.insert(p).second) q.push_back(p);
        }
        std::vector<Oid> send;
        std::unordered_set<Oid, OidHash> seen;
        std::unordered_set<Oid, OidHash> edges(commons_.begin(), commons_.end());
        edges.insert(extra_edges_.begin(), extra_edges_.end());
        for (const auto& s : starts)
            if (!uninteresting.count(s) && seen.insert(s).second) q.push_back(s);
        while (!q.empty()) {
            const Oid c = q.front();
            q.pop_front();
            send.push_back(c);
            if (boundaries_.count(c)) continue;
            const auto* info = commit(c);
            if (!info) return "commit " + c.hex() + " is missing";
            if (!budget()) return "history too large to walk";
            for (const auto& p : info->parents) {
                if (uninteresting.count(p)) edges.insert(p);
                else if (seen.insert(p).second) q.push_back(p);
            }
        }
        if (include_tag) {
            std::unordered_set<Oid, OidHash> sent(send.begin(), send.end());
            for (const auto& r : refs_.refs) {
                if (!r.peeled || !sent.count(*r.peeled)) continue;
                for (Oid t = r.oid; repo_.type_of(t) == ObjectType::tag;) {
                    if (std::find(extra.begin(), extra.end(), t) == extra.end()) extra.push_back(t);
                    auto next = repo_.tag_target(t);
                    if (!next) break;
                    t = *next;
                }
            }
        }
        job.plan.commits = std::move(send);
        job.plan.edges.assign(edges.begin(), edges.end());
        std::sort(job.plan.edges.begin(), job.plan.edges.end());
        job.plan.extra = std::move(extra);
        job.sideband = sideband;
        job.progress = progress;
        job.wants = wants_;
        // The key: the plan in canonical order (commit order is the walk's, which is deterministic).
        std::string k = "v1 sb=" + std::to_string(sideband) + (progress ? " p" : " q") + "\nC";
        auto sorted = job.plan.commits;
        std::sort(sorted.begin(), sorted.end());
        for (const auto& c : sorted) k.append(reinterpret_cast<const char*>(c.bytes.data()), 20);
        k += "\nE";
        for (const auto& c : job.plan.edges) k.append(reinterpret_cast<const char*>(c.bytes.data()), 20);
        k += "\nX";
        auto ex = job.plan.extra;
        std::sort(ex.begin(), ex.end());
        for (const auto& c : ex) k.append(reinterpret_cast<const char*>(c.bytes.data()), 20);
        job.key = common::to_hex(common::sha256(k));
        return {};
    }

    [[nodiscard]] const std::vector<Oid>& wants() const { return wants_; }

private:
    const CommitInfo* commit(const Oid& id) {
        auto it = commits_.find(id);
        if (it != commits_.end()) return it->second ? &*it->second : nullptr;
        auto info = repo_.commit(id);
        auto [pos, _] = commits_.emplace(id, std::move(info));
        return pos->second ? &*pos->second : nullptr;
    }
    bool budget() { return ++walked_ <= lim_.max_walk; }

    // A commit's parents as git's walk sees them: a shallow commit registered for this client (its own, or
    // one this answer makes shallow) is grafted to have none.
    const std::vector<Oid>& parents_of(const Oid& c, const CommitInfo& info) const {
        static const std::vector<Oid> none;
        return boundaries_.count(c) ? none : info.parents;
    }

    std::vector<Oid> want_commits() {
        std::vector<Oid> out;
        for (const auto& w : wants_)
            if (auto p = repo_.peel(w); p && repo_.type_of(*p) == ObjectType::commit) out.push_back(*p);
        return out;
    }

    bool reachable_from_wants(const Oid& target) {
        std::unordered_set<Oid, OidHash> seen;
        std::deque<Oid> q;
        for (const auto& w : want_commits())
            if (seen.insert(w).second) q.push_back(w);
        while (!q.empty()) {
            const Oid c = q.front();
            q.pop_front();
            if (c == target) return true;
            const auto* info = commit(c);
            if (!info || !budget()) continue;
            for (const auto& p : info->parents)
                if (seen.insert(p).second) q.push_back(p);
        }
        return false;
    }

    // git's get_shallow_commits (shallow.c), with the same depth bookkeeping.
    bool shallow_by_depth(const std::vector<Oid>& heads, int max_depth, std::vector<Oid>& result,
                          std::unordered_set<Oid, OidHash>& not_shallow) {
        std::unordered_map<Oid, int, OidHash> depths;
        std::vector<Oid> stack;
        std::size_t i = 0;
        std::optional<Oid> cur;
        int cur_depth = 0;
        std::unordered_set<Oid, OidHash> in_result;
        while (cur || i < heads.size() || !stack.empty()) {
            if (!cur) {
                if (i < heads.size()) {
                    cur = heads[i++];
                    depths[*cur] = 0;
                    cur_depth = 0;
                } else {
                    cur = stack.back();
                    stack.pop_back();
                    cur_depth = depths[*cur];
                }
            }
            const auto* info = commit(*cur);
            if (!info) return false;
            if (!budget()) return false;
            ++cur_depth;
            if (cur_depth >= max_depth) {
                if (in_result.insert(*cur).second) result.push_back(*cur);
                cur.reset();
                continue;
            }
            not_shallow.insert(*cur);
            cur.reset();
            const auto& parents = info->parents;
            for (std::size_t k = 0; k < parents.size(); ++k) {
                const Oid& p = parents[k];
                auto it = depths.find(p);
                if (it == depths.end()) {
                    depths.emplace(p, cur_depth);
                } else {
                    if (cur_depth >= it->second) continue;
                    it->second = cur_depth;
                }
                if (k + 1 < parents.size()) stack.push_back(p);
                else {
                    cur = p;
                    cur_depth = depths[p];
                }
            }
        }
        return true;
    }

    // git's get_shallow_commits_by_rev_list: walk from the wants, excluding commits older than
    // deepen-since and commits reachable from deepen-not; the border commits become shallow.
    std::string shallow_by_rev_list(std::vector<Oid>& result, std::unordered_set<Oid, OidHash>& not_shallow) {
        std::unordered_set<Oid, OidHash> excluded;
        std::deque<Oid> q;
        for (const auto& n : deepen_not)
            if (excluded.insert(n).second) q.push_back(n);
        while (!q.empty()) {
            const Oid c = q.front();
            q.pop_front();
            const auto* info = commit(c);
            if (!info) continue;
            if (!budget()) return "history too large to walk";
            for (const auto& p : info->parents)
                if (excluded.insert(p).second) q.push_back(p);
        }
        std::vector<Oid> walked;
        for (const auto& w : want_commits())
            if (!excluded.count(w) && not_shallow.insert(w).second) q.push_back(w);
        // A commit older than the cut-off is not walked, and neither are its ancestors through it.
        std::vector<Oid> order;
        while (!q.empty()) {
            const Oid c = q.front();
            q.pop_front();
            const auto* info = commit(c);
            if (!info) return "commit " + c.hex() + " is missing";
            if (!budget()) return "history too large to walk";
            if (deepen_since && info->time < *deepen_since) {
                not_shallow.erase(c);
                continue;
            }
            order.push_back(c);
            for (const auto& p : info->parents)
                if (!excluded.count(p) && !not_shallow.count(p)) {
                    not_shallow.insert(p);
                    q.push_back(p);
                }
        }
        // `not_shallow` held the queue's members; keep only what was walked.
        not_shallow = std::unordered_set<Oid, OidHash>(order.begin(), order.end());
        if (order.empty()) return "no commits selected for shallow requests";
        for (const auto& c : order) {
            const auto* info = commit(c);
            for (const auto& p : info->parents)
                if (!not_shallow.count(p)) {
                    result.push_back(c);
                    break;
                }
        }
        for (const auto& c : result) not_shallow.erase(c);
        return {};
    }

    const Repository& repo_;
    const RefList& refs_;
    UploadLimits lim_;
    std::unordered_set<Oid, OidHash> tips_;
    std::vector<Oid> wants_;
    std::vector<Oid> client_shallows_;
    std::unordered_set<Oid, OidHash> client_shallow_set_;
    std::unordered_set<Oid, OidHash> boundaries_;
    std::vector<Oid> extra_wants_, extra_edges_;
    std::unordered_set<Oid, OidHash> they_have_, known_common_;
    std::vector<Oid> commons_;
    std::optional<std::int64_t> oldest_have_;
    std::size_t haves_seen_ = 0;
    std::size_t walked_ = 0;
    std::unordered_map<Oid, std::optional<CommitInfo>, OidHash> commits_;
};

// ---------------------------------------------------------------------------------------------

void frame_pack(const PackJob& job, const PackResult& pack, std::string& out) {
    if (job.sideband == 0) {
        out.append(pack.data);
        return;
    }
    if (job.progress) {
        const std::string msg = "Enumerating objects: " + std::to_string(pack.objects) + ", done.\nTotal " + std::to_string(pack.objects) +
                                " (" + std::to_string(pack.data.size()) + " bytes), served by " + kAgent + "\n";
        pkt::write_sideband(out, 2, msg, job.sideband);
    }
    pkt::write_sideband(out, 1, pack.data, job.sideband);
    pkt::write_flush(out);
}

static constexpr const char* kCapabilities =
    "multi_ack thin-pack side-band side-band-64k ofs-delta shallow deepen-since deepen-not deepen-relative no-progress "
    "include-tag multi_ack_detailed";

std::string advertise_refs(const RefList& refs, bool v1, bool stateless_http) {
    std::string out;
    if (v1) pkt::write_line(out, "version 1");
    std::string caps = kCapabilities;
    if (stateless_http) caps += " no-done";
    if (!refs.head_target.empty() && refs.head) caps += " symref=HEAD:" + refs.head_target;
    caps += " object-format=sha1 agent=";
    caps += kAgent;
    bool first = true;
    auto line = [&](const Oid& id, const std::string& name) {
        std::string l = id.hex() + " " + name;
        if (first) {
            l.push_back('\0');
            l += caps;
            first = false;
        }
        pkt::write_line(out, l);
    };
    if (refs.head) line(*refs.head, "HEAD");
    for (const auto& r : refs.refs) {
        line(r.oid, r.name);
        if (r.peeled) pkt::write_line(out, r.peeled->hex() + " " + r.name + "^{}");
    }
    if (first) line(Oid{}, "capabilities^{}");  // an empty repository
    pkt::write_flush(out);
    return out;
}

// ---------------------------------------------------------------------------------------------

UploadPack::UploadPack(const Repository& repo, RefList refs, Options opt)
    : repo_(repo), opt_(opt), refs_(std::move(refs)), n_(std::make_unique<Negotiation>(repo, refs_, opt.limits)) {}

UploadPack::~UploadPack() = default;

const std::vector<Oid>& UploadPack::wants() const { return n_->wants(); }

void UploadPack::fail(std::string msg, std::string& out) {
    error_ = std::move(msg);
    pkt::write_line(out, "ERR " + error_);
    state_ = State::failed;
}

std::size_t UploadPack::feed(std::string_view in, std::string& out) {
    std::size_t total = 0;
    while (state_ == State::wants || state_ == State::negotiate) {
        pkt::Packet p;
        std::size_t used = 0;
        const auto ec = pkt::parse(in.substr(total), p, used);
        if (ec == pkt::errc::need_more) break;
        if (ec) {
            fail(ec.message(), out);
            break;
        }
        total += used;
        if (p.kind == pkt::Kind::delim || p.kind == pkt::Kind::response_end) {
            fail("unexpected special packet in protocol v0/v1", out);
            break;
        }
        if (state_ == State::wants) {
            if (p.kind == pkt::Kind::flush) end_of_wants(out);
            else on_packet_wants(p.line(), out);
        } else {
            on_packet_negotiate(p.line(), p.kind == pkt::Kind::flush, out);
        }
    }
    return total;
}

void UploadPack::on_packet_wants(std::string_view line, std::string& out) {
    if (starts_with(line, "shallow ")) {
        auto id = Oid::from_hex(line.substr(8));
        if (!id) return fail("invalid shallow line: " + std::string(line.substr(0, 100)), out);
        if (auto e = n_->client_shallow(*id); !e.empty()) fail(e, out);
        return;
    }
    if (starts_with(line, "deepen-since ")) {
        std::int64_t t = 0;
        if (!parse_number(line.substr(13), t) || t <= 0) return fail("Invalid deepen-since: " + std::string(line.substr(0, 100)), out);
        n_->deepen_since = t;
        return;
    }
    if (starts_with(line, "deepen-not ")) {
        if (auto e = n_->add_deepen_not(line.substr(11)); !e.empty()) fail(e, out);
        return;
    }
    if (starts_with(line, "deepen ")) {
        int d = 0;
        if (!parse_number(line.substr(7), d) || d <= 0) return fail("Invalid deepen: " + std::string(line.substr(0, 100)), out);
        n_->depth = d;
        return;
    }
    if (starts_with(line, "filter ")) return fail("filtering capability not negotiated", out);
    if (!starts_with(line, "want ") || line.size() < 45)
        return fail("protocol error, expected to get object ID, not '" + std::string(line.substr(0, 100)) + "'", out);
    auto id = Oid::from_hex(line.substr(5, 40));
    if (!id || (line.size() > 45 && line[45] != ' ' && line[45] != '\0'))
        return fail("protocol error, expected to get object ID, not '" + std::string(line.substr(0, 100)) + "'", out);
    const auto features = line.substr(45);
    // Capabilities are read from every want line (git does the same); git-kv also sends
    // report-status here, which means nothing to upload-pack and is ignored like any unknown word.
    if (has_feature(features, "deepen-relative")) n_->deepen_relative = true;
    if (has_feature(features, "multi_ack_detailed")) multi_ack_ = 2;
    else if (has_feature(features, "multi_ack") && multi_ack_ == 0) multi_ack_ = 1;
    if (has_feature(features, "no-done")) no_done_ = true;
    if (has_feature(features, "side-band-64k")) sideband_ = pkt::kMaxPacket;
    else if (has_feature(features, "side-band") && sideband_ == 0) sideband_ = 1000;
    if (has_feature(features, "no-progress")) no_progress_ = true;
    if (has_feature(features, "include-tag")) include_tag_ = true;
    saw_want_ = true;
    if (auto e = n_->want(*id); !e.empty()) fail(e, out);
}

void UploadPack::end_of_wants(std::string& out) {
    if (n_->wants().empty()) {
        // The client has everything it wants: nothing more is said (git upload-pack does the same).
        state_ = State::finished;
        return;
    }
    if (auto e = n_->check_wants(opt_.stateless); !e.empty()) return fail(e, out);
    if (n_->deepening()) {
        if (auto e = n_->compute_shallow(out); !e.empty()) return fail(e, out);
        pkt::write_flush(out);
    } else {
        n_->register_client_shallows();
    }
    state_ = State::negotiate;
}

// git's get_common_commits, one packet at a time.
void UploadPack::on_packet_negotiate(std::string_view line, bool flush, std::string& out) {
    if (flush) {
        if (multi_ack_ == 2 && got_common_ && !got_other_ && n_->ok_to_give_up()) {
            sent_ready_ = true;
            pkt::write_line(out, "ACK " + last_hex_ + " ready");
        }
        if (n_->commons().empty() || multi_ack_) pkt::write_line(out, "NAK");
        if (no_done_ && sent_ready_) {
            pkt::write_line(out, "ACK " + last_hex_);
            return ready_to_pack();
        }
        if (opt_.stateless) {
            state_ = State::finished;
            return;
        }
        got_common_ = got_other_ = false;
        return;
    }
    if (starts_with(line, "have ")) {
        if (n_->haves_seen() >= opt_.limits.max_haves) return fail("too many haves", out);
        auto id = Oid::from_hex(line.substr(5));
        if (!id) return fail("expected SHA1 object, got '" + std::string(line.substr(5, 100)) + "'", out);
        switch (n_->have(*id)) {
            case -1:
                got_other_ = true;
                if (multi_ack_ && n_->ok_to_give_up()) {
                    if (multi_ack_ == 2) {
                        sent_ready_ = true;
                        pkt::write_line(out, "ACK " + id->hex() + " ready");
                    } else {
                        pkt::write_line(out, "ACK " + id->hex() + " continue");
                    }
                }
                break;
            default:
                got_common_ = true;
                last_hex_ = id->hex();
                if (multi_ack_ == 2) pkt::write_line(out, "ACK " + last_hex_ + " common");
                else if (multi_ack_) pkt::write_line(out, "ACK " + last_hex_ + " continue");
                else if (n_->commons().size() == 1) pkt::write_line(out, "ACK " + last_hex_);
                break;
        }
        return;
    }
    if (line == "done") {
        if (!n_->commons().empty()) {
            if (multi_ack_) pkt::write_line(out, "ACK " + last_hex_);
        } else {
            pkt::write_line(out, "NAK");
        }
        return ready_to_pack();
    }
    fail("expected SHA1 list, got '" + std::string(line.substr(0, 100)) + "'", out);
}

void UploadPack::ready_to_pack() {
    if (auto e = n_->plan(job_, include_tag_, sideband_, !no_progress_); !e.empty()) {
        error_ = e;
        state_ = State::failed;
        return;
    }
    state_ = State::send_pack;
}

void UploadPack::end_of_input(std::string& out) {
    if (state_ == State::negotiate && opt_.stateless && n_->haves_seen() == 0 && !got_common_) {
        // A stateless client may end its request after the wants and the shallow section.
        state_ = State::finished;
        return;
    }
    if (state_ == State::wants && !saw_want_ && opt_.stateless) {
        state_ = State::finished;
        return;
    }
    if (state_ == State::wants || state_ == State::negotiate) fail("the request ended early", out);
}

void UploadPack::write_pack(const PackResult& pack, std::string& out) {
    frame_pack(job_, pack, out);
    state_ = State::finished;
}

// ---------------------------------------------------------------------------------------------

UploadPackV2::UploadPackV2(const Repository& repo, RefList refs, UploadLimits limits)
    : repo_(repo), refs_(std::move(refs)), limits_(limits) {}
UploadPackV2::~UploadPackV2() = default;

std::string UploadPackV2::capabilities() {
    std::string out;
    pkt::write_line(out, "version 2");
    pkt::write_line(out, std::string("agent=") + kAgent);
    pkt::write_line(out, "ls-refs=unborn");
    pkt::write_line(out, "fetch=shallow");
    pkt::write_line(out, "server-option");
    pkt::write_line(out, "object-format=sha1");
    pkt::write_flush(out);
    return out;
}

void UploadPackV2::fail(std::string msg, std::string& out) {
    error_ = std::move(msg);
    pkt::write_line(out, "ERR " + error_);
    state_ = State::failed;
}

std::size_t UploadPackV2::feed(std::string_view in, std::string& out) {
    std::size_t total = 0;
    while (state_ == State::idle) {
        pkt::Packet p;
        std::size_t used = 0;
        const auto ec = pkt::parse(in.substr(total), p, used);
        if (ec == pkt::errc::need_more) break;
        if (ec) {
            fail(ec.message(), out);
            break;
        }
        total += used;
        if (p.kind == pkt::Kind::response_end) continue;
        if (section_ == 0) {
            if (p.kind == pkt::Kind::flush) {
                if (command_.empty()) {
                    state_ = State::finished;  // the client ends the session
                    break;
                }
                run(out);
            } else if (p.kind == pkt::Kind::delim) {
                if (command_.empty()) {
                    fail("expected command=...", out);
                    break;
                }
                section_ = 1;
            } else {
                const auto l = p.line();
                if (command_.empty()) {
                    if (!starts_with(l, "command=")) {
                        fail("expected command=..., got '" + std::string(l.substr(0, 100)) + "'", out);
                        break;
                    }
                    command_ = std::string(l.substr(8));
                } else if (starts_with(l, "object-format=") && l != "object-format=sha1") {
                    fail("unsupported object format '" + std::string(l.substr(14, 40)) + "'", out);
                    break;
                }
                // agent=, server-option=, session-id=: accepted and not needed
            }
        } else {
            if (p.kind == pkt::Kind::flush) run(out);
            else if (p.kind == pkt::Kind::delim) {
                fail("unexpected delimiter in arguments", out);
                break;
            } else {
                if (args_.size() >= limits_.max_haves + limits_.max_wants + limits_.max_shallows) {
                    fail("too many arguments", out);
                    break;
                }
                args_.emplace_back(p.line());
            }
        }
    }
    return total;
}

void UploadPackV2::run(std::string& out) {
    if (command_ == "ls-refs") ls_refs(out);
    else if (command_ == "fetch") fetch(out);
    else return fail("invalid command '" + command_.substr(0, 100) + "'", out);
    if (state_ == State::idle) {
        command_.clear();
        args_.clear();
        section_ = 0;
    }
}

void UploadPackV2::ls_refs(std::string& out) {
    bool symrefs = false, peel = false, unborn = false;
    std::vector<std::string> prefixes;
    for (const auto& a : args_) {
        if (a == "symrefs") symrefs = true;
        else if (a == "peel") peel = true;
        else if (a == "unborn") unborn = true;
        else if (starts_with(a, "ref-prefix ")) prefixes.push_back(a.substr(11));
        else return fail("unexpected line: '" + a.substr(0, 100) + "'", out);
    }
    if (prefixes.size() > 65536) prefixes.clear();  // as git: too many prefixes means "all"
    auto wanted = [&](const std::string& name) {
        if (prefixes.empty()) return true;
        return std::any_of(prefixes.begin(), prefixes.end(), [&](const std::string& p) { return starts_with(name, p); });
    };
    if (wanted("HEAD")) {
        if (refs_.head) {
            std::string l = refs_.head->hex() + " HEAD";
            if (symrefs && !refs_.head_target.empty()) l += " symref-target:" + refs_.head_target;
            pkt::write_line(out, l);
        } else if (unborn && !refs_.head_target.empty()) {
            pkt::write_line(out, "unborn HEAD symref-target:" + refs_.head_target);
        }
    }
    for (const auto& r : refs_.refs) {
        if (!wanted(r.name)) continue;
        std::string l = r.oid.hex() + " " + r.name;
        if (peel && r.peeled) l += " peeled:" + r.peeled->hex();
        pkt::write_line(out, l);
    }
    pkt::write_flush(out);
}

void UploadPackV2::fetch(std::string& out) {
    Negotiation n(repo_, refs_, limits_);
    bool done = false, include_tag = false, no_progress = false, wait_for_done = false;
    std::vector<Oid> haves;
    for (const auto& a : args_) {
        std::string_view l = a;
        if (starts_with(l, "want ")) {
            auto id = Oid::from_hex(l.substr(5));
            if (!id) return fail("protocol error, expected to get oid, not '" + a.substr(0, 100) + "'", out);
            if (auto e = n.want(*id); !e.empty()) return fail(e, out);
        } else if (starts_with(l, "have ")) {
            auto id = Oid::from_hex(l.substr(5));
            if (!id) return fail("expected SHA1 object, got '" + a.substr(0, 100) + "'", out);
            if (haves.size() >= limits_.max_haves) return fail("too many haves", out);
            haves.push_back(*id);
        } else if (l == "done") done = true;
        else if (l == "thin-pack" || l == "ofs-delta" || l == "sideband-all" || starts_with(l, "packfile-uris ")) {
        } else if (l == "no-progress") no_progress = true;
        else if (l == "include-tag") include_tag = true;
        else if (l == "wait-for-done") wait_for_done = true;
        else if (starts_with(l, "shallow ")) {
            auto id = Oid::from_hex(l.substr(8));
            if (!id) return fail("invalid shallow line: " + a.substr(0, 100), out);
            if (auto e = n.client_shallow(*id); !e.empty()) return fail(e, out);
        } else if (starts_with(l, "deepen-since ")) {
            std::int64_t t = 0;
            if (!parse_number(l.substr(13), t) || t <= 0) return fail("Invalid deepen-since: " + a.substr(0, 100), out);
            n.deepen_since = t;
        } else if (starts_with(l, "deepen-not ")) {
            if (auto e = n.add_deepen_not(l.substr(11)); !e.empty()) return fail(e, out);
        } else if (starts_with(l, "deepen ")) {
            int d = 0;
            if (!parse_number(l.substr(7), d) || d <= 0) return fail("Invalid deepen: " + a.substr(0, 100), out);
            n.depth = d;
        } else if (l == "deepen-relative") n.deepen_relative = true;
        else if (starts_with(l, "filter ")) return fail("filter not supported", out);
        else return fail("unexpected line: '" + a.substr(0, 100) + "'", out);
    }
    if (n.wants().empty() && !wait_for_done) {
        pkt::write_flush(out);
        return;
    }
    // v2 is stateless by design: wants may be any commit reachable from a ref.
    if (auto e = n.check_wants(true); !e.empty()) return fail(e, out);
    if (!haves.empty()) {
        std::vector<Oid> acks;
        for (const auto& h : haves)
            if (n.have(h) >= 0) acks.push_back(h);
        if (!done) {
            pkt::write_line(out, "acknowledgments");
            if (acks.empty()) pkt::write_line(out, "NAK");
            for (const auto& a : acks) pkt::write_line(out, "ACK " + a.hex());
            if (!wait_for_done && n.ok_to_give_up()) {
                pkt::write_line(out, "ready");
                pkt::write_delim(out);
            } else {
                pkt::write_flush(out);
                return;
            }
        }
    }
    if (n.has_shallow_info()) {
        pkt::write_line(out, "shallow-info");
        if (n.deepening()) {
            if (auto e = n.compute_shallow(out); !e.empty()) return fail(e, out);
        } else {
            n.register_client_shallows();
        }
        pkt::write_delim(out);
    }
    if (auto e = n.plan(job_, include_tag, pkt::kMaxPacket, !no_progress); !e.empty()) return fail(e, out);
    pkt::write_line(out, "packfile");
    state_ = State::send_pack;
}

void UploadPackV2::write_pack(const PackResult& pack, std::string& out) {
    frame_pack(job_, pack, out);
    state_ = State::idle;
    command_.clear();
    args_.clear();
    section_ = 0;
}

}  // namespace fleetconf::gitconf
