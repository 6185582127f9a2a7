#include "fleetconf/common/site.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <functional>

#include <filesystem>
#include <fstream>

#include <sys/stat.h>
#include <unistd.h>

#include "../support/temp_dir.hpp"

using namespace fleetconf::common;

namespace {

const std::filesystem::path kSrc = FLEETCONF_SOURCE_DIR;

std::vector<SiteError> load_errors(const std::filesystem::path& file) {
    try {
        load_site(file);
    } catch (const SiteLoadError& e) {
        return e.errors();
    }
    return {};
}

Site parse(const std::string& text) { return parse_site(text, std::filesystem::temp_directory_path(), "t.json"); }

std::vector<SiteError> errors_of(const std::string& text) {
    try {
        parse(text);
    } catch (const SiteLoadError& e) {
        return e.errors();
    }
    return {};
}

}  // namespace

TEST_CASE("the example site file is valid", "[site]") {
    auto site = load_site(kSrc / "examples/site.json");
    CHECK(site.name == "example.fleet");
    REQUIRE(site.networks.size() == 1);
    CHECK(site.networks[0].pools.size() == 1);
    REQUIRE(site.unikernels.size() == 4);
    CHECK(site.unikernel("proxy")->block.has_value());
    CHECK(site.unikernel("calendar")->git.writable);
    CHECK_FALSE(site.unikernel("web")->git.writable);
    CHECK_FALSE(site.unikernel("resolver")->dhcp);
    CHECK(site.unikernel("resolver")->mac.to_string() == "00:80:41:00:00:53");
}

TEST_CASE("Albatross MAC derivation matches md5sum", "[site][mac]") {
    // printf 'br-fleetproxy' | md5sum  -> 29331026b8deb2f86eefe407b6af40be
    CHECK(albatross_mac("br-fleet", "proxy").to_string() == "00:80:41:29:33:10");
    // printf 'br-fleetweb' | md5sum    -> 8819f5255bef1086bd3b5ff4e8bd7fc5
    CHECK(albatross_mac("br-fleet", "web").to_string() == "00:80:41:88:19:f5");
    // printf 'br0test' | md5sum        -> 183022be33dc73619894baceb681664a
    CHECK(albatross_mac("br0", "test").to_string() == "00:80:41:18:30:22");
    auto site = load_site(kSrc / "examples/site.json");
    CHECK(site.unikernel("web")->mac_derived);
    CHECK(site.unikernel("web")->mac == albatross_mac("br-fleet", "web"));
}

struct InvalidCase {
    const char* file;
    std::vector<SiteError> errors;
};

TEST_CASE("invalid site files report every error with its JSON pointer", "[site]") {
    const std::vector<InvalidCase> cases = {
        {"02-unknown-key.json",
         {{"/networks/0/gatway",
           "unknown key \"gatway\" (expected one of: name, interface, subnet, gateway, dns, domain, pools, lease_time, "
           "options, monitoring_option, server_address, ignore_client_id, known_only)"}}},
        {"03-reversed-pool.json", {{"/networks/0/pools/0", "range 10.0.0.50-10.0.0.20 is reversed"}}},
        {"04-pool-outside-subnet.json",
         {{"/networks/0/pools/0",
           "range 10.0.1.10-10.0.1.20 is not inside subnet 10.0.0.0/24 (network and broadcast addresses excluded)"}}},
        {"05-address-outside-subnet.json",
         {{"/unikernels/0/address", "192.168.1.5 is not a host address in subnet 10.0.0.0/24 of network \"br0\""}}},
        {"06-address-in-pool.json",
         {{"/unikernels/0/address", "10.0.0.150 is inside dynamic pool 10.0.0.100-10.0.0.199; fixed addresses must be outside the pools"}}},
        {"07-duplicate-address.json", {{"/unikernels/1/address", "10.0.0.5 is also assigned to unikernel \"a\""}}},
        {"08-duplicate-mac.json", {{"/unikernels/1/mac", "MAC 00:80:41:aa:bb:cc is also used by unikernel \"a\""}}},
        {"09-bad-name.json",
         {{"/unikernels/0/name",
           "\"web_server\" is not a valid DNS label (1-63 letters, digits and '-', not starting or ending with '-')"}}},
        {"10-duplicate-name.json",
         {{"/unikernels/1/name", "unikernel \"web\" is defined twice"},
          {"/unikernels/1/name", "MAC 00:80:41:d4:1a:a4 (derived) is also used by unikernel \"web\""}}},
        {"11-unknown-network.json", {{"/unikernels/0/network", "no network named \"br1\" (defined: br0)"}}},
        {"13-host-bits.json", {{"/networks/0/subnet", "\"10.0.0.1/24\" is not an IPv4 prefix with no host bits set (like 10.0.0.0/24)"}}},
        {"14-bad-mac.json", {{"/unikernels/0/mac", "\"00:80:41:zz:00:01\" is not a MAC address like 00:80:41:12:34:56"}}},
        {"15-managed-option.json", {{"/networks/0/options/custom/0/code", "option 53 is managed by the server and cannot be set"}}},
        {"16-bad-port.json", {{"/services/block/listen", "\"127.0.0.1:70000\" is not an address with :port"}}},
        {"17-duplicate-key.json", {{"/networks/0/name", "duplicate key \"name\""}}},
        {"18-static-without-address.json", {{"/unikernels/0/dhcp", "a unikernel without DHCP needs a fixed \"address\""}}},
        {"19-wrong-types.json",
         {{"/networks/0/dns", "expected an array, found a string"}, {"/networks/0/lease_time", "expected a whole number, found a string"}}},
        {"20-many-errors.json",
         {{"/services/dhcp/client_port", "must differ from server_port"},
          {"/networks/0/gateway", "10.0.1.1 is not a host address in subnet 10.0.0.0/24"},
          {"/networks/0/pools/1", "range 10.0.0.15-10.0.0.30 overlaps 10.0.0.10-10.0.0.20"},
          {"/unikernels/0/name", "\"-bad\" is not a valid DNS label (1-63 letters, digits and '-', not starting or ending with '-')"}}},
        {"21-custom-value-type.json",
         {{"/networks/0/options/custom/0/value", "must be between 0 and 65535, found 70000"},
          {"/networks/0/options/custom/1/value", "\"10.0.0\" is not an IPv4 address"}}},
        {"22-no-networks.json", {{"/networks", "at least one network is required"}}},
    };
    for (const auto& c : cases) {
        INFO(c.file);
        auto errs = load_errors(kSrc / "tests/sites/invalid" / c.file);
        REQUIRE(errs.size() == c.errors.size());
        for (std::size_t i = 0; i < errs.size(); ++i) {
            CHECK(errs[i].pointer == c.errors[i].pointer);
            CHECK(errs[i].message == c.errors[i].message);
        }
    }
}

