#include "fleetconf/common/reload.hpp"

#include "../support/temp_dir.hpp"
#include <catch2/catch.hpp>
#include <spdlog/sinks/null_sink.h>

#include <fstream>

using namespace fleetconf::common;

namespace {

const char* kSite = R"({
  "networks": [{"name": "br0", "subnet": "10.0.0.0/24", "gateway": "10.0.0.1", "pools": ["10.0.0.100-10.0.0.200"]}],
  "unikernels": [{"name": "proxy", "network": "br0", "address": "10.0.0.10", "block": {}}],
  "services": {"data_dir": "DATA", "git": {"http": "127.0.0.1:8080"}}
})";

std::string with(std::string text, const std::string& from, const std::string& to) {
    const auto at = text.find(from);
    REQUIRE(at != std::string::npos);
    return text.replace(at, from.size(), to);
}

Site site(const std::string& text) { return parse_site(text, "/tmp", "site.json"); }

const Running kAll{true, true, true, true};

std::shared_ptr<spdlog::logger> null_log() {
    return std::make_shared<spdlog::logger>("t", std::make_shared<spdlog::sinks::null_sink_mt>());
}

}  // namespace

TEST_CASE("restart keys: what a running process cannot apply, by JSON pointer") {
    const auto base = site(kSite);
    CHECK(restart_keys(base, base, kAll).empty());
    SECTION("networks, options and unikernels apply") {
        auto t = with(
            kSite, R"("pools": ["10.0.0.100-10.0.0.200"]})",
            R"("pools": ["10.0.0.100-10.0.0.150"], "lease_time": 60}, {"name": "br1", "subnet": "10.1.0.0/24", "gateway": "10.1.0.1"})");
        t = with(t, R"("block": {}}])", R"("block": {}}, {"name": "web", "network": "br1", "block": {}}])");
        CHECK(restart_keys(base, site(t), kAll).empty());
    }
    SECTION("listeners and ports") {
        auto t =
            with(kSite, R"("git": {"http": "127.0.0.1:8080"})", R"("git": {"http": "127.0.0.1:8081"}, "block": {"listen": "127.0.0.1:7301"},
            "dhcp": {"server_port": 1067}, "status": "off")");
        CHECK(restart_keys(base, site(t), kAll) ==
              std::vector<std::string>{"/services/status", "/services/dhcp/server_port", "/services/git/http", "/services/block/listen"});
    }
    SECTION("port 0 (the system's choice) keeps the port that runs") {
        auto running = site(with(kSite, "127.0.0.1:8080", "127.0.0.1:41234"));  // serve pinned the bound port
        CHECK(restart_keys(running, site(with(kSite, "127.0.0.1:8080", "127.0.0.1:0")), kAll).empty());
        CHECK(restart_keys(running, site(with(kSite, "127.0.0.1:8080", "127.0.0.1:41234")), kAll).empty());
        CHECK(restart_keys(running, site(with(kSite, "127.0.0.1:8080", "127.0.0.2:0")), kAll) ==
              std::vector<std::string>{"/services/git/http"});
    }
    SECTION("a served device's geometry, not a new device") {
        const auto t = with(kSite, R"("block": {})", R"("block": {"sector_size": 4096})");
        CHECK(restart_keys(base, site(t), kAll) == std::vector<std::string>{"/unikernels/0/block"});
    }
    SECTION("a block device when the block service did not start (no device at start)") {
        Running no_block = kAll;
        no_block.block = false;
        CHECK(restart_keys(base, base, no_block) == std::vector<std::string>{"/unikernels/0/block"});
    }
    SECTION("a service enabled or disabled") {
        const auto t = with(kSite, R"("git": {"http": "127.0.0.1:8080"})", R"("git": {"enabled": false})");
        CHECK(restart_keys(base, site(t), kAll) == std::vector<std::string>{"/services/git/enabled"});
        SECTION("unless the process runs only DHCP (fleetconf dhcp serve)") {
            Running dhcp_only;
            dhcp_only.dhcp = true;
            dhcp_only.whole_site = false;
            CHECK(restart_keys(base, site(t), dhcp_only).empty());
        }
    }
}

TEST_CASE("Reloader: all or nothing, and the verdict recorded") {
    fleetconf::test::TempDir d;
    const auto file = d.path / "site.json";
    const auto text = with(kSite, "DATA", (d.path / "data").string());
    auto write = [&](const std::string& t) { std::ofstream(file, std::ios::trunc) << t; };
    write(text);
    std::filesystem::create_directories(d.path / "data");
    const auto running = load_site(file);
    Reloader r(file, {}, running, kAll, null_log());
    std::vector<std::string> seen;  // "a:<networks>" per reload call
    bool b_refuses = false;
    r.add("a", [&](const Site& s) { seen.push_back("a:" + std::to_string(s.networks.size())); });
    r.add("b", [&](const Site& s) {
        if (b_refuses && s.networks.size() == 2) throw std::runtime_error("cannot bind to interface br1");
        seen.push_back("b:" + std::to_string(s.networks.size()));
    });
    const auto two = with(text, R"("pools": ["10.0.0.100-10.0.0.200"]})",
                          R"("pools": ["10.0.0.100-10.0.0.200"]}, {"name": "br1", "subnet": "10.1.0.0/24", "gateway": "10.1.0.1"})");

    SECTION("applied") {
        write(two);
        const auto v = r.reload("SIGHUP");
        CHECK(v.applied);
        CHECK(v.seq == 1);
        CHECK(v.message == "applied: 2 networks, 1 unikernels");
        CHECK(seen == std::vector<std::string>{"a:2", "b:2"});
        CHECK(r.site().networks.size() == 2);
        CHECK(v.running_digest == v.file_digest);
        const auto back = read_reload_verdict(d.path / "data" / "reload.json");
        REQUIRE(back);
        CHECK(back->seq == 1);
        CHECK(back->applied);
        CHECK(back->running_digest == v.running_digest);
        CHECK(r.status_source().health().degraded == false);
    }
    SECTION("one service refuses: those before it go back to the running site") {
        b_refuses = true;
        write(two);
        const auto v = r.reload("config-reload");
        CHECK_FALSE(v.applied);
        CHECK(v.message == "refused: b: cannot bind to interface br1");
        CHECK(seen == std::vector<std::string>{"a:2", "a:1"});
        CHECK(r.site().networks.size() == 1);
        CHECK(v.running_digest == running.digest);
        CHECK(v.file_digest != running.digest);
        const auto h = r.status_source().health();
        CHECK(h.ok);
        CHECK(h.degraded);
        CHECK(h.detail.find("differs") != std::string::npos);
        CHECK(r.status_source().metrics().find("fleetconf_reload_last_success 0") != std::string::npos);
    }
    SECTION("keys that need a restart: no service is asked") {
        write(with(text, "127.0.0.1:8080", "127.0.0.1:9000"));
        const auto v = r.reload("SIGHUP");
        CHECK_FALSE(v.applied);
        CHECK(v.restart_keys == std::vector<std::string>{"/services/git/http"});
        CHECK(v.message.find("/services/git/http needs a restart") != std::string::npos);
        CHECK(seen.empty());
    }
    SECTION("an invalid file") {
        write("{\"networks\": [");
        const auto v = r.reload("SIGHUP");
        CHECK_FALSE(v.applied);
        CHECK(v.message.rfind("refused: " + file.string() + " is invalid: ", 0) == 0);
        CHECK(seen.empty());
        CHECK(r.last()->seq == 1);
    }
}
