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
    CHECK(resolver.unikernel ==
          V{"--ipv4=10.42.0.53/24", "--ipv4-gateway=10.42.0.1", "--syslog=10.42.0.1", "--monitor=10.42.0.1", "--dns-upstream=10.42.0.1"});

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
        "unikernels":[{"name":"a","network":"br0"}]})",
                           "/tmp", "t.json");
    auto a = boot_args(site, site.unikernels[0], "tap-a");
    CHECK(a.unikernel == V{"--syslog=10.0.0.2"});
    bool noted = false;
    for (const auto& n : a.notes) noted = noted || n.find("syslog port 1514") != std::string::npos;
    CHECK(noted);
}

TEST_CASE("boot modes: static without DHCP; dhcp, and dhcp-config when DHCP carries a configuration URI", "[bootargs]") {
    auto site = parse_site(R"({"networks":[{"name":"br0","subnet":"10.0.0.0/24","gateway":"10.0.0.1",
            "options":{"syslog":"10.0.0.2","monitoring":"10.0.0.3:8094"}}],
        "unikernels":[{"name":"a","network":"br0","git":{}},
                      {"name":"b","network":"br0","config_uri":"https://b@cfg.example/b.git","git":{}},
                      {"name":"c","network":"br0"},
                      {"name":"s","network":"br0","dhcp":false,"address":"10.0.0.9","git":{}},
                      {"name":"e","network":"br0","config_uri":"https://elsewhere.example/e.git"}],
        "services":{"git":{"http":"10.0.0.1:8080"}}})",
                           "/tmp", "t.json");
    const auto& a = *site.unikernel("a");
    const auto& b = *site.unikernel("b");
    const auto& c = *site.unikernel("c");
    const auto& s = *site.unikernel("s");
    using M = std::vector<BootMode>;
    CHECK(boot_modes(site, a) == M{BootMode::dhcp, BootMode::dhcp_config});
    CHECK(boot_modes(site, c) == M{BootMode::dhcp});  // no repository, no URI: nothing for DHCP to carry
    CHECK(boot_modes(site, s) == M{BootMode::static_address});
    // The URI DHCP sends: the repository without its secret, or the site's config_uri.
    CHECK(dhcp_config_uri(site, a) == "http://a@10.0.0.1:8080/a.git");
    CHECK(dhcp_config_uri(site, b) == "https://b@cfg.example/b.git");
    CHECK(dhcp_config_uri(site, c).empty());
    // dhcp: today's MirageOS reads the sinks and the remote from the command line.
    CHECK(boot_args(site, a, "tap-a", {}, BootMode::dhcp).unikernel ==
          V{"--syslog=10.0.0.2", "--monitor=10.0.0.3", "--remote=http://a:TOKEN@10.0.0.1:8080/a.git"});
    // dhcp-config: only the credential remains.
    GitBootInfo tok;
    tok.token = "s3cret";
    CHECK(boot_args(site, a, "tap-a", tok, BootMode::dhcp_config).unikernel == V{"--git-token=s3cret"});
    // Over HTTPS the trust anchor stays on the command line: a DHCP reply is not authenticated.
    GitBootInfo tls;
    tls.tls_authenticator = "key-fp:SHA256:abc=";
    CHECK(boot_args(site, b, "tap-b", tls, BootMode::dhcp_config).unikernel ==
          V{"--git-token=TOKEN", "--tls-authenticator=key-fp:SHA256:abc="});
    CHECK(boot_args(site, s, "tap-s").unikernel == V{"--ipv4=10.0.0.9/24", "--ipv4-gateway=10.0.0.1", "--syslog=10.0.0.2",
                                                     "--monitor=10.0.0.3", "--remote=http://s:TOKEN@10.0.0.1:8080/s.git"});
    // A config_uri that is not this site's repository: its credential is not known here, nothing to print.
    const auto& e = *site.unikernel("e");
    CHECK(boot_modes(site, e) == M{BootMode::dhcp, BootMode::dhcp_config});
    CHECK(boot_args(site, e, "tap-e", tls, BootMode::dhcp_config).unikernel.empty());
    CHECK(parse_boot_mode("dhcp-config") == BootMode::dhcp_config);
    CHECK(parse_boot_mode("static") == BootMode::static_address);
    CHECK_FALSE(parse_boot_mode("bogus"));
    // Without the DHCP service in this site, nothing sends the URI.
    site.services.dhcp.enabled = false;
    CHECK(boot_modes(site, a) == M{BootMode::dhcp});
}

TEST_CASE("safe defaults: repository URIs on a loopback address are named, with what to set", "[bootargs]") {
    auto site = parse_site(R"({"networks":[{"name":"br0","subnet":"10.0.0.0/24"}],
        "unikernels":[{"name":"a","network":"br0","git":{}},{"name":"b","network":"br0","git":{}}]})",
                           "/tmp", "t.json");
    // No listener configured: the default 127.0.0.1:8080 ends up in --remote and option 224.
    CHECK(git_remote(site, site.unikernels[0], "t").find("127.0.0.1:8080") != std::string::npos);
    const auto w = loopback_uri_warning(site);
    CHECK_THAT(w, Catch::Contains("2 unikernel(s)") && Catch::Contains("127.0.0.1:8080") && Catch::Contains("public_host"));
    site.services.git.public_host = "git.example";
    CHECK(loopback_uri_warning(site).empty());
    site.services.git.public_host.clear();
    site.services.git.http = Endpoint{Ipv4{10, 0, 0, 1}, 8080};
    CHECK(loopback_uri_warning(site).empty());
}