TEST_CASE("syntax errors name the line and column", "[site]") {
    auto errs = load_errors(kSrc / "tests/sites/invalid/01-syntax.json");
    REQUIRE(errs.size() == 1);
    CHECK(errs[0].pointer.empty());
    CHECK_THAT(errs[0].message, Catch::StartsWith("invalid JSON: parse error at line 1, column"));
}

TEST_CASE("a number too large for a double is an invalid-JSON error, not an exception (issue 16.15)", "[site]") {
    for (const char* text : {R"({"networks": 8888E888888888888})", "[1e999]", R"({"name": -1e400})"}) {
        INFO(text);
        std::vector<SiteError> errs;
        REQUIRE_NOTHROW(errs = errors_of(text));
        REQUIRE(errs.size() == 1);
        CHECK(errs[0].pointer.empty());
        CHECK_THAT(errs[0].message, Catch::StartsWith("invalid JSON: number overflow parsing"));
    }
}

TEST_CASE("a referenced file that does not exist is reported with its resolved path", "[site]") {
    const auto dir = kSrc / "tests/sites/invalid";
    auto errs = load_errors(dir / "12-missing-file.json");
    REQUIRE(errs.size() == 1);
    CHECK(errs[0].pointer == "/services/block/key_file");
    CHECK(errs[0].message ==
          "file " + (std::filesystem::absolute(dir) / "does-not-exist.key").lexically_normal().string() + " does not exist");
}

TEST_CASE("SiteLoadError::what lists FILE: POINTER: MESSAGE one per line", "[site]") {
    try {
        parse(R"({"networks":[{"name":"br0","subnet":"10.0.0.0/24","pools":["10.0.0.50-10.0.0.20"],"lease_time":5}]})");
        FAIL("no error");
    } catch (const SiteLoadError& e) {
        CHECK(std::string(e.what()) ==
              "t.json: /networks/0/pools/0: range 10.0.0.50-10.0.0.20 is reversed\n"
              "t.json: /networks/0/lease_time: must be between 60 and 2147483647, found 5");
    }
}

