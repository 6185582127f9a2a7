// The repositories gitconf serves: a thin, exception-based wrapper over libgit2 for what the
// protocol core needs (refs, the commit graph, pack building) and what operators need (create,
// put/rm a file, log, show). One Repository object per thread: libgit2 repository handles are not
// shared across threads.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

struct git_repository;

namespace fleetconf::gitconf {

struct GitError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// A SHA-1 object id.
struct Oid {
    std::array<std::uint8_t, 20> bytes{};

    static std::optional<Oid> from_hex(std::string_view hex);  // exactly 40 hex digits, either case
    [[nodiscard]] std::string hex() const;
    [[nodiscard]] bool is_zero() const;
    auto operator<=>(const Oid&) const = default;
};
struct OidHash {
    std::size_t operator()(const Oid& o) const noexcept {
        std::size_t h;
        static_assert(sizeof h <= sizeof o.bytes);
        __builtin_memcpy(&h, o.bytes.data(), sizeof h);
        return h;
    }
};

enum class ObjectType : std::uint8_t { commit, tree, blob, tag };

struct Ref {
    std::string name;  // refs/heads/main, refs/tags/v1, ...
    Oid oid;
    std::optional<Oid> peeled;  // for annotated tags: what the tag finally points to
};

struct RefList {
    std::string head_target;  // what HEAD points to ("refs/heads/main"); empty when HEAD is detached
    std::optional<Oid> head;  // HEAD resolved; empty for an unborn branch
    std::vector<Ref> refs;    // sorted by name; HEAD not included
};

struct CommitInfo {
    std::vector<Oid> parents;
    std::int64_t time = 0;  // committer time, seconds since the epoch
    Oid tree;
};

// What goes into a pack: every commit in `commits` with its whole tree, except trees and blobs
// reachable from the trees of `edges` (commits the client already has), plus `extra` objects as
// they are (tags, directly wanted trees or blobs).
struct PackPlan {
    std::vector<Oid> commits;
    std::vector<Oid> edges;
    std::vector<Oid> extra;
};

struct PackResult {
    std::string data;  // the pack file, header to trailer
    std::size_t objects = 0;
};

struct Author {
    std::string name = "fleetconf";
    std::string email = "fleetconf@localhost";
    std::int64_t time = 0;  // seconds since the epoch, UTC; 0: now
};

struct LogEntry {
    Oid id;
    std::int64_t time = 0;
    std::string author;
    std::string summary;
};

// Validates a path inside a repository for put/rm/show: relative, '/'-separated, no empty, "." or
// ".." component, no ".git" component, no NUL or backslash, at most 4096 bytes. Returns an error
// message, or "" when the path is acceptable.
std::string check_repo_path(std::string_view path);

class Repository {
public:
    // Opens an existing bare repository; throws GitError.
    static Repository open(const std::filesystem::path& dir);
    // Creates a bare repository with HEAD -> refs/heads/<branch>. With `initial`, commits the files
    // of `template_dir` (or an empty tree when it is empty) as the first commit on that branch.
    static Repository create(const std::filesystem::path& dir, const std::string& branch, bool initial,
                             const std::filesystem::path& template_dir = {}, const Author& author = {});

    Repository(Repository&&) noexcept;
    Repository& operator=(Repository&&) noexcept;
    ~Repository();

    [[nodiscard]] RefList refs() const;
    [[nodiscard]] std::optional<ObjectType> type_of(const Oid& id) const;  // empty when absent
    [[nodiscard]] bool has(const Oid& id) const { return type_of(id).has_value(); }
    [[nodiscard]] std::optional<CommitInfo> commit(const Oid& id) const;  // empty when not a commit
    // A tag's target (one level); empty when `id` is not a tag.
    [[nodiscard]] std::optional<Oid> tag_target(const Oid& id) const;
    // Follows tags to a non-tag object.
    [[nodiscard]] std::optional<Oid> peel(const Oid& id) const;

    [[nodiscard]] PackResult build_pack(const PackPlan& plan) const;

    // Operator edits on `branch`, each one commit on top of its current head; return the new commit.
    Oid put_file(const std::string& branch, std::string_view path, std::string_view content, const Author& author,
                 const std::string& message);
    Oid remove_file(const std::string& branch, std::string_view path, const Author& author, const std::string& message);
    // The commit such an edit would make (its objects written), without moving the branch: for the push
    // pipeline (edit.hpp), which checks it and moves the branch by compare-and-swap. old_id is zero when
    // the branch has no commit yet. `content` nullptr: remove `path`.
    struct Edit {
        Oid old_id, new_id;
    };
    Edit prepare_edit(const std::string& branch, std::string_view path, const std::string* content, const Author& author,
                      const std::string& message);
    [[nodiscard]] std::vector<LogEntry> log(const std::string& rev, std::size_t max) const;
    // A file's content (`is_tree` false) or a tree listing "mode type id\tname" lines (`is_tree` true).
    struct Shown {
        bool is_tree = false;
        std::string content;
    };
    [[nodiscard]] Shown show(const std::string& rev, std::string_view path) const;
    // Total size of the objects reachable from all refs is not tracked; this is the size of the
    // repository's objects directory in bytes.
    [[nodiscard]] std::uint64_t disk_size() const;

    [[nodiscard]] git_repository* raw() const { return repo_; }
    [[nodiscard]] const std::filesystem::path& path() const { return path_; }

private:
    Repository(git_repository* r, std::filesystem::path p) : repo_(r), path_(std::move(p)) {}
    Oid commit_tree_change(const std::string& branch, std::string_view path, const std::string* content, const Author& author,
                           const std::string& message);
    git_repository* repo_ = nullptr;
    std::filesystem::path path_;
};

// Initialises libgit2 once per process (thread-safe, idempotent).
void init_libgit2();

}  // namespace fleetconf::gitconf
