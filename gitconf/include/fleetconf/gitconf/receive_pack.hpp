// The server side of `git push` (gitprotocol-pack, receive-pack v0/v1), sans I/O.
//
// feed() reads the ref-update commands, then the pack that follows; apply_push() does the work on a
// repository (index the pack, check connectivity, validate, move each ref by compare-and-swap) and
// returns per-ref results; report() encodes them as report-status (inside side-band when asked).
#pragma once

#include "fleetconf/gitconf/repo.hpp"
#include "fleetconf/gitconf/validate.hpp"

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace fleetconf::gitconf {

struct PushLimits {
    std::size_t max_pack = 16u << 20;    // pack bytes in one push
    std::size_t max_object = 8u << 20;   // any blob the push adds
    std::uint64_t max_repo = 64u << 20;  // the repository's objects on disk after the push
    std::size_t max_commands = 100;
};

struct PushPolicy {
    std::string config_branch = "refs/heads/main";
    bool allow_non_fast_forward = false;  // of the configuration branch
    bool allow_delete = false;            // of the configuration branch
    bool validate_json = true;            // every *.json blob the push adds must parse
    // Symbolic links (mode 120000) are refused unless this is set, and then only with a relative target
    // without ".." (it stays inside the tree); gitlinks (160000, submodules) are always refused.
    bool allow_symlinks = false;
    ValidatorRun validator;  // empty argv: none; else run on each new tip of the configuration branch
};

struct RefCommand {
    Oid old_id, new_id;
    std::string name;
    std::string error;  // empty: ok; otherwise the reason sent as "ng <ref> <reason>"
    [[nodiscard]] bool is_delete() const { return new_id.is_zero(); }
    [[nodiscard]] bool is_create() const { return old_id.is_zero(); }
};

struct PushResult {
    std::string unpack_error;          // empty: "unpack ok"
    std::vector<RefCommand> commands;  // with `error` filled in
    std::vector<std::string> paths;    // paths changed on the configuration branch (for the audit log), at most 200
    [[nodiscard]] bool all_ok() const;
};

// v0 advertisement for receive-pack: refs (no HEAD) with the capabilities on the first line.
std::string advertise_receive(const RefList& refs);

class ReceivePack {
public:
    enum class State { commands, pack, done, failed };
    explicit ReceivePack(PushLimits limits = {}) : limits_(limits) {}

    // Consumes input: command pkt-lines until a flush, then pack bytes. Returns bytes consumed.
    std::size_t feed(std::string_view in);
    // The request body ended (HTTP) or the client half-closed.
    void end_of_input();

    [[nodiscard]] State state() const { return state_; }
    [[nodiscard]] const std::string& error() const { return error_; }
    [[nodiscard]] const std::vector<RefCommand>& commands() const { return commands_; }
    [[nodiscard]] const std::string& pack() const { return pack_; }
    [[nodiscard]] bool report_status() const { return report_status_; }
    [[nodiscard]] bool side_band() const { return side_band_; }
    [[nodiscard]] bool atomic() const { return atomic_; }
    [[nodiscard]] bool needs_pack() const;

private:
    void fail(std::string msg);
    PushLimits limits_;
    State state_ = State::commands;
    std::string error_;
    std::vector<RefCommand> commands_;
    std::string pack_;
    bool report_status_ = false, side_band_ = false, atomic_ = false;
};

// Applies a push to `repo`: the pack is indexed into the object database (thin packs are completed
// from it), every new ref target must be connected to objects the repository has, the limits and the
// policy are checked, then refs move one by one with compare-and-swap on their old id (with `atomic`,
// every old id is checked first and nothing moves unless all can). Never throws for a refused push.
// A tree entry name a push may bring: not empty, ".", "..", ".git" (any case), and without '/' or NUL.
[[nodiscard]] bool tree_entry_name_ok(std::string_view name);
// A symbolic link target that stays inside the tree: relative, no ".." component, no NUL.
[[nodiscard]] bool symlink_target_inside(std::string_view target);

PushResult apply_push(Repository& repo, std::vector<RefCommand> commands, std::string_view pack, bool atomic, const PushPolicy& policy,
                      const PushLimits& limits);

// report-status: "unpack ok|<error>", "ok <ref>" / "ng <ref> <reason>", flush; wrapped in side-band
// band 1 (and a final flush) when `side_band`.
std::string report(const PushResult& r, bool side_band);

}  // namespace fleetconf::gitconf
