#include "fleetconf/gitconf/pktline.hpp"
#include "fleetconf/gitconf/receive_pack.hpp"

#include <catch2/catch.hpp>

#include "../support/temp_dir.hpp"
#include <git2.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include <fcntl.h>
#include <unistd.h>

using namespace fleetconf::gitconf;
namespace fs = std::filesystem;

namespace {
using fleetconf::test::TempDir;

std::string pl(std::string_view s) {
    std::string out;
    pkt::write(out, s);
    return out;
}

// Commits `files` on top of `parent` in `repo` without moving any ref (the objects a push would bring).
Oid loose_commit(Repository& repo, const std::optional<Oid>& parent, const std::string& path, const std::string& content,
                 git_filemode_t mode = GIT_FILEMODE_BLOB) {
    git_repository* r = repo.raw();
    git_oid blob;
    REQUIRE(git_blob_create_from_buffer(&blob, r, content.data(), content.size()) == 0);
    git_tree* base = nullptr;
    git_commit* pc = nullptr;
    if (parent) {
        git_oid p;
        std::memcpy(p.id, parent->bytes.data(), 20);
        REQUIRE(git_commit_lookup(&pc, r, &p) == 0);
        REQUIRE(git_commit_tree(&base, pc) == 0);
    }
    git_tree_update upd{};
    upd.action = GIT_TREE_UPDATE_UPSERT;
    upd.id = blob;
    upd.filemode = mode;
    if (mode == GIT_FILEMODE_COMMIT) std::memset(blob.id, 0x5a, sizeof blob.id);  // a gitlink names a commit elsewhere
    upd.path = path.c_str();
    git_oid tree_id;
    if (!base) {
        git_treebuilder* b = nullptr;
        REQUIRE(git_treebuilder_new(&b, r, nullptr) == 0);
        git_oid empty;
        REQUIRE(git_treebuilder_write(&empty, b) == 0);
        git_treebuilder_free(b);
        REQUIRE(git_tree_lookup(&base, r, &empty) == 0);
    }
    REQUIRE(git_tree_create_updated(&tree_id, r, base, 1, &upd) == 0);
    git_tree* tree = nullptr;
    REQUIRE(git_tree_lookup(&tree, r, &tree_id) == 0);
    git_signature* sig = nullptr;
    REQUIRE(git_signature_new(&sig, "t", "t@t", 1700000000, 0) == 0);
    git_oid id;
    const git_commit* parents[1] = {pc};
    REQUIRE(git_commit_create(&id, r, nullptr, sig, sig, nullptr, "m\n", tree, pc ? 1 : 0, pc ? parents : nullptr) == 0);
    git_signature_free(sig);
    git_tree_free(tree);
    git_tree_free(base);
    git_commit_free(pc);
    Oid o;
    std::memcpy(o.bytes.data(), id.id, 20);
    return o;
}
}  // namespace

TEST_CASE("receive-pack: advertisement and command parsing", "[gitconf][receive-pack]") {
    TempDir d;
    auto repo = Repository::create(d.path / "r.git", "main", false);
    const auto adv = advertise_receive(repo.refs());
    CHECK(adv.find(std::string(40, '0') + " capabilities^{}") != std::string::npos);
    CHECK(adv.find("report-status delete-refs side-band-64k quiet atomic ofs-delta") != std::string::npos);

    const std::string a(40, 'a'), b(40, 'b'), z(40, '0');
    const std::string req =
        pl(z + " " + a + " refs/heads/main" + std::string(1, '\0') + "report-status side-band-64k atomic agent=git/2\n") +
        pl(b + " " + z + " refs/heads/old\n") + "0000" + "PACK....";
    const auto split = GENERATE_COPY(range<std::size_t>(0, req.size() + 1));
    ReceivePack rp;
    std::string buf = req.substr(0, split);
    buf.erase(0, rp.feed(buf));
    buf += req.substr(split);
    buf.erase(0, rp.feed(buf));
    rp.end_of_input();
    REQUIRE(rp.state() == ReceivePack::State::done);
    REQUIRE(rp.commands().size() == 2);
    CHECK(rp.commands()[0].is_create());
    CHECK(rp.commands()[1].is_delete());
    CHECK(rp.commands()[1].name == "refs/heads/old");
    CHECK(rp.report_status());
    CHECK(rp.side_band());
    CHECK(rp.atomic());
    CHECK(rp.pack() == "PACK....");
}

