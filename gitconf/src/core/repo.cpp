#include "fleetconf/gitconf/repo.hpp"

#include <git2.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <unordered_set>
#include <utility>

namespace fleetconf::gitconf {
namespace {

template <typename T, void (*Free)(T*)>
struct Deleter {
    void operator()(T* p) const { Free(p); }
};
template <typename T, void (*Free)(T*)>
using Ptr = std::unique_ptr<T, Deleter<T, Free>>;
using CommitPtr = Ptr<git_commit, git_commit_free>;
using TreePtr = Ptr<git_tree, git_tree_free>;
using ObjectPtr = Ptr<git_object, git_object_free>;
using RefPtr = Ptr<git_reference, git_reference_free>;
using TagPtr = Ptr<git_tag, git_tag_free>;
using OdbPtr = Ptr<git_odb, git_odb_free>;
using BlobPtr = Ptr<git_blob, git_blob_free>;
using SigPtr = Ptr<git_signature, git_signature_free>;
using EntryPtr = Ptr<git_tree_entry, git_tree_entry_free>;
using WalkPtr = Ptr<git_revwalk, git_revwalk_free>;
using BuilderPtr = Ptr<git_treebuilder, git_treebuilder_free>;
using PackPtr = Ptr<git_packbuilder, git_packbuilder_free>;
using RefIterPtr = Ptr<git_reference_iterator, git_reference_iterator_free>;

[[noreturn]] void fail(const std::string& what) {
    const git_error* e = git_error_last();
    throw GitError(what + (e && e->message ? std::string(": ") + e->message : std::string()));
}
void check(int rc, const std::string& what) {
    if (rc < 0) fail(what);
}

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

std::optional<ObjectType> convert(git_object_t t) {
    switch (t) {
        case GIT_OBJECT_COMMIT: return ObjectType::commit;
        case GIT_OBJECT_TREE: return ObjectType::tree;
        case GIT_OBJECT_BLOB: return ObjectType::blob;
        case GIT_OBJECT_TAG: return ObjectType::tag;
        default: return std::nullopt;
    }
}

SigPtr signature(const Author& a) {
    git_signature* s = nullptr;
    const int rc =
        a.time ? git_signature_new(&s, a.name.c_str(), a.email.c_str(), a.time, 0) : git_signature_now(&s, a.name.c_str(), a.email.c_str());
    check(rc, "author \"" + a.name + " <" + a.email + ">\"");
    return SigPtr(s);
}

// Builds a tree from a directory on disk (regular files and directories only).
git_oid tree_from_directory(git_repository* repo, const std::filesystem::path& dir) {
    git_treebuilder* raw = nullptr;
    check(git_treebuilder_new(&raw, repo, nullptr), "tree builder");
    BuilderPtr b(raw);
    for (const auto& e : std::filesystem::directory_iterator(dir)) {
        const auto name = e.path().filename().string();
        if (name == ".git") continue;
        git_oid id;
        if (e.is_symlink()) throw GitError("template " + e.path().string() + ": symbolic links are not copied");
        if (e.is_directory()) {
            id = tree_from_directory(repo, e.path());
            check(git_treebuilder_insert(nullptr, b.get(), name.c_str(), &id, GIT_FILEMODE_TREE), "template " + e.path().string());
        } else if (e.is_regular_file()) {
            check(git_blob_create_from_disk(&id, repo, e.path().c_str()), "template " + e.path().string());
            const bool exec = (e.status().permissions() & std::filesystem::perms::owner_exec) != std::filesystem::perms::none;
            check(git_treebuilder_insert(nullptr, b.get(), name.c_str(), &id, exec ? GIT_FILEMODE_BLOB_EXECUTABLE : GIT_FILEMODE_BLOB),
                  "template " + e.path().string());
        }
    }
    git_oid out;
    check(git_treebuilder_write(&out, b.get()), "template tree");
    return out;
}

ObjectPtr resolve_rev(git_repository* repo, const std::string& rev) {
    git_object* o = nullptr;
    check(git_revparse_single(&o, repo, rev.c_str()), "revision \"" + rev + "\"");
    ObjectPtr obj(o);
    git_object* c = nullptr;
    check(git_object_peel(&c, obj.get(), GIT_OBJECT_COMMIT), "revision \"" + rev + "\" is not a commit");
    return ObjectPtr(c);
}

const char* mode_type(git_filemode_t m) {
    switch (m) {
        case GIT_FILEMODE_TREE: return "tree";
        case GIT_FILEMODE_COMMIT: return "commit";
        default: return "blob";
    }
}

}  // namespace

void init_libgit2() {
    static std::once_flag once;
    std::call_once(once, [] {
        git_libgit2_init();
        // The served repositories are ours: skip the owner check meant for shared working trees.
        git_libgit2_opts(GIT_OPT_SET_OWNER_VALIDATION, 0);
    });
}

std::optional<Oid> Oid::from_hex(std::string_view hex) {
    if (hex.size() != 40) return std::nullopt;
    Oid o;
    for (std::size_t i = 0; i < 20; ++i) {
        int v = 0;
        for (std::size_t k = 0; k < 2; ++k) {
            const char c = hex[2 * i + k];
            int d;
            if (c >= '0' && c <= '9') d = c - '0';
            else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
            else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
            else return std::nullopt;
            v = v * 16 + d;
        }
        o.bytes[i] = static_cast<std::uint8_t>(v);
    }
    return o;
}

std::string Oid::hex() const {
    static constexpr char digits[] = "0123456789abcdef";
    std::string s(40, '0');
    for (std::size_t i = 0; i < 20; ++i) {
        s[2 * i] = digits[bytes[i] >> 4];
        s[2 * i + 1] = digits[bytes[i] & 0xf];
    }
    return s;
}

bool Oid::is_zero() const {
    return std::all_of(bytes.begin(), bytes.end(), [](std::uint8_t b) { return b == 0; });
}

std::string check_repo_path(std::string_view path) {
    if (path.empty()) return "the path is empty";
    if (path.size() > 4096) return "the path is longer than 4096 bytes";
    if (path.front() == '/') return "the path must be relative to the repository root";
    if (path.find('\0') != std::string_view::npos || path.find('\\') != std::string_view::npos)
        return "the path contains a NUL byte or a backslash";
    std::size_t start = 0;
    while (start <= path.size()) {
        const auto end = std::min(path.find('/', start), path.size());
        const auto part = path.substr(start, end - start);
        if (part.empty()) return "the path has an empty component";
        if (part == "." || part == "..") return "the path has a \".\" or \"..\" component";
        std::string lower(part);
        std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
        if (lower == ".git") return "the path has a \".git\" component";
        start = end + 1;
    }
    return {};
}

Repository Repository::open(const std::filesystem::path& dir) {
    init_libgit2();
    git_repository* r = nullptr;
    if (git_repository_open_bare(&r, dir.c_str()) < 0) fail("repository " + dir.string());
    return Repository(r, dir);
}

Repository Repository::create(const std::filesystem::path& dir, const std::string& branch, bool initial,
                              const std::filesystem::path& template_dir, const Author& author) {
    init_libgit2();
    git_repository_init_options opts;
    git_repository_init_options_init(&opts, GIT_REPOSITORY_INIT_OPTIONS_VERSION);
    opts.flags = GIT_REPOSITORY_INIT_BARE | GIT_REPOSITORY_INIT_MKPATH | GIT_REPOSITORY_INIT_NO_REINIT;
    const std::string head = "refs/heads/" + branch;
    opts.initial_head = head.c_str();
    opts.mode = GIT_REPOSITORY_INIT_SHARED_UMASK;
    git_repository* r = nullptr;
    if (git_repository_init_ext(&r, dir.c_str(), &opts) < 0) fail("create repository " + dir.string());
    Repository repo(r, dir);
    if (initial) {
        git_oid tree_id;
        if (!template_dir.empty()) {
            tree_id = tree_from_directory(r, template_dir);
        } else {
            BuilderPtr b;
            git_treebuilder* raw = nullptr;
            check(git_treebuilder_new(&raw, r, nullptr), "tree builder");
            b.reset(raw);
            check(git_treebuilder_write(&tree_id, b.get()), "empty tree");
        }
        git_tree* t = nullptr;
        check(git_tree_lookup(&t, r, &tree_id), "initial tree");
        TreePtr tree(t);
        auto sig = signature(author);
        git_oid commit_id;
        check(git_commit_create(&commit_id, r, head.c_str(), sig.get(), sig.get(), nullptr, "Initial configuration\n", tree.get(), 0,
                                nullptr),
              "initial commit");
    }
    return repo;
}

Repository::Repository(Repository&& o) noexcept : repo_(std::exchange(o.repo_, nullptr)), path_(std::move(o.path_)) {}
Repository& Repository::operator=(Repository&& o) noexcept {
    if (this != &o) {
        if (repo_) git_repository_free(repo_);
        repo_ = std::exchange(o.repo_, nullptr);
        path_ = std::move(o.path_);
    }
    return *this;
}
Repository::~Repository() {
    if (repo_) git_repository_free(repo_);
}

RefList Repository::refs() const {
    RefList out;
    git_reference* h = nullptr;
    if (git_reference_lookup(&h, repo_, "HEAD") == 0) {
        RefPtr head(h);
        if (git_reference_type(head.get()) == GIT_REFERENCE_SYMBOLIC) out.head_target = git_reference_symbolic_target(head.get());
        git_oid id;
        if (git_reference_name_to_id(&id, repo_, "HEAD") == 0) out.head = from_git(&id);
    }
    git_reference_iterator* it = nullptr;
    check(git_reference_iterator_new(&it, repo_), "list references");
    RefIterPtr iter(it);
    git_reference* ref = nullptr;
    int rc;
    while ((rc = git_reference_next(&ref, iter.get())) == 0) {
        RefPtr r(ref);
        Ref e;
        e.name = git_reference_name(r.get());
        if (git_reference_type(r.get()) == GIT_REFERENCE_SYMBOLIC) {
            git_oid id;
            if (git_reference_name_to_id(&id, repo_, e.name.c_str()) < 0) continue;  // dangling symbolic ref
            e.oid = from_git(&id);
        } else {
            e.oid = from_git(git_reference_target(r.get()));
        }
        if (type_of(e.oid) == ObjectType::tag) e.peeled = peel(e.oid);
        out.refs.push_back(std::move(e));
    }
    if (rc != GIT_ITEROVER) fail("list references");
    std::sort(out.refs.begin(), out.refs.end(), [](const Ref& a, const Ref& b) { return a.name < b.name; });
    return out;
}

std::optional<ObjectType> Repository::type_of(const Oid& id) const {
    git_odb* o = nullptr;
    check(git_repository_odb(&o, repo_), "object database");
    OdbPtr odb(o);
    std::size_t len = 0;
    git_object_t type = GIT_OBJECT_INVALID;
    const git_oid g = to_git(id);
    if (git_odb_read_header(&len, &type, odb.get(), &g) < 0) {
        git_error_clear();
        return std::nullopt;
    }
    return convert(type);
}

std::optional<CommitInfo> Repository::commit(const Oid& id) const {
    const git_oid g = to_git(id);
    git_commit* c = nullptr;
    if (git_commit_lookup(&c, repo_, &g) < 0) {
        git_error_clear();
        return std::nullopt;
    }
    CommitPtr commit(c);
    CommitInfo info;
    const auto n = git_commit_parentcount(commit.get());
    info.parents.reserve(n);
    for (unsigned i = 0; i < n; ++i) info.parents.push_back(from_git(git_commit_parent_id(commit.get(), i)));
    info.time = git_commit_time(commit.get());
    info.tree = from_git(git_commit_tree_id(commit.get()));
    return info;
}

std::optional<Oid> Repository::tag_target(const Oid& id) const {
    const git_oid g = to_git(id);
    git_tag* t = nullptr;
    if (git_tag_lookup(&t, repo_, &g) < 0) {
        git_error_clear();
        return std::nullopt;
    }
    TagPtr tag(t);
    return from_git(git_tag_target_id(tag.get()));
}

std::optional<Oid> Repository::peel(const Oid& id) const {
    Oid cur = id;
    for (int depth = 0; depth < 32; ++depth) {  // tag chains are short; a loop is corruption
        auto next = tag_target(cur);
        if (!next) return has(cur) ? std::optional<Oid>(cur) : std::nullopt;
        cur = *next;
    }
    return std::nullopt;
}

PackResult Repository::build_pack(const PackPlan& plan) const {
    git_packbuilder* p = nullptr;
    check(git_packbuilder_new(&p, repo_), "pack builder");
    PackPtr pb(p);
    git_packbuilder_set_threads(pb.get(), 1);

    // Everything reachable from the edges' trees: the client has it.
    std::unordered_set<Oid, OidHash> known;
    std::vector<Oid> stack;
    for (const auto& e : plan.edges)
        if (auto c = commit(e)) stack.push_back(c->tree);
    while (!stack.empty()) {
        const Oid t = stack.back();
        stack.pop_back();
        if (!known.insert(t).second) continue;
        const git_oid g = to_git(t);
        git_tree* raw = nullptr;
        if (git_tree_lookup(&raw, repo_, &g) < 0) {
            git_error_clear();
            continue;
        }
        TreePtr tree(raw);
        const auto n = git_tree_entrycount(tree.get());
        for (std::size_t i = 0; i < n; ++i) {
            const git_tree_entry* e = git_tree_entry_byindex(tree.get(), i);
            if (git_tree_entry_filemode(e) == GIT_FILEMODE_COMMIT) continue;
            const Oid id = from_git(git_tree_entry_id(e));
            if (git_tree_entry_type(e) == GIT_OBJECT_TREE) stack.push_back(id);
            else known.insert(id);
        }
    }

    std::unordered_set<Oid, OidHash> inserted;
    auto insert = [&](const Oid& id, const char* name) {
        if (!inserted.insert(id).second) return false;
        const git_oid g = to_git(id);
        check(git_packbuilder_insert(pb.get(), &g, name), "pack object " + id.hex());
        return true;
    };
    // Trees are walked with their path names, which the delta search uses to pair similar objects.
    std::function<void(const Oid&)> add_tree = [&](const Oid& t) {
        if (known.count(t) || !insert(t, nullptr)) return;
        const git_oid g = to_git(t);
        git_tree* raw = nullptr;
        check(git_tree_lookup(&raw, repo_, &g), "tree " + t.hex());
        TreePtr tree(raw);
        const auto n = git_tree_entrycount(tree.get());
        for (std::size_t i = 0; i < n; ++i) {
            const git_tree_entry* e = git_tree_entry_byindex(tree.get(), i);
            if (git_tree_entry_filemode(e) == GIT_FILEMODE_COMMIT) continue;  // submodule: not our object
            const Oid id = from_git(git_tree_entry_id(e));
            if (git_tree_entry_type(e) == GIT_OBJECT_TREE) add_tree(id);
            else if (!known.count(id)) insert(id, git_tree_entry_name(e));
        }
    };
    for (const auto& c : plan.commits) {
        auto info = commit(c);
        if (!info) throw GitError("commit " + c.hex() + " is missing");
        if (!insert(c, nullptr)) continue;
        add_tree(info->tree);
    }
    for (const auto& x : plan.extra) {
        auto t = type_of(x);
        if (!t) throw GitError("object " + x.hex() + " is missing");
        if (*t == ObjectType::tree) add_tree(x);
        else if (*t == ObjectType::commit) {
            if (insert(x, nullptr)) add_tree(commit(x)->tree);
        } else insert(x, nullptr);
    }

    git_buf buf = GIT_BUF_INIT;
    check(git_packbuilder_write_buf(&buf, pb.get()), "write pack");
    PackResult out;
    out.data.assign(buf.ptr, buf.size);
    git_buf_dispose(&buf);
    out.objects = git_packbuilder_object_count(pb.get());
    return out;
}

Oid Repository::commit_tree_change(const std::string& branch, std::string_view path, const std::string* content, const Author& author,
                                   const std::string& message) {
    const auto e = prepare_edit(branch, path, content, author, message);
    const std::string ref = "refs/heads/" + branch;
    const git_oid commit_id = to_git(e.new_id), parent_id = to_git(e.old_id);
    git_reference* out = nullptr;
    const std::string log = "fleetconf: " + message.substr(0, message.find('\n'));
    const int rc = !e.old_id.is_zero() ? git_reference_create_matching(&out, repo_, ref.c_str(), &commit_id, 1, &parent_id, log.c_str())
                                       : git_reference_create(&out, repo_, ref.c_str(), &commit_id, 0, log.c_str());
    if (rc < 0) fail("branch " + branch + " moved while committing; try again");
    git_reference_free(out);
    return e.new_id;
}

Repository::Edit Repository::prepare_edit(const std::string& branch, std::string_view path, const std::string* content,
                                          const Author& author, const std::string& message) {
    if (auto err = check_repo_path(path); !err.empty()) throw GitError(std::string(path) + ": " + err);
    const std::string ref = "refs/heads/" + branch;
    git_oid parent_id;
    CommitPtr parent;
    TreePtr base;
    const bool born = git_reference_name_to_id(&parent_id, repo_, ref.c_str()) == 0;
    git_error_clear();
    if (born) {
        git_commit* c = nullptr;
        check(git_commit_lookup(&c, repo_, &parent_id), "branch " + branch);
        parent.reset(c);
        git_tree* t = nullptr;
        check(git_commit_tree(&t, parent.get()), "branch " + branch);
        base.reset(t);
    }
    const std::string path_str(path);
    git_tree_update upd{};
    upd.path = path_str.c_str();
    if (content) {
        check(git_blob_create_from_buffer(&upd.id, repo_, content->data(), content->size()), "store file");
        upd.action = GIT_TREE_UPDATE_UPSERT;
        upd.filemode = GIT_FILEMODE_BLOB;
    } else {
        if (!base) throw GitError(path_str + ": not in the repository (branch " + branch + " has no commit)");
        git_tree_entry* e = nullptr;
        if (git_tree_entry_bypath(&e, base.get(), path_str.c_str()) < 0) {
            git_error_clear();
            throw GitError(path_str + ": not in the repository");
        }
        git_tree_entry_free(e);
        upd.action = GIT_TREE_UPDATE_REMOVE;
    }
    git_oid tree_id;
    if (!base) {
        // No commit yet: start from the empty tree.
        git_treebuilder* raw = nullptr;
        check(git_treebuilder_new(&raw, repo_, nullptr), "tree builder");
        BuilderPtr b(raw);
        git_oid empty;
        check(git_treebuilder_write(&empty, b.get()), "empty tree");
        git_tree* t = nullptr;
        check(git_tree_lookup(&t, repo_, &empty), "empty tree");
        base.reset(t);
    }
    check(git_tree_create_updated(&tree_id, repo_, base.get(), 1, &upd), "update tree");
    git_tree* t = nullptr;
    check(git_tree_lookup(&t, repo_, &tree_id), "new tree");
    TreePtr tree(t);
    auto sig = signature(author);
    git_oid commit_id;
    const git_commit* parents[1] = {parent.get()};
    check(git_commit_create(&commit_id, repo_, nullptr, sig.get(), sig.get(), nullptr, message.c_str(), tree.get(), born ? 1 : 0,
                            born ? parents : nullptr),
          "commit");
    return {born ? from_git(&parent_id) : Oid{}, from_git(&commit_id)};
}

Oid Repository::put_file(const std::string& branch, std::string_view path, std::string_view content, const Author& author,
                         const std::string& message) {
    const std::string c(content);
    return commit_tree_change(branch, path, &c, author, message);
}

Oid Repository::remove_file(const std::string& branch, std::string_view path, const Author& author, const std::string& message) {
    return commit_tree_change(branch, path, nullptr, author, message);
}

std::vector<LogEntry> Repository::log(const std::string& rev, std::size_t max) const {
    auto start = resolve_rev(repo_, rev);
    git_revwalk* w = nullptr;
    check(git_revwalk_new(&w, repo_), "log");
    WalkPtr walk(w);
    git_revwalk_sorting(walk.get(), GIT_SORT_TOPOLOGICAL | GIT_SORT_TIME);
    check(git_revwalk_push(walk.get(), git_object_id(start.get())), "log");
    std::vector<LogEntry> out;
    git_oid id;
    while (out.size() < max && git_revwalk_next(&id, walk.get()) == 0) {
        git_commit* c = nullptr;
        check(git_commit_lookup(&c, repo_, &id), "log");
        CommitPtr commit(c);
        const git_signature* a = git_commit_author(commit.get());
        const char* summary = git_commit_summary(commit.get());
        out.push_back({from_git(&id), git_commit_time(commit.get()), std::string(a->name) + " <" + a->email + ">", summary ? summary : ""});
    }
    return out;
}

Repository::Shown Repository::show(const std::string& rev, std::string_view path) const {
    auto obj = resolve_rev(repo_, rev);
    git_tree* t = nullptr;
    check(git_commit_tree(&t, reinterpret_cast<git_commit*>(obj.get())), "tree of " + rev);
    TreePtr root(t);
    TreePtr sub;
    const git_tree* tree = root.get();
    if (!path.empty()) {
        if (auto err = check_repo_path(path); !err.empty()) throw GitError(std::string(path) + ": " + err);
        git_tree_entry* e = nullptr;
        const std::string p(path);
        if (git_tree_entry_bypath(&e, root.get(), p.c_str()) < 0) {
            git_error_clear();
            throw GitError(p + ": not in " + rev);
        }
        EntryPtr entry(e);
        if (git_tree_entry_type(entry.get()) == GIT_OBJECT_BLOB) {
            git_blob* b = nullptr;
            check(git_blob_lookup(&b, repo_, git_tree_entry_id(entry.get())), p);
            BlobPtr blob(b);
            return {false, std::string(static_cast<const char*>(git_blob_rawcontent(blob.get())),
                                       static_cast<std::size_t>(git_blob_rawsize(blob.get())))};
        }
        if (git_tree_entry_type(entry.get()) != GIT_OBJECT_TREE) throw GitError(p + ": a submodule, not shown");
        git_tree* st = nullptr;
        check(git_tree_lookup(&st, repo_, git_tree_entry_id(entry.get())), p);
        sub.reset(st);
        tree = sub.get();
    }
    Shown out{true, {}};
    const auto n = git_tree_entrycount(tree);
    for (std::size_t i = 0; i < n; ++i) {
        const git_tree_entry* e = git_tree_entry_byindex(tree, i);
        char mode[8];
        std::snprintf(mode, sizeof mode, "%06o", static_cast<unsigned>(git_tree_entry_filemode(e)));
        out.content += std::string(mode) + " " + mode_type(git_tree_entry_filemode(e)) + " " + from_git(git_tree_entry_id(e)).hex() + "\t" +
                       git_tree_entry_name(e) + "\n";
    }
    return out;
}

std::uint64_t Repository::disk_size() const {
    std::uint64_t total = 0;
    std::error_code ec;
    for (auto it = std::filesystem::recursive_directory_iterator(path_ / "objects", ec);
         !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
        if (it->is_regular_file(ec)) total += it->file_size(ec);
    }
    return total;
}

}  // namespace fleetconf::gitconf
