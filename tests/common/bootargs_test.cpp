#include "fleetconf/common/bootargs.hpp"

#include <catch2/catch.hpp>

using namespace fleetconf::common;

namespace {
const std::filesystem::path kSrc = FLEETCONF_SOURCE_DIR;
using V = std::vector<std::string>;
}  // namespace

TEST_CASE("boot arguments for each kind of unikernel in the example site", "[bootargs]") {
    auto site = load_site(kSrc / "examples/site.json");

    auto web = boot_args(site, *site.unikernel("web"), "tap-web");
    CHECK(web.tender == V{"--net:service=tap-web", "--net-mac:service=00:80:41:88:19:f5"});
    CHECK(web.unikernel == V{"--syslog=10.42.0.1", "--monitor=10.42.0.1", "--remote=http://web:TOKEN@10.42.0.1:8080/web.git"});
    GitBootInfo with_token;
    with_token.token = "0123abcd";
    auto web_token = boot_args(site, *site.unikernel("web"), "tap-web", with_token);
    CHECK(web_token.unikernel.back() == "--remote=http://web:0123abcd@10.42.0.1:8080/web.git");

    auto resolver = boot_args(site, *site.unikernel("resolver"), default_tap_name("resolver"));
    CHECK(resolver.tender == V{"--net:service=tap-resolver", "--net-mac:service=00:80:41:00:00:53"});
    CHECK(resolver.unikernel == V{"--ipv4=10.42.0.53/24", "--ipv4-gateway=10.42.0.1", "--syslog=10.42.0.1",
                                  "--monitor=10.42.0.1", "--dns-upstream=10.42.0.1"});

    auto proxy = boot_args(site, *site.unikernel("proxy"), "tap-proxy");
    REQUIRE(proxy.tender.size() == 3);
    CHECK(proxy.tender[2] == "--block:storage=/var/lib/fleetconf/block/proxy.img");
}

TEST_CASE("the remote URI follows the listeners: https first, then http, then git:// when allowed", "[bootargs]") {
    auto site = parse_site(R"({"networks":[{"name":"br0","subnet":"10.0.0.0/24"}],
        "unikernels":[{"name":"a","network":"br0","git":{"branch":"live","git_protocol":true}},{"name":"b","network":"br0"}],
        "services":{"git":{"https":"10.0.0.1:443","http":"10.0.0.1:8080","git":"10.0.0.1:9418","public_host":"git.example"}}})",
                           "/tmp", "t.json");
    CHECK(git_remote(site, site.unikernels[0], "") == "https://a:TOKEN@git.example/a.git#live");
    CHECK(git_remote(site, site.unikernels[1], "x").empty());  // no "git" entry: no repository
    GitBootInfo tls;
    tls.tls_authenticator = "key-fp:SHA256:abc=";
    auto a = boot_args(site, site.unikernels[0], "tap-a", tls);
    CHECK(a.unikernel == V{"--remote=https://a:TOKEN@git.example/a.git#live", "--tls-authenticator=key-fp:SHA256:abc="});
    site.services.git.https.reset();
    CHECK(git_remote(site, site.unikernels[0], "t") == "http://a:t@git.example:8080/a.git#live");
    site.services.git.http.reset();
    CHECK(git_remote(site, site.unikernels[0], "t") == "git://git.example/a.git#live");
    site.unikernels[0].git.git_protocol = false;
    CHECK(git_remote(site, site.unikernels[0], "t").empty());
}

TEST_CASE("tap names fit the interface name limit", "[bootargs]") {
    CHECK(default_tap_name("web") == "tap-web");
    CHECK(default_tap_name("averyveryverylongname").size() == 15);
}

TEST_CASE("a non-default syslog port is noted, not invented as an argument", "[bootargs]") {
    auto site = parse_site(R"({"networks":[{"name":"br0","subnet":"10.0.0.0/24","options":{"syslog":"10.0.0.2:1514"}}],
        "unikernels":[{"name":"a","network":"br0"}]})", "/tmp", "t.json");
    auto a = boot_args(site, site.unikernels[0], "tap-a");
    CHECK(a.unikernel == V{"--syslog=10.0.0.2"});
    bool noted = false;
    for (const auto& n : a.notes) noted = noted || n.find("syslog port 1514") != std::string::npos;
    CHECK(noted);
}