TEST_CASE("receive-pack: malformed commands and oversized packs are refused", "[gitconf][receive-pack]") {
    const std::string a(40, 'a'), z(40, '0');
    for (const std::string& bad : {pl("hello\n"), pl(z + " " + a + "refs/heads/main\n"), pl(z + " xyz refs/heads/main\n"),
                                   std::string("0001"), pl("push-cert\0x\n")}) {
        ReceivePack rp;
        rp.feed(bad);
        CHECK(rp.state() == ReceivePack::State::failed);
    }
    ReceivePack rp(PushLimits{.max_pack = 10});
    rp.feed(pl(z + " " + a + " refs/heads/main\n") + "0000" + std::string(11, 'P'));
    CHECK(rp.state() == ReceivePack::State::failed);
    CHECK(rp.error() == "pack exceeds the maximum push size (10 bytes)");
    ReceivePack early;
    early.feed(pl(z + " " + a + " refs/heads/main\n"));
    early.end_of_input();
    CHECK(early.state() == ReceivePack::State::failed);
}

TEST_CASE("receive-pack: apply_push moves refs by compare-and-swap and applies the policy", "[gitconf][receive-pack]") {
    TempDir d;
    auto repo = Repository::create(d.path / "r.git", "main", true, {}, Author{"t", "t@t", 1700000000});
    const Oid base = *repo.refs().head;
    const Oid ok = loose_commit(repo, base, "config.json", "{\"a\":1}");
    const Oid bad_json = loose_commit(repo, base, "config.json", "{nope");
    const Oid unrelated = loose_commit(repo, std::nullopt, "x.txt", "x");
    const Oid big = loose_commit(repo, base, "big.bin", std::string(2000, 'b'));
    const PushPolicy policy;
    const PushLimits limits{.max_pack = 1 << 20, .max_object = 1000, .max_repo = 1 << 30, .max_commands = 10};
    const Oid zero;

    auto one = [&](RefCommand c) { return apply_push(repo, {std::move(c)}, {}, false, policy, limits); };
    CHECK(one({base, bad_json, "refs/heads/main", {}}).commands[0].error == "config.json is not valid JSON");
    CHECK(one({base, big, "refs/heads/main", {}}).commands[0].error == "big.bin is 2000 bytes, over the limit of 1000");
    CHECK(one({base, unrelated, "refs/heads/main", {}}).commands[0].error == "non-fast-forward");
    CHECK(one({zero, zero, "refs/heads/main", {}}).commands[0].error == "deleting the configuration branch is not allowed");
    CHECK(one({zero, ok, "HEAD", {}}).commands[0].error == "funny refname");
    CHECK(one({ok, ok, "refs/heads/main", {}}).commands[0].error == "stale info (the ref moved; fetch first)");  // old id is not base
    Oid missing;
    missing.bytes.fill(0x42);
    CHECK(one({base, missing, "refs/heads/main", {}}).commands[0].error ==
          "missing necessary objects: 4242424242424242424242424242424242424242");

    // The configuration branch's policy flags (docs/gitconf.md), each off and on; other branches are free.
    {
        PushPolicy free = policy;
        free.allow_non_fast_forward = true;
        free.allow_delete = true;
        auto with = [&](const PushPolicy& p, RefCommand c) {
            return apply_push(repo, {std::move(c)}, {}, false, p, limits).commands[0].error;
        };
        CHECK(with(policy, {base, unrelated, "refs/heads/main", {}}) == "non-fast-forward");
        CHECK(with(policy, {base, zero, "refs/heads/main", {}}) == "deleting the configuration branch is not allowed");
        REQUIRE(with(free, {base, unrelated, "refs/heads/main", {}}).empty());  // allow_non_fast_forward
        CHECK(*repo.refs().head == unrelated);
        REQUIRE(with(free, {unrelated, base, "refs/heads/main", {}}).empty());  // and back
        REQUIRE(with(policy, {zero, unrelated, "refs/heads/other", {}}).empty());
        CHECK(with(policy, {unrelated, base, "refs/heads/other", {}}).empty());  // not the configuration branch
        CHECK(with(policy, {base, zero, "refs/heads/other", {}}).empty());
        REQUIRE(with(free, {base, zero, "refs/heads/main", {}}).empty());  // allow_delete
        CHECK_FALSE(repo.refs().head);
        REQUIRE(with(free, {zero, base, "refs/heads/main", {}}).empty());
        CHECK(*repo.refs().head == base);
    }

    auto r = one({base, ok, "refs/heads/main", {}});
    CHECK(r.all_ok());
    CHECK(r.paths == std::vector<std::string>{"config.json"});
    CHECK(*repo.refs().head == ok);
    CHECK(report(r, false) == pl("unpack ok\n") + pl("ok refs/heads/main\n") + "0000");

    // atomic: one bad command, nothing moves
    auto at = apply_push(repo, {{zero, ok, "refs/heads/side", {}}, {base, ok, "refs/heads/main", {}}}, {}, true, policy, limits);
    CHECK(at.commands[0].error == "atomic push failed");
    CHECK(at.commands[1].error == "stale info (the ref moved; fetch first)");
    CHECK(repo.refs().refs.size() == 1);
    // not atomic: the good one moves
    auto na = apply_push(repo, {{zero, ok, "refs/heads/side", {}}, {base, ok, "refs/heads/main", {}}}, {}, false, policy, limits);
    CHECK(na.commands[0].error.empty());
    CHECK(repo.refs().refs.size() == 2);
    const auto sb = report(na, true);
    CHECK(sb.substr(4, 1) == "\1");
    CHECK(sb.find("ng refs/heads/main stale info") != std::string::npos);
    // a corrupt pack is an unpack error for every command
    auto broken = apply_push(repo, {{ok, ok, "refs/heads/side", {}}}, "PACKgarbage", false, policy, limits);
    CHECK_FALSE(broken.unpack_error.empty());
    CHECK(broken.commands[0].error == "unpacker error");
}

