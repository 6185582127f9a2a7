#include "fleetconf/gitconf/pktline.hpp"
#include "fleetconf/gitconf/repo.hpp"
#include "fleetconf/gitconf/upload_pack.hpp"

#include <catch2/catch.hpp>

#include "../support/temp_dir.hpp"
#include <git2.h>

#include <cstring>
#include <filesystem>
#include <fstream>

using namespace fleetconf::gitconf;
namespace fs = std::filesystem;

namespace {

using fleetconf::test::TempDir;

std::string pl(std::string_view s) {
    std::string out;
    pkt::write(out, s);
    return out;
}

std::vector<std::string> lines_of(std::string_view data) {
    std::vector<std::string> out;
    while (!data.empty()) {
        pkt::Packet p;
        std::size_t used = 0;
        if (pkt::parse(data, p, used)) break;
        out.push_back(p.kind == pkt::Kind::flush ? "0000" : p.kind == pkt::Kind::delim ? "0001" : std::string(p.line()));
        data.remove_prefix(used);
    }
    return out;
}

// A repository with three commits on main and an annotated tag on the first.
struct Fixture {
    TempDir dir;
    std::optional<Repository> repo;
    std::vector<Oid> commits;  // oldest first
    Oid tag;
    Fixture() {
        repo.emplace(Repository::create(dir.path / "r.git", "main", true));
        commits.push_back(*repo->refs().head);
        commits.push_back(repo->put_file("main", "config.json", "{\"v\":1}\n", {}, "one\n"));
        commits.push_back(repo->put_file("main", "htdocs/index.html", "<h1>hi</h1>\n", {}, "two\n"));
        git_object* target = nullptr;
        const git_oid first = [&] {
            git_oid g;
            std::memcpy(g.id, commits[0].bytes.data(), 20);
            return g;
        }();
        REQUIRE(git_object_lookup(&target, repo->raw(), &first, GIT_OBJECT_COMMIT) == 0);
        git_signature* sig = nullptr;
        REQUIRE(git_signature_now(&sig, "t", "t@t") == 0);
        git_oid tag_id;
        REQUIRE(git_tag_create(&tag_id, repo->raw(), "v1", target, sig, "release\n", 0) == 0);
        std::memcpy(tag.bytes.data(), tag_id.id, 20);
        git_signature_free(sig);
        git_object_free(target);
    }
};

}  // namespace

TEST_CASE("repo paths: only plain relative paths inside the repository", "[gitconf][repo]") {
    for (const char* ok : {"config.json", "htdocs/index.html", "a/b/c/d", ".hidden", "git", "a.git/x"}) CHECK(check_repo_path(ok).empty());
    for (const char* bad : {"", "/etc/passwd", "../x", "a/../b", "a//b", "a/", "./a", ".git/config", "a/.GIT/b", "a\\b"})
        CHECK_FALSE(check_repo_path(bad).empty());
    CHECK_FALSE(check_repo_path(std::string("a\0b", 3)).empty());
}

TEST_CASE("repo: put, rm, show, log through libgit2", "[gitconf][repo]") {
    TempDir d;
    auto repo = Repository::create(d.path / "x.git", "main", true);
    CHECK(repo.log("refs/heads/main", 10).size() == 1);
    const auto c1 = repo.put_file("main", "dir/a.txt", "A\n", {"Op", "op@x"}, "add a\n");
    repo.put_file("main", "b.txt", "B\n", {}, "add b\n");
    CHECK(repo.show("refs/heads/main", "dir/a.txt").content == "A\n");
    const auto listing = repo.show("refs/heads/main", "");
    CHECK(listing.is_tree);
    CHECK(listing.content.find("\tb.txt\n") != std::string::npos);
    CHECK(listing.content.find("040000 tree") != std::string::npos);
    repo.remove_file("main", "b.txt", {}, "rm b\n");
    CHECK_THROWS_AS(repo.show("refs/heads/main", "b.txt"), GitError);
    CHECK_THROWS_AS(repo.remove_file("main", "b.txt", {}, "again\n"), GitError);
    CHECK_THROWS_AS(repo.put_file("main", "../escape", "x", {}, "no\n"), GitError);
    const auto log = repo.log("refs/heads/main", 10);
    REQUIRE(log.size() == 4);
    CHECK(log[2].id == c1);
    CHECK(log[2].author == "Op <op@x>");
    CHECK(log[2].summary == "add a");
    // a branch with no commit yet gets one from an empty tree
    auto fresh = Repository::create(d.path / "y.git", "main", false);
    CHECK_FALSE(fresh.refs().head);
    fresh.put_file("main", "f", "F", {}, "first\n");
    CHECK(fresh.refs().head);
}