TEST_CASE("site options: custom encoding, overrides and defaults", "[site]") {
    auto site = parse(R"({
      "networks": [{"name": "br0", "subnet": "10.0.0.0/24", "gateway": "10.0.0.1",
        "options": {"syslog": "10.0.0.2", "ntp": ["10.0.0.3", "10.0.0.4"],
          "custom": [{"code": 224, "type": "ips", "value": ["1.2.3.4", "5.6.7.8"]},
                     {"code": 225, "type": "u16", "value": 513},
                     {"code": 226, "type": "i32", "value": -2},
                     {"code": 227, "type": "hex", "value": "00ff"},
                     {"code": 228, "type": "bool", "value": true}]}}],
      "unikernels": [{"name": "a", "network": "br0",
        "options": {"syslog": "10.0.0.9:1514", "custom": [{"code": 225, "type": "u8", "value": 7, "always_send": true}],
                    "always_send": ["ntp"]}}]
    })");
    const auto& n = site.networks[0];
    CHECK(n.options.syslog->port == 514);
    REQUIRE(n.options.custom.size() == 5);
    CHECK(n.options.custom[0].data == std::vector<std::uint8_t>{1, 2, 3, 4, 5, 6, 7, 8});
    CHECK(n.options.custom[1].data == std::vector<std::uint8_t>{0x02, 0x01});
    CHECK(n.options.custom[2].data == std::vector<std::uint8_t>{0xff, 0xff, 0xff, 0xfe});
    CHECK(n.options.custom[3].data == std::vector<std::uint8_t>{0x00, 0xff});
    CHECK(n.options.custom[4].data == std::vector<std::uint8_t>{1});
    CHECK(n.monitoring_option == MonitoringOption{125, 49836, 0});
    CHECK(n.lease_time == kDefaultLeaseTime);
    CHECK(n.interface == "br0");

    auto eff = site.effective_options(*site.unikernel("a"));
    CHECK(eff.syslog->to_string() == "10.0.0.9:1514");
    CHECK(eff.ntp->size() == 2);
    REQUIRE(eff.custom.size() == 5);
    CHECK(eff.custom[1].data == std::vector<std::uint8_t>{7});
    CHECK(eff.custom[1].always_send);
    CHECK(eff.always_send == std::set<std::string>{"ntp"});
}

TEST_CASE("data_dir defaults derive paths, relative paths resolve against the site file", "[site]") {
    auto site = parse(R"({"networks":[{"name":"br0","subnet":"10.0.0.0/24"}],
        "unikernels":[{"name":"p","network":"br0","block":{}}], "services":{"data_dir":"state"}})");
    const auto base = std::filesystem::temp_directory_path();
    CHECK(site.services.data_dir == (base / "state").lexically_normal());
    CHECK(site.services.block.key_file == site.services.data_dir / "block" / "keys");
    CHECK(site.unikernel("p")->block->device == site.services.data_dir / "block" / "p.img");
    CHECK_FALSE(site.unikernel("p")->block->device_given);
}

TEST_CASE("data_dir override: set_data_dir moves every default path under the data directory, and no given path", "[site]") {
    const auto tmp = std::filesystem::temp_directory_path() / ("fleetconf-datadir-" + std::to_string(::getpid()));
    std::filesystem::create_directories(tmp);
    std::ofstream(tmp / "given.img").put('x');
    std::ofstream(tmp / "keys").put('x');
    const std::string text = R"({"networks":[{"name":"br0","subnet":"10.0.0.0/24"}],
        "unikernels":[{"name":"p","network":"br0","block":{}}, {"name":"q","network":"br0","block":{"device":"given.img"}},
                      {"name":"r","network":"br0"}],
        "services":{"data_dir":"old"}})";
    std::ofstream(tmp / "site.json") << text;

    auto site = parse_site(text, tmp, "site.json");
    site.set_data_dir("new/../moved");  // relative: made absolute against the working directory, normalised
    const auto dir = (std::filesystem::current_path() / "moved").lexically_normal();
    CHECK(site.services.data_dir == dir);
    CHECK(site.services.block.key_file == dir / "block" / "keys");
    CHECK(site.unikernel("p")->block->device == dir / "block" / "p.img");
    CHECK(site.unikernel("q")->block->device == tmp / "given.img");  // given in the file: stays
    CHECK_FALSE(site.unikernel("r")->block);

    // load_site's second argument is the commands' --data-dir: the same result as set_data_dir.
    auto loaded = load_site(tmp / "site.json", tmp / "elsewhere");
    CHECK(loaded.services.data_dir == tmp / "elsewhere");
    CHECK(loaded.services.block.key_file == tmp / "elsewhere" / "block" / "keys");
    CHECK(loaded.unikernel("p")->block->device == tmp / "elsewhere" / "block" / "p.img");
    CHECK(load_site(tmp / "site.json").services.data_dir == tmp / "old");

    // A key file given in the site file stays where it is.
    std::ofstream(tmp / "site2.json") << R"({"networks":[{"name":"br0","subnet":"10.0.0.0/24"}],
        "services":{"block":{"key_file":"keys"}}})";
    CHECK(load_site(tmp / "site2.json", tmp / "elsewhere").services.block.key_file == tmp / "keys");
    std::filesystem::remove_all(tmp);
}