TEST_CASE("receive-pack: symbolic links and gitlinks are refused, with a reason (issue 16.7)", "[gitconf][receive-pack]") {
    TempDir d;
    auto repo = Repository::create(d.path / "l.git", "main", true, {}, Author{"t", "t@t", 1700000000});
    const Oid base = *repo.refs().head;
    const Oid passwd = loose_commit(repo, base, "README", "/etc/passwd", GIT_FILEMODE_LINK);
    const Oid keys = loose_commit(repo, base, "keys", "../../ssh/host_ed25519", GIT_FILEMODE_LINK);
    const Oid inside = loose_commit(repo, base, "conf/current", "v2/config.json", GIT_FILEMODE_LINK);
    const Oid gitlink = loose_commit(repo, base, "vendor", "", GIT_FILEMODE_COMMIT);
    const PushLimits limits{};
    auto one = [&](const Oid& tip, const PushPolicy& policy) {
        return apply_push(repo, {{base, tip, "refs/heads/main", {}}}, {}, false, policy, limits).commands[0].error;
    };
    const PushPolicy strict;
    CHECK(one(passwd, strict) == "README is a symbolic link, which is not accepted (allow_symlinks is off)");
    CHECK(one(inside, strict) == "conf/current is a symbolic link, which is not accepted (allow_symlinks is off)");
    CHECK(one(gitlink, strict) == "vendor is a gitlink (submodule), which is not accepted");
    PushPolicy links;
    links.allow_symlinks = true;
    CHECK(one(passwd, links) == "README is a symbolic link to \"/etc/passwd\", outside the tree (absolute, or with \"..\")");
    CHECK(one(keys, links) == "keys is a symbolic link to \"../../ssh/host_ed25519\", outside the tree (absolute, or with \"..\")");
    CHECK(one(gitlink, links) == "vendor is a gitlink (submodule), which is not accepted");
    CHECK(*repo.refs().head == base);  // nothing moved
    CHECK(one(inside, links).empty());
    CHECK(*repo.refs().head == inside);

    CHECK(symlink_target_inside("a/b"));
    CHECK(symlink_target_inside("a..b/c"));
    CHECK_FALSE(symlink_target_inside("a/../b"));
    CHECK_FALSE(symlink_target_inside(".."));
    CHECK_FALSE(symlink_target_inside("/x"));
    CHECK_FALSE(symlink_target_inside(""));
    CHECK(tree_entry_name_ok("config.json"));
    for (const char* bad : {"", ".", "..", ".git", ".GIT", "a/b"}) CHECK_FALSE(tree_entry_name_ok(bad));
}