TEST_CASE("repo: the first commit comes from the template folder", "[gitconf][repo]") {
    TempDir d;
    fs::create_directories(d.path / "tpl" / "sub");
    std::ofstream(d.path / "tpl" / "config.json") << "{}\n";
    std::ofstream(d.path / "tpl" / "sub" / "x") << "x\n";
    auto repo = Repository::create(d.path / "t.git", "live", true, d.path / "tpl");
    const auto refs = repo.refs();
    CHECK(refs.head_target == "refs/heads/live");
    CHECK(repo.show("refs/heads/live", "sub/x").content == "x\n");
}

TEST_CASE("v0 advertisement: HEAD first with its symref, sorted refs, peeled tags", "[gitconf][upload-pack]") {
    Fixture f;
    const auto lines = lines_of(advertise_refs(f.repo->refs(), false, true));
    REQUIRE(lines.size() == 5);
    const auto nul = lines[0].find('\0');
    REQUIRE(nul != std::string::npos);
    CHECK(lines[0].substr(0, nul) == f.commits[2].hex() + " HEAD");
    const auto caps = lines[0].substr(nul + 1);
    for (const char* c : {"multi_ack_detailed", "side-band-64k", "ofs-delta", "shallow", "deepen-since", "deepen-not", "deepen-relative",
                          "no-progress", "include-tag", "no-done", "symref=HEAD:refs/heads/main", "agent=fleetconf/", "thin-pack"})
        CHECK(caps.find(c) != std::string::npos);
    CHECK(lines[1] == f.commits[2].hex() + " refs/heads/main");
    CHECK(lines[2] == f.tag.hex() + " refs/tags/v1");
    CHECK(lines[3] == f.commits[0].hex() + " refs/tags/v1^{}");
    CHECK(lines[4] == "0000");
    // the v1 form starts with "version 1"; git:// does not offer no-done
    const auto v1 = lines_of(advertise_refs(f.repo->refs(), true, false));
    CHECK(v1[0] == "version 1");
    CHECK(v1[1].find("no-done") == std::string::npos);
}

TEST_CASE("v0 advertisement of an empty repository", "[gitconf][upload-pack]") {
    TempDir d;
    auto repo = Repository::create(d.path / "e.git", "main", false);
    const auto lines = lines_of(advertise_refs(repo.refs(), false, false));
    REQUIRE(lines.size() == 2);
    CHECK(lines[0].rfind(std::string(40, '0') + " capabilities^{}", 0) == 0);
    CHECK(lines[0].find("symref") == std::string::npos);  // HEAD is unborn
}

TEST_CASE("v0 stateful: wants, depth 1, done -> shallow section, NAK and a pack plan", "[gitconf][upload-pack]") {
    Fixture f;
    const std::string req =
        pl("want " + f.commits[2].hex() + " multi_ack_detailed side-band-64k ofs-delta\n") + pl("deepen 1") + "0000" + pl("done\n");
    // the same result whatever the split (a socket may deliver any prefix)
    const auto split = GENERATE_COPY(range<std::size_t>(0, req.size() + 1));
    UploadPack up(*f.repo, f.repo->refs(), {});
    std::string out;
    std::string buf = req.substr(0, split);
    buf.erase(0, up.feed(buf, out));
    buf += req.substr(split);
    buf.erase(0, up.feed(buf, out));
    REQUIRE(up.state() == UploadPack::State::send_pack);
    CHECK(lines_of(out) == std::vector<std::string>{"shallow " + f.commits[2].hex(), "0000", "NAK"});
    CHECK(up.job().plan.commits == std::vector<Oid>{f.commits[2]});
    CHECK(up.job().sideband == pkt::kMaxPacket);
    const auto pack = f.repo->build_pack(up.job().plan);
    CHECK(pack.objects == 5);  // commit, root tree, htdocs tree, two blobs
    std::string framed;
    up.write_pack(pack, framed);
    CHECK(up.state() == UploadPack::State::finished);
    CHECK(framed.find("PACK") != std::string::npos);
}

