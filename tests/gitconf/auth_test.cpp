#include "fleetconf/gitconf/auth.hpp"
#include "fleetconf/gitconf/service.hpp"

#include "fleetconf/common/crypto.hpp"

#include <catch2/catch.hpp>

#include "../support/temp_dir.hpp"

#include <filesystem>
#include <fstream>
#include <sys/stat.h>

using namespace fleetconf::gitconf;
namespace fs = std::filesystem;

namespace {
using fleetconf::test::TempDir;
}  // namespace

TEST_CASE("tokens: issued, stored as hashes, verified, rotated and revoked", "[gitconf][auth]") {
    TempDir d;
    const auto file = d.path / "git" / "tokens.json";
    auto store = TokenStore::load(file);  // missing file: empty
    CHECK(store.records().empty());
    const auto t1 = store.issue("web");
    CHECK(t1.size() == 48);
    std::ifstream in(file);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    CHECK(text.find(t1) == std::string::npos);
    CHECK(text.find(fleetconf::common::to_hex(fleetconf::common::sha256(t1))) != std::string::npos);
    struct stat st {};
    REQUIRE(::stat(file.c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);

    auto reloaded = TokenStore::load(file);
    CHECK(reloaded.verify("web", t1));
    CHECK_FALSE(reloaded.verify("web", t1.substr(1)));
    CHECK_FALSE(reloaded.verify("cal", t1));
    CHECK_FALSE(reloaded.verify("nobody", ""));
    const auto t2 = reloaded.issue("web");
    CHECK(t2 != t1);
    CHECK_FALSE(reloaded.verify("web", t1));
    CHECK(reloaded.verify("web", t2));
    CHECK(reloaded.revoke("web"));
    CHECK_FALSE(reloaded.revoke("web"));
    CHECK_FALSE(TokenStore::load(file).verify("web", t2));
}

TEST_CASE("tokens: a rotation keeps the previous token for its overlap; revoke ends both", "[gitconf][auth]") {
    TempDir d;
    const auto file = d.path / "tokens.json";
    auto store = TokenStore::load(file);
    const auto old = store.issue("web", 0, 1000);
    const auto fresh = store.issue("web", 600, 2000);  // the old one stays valid until 2600
    auto loaded = TokenStore::load(file);              // the overlap is in the file, for the server
    CHECK(loaded.verify("web", fresh, 2001));
    CHECK(loaded.verify("web", old, 2001));
    CHECK(loaded.verify("web", old, 2599));
    CHECK_FALSE(loaded.verify("web", old, 2600));
    CHECK(loaded.verify("web", fresh, 2600));
    CHECK_FALSE(loaded.verify("cal", old, 2001));
    SECTION("another rotation replaces the previous token with the current one") {
        const auto third = loaded.issue("web", 600, 2100);
        CHECK_FALSE(loaded.verify("web", old, 2101));
        CHECK(loaded.verify("web", fresh, 2101));
        CHECK(loaded.verify("web", third, 2101));
    }
    SECTION("--overlap 0: the old token dies at once") {
        const auto third = loaded.issue("web", 0, 2100);
        CHECK_FALSE(loaded.verify("web", fresh, 2101));
        CHECK(loaded.verify("web", third, 2101));
    }
    SECTION("revoke ends the token and the previous one") {
        CHECK(loaded.revoke("web"));
        CHECK_FALSE(TokenStore::load(file).verify("web", old, 2001));
        CHECK_FALSE(TokenStore::load(file).verify("web", fresh, 2001));
    }
}

TEST_CASE("tokens: a damaged file is refused with its name", "[gitconf][auth]") {
    TempDir d;
    const auto file = d.path / "tokens.json";
    for (const char* bad : {"{", "[]", "{\"version\":2,\"tokens\":{}}", "{\"version\":1,\"tokens\":{\"web\":{\"sha256\":\"00\"}}}"}) {
        { std::ofstream(file) << bad; }
        fs::permissions(file, fs::perms::owner_read | fs::perms::owner_write);
        INFO(bad);
        try {
            (void)TokenStore::load(file);
            FAIL("accepted");
        } catch (const std::runtime_error& e) {
            CHECK(std::string(e.what()).find(file.string()) != std::string::npos);
        }
    }
}

TEST_CASE("Basic credentials (RFC 7617)", "[gitconf][auth]") {
    auto c = parse_basic_auth("Basic d2ViOnNlY3JldDp3aXRoOmNvbG9ucw==");  // web:secret:with:colons
    REQUIRE(c);
    CHECK(c->user == "web");
    CHECK(c->password == "secret:with:colons");
    CHECK(parse_basic_auth("basic d2ViOng="));  // scheme is case-insensitive
    CHECK_FALSE(parse_basic_auth(""));
    CHECK_FALSE(parse_basic_auth("Bearer abc"));
    CHECK_FALSE(parse_basic_auth("Basic !!!"));
    CHECK_FALSE(parse_basic_auth("Basic d2Vi"));  // "web": no colon
}

TEST_CASE("access decisions: one rule for git://, HTTP and SSH", "[gitconf][auth]") {
    TempDir d;
    auto store = TokenStore::load(d.path / "t.json");
    const auto web = store.issue("web");
    const auto cal = store.issue("cal");
    const RepoAccess ro{true, false, false}, rw{true, true, false}, exported{true, false, true}, missing{};
    const auto fetch = Operation::fetch, push = Operation::push;

    SECTION("HTTP: 401 before anything is revealed, the same 404 for another's and a missing repository") {
        const auto none = authenticate(std::nullopt, store);
        const auto bad = authenticate(BasicCredentials{"web", cal}, store);
        const auto web_ok = authenticate(BasicCredentials{"web", web}, store);
        const auto cal_ok = authenticate(BasicCredentials{"cal", cal}, store);
        CHECK(none.kind == Credential::Kind::rejected);
        CHECK(bad.kind == Credential::Kind::rejected);
        CHECK(web_ok.kind == Credential::Kind::unikernel);
        CHECK(web_ok.label() == "web");
        CHECK(authorize(none, "web", ro, fetch) == Verdict::unauthorized);
        CHECK(authorize(bad, "web", ro, fetch) == Verdict::unauthorized);
        CHECK(authorize(none, "nosuch", missing, fetch) == Verdict::unauthorized);
        CHECK(authorize(none, "web", exported, fetch) == Verdict::unauthorized);  // git:// export is not HTTP access
        CHECK(authorize(web_ok, "web", ro, fetch) == Verdict::allow);
        CHECK(authorize(cal_ok, "web", ro, fetch) == Verdict::not_found);
        CHECK(authorize(web_ok, "nosuch", missing, fetch) == Verdict::not_found);
        CHECK(authorize(web_ok, "web", ro, push) == Verdict::forbidden);
        CHECK(authorize(cal_ok, "cal", rw, push) == Verdict::allow);
    }
    SECTION("git://: anonymous, read-only, exported repositories only") {
        const auto anon = Credential::anonymous();
        CHECK(anon.label() == "-");
        CHECK(authorize(anon, "web", exported, fetch) == Verdict::allow);
        CHECK(authorize(anon, "web", ro, fetch) == Verdict::not_found);  // not exported: git daemon's one answer
        CHECK(authorize(anon, "nosuch", missing, fetch) == Verdict::not_found);
        CHECK(authorize(anon, "web", exported, push) == Verdict::forbidden);
        CHECK(authorize(anon, "nosuch", missing, push) == Verdict::forbidden);  // the same for every name
    }
    SECTION("SSH: a unikernel key reaches its own repository, an operator key every one") {
        const auto uk = Credential::unikernel("web");
        CHECK(authorize(uk, "web", ro, fetch) == Verdict::allow);
        CHECK(authorize(uk, "web", ro, push) == Verdict::forbidden);
        CHECK(authorize(uk, "cal", rw, fetch) == Verdict::not_found);
        CHECK(authorize(Credential::unikernel("cal"), "cal", rw, push) == Verdict::allow);
        const auto op_ro = Credential::operator_key("alice", false), op_rw = Credential::operator_key("bob", true);
        CHECK(op_ro.label() == "operator:alice");
        CHECK(authorize(op_ro, "web", ro, fetch) == Verdict::allow);
        CHECK(authorize(op_ro, "cal", rw, push) == Verdict::forbidden);
        CHECK(authorize(op_rw, "web", ro, push) == Verdict::allow);  // the key's right, not the repository's
        CHECK(authorize(op_rw, "nosuch", missing, fetch) == Verdict::not_found);
    }
}

TEST_CASE("token file: the documented test vector (docs/gitconf.md)", "[gitconf][auth]") {
    TempDir d;
    const auto file = d.path / "tokens.json";
    std::ofstream(file)
        << R"({"version":1,"tokens":{"web":{"sha256":"6a38b098eb23f184cc195649dc3fae8f8ef475be875db655a85a467791b5d907","created":1}}})";
    fs::permissions(file, fs::perms::owner_read | fs::perms::owner_write);
    const auto store = TokenStore::load(file);
    CHECK(store.verify("web", "000102030405060708090a0b0c0d0e0f1011121314151617"));
    CHECK_FALSE(store.verify("web", "000102030405060708090a0b0c0d0e0f1011121314151616"));
}

TEST_CASE("reload: the repository of a removed unikernel is archived, never deleted", "[gitconf][archive]") {
    TempDir d;
    auto site_with = [&](const std::string& unikernels) {
        return fleetconf::common::parse_site(R"({"networks":[{"name":"br0","subnet":"10.0.0.0/24"}],"unikernels":[)" + unikernels +
                                                 R"(],"services":{"data_dir":")" + d.path.string() + R"("}})",
                                             d.path, "t.json");
    };
    auto both = site_with(R"({"name":"web","network":"br0","git":{}},{"name":"cal","network":"br0","git":{}})");
    CHECK(fleetconf::gitconf::ensure_repositories(both).size() == 2);
    CHECK(fleetconf::gitconf::archive_removed_repositories(both).empty());
    auto web_only = site_with(R"({"name":"web","network":"br0","git":{}},{"name":"cal","network":"br0"})");  // cal: git off
    const auto when = std::chrono::system_clock::from_time_t(1'800'000'000);
    CHECK(fleetconf::gitconf::archive_removed_repositories(web_only, nullptr, when) == std::vector<std::string>{"cal"});
    CHECK(fs::is_directory(fleetconf::gitconf::repo_dir(web_only, "web")));
    CHECK_FALSE(fs::exists(fleetconf::gitconf::repo_dir(web_only, "cal")));
    const auto archived = d.path / "git" / "archive" / "cal-20270115T080000Z.git";
    CHECK(fs::is_directory(archived / "objects"));  // the whole bare repository, moved
    // The unikernel comes back: a fresh repository; the archived one stays; a second archive gets its own name.
    CHECK(fleetconf::gitconf::ensure_repositories(both) == std::vector<std::string>{"cal"});
    CHECK(fleetconf::gitconf::archive_removed_repositories(web_only, nullptr, when) == std::vector<std::string>{"cal"});
    CHECK(fs::is_directory(d.path / "git" / "archive" / "cal-20270115T080000Z-2.git"));
}