TEST_CASE("validator: the checkout holds no link; an allowed link is a plain file with its target", "[gitconf][validator]") {
    TempDir d;
    fs::permissions(d.path, fs::perms::owner_all | fs::perms::others_exec);  // validators run as nobody under root
    auto repo = Repository::create(d.path / "c.git", "main", true, {}, Author{"t", "t@t", 1700000000});
    const Oid base = *repo.refs().head;
    // Whatever the push check allowed, the validator's checkout writes no link: here one straight into the
    // repository, the shape a push of README -> /etc/passwd had.
    const Oid link = loose_commit(repo, base, "README", "/etc/passwd", GIT_FILEMODE_LINK);
    const auto script = d.path / "first-line.sh";
    {
        std::ofstream f(script);
        f << "#!/bin/sh\nif [ -L README ]; then echo \"README is a link\"; exit 1; fi\necho \"$(head -n 1 README)\"; exit 1\n";
    }
    fs::permissions(script,
                    fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec | fs::perms::others_read | fs::perms::others_exec);
    ValidatorRun run{{script.string()}, std::chrono::milliseconds(5000), d.path / "scratch", {}};
    CHECK(run_validator(repo, link, run) == "validator: /etc/passwd");  // the target as text, not the file's lines
}

TEST_CASE("validator: without privileges, descriptors or a clean environment leak", "[gitconf][validator]") {
    TempDir d;
    fs::permissions(d.path, fs::perms::owner_all | fs::perms::others_exec);
    auto repo = Repository::create(d.path / "p.git", "main", true);
    const auto tip = repo.put_file("main", "config.json", "{}\n", {}, "c\n");
    // Not close-on-exec, so a child would inherit it; a high number, which the shell does not use itself.
    const int devnull = ::open("/dev/null", O_RDONLY);
    const int leaked = ::dup2(devnull, 157);
    ::close(devnull);
    REQUIRE(leaked == 157);
    const auto script = d.path / "probe.sh";
    {
        std::ofstream f(script);
        f << "#!/bin/sh\necho \"uid=$(id -u) fd=$(test -e /proc/$$/fd/" << leaked
          << " && echo open || echo closed) secret=${SECRET:-unset}\"; exit 1\n";
    }
    fs::permissions(script,
                    fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec | fs::perms::others_read | fs::perms::others_exec);
    ::setenv("SECRET", "from-the-server", 1);
    ValidatorRun run{{script.string()}, std::chrono::milliseconds(5000), d.path / "scratch", {}};
    const auto uid = ::geteuid() == 0 ? std::string("65534") : std::to_string(::geteuid());
    CHECK(run_validator(repo, tip, run) == "validator: uid=" + uid + " fd=closed secret=unset");
    ::unsetenv("SECRET");
    ::close(leaked);
}