TEST_CASE("v0 stateful: multi_ack_detailed negotiation as git's upload-pack", "[gitconf][upload-pack]") {
    Fixture f;
    UploadPack up(*f.repo, f.repo->refs(), {});
    std::string out;
    up.feed(pl("want " + f.commits[2].hex() + " multi_ack_detailed side-band-64k\n") + "0000", out);
    CHECK(out.empty());
    up.feed(pl("have " + std::string(40, 'a') + "\n") + pl("have " + f.commits[1].hex() + "\n") + "0000", out);
    // git sends "ready" at a flush only when the round had no unknown have (got_other): not here
    CHECK(lines_of(out) == std::vector<std::string>{"ACK " + f.commits[1].hex() + " common", "NAK"});
    out.clear();
    up.feed(pl("have " + f.commits[0].hex() + "\n") + "0000", out);
    CHECK(lines_of(out) ==
          std::vector<std::string>{"ACK " + f.commits[0].hex() + " common", "ACK " + f.commits[0].hex() + " ready", "NAK"});
    out.clear();
    up.feed(pl("done\n"), out);
    CHECK(lines_of(out) == std::vector<std::string>{"ACK " + f.commits[0].hex()});
    REQUIRE(up.state() == UploadPack::State::send_pack);
    CHECK(up.job().plan.commits == std::vector<Oid>{f.commits[2]});
    auto edges = up.job().plan.edges;
    CHECK(std::find(edges.begin(), edges.end(), f.commits[1]) != edges.end());
}

TEST_CASE("v0: refusals are ERR packets", "[gitconf][upload-pack]") {
    Fixture f;
    struct Case {
        std::string request;
        bool stateless;
        const char* error;
    };
    const std::string unknown(40, 'b');
    const Case cases[] = {
        {pl("want " + unknown + "\n") + "0000", false, "not our ref"},
        {pl("want " + f.commits[1].hex() + "\n") + "0000", false, "not our ref"},  // not a tip over git://
        {pl("wont " + f.commits[2].hex() + "\n"), false, "expected to get object ID"},
        {pl("want " + f.commits[2].hex() + "\n") + pl("deepen 0") + "0000", false, "Invalid deepen"},
        {pl("want " + f.commits[2].hex() + "\n") + pl("deepen 1") + pl("deepen-since 5") + "0000", false, "cannot be used together"},
        {pl("want " + f.commits[2].hex() + "\n") + pl("deepen-not nosuch") + "0000", false, "deepen-not"},
        {pl("want " + f.commits[2].hex() + "\n") + pl("filter blob:none") + "0000", false, "filter"},
        {pl("want " + f.commits[2].hex() + "\n") + "0000" + pl("hove x"), false, "expected SHA1 list"},
        {pl("want " + f.commits[2].hex() + "\n") + "0001", false, "special packet"},
        {"zzzz", false, "four hex digits"},
    };
    for (const auto& c : cases) {
        INFO(c.request);
        UploadPack up(*f.repo, f.repo->refs(), {.stateless = c.stateless, .limits = {}});
        std::string out;
        up.feed(c.request, out);
        CHECK(up.state() == UploadPack::State::failed);
        CHECK(up.error().find(c.error) != std::string::npos);
        CHECK(out.substr(4, 4) == "ERR ");
    }
    // a want reachable from a tip is fine in stateless mode (the tips may have moved since)
    UploadPack up(*f.repo, f.repo->refs(), {.stateless = true, .limits = {}});
    std::string out;
    up.feed(pl("want " + f.commits[0].hex() + "\n") + "0000" + pl("done"), out);
    CHECK(up.state() == UploadPack::State::send_pack);
    // and a stateless request may end after its wants (the client reads the shallow section first)
    UploadPack up2(*f.repo, f.repo->refs(), {.stateless = true, .limits = {}});
    std::string out2;
    up2.feed(pl("want " + f.commits[2].hex() + "\n") + pl("deepen 1") + "0000", out2);
    up2.end_of_input(out2);
    CHECK(up2.state() == UploadPack::State::finished);
    // too many wants
    UploadPack up3(*f.repo, f.repo->refs(), {.stateless = false, .limits = {.max_wants = 1}});
    std::string out3;
    up3.feed(pl("want " + f.commits[2].hex() + "\n") + pl("want " + f.tag.hex() + "\n"), out3);
    CHECK(up3.error().find("too many wants") != std::string::npos);
}