TEST_CASE("options a site cannot set are the option table's managed ones", "[site][options]") {
    for (const auto& d : dhcp_options::option_table()) {
        const std::string site = R"({"networks":[{"name":"br0","subnet":"10.0.0.0/24","options":{"custom":[{"code":)" +
                                 std::to_string(d.code) + R"(,"type":"hex","value":"01"}]}}]})";
        const auto errs = errors_of(site);
        INFO("option " << int(d.code) << " " << d.name);
        if (d.managed) {
            REQUIRE(errs.size() == 1);
            CHECK(errs[0].message == "option " + std::to_string(d.code) + " is managed by the server and cannot be set");
        } else {
            CHECK(errs.empty());
        }
    }
    // The codes RFC 2132 section 9 and RFC 3046 reserve to the server, and nothing else.
    std::vector<int> managed;
    for (const auto& d : dhcp_options::option_table())
        if (d.managed) managed.push_back(d.code);
    CHECK(managed == std::vector<int>{50, 51, 52, 53, 54, 55, 57, 58, 59, 61, 82});
    CHECK(MonitoringOption{}.enterprise == 49836);
    CHECK(MonitoringOption{}.code == 125);
    CHECK(DhcpService{}.config_uri_option == 224);
}

TEST_CASE("overlapping subnets, sector sizes and unknown top-level keys", "[site]") {
    auto e1 = errors_of(R"({"networks":[{"name":"a","subnet":"10.0.0.0/16"},{"name":"b","subnet":"10.0.5.0/24"}]})");
    REQUIRE(e1.size() == 1);
    CHECK(e1[0] == SiteError{"/networks/1/subnet", "10.0.5.0/24 overlaps 10.0.0.0/16 of network \"a\""});
    auto e2 = errors_of(R"({"networks":[{"name":"a","subnet":"10.0.0.0/24"}],
        "unikernels":[{"name":"p","network":"a","block":{"sector_size":1024}}]})");
    REQUIRE(e2.size() == 1);
    CHECK(e2[0] == SiteError{"/unikernels/0/block/sector_size", "must be 512 or 4096"});
    auto e3 = errors_of(R"({"networks":[{"name":"a","subnet":"10.0.0.0/24"}], "extra": 1})");
    REQUIRE(e3.size() == 1);
    CHECK(e3[0].pointer == "/extra");
    auto e4 = errors_of(R"([1,2])");
    REQUIRE(e4.size() == 1);
    CHECK(e4[0] == SiteError{"", "expected an object, found an array"});
    auto e5 = errors_of(R"({"networks":[{"name":"a/b","subnet":"10.0.0.0/24"}]})");
    REQUIRE(e5.size() == 1);
    CHECK(e5[0].pointer == "/networks/0/name");
    // The DHCP control channel over HTTP is never open without a password file.
    auto e6 = errors_of(R"({"networks":[{"name":"a","subnet":"10.0.0.0/24"}],"services":{"dhcp":{"control_http":"127.0.0.1:8004"}}})");
    REQUIRE(e6.size() == 1);
    CHECK(e6[0].pointer == "/services/dhcp/control_http");
    CHECK(e6[0].message == "needs \"control_key_file\": the HTTP control channel is never open without a password");
    auto e7 = errors_of(R"({"networks":[{"name":"a","subnet":"10.0.0.0/24"}],"services":{"dhcp":{"control_http":"localhost"}}})");
    REQUIRE_FALSE(e7.empty());
    CHECK(e7[0].message == "\"localhost\" is not an address with :port, or \"off\"");
    CHECK_FALSE(parse(R"({"networks":[{"name":"a","subnet":"10.0.0.0/24"}],"services":{"dhcp":{"control_http":"off"}}})")
                    .services.dhcp.control_http);
}