TEST_CASE("validator: runs in a checkout of the pushed tree, without a shell, with a timeout", "[gitconf][validator]") {
    TempDir d;
    fs::permissions(d.path, fs::perms::owner_all | fs::perms::others_exec);
    auto repo = Repository::create(d.path / "v.git", "main", true);
    const auto good = repo.put_file("main", "config.json", "{\"ok\":true}\n", {}, "good\n");
    const auto bad = repo.put_file("main", "config.json", "{\"forbidden\":true}\n", {}, "bad\n");
    const auto script = d.path / "check.sh";
    {
        std::ofstream f(script);
        f << "#!/bin/sh\nif grep -q forbidden config.json; then echo \"forbidden word in config.json ($FLEETCONF_NEW)\"; exit 1; fi\n"
             "test -f config.json || exit 3\nexit 0\n";
    }
    fs::permissions(script, fs::perms::owner_all | fs::perms::others_read | fs::perms::others_exec);
    ValidatorRun run{{script.string()}, std::chrono::milliseconds(5000), d.path / "scratch", {{"FLEETCONF_NEW", "x"}}};
    CHECK(run_validator(repo, good, run).empty());
    CHECK(run_validator(repo, bad, run) == "validator: forbidden word in config.json (x)");
    // the checkout is removed afterwards
    CHECK(fs::is_empty(d.path / "scratch"));
    // A validator past its deadline is killed with its whole process group: the shell and the sleep it
    // started are both gone when run_validator returns (the sleep would otherwise run for 60 s).
    const auto pids = d.path / "pids";
    fs::create_directories(pids);
    fs::permissions(pids, fs::perms::all);  // the validator may run as nobody
    ValidatorRun slow{
        {"/bin/sh", "-c", "echo $$ > " + (pids / "sh").string() + "; /bin/sleep 60 & echo $! > " + (pids / "sleep").string() + "; wait"},
        std::chrono::milliseconds(500),
        d.path / "scratch",
        {}};
    CHECK(run_validator(repo, good, slow) == "validator timed out after 0 s");
    for (const char* which : {"sh", "sleep"}) {
        std::ifstream f(pids / which);
        pid_t pid = 0;
        REQUIRE(f >> pid);
        REQUIRE(pid > 0);
        INFO(which << " " << pid);
        // Gone, or a zombie waiting for whoever inherited it to reap it: either way not running. SIGKILL is
        // delivered asynchronously, so the check waits (up to 10 s) for that state instead of reading it once.
        auto running = [&] {
            std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
            std::string line;
            return std::getline(stat, line) && line.find(") Z ") == std::string::npos;
        };
        for (int i = 0; i < 200 && running(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
        CHECK_FALSE(running());
    }
    ValidatorRun missing{{"/nonexistent/validator"}, std::chrono::milliseconds(2000), d.path / "scratch", {}};
    CHECK(run_validator(repo, good, missing) == std::string("validator: cannot run /nonexistent/validator") +
                                                    (::geteuid() == 0 ? " (as the unprivileged user nobody)" : "") +
                                                    ": No such file or directory");
}

TEST_CASE("receive-pack: the repository size limit is checked after indexing", "[gitconf][receive-pack]") {
    TempDir d;
    auto repo = Repository::create(d.path / "s.git", "main", true, {}, Author{"t", "t@t", 1700000000});
    const Oid base = *repo.refs().head;
    const Oid next = loose_commit(repo, base, "config.json", "{\"a\":1}");
    const auto pack = repo.build_pack(PackPlan{{next}, {base}, {}});
    PushLimits tiny;
    tiny.max_repo = 1;
    auto r = apply_push(repo, {{base, next, "refs/heads/main", {}}}, pack.data, false, PushPolicy{}, tiny);
    CHECK(r.unpack_error.empty());
    CHECK(r.commands[0].error.find("would exceed") != std::string::npos);
    CHECK(*repo.refs().head == base);
    auto ok = apply_push(repo, {{base, next, "refs/heads/main", {}}}, pack.data, false, PushPolicy{}, PushLimits{});
    CHECK(ok.all_ok());
}