TEST_CASE("v2: capabilities, ls-refs with symrefs/peel/prefix/unborn", "[gitconf][upload-pack]") {
    Fixture f;
    const auto caps = lines_of(UploadPackV2::capabilities());
    CHECK(caps[0] == "version 2");
    CHECK(std::find(caps.begin(), caps.end(), "fetch=shallow") != caps.end());
    CHECK(std::find(caps.begin(), caps.end(), "ls-refs=unborn") != caps.end());

    UploadPackV2 up(*f.repo, f.repo->refs());
    std::string out;
    up.feed(pl("command=ls-refs\n") + pl("agent=git/2.39\n") + "0001" + pl("symrefs\n") + pl("peel\n") + "0000", out);
    CHECK(lines_of(out) == std::vector<std::string>{f.commits[2].hex() + " HEAD symref-target:refs/heads/main",
                                                    f.commits[2].hex() + " refs/heads/main",
                                                    f.tag.hex() + " refs/tags/v1 peeled:" + f.commits[0].hex(), "0000"});
    out.clear();
    up.feed(pl("command=ls-refs\n") + "0001" + pl("ref-prefix refs/tags/\n") + "0000", out);
    CHECK(lines_of(out) == std::vector<std::string>{f.tag.hex() + " refs/tags/v1", "0000"});

    TempDir d;
    auto empty = Repository::create(d.path / "e.git", "main", false);
    UploadPackV2 e(empty, empty.refs());
    out.clear();
    e.feed(pl("command=ls-refs\n") + "0001" + pl("symrefs\n") + pl("unborn\n") + "0000", out);
    CHECK(lines_of(out) == std::vector<std::string>{"unborn HEAD symref-target:refs/heads/main", "0000"});
    out.clear();
    e.feed(pl("command=frobnicate\n") + "0000", out);
    CHECK(e.state() == UploadPackV2::State::failed);
}

TEST_CASE("v2: fetch negotiates, then shallow-info and the packfile", "[gitconf][upload-pack]") {
    Fixture f;
    UploadPackV2 up(*f.repo, f.repo->refs());
    std::string out;
    // haves without done: acknowledgments, then ready and the pack in the same response
    up.feed(pl("command=fetch\n") + "0001" + pl("want " + f.commits[2].hex() + "\n") + pl("have " + f.commits[1].hex() + "\n") +
                pl("have " + std::string(40, 'c') + "\n") + pl("ofs-delta\n") + "0000",
            out);
    REQUIRE(up.state() == UploadPackV2::State::send_pack);
    CHECK(lines_of(out) == std::vector<std::string>{"acknowledgments", "ACK " + f.commits[1].hex(), "ready", "0001", "packfile"});
    CHECK(up.job().plan.commits == std::vector<Oid>{f.commits[2]});
    std::string framed;
    up.write_pack(f.repo->build_pack(up.job().plan), framed);
    CHECK(up.state() == UploadPackV2::State::idle);

    // deepen 1 with done: no acknowledgments, shallow-info first
    out.clear();
    up.feed(pl("command=fetch\n") + "0001" + pl("want " + f.commits[2].hex() + "\n") + pl("deepen 1\n") + pl("done\n") + "0000", out);
    REQUIRE(up.state() == UploadPackV2::State::send_pack);
    CHECK(lines_of(out) == std::vector<std::string>{"shallow-info", "shallow " + f.commits[2].hex(), "0001", "packfile"});
}

TEST_CASE("repo: commits with a fixed author time have git's ids (the fuzz corpus relies on it)", "[gitconf][repo]") {
    TempDir d;
    auto repo = Repository::create(d.path / "r.git", "main", true, {}, Author{"f", "f@f", 1700000000});
    // the same history made by the stock git client with GIT_*_DATE set
    CHECK(repo.refs().head->hex() == "a9cb4d1338f27851d656b370a098e3297b22b3c1");
    Oid last;
    for (int i = 0; i < 4; ++i)
        last = repo.put_file("main", "f" + std::to_string(i), std::string(static_cast<std::size_t>(i * 10), 'x'),
                             Author{"f", "f@f", 1700000100 + i * 100}, "c\n");
    CHECK(last.hex() == "5970d34effeb375ae7f6c1343eb0a060c5027744");
}