TEST_CASE("a file over the size limit or missing is refused", "[site]") {
    auto errs = load_errors("/nonexistent/site.json");
    REQUIRE(errs.size() == 1);
    CHECK(errs[0].message == "cannot open: No such file or directory");  // the file is named once, by the error's source
    // Exactly at the limit the file is read (and parsed: here, valid JSON that is not a site); one byte
    // more and it is refused before anything is read.
    const auto dir = std::filesystem::temp_directory_path() / ("fc-site-size-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    const auto at = dir / "at.json", over = dir / "over.json";
    {
        std::ofstream f(at, std::ios::binary);
        f << '"' << std::string(kMaxSiteFileBytes - 2, 'x') << '"';
    }
    {
        std::ofstream f(over, std::ios::binary);
        f << '"' << std::string(kMaxSiteFileBytes - 1, 'x') << '"';
    }
    REQUIRE(std::filesystem::file_size(at) == kMaxSiteFileBytes);
    errs = load_errors(at);
    REQUIRE_FALSE(errs.empty());
    CHECK(errs[0].message.find("at most") == std::string::npos);  // read whole: the errors are about the content
    errs = load_errors(over);
    REQUIRE(errs.size() == 1);
    CHECK(errs[0].message ==
          "file is " + std::to_string(kMaxSiteFileBytes + 1) + " bytes, at most " + std::to_string(kMaxSiteFileBytes) + " allowed");
    std::filesystem::remove_all(dir);
}

TEST_CASE("lease-driven routes: targets, key files, public hosts", "[site][routes]") {
    auto route_errors = [](const std::string& services, const std::string& extra_unikernel = "") {
        try {
            parse(R"({"networks":[{"name":"a","subnet":"10.0.0.0/24"}],
                      "unikernels":[{"name":"proxy","network":"a","block":{}},
                                    {"name":"web","network":"a","public_hosts":["WWW.example.org","*.apps.example.org"]})" +
                  extra_unikernel + R"(],
                      "services":)" +
                  services + "}");
        } catch (const SiteLoadError& e) {
            return e.errors();
        }
        return std::vector<SiteError>{};
    };
    CHECK(route_errors(R"({"dhcp":{"routes":{"target":"proxy"}}})").empty());
    auto s = parse(R"({"networks":[{"name":"a","subnet":"10.0.0.0/24"}],
                       "unikernels":[{"name":"proxy","network":"a","block":{}},
                                     {"name":"web","network":"a","public_hosts":["WWW.example.org"],"backend_port":8080}],
                       "services":{"dhcp":{"routes":{"target":"proxy","fqdn":true}}}})");
    REQUIRE(s.services.dhcp.routes);
    CHECK(s.services.dhcp.routes->kind == LeaseRoutes::Kind::local);
    CHECK(s.services.dhcp.routes->port == 80);
    CHECK(s.services.dhcp.routes->remove_on_release);
    CHECK(s.unikernel("web")->public_hosts == std::vector<std::string>{"www.example.org"});  // lower-cased
    CHECK(*s.unikernel("web")->backend_port == 8080);
    auto e = route_errors(R"({"dhcp":{"routes":{"target":"web"}}})");
    REQUIRE(e.size() == 1);
    CHECK(e[0].message == "\"web\" is not a unikernel with a \"block\" device");
    e = route_errors(R"({"dhcp":{"routes":{"target":"blockcfg://127.0.0.1:7300/proxy"}}})");
    REQUIRE(e.size() == 1);
    CHECK(e[0].pointer == "/services/dhcp/routes/key_file");
    e = route_errors(R"({"dhcp":{"routes":{"target":"tlstunnel://127.0.0.1/x","key_file":"/nonexistent"}}})");
    CHECK(e.size() == 2);  // a path on a tlstunnel target, and a key file that does not exist
    e = route_errors(R"({"dhcp":{"routes":{"target":"http://x"}}})");
    REQUIRE(e.size() == 1);
    CHECK(e[0].pointer == "/services/dhcp/routes/target");
    e = route_errors(R"({})");
    REQUIRE(e.size() == 1);
    CHECK(e[0].message == "needs services.dhcp.routes (where the routes go)");
    e = route_errors(R"({"dhcp":{"routes":{"target":"proxy"}}})",
                     R"(,{"name":"cal","network":"a","public_hosts":["www.example.org","bad_name"]})");
    REQUIRE(e.size() == 2);
    CHECK(e[0].message == "\"www.example.org\" is also a public host of unikernel \"web\"");
    CHECK(e[1].pointer == "/unikernels/2/public_hosts/1");
}

TEST_CASE("services.status: one endpoint for every service; the old dhcp.metrics key says where it went", "[site][status]") {
    const std::string net = R"("networks":[{"name":"a","subnet":"10.0.0.0/24"}])";
    CHECK(parse("{" + net + "}").services.status == Endpoint{Ipv4{127, 0, 0, 1}, 9467});
    CHECK(parse("{" + net + R"(,"services":{"status":"127.0.0.1:9100"}})").services.status == Endpoint{Ipv4{127, 0, 0, 1}, 9100});
    CHECK_FALSE(parse("{" + net + R"(,"services":{"status":"off"}})").services.status);
    auto bad = errors_of("{" + net + R"(,"services":{"status":"nowhere"}})");
    REQUIRE(bad.size() == 1);
    CHECK(bad[0].pointer == "/services/status");
    auto moved = errors_of("{" + net + R"(,"services":{"dhcp":{"metrics":"off"}}})");
    REQUIRE(moved.size() == 1);
    CHECK(moved[0].pointer == "/services/dhcp/metrics");
    CHECK(moved[0].message == "moved to \"services.status\": one endpoint serves /health and /metrics for every service");
}

TEST_CASE("services.console: off by default, loopback without a login, elsewhere only with HTTPS and a password file", "[site][console]") {
    const std::string net = R"("networks":[{"name":"a","subnet":"10.0.0.0/24"}])";
    CHECK_FALSE(parse("{" + net + "}").services.console.enabled);
    CHECK_FALSE(parse("{" + net + R"(,"services":{"console":"off"}})").services.console.enabled);
    CHECK_FALSE(parse("{" + net + R"(,"services":{"console":{"enabled":false}}})").services.console.enabled);
    const auto on = parse("{" + net + R"(,"services":{"console":{}}})").services.console;
    CHECK(on.enabled);
    CHECK(on.listen == Endpoint{Ipv4{127, 0, 0, 1}, 9468});
    CHECK(on.password_file.empty());
    CHECK(parse("{" + net + R"(,"services":{"console":{"listen":"[::1]:0"}}})").services.console.listen.port == 0);
    auto bad = errors_of("{" + net + R"(,"services":{"console":{"listen":"10.0.0.1:9468"}}})");
    REQUIRE(bad.size() == 1);
    CHECK(bad[0].pointer == "/services/console/listen");
    CHECK(bad[0].message ==
          "10.0.0.1:9468 is not a loopback address: the console there needs tls_cert, tls_key and password_file (HTTPS and a login)");
    bad = errors_of("{" + net + R"(,"services":{"console":{"tls_cert":"/nonexistent/c.pem"}}})");
    REQUIRE_FALSE(bad.empty());
    CHECK(bad[0] == SiteError{"/services/console/tls_key", "tls_cert and tls_key go together"});
    bad = errors_of("{" + net + R"(,"services":{"console":{"password_file":"/nonexistent/passwords"}}})");
    REQUIRE(bad.size() == 1);
    CHECK(bad[0].pointer == "/services/console/password_file");
    bad = errors_of("{" + net + R"(,"services":{"console":{"listen":"127.0.0.1:1","login":true}}})");
    REQUIRE(bad.size() == 1);
    CHECK(bad[0].pointer == "/services/console/login");  // an unknown key
}

// ---- every documented range and count of docs/site-file.md: exactly at each bound, and just past it ----
namespace {

struct NumericRange {
    const char* pointer;  // where the value goes (the parent object is created), and where the error is reported
    std::uint64_t min, max, deflt;
    std::function<std::uint64_t(const Site&)> get;
};

// A valid site with `value` set at `pointer` (a path of object keys and array indexes into the base below).
std::string with_value(const std::string& pointer, const nlohmann::json& value) {
    nlohmann::json j = nlohmann::json::parse(R"({
      "networks": [{"name": "a", "subnet": "10.0.0.0/16", "options": {"monitoring": "10.0.0.3:8094"}}],
      "unikernels": [{"name": "web", "network": "a", "public_hosts": ["www.example.org"], "block": {}}],
      "services": {"dhcp": {"routes": {"target": "web"}}}})");
    if (!pointer.empty()) j[nlohmann::json::json_pointer(pointer)] = value;
    return j.dump();
}

}  // namespace

TEST_CASE("docs/site-file.md: every numeric range, at both bounds, past both, and its default", "[site][limits]") {
    const NumericRange ranges[] = {
        {"/networks/0/lease_time", 60, 0x7FFFFFFF, 3600, [](const Site& s) { return s.networks[0].lease_time; }},
        {"/networks/0/monitoring_option/code", 1, 254, 125, [](const Site& s) { return s.networks[0].monitoring_option.code; }},
        {"/networks/0/monitoring_option/suboption", 0, 255, 0, [](const Site& s) { return s.networks[0].monitoring_option.suboption; }},
        {"/networks/0/monitoring_option/enterprise", 0, 0xFFFFFFFF, 49836,
         [](const Site& s) { return s.networks[0].monitoring_option.enterprise; }},
        {"/unikernels/0/backend_port", 1, 65535, 80, [](const Site& s) { return s.unikernels[0].backend_port.value_or(80); }},
        {"/unikernels/0/block/size", 16 * 1024, 1ull << 32, 1 << 20, [](const Site& s) { return s.unikernels[0].block->size; }},
        {"/services/dhcp/config_uri_option", 224, 254, 224, [](const Site& s) { return s.services.dhcp.config_uri_option; }},
        {"/services/dhcp/routes/port", 1, 65535, 80, [](const Site& s) { return s.services.dhcp.routes->port; }},
        {"/services/git/validator_timeout", 1, 3600, 10, [](const Site& s) { return s.services.git.validator_timeout_s; }},
        {"/services/git/pack_cache_mb", 0, 65536, 64, [](const Site& s) { return s.services.git.pack_cache_mb; }},
        {"/services/git/read_timeout", 1, 3600, 30, [](const Site& s) { return s.services.git.read_timeout_s; }},
        {"/services/git/max_pack_mb", 1, 4096, 16, [](const Site& s) { return s.services.git.max_pack_mb; }},
        {"/services/git/max_object_mb", 1, 4096, 8, [](const Site& s) { return s.services.git.max_object_mb; }},
        {"/services/git/max_repo_mb", 1, 65536, 64, [](const Site& s) { return s.services.git.max_repo_mb; }},
    };
    CHECK(parse(with_value("", nullptr)).networks.size() == 1);  // the base is valid
    for (const auto& r : ranges) {
        INFO(r.pointer);
        // Absent: the documented default. (A value must be removed from the base, which has none of these.)
        CHECK(r.get(parse(with_value("", nullptr))) == r.deflt);
        for (const auto v : {r.min, r.max}) {
            if (std::string(r.pointer) == "/unikernels/0/block/size" && v % 512 != 0) continue;
            CHECK(r.get(parse(with_value(r.pointer, v))) == v);
        }
        const std::string range = "must be between " + std::to_string(r.min) + " and " + std::to_string(r.max) + ", found ";
        const auto over = errors_of(with_value(r.pointer, r.max + 1));
        REQUIRE(over.size() == 1);
        CHECK(over[0] == SiteError{r.pointer, range + std::to_string(r.max + 1)});
        if (r.min > 0) {
            const auto under = errors_of(with_value(r.pointer, r.min - 1));
            REQUIRE(under.size() == 1);
            CHECK(under[0] == SiteError{r.pointer, range + std::to_string(r.min - 1)});
        } else {
            const auto negative = errors_of(with_value(r.pointer, -1));
            REQUIRE(negative.size() == 1);
            CHECK(negative[0] == SiteError{r.pointer, range + "-1"});
        }
    }
}

TEST_CASE("docs/site-file.md: every count and size limit, at the limit and one past it", "[site][limits]") {
    struct Count {
        const char* pointer;
        std::size_t limit;
        std::function<nlohmann::json(std::size_t)> make;  // the value with n entries (or bytes)
        const char* over_message;                         // the error one past the limit ("" when it names the count)
    };
    auto ips = [](std::size_t n) {
        nlohmann::json a = nlohmann::json::array();
        for (std::size_t i = 0; i < n; ++i) a.push_back("10.0." + std::to_string(1 + i / 250) + "." + std::to_string(1 + i % 250));
        return a;
    };
    auto hosts = [](std::size_t n) {
        nlohmann::json a = nlohmann::json::array();
        for (std::size_t i = 0; i < n; ++i) a.push_back("h" + std::to_string(i) + ".example.org");
        return a;
    };
    const Count counts[] = {
        {"/networks/0/dns", 16, ips, "has 17 entries, at most 16 allowed"},
        {"/networks/0/options/ntp", 16, ips, "has 17 entries, at most 16 allowed"},
        {"/unikernels/0/public_hosts", 64, hosts, "expected an array of at most 64 host names"},
        {"/networks/0/options/custom", 1024,
         [](std::size_t n) {
             return nlohmann::json::array({{{"code", 230}, {"type", "string"}, {"value", std::string(n, 'x')}}});
         },
         ""},
    };
    for (const auto& c : counts) {
        INFO(c.pointer);
        CHECK(errors_of(with_value(c.pointer, c.make(c.limit))).empty());
        const auto over = errors_of(with_value(c.pointer, c.make(c.limit + 1)));
        REQUIRE(over.size() == 1);
        if (*c.over_message) CHECK(over[0] == SiteError{c.pointer, c.over_message});
        else CHECK(over[0] == SiteError{std::string(c.pointer) + "/0/value", "encoded value is 1025 bytes, at most 1024 allowed"});
    }
    // 256 networks and 65,536 unikernels.
    auto networks = [](std::size_t n) {
        nlohmann::json a = nlohmann::json::array();
        for (std::size_t i = 0; i < n; ++i)
            a.push_back(
                {{"name", "n" + std::to_string(i)}, {"subnet", "10." + std::to_string(i / 256) + "." + std::to_string(i % 256) + ".0/24"}});
        return a;
    };
    CHECK(parse(nlohmann::json{{"networks", networks(kMaxNetworks)}}.dump()).networks.size() == kMaxNetworks);
    auto e = errors_of(nlohmann::json{{"networks", networks(kMaxNetworks + 1)}}.dump());
    REQUIRE_FALSE(e.empty());
    CHECK(e[0] == SiteError{"/networks", "at most 256 networks allowed"});
    auto unikernels = [](std::size_t n) {
        nlohmann::json a = nlohmann::json::array();
        char mac[18];
        for (std::size_t i = 0; i < n; ++i) {
            std::snprintf(mac, sizeof mac, "02:00:00:%02x:%02x:%02x", unsigned(i >> 16 & 0xff), unsigned(i >> 8 & 0xff),
                          unsigned(i & 0xff));
            a.push_back({{"name", "u" + std::to_string(i)}, {"network", "a"}, {"mac", mac}});
        }
        return a;
    };
    const nlohmann::json net = nlohmann::json::array({{{"name", "a"}, {"subnet", "10.0.0.0/8"}}});
    CHECK(parse(nlohmann::json{{"networks", net}, {"unikernels", unikernels(kMaxUnikernels)}}.dump()).unikernels.size() == kMaxUnikernels);
    e = errors_of(nlohmann::json{{"networks", net}, {"unikernels", unikernels(kMaxUnikernels + 1)}}.dump());
    REQUIRE_FALSE(e.empty());
    CHECK(e[0] == SiteError{"/unikernels", "at most 65536 unikernels allowed"});
}

TEST_CASE("services.limits: per listener, defaults from the kit, one address never takes every slot", "[site][limits]") {
    const auto base = R"({"networks":[{"name":"br0","subnet":"10.0.0.0/24"}],"services":{"limits":)";
    auto site = parse(std::string(base) + R"({"ssh":{"max_connections":20,"max_per_address":2,"login_grace":3,"min_rate":100}}}})");
    const auto ssh = site.services.limits_for("ssh");
    CHECK(ssh.max_connections == 20);
    CHECK(ssh.max_per_address == 2);
    CHECK(ssh.max_unauthenticated == 16);  // the default, kept
    CHECK(ssh.login_grace == std::chrono::seconds(3));
    CHECK(ssh.min_rate == 100);
    CHECK(site.services.limits_for("http") == default_limits("http"));  // not given: the default
    CHECK(default_limits("block").max_connections == 256);
    CHECK(default_limits("block").max_per_address == 32);
    CHECK(default_limits("block").max_unauthenticated == 64);
    CHECK(default_limits("ssh").max_connections == 64);
    CHECK(default_limits("git").max_per_address == 64);
    for (auto name : kListenerNames) CHECK(default_limits(name).max_per_address < default_limits(name).max_connections);

    auto err = [&](const std::string& limits) {
        const auto e = errors_of(std::string(base) + limits + "}}");
        return e.empty() ? SiteError{} : e[0];
    };
    CHECK(err(R"({"smtp":{}})").message ==
          "unknown key \"smtp\" (expected one of: git, http, https, ssh, block, dhcp-control, status, console)");
    CHECK(err(R"({"git":{"max_connections":4,"max_per_address":4}})") ==
          SiteError{"/services/limits/git/max_per_address", "equals max_connections: one address could take every slot"});
    CHECK(err(R"({"git":{"max_connections":4,"max_per_address":5}})") ==
          SiteError{"/services/limits/git/max_per_address", "is more than max_connections: one address could take every slot"});
    CHECK(err(R"({"block":{"max_connections":0}})") ==
          SiteError{"/services/limits/block/max_connections", "must be between 1 and 65536, found 0"});
    CHECK(err(R"({"ssh":{"login_grace":601}})") == SiteError{"/services/limits/ssh/login_grace", "must be between 1 and 600, found 601"});
    CHECK(err(R"({"ssh":{"max_connections":8,"max_per_address":2,"max_unauthenticated":9}})") ==
          SiteError{"/services/limits/ssh/max_unauthenticated", "is more than max_connections"});
}

TEST_CASE("site check refuses a control_key_file that serve would refuse (mode 0644)", "[site]") {
    fleetconf::test::TempDir d;
    const auto key = d.path / "ctl.key";
    std::ofstream(key) << "a control password of 24 chars\n";
    ::chmod(key.c_str(), 0644);
    const std::string text = R"({"networks": [{"name": "br0", "subnet": "10.0.0.0/24", "gateway": "10.0.0.1"}],
        "services": {"dhcp": {"control_http": "127.0.0.1:8000", "control_key_file": ")" +
                             key.string() + R"("}}})";
    try {
        (void)parse_site(text, d.path, "t.json");
        FAIL("accepted");
    } catch (const SiteLoadError& e) {
        REQUIRE(e.errors().size() == 1);
        CHECK(e.errors()[0].pointer == "/services/dhcp/control_key_file");
        CHECK_THAT(e.errors()[0].message, Catch::Contains("mode 644") && Catch::Contains("chmod 600"));
    }
    ::chmod(key.c_str(), 0600);
    CHECK_NOTHROW(parse_site(text, d.path, "t.json"));
}
