// Issue 17, isolation inside one process (what `fleetconf serve` does): the git service and the DHCP
// service each on their own thread (common::ServiceThread), and libgit2 work on the git service's pool.
// A pack build is held on a latch (ServiceOptions::before_pack_build) while the stock git client clones;
// meanwhile a DHCP exchange completes, and so does another git client's ls-remote. The build is released
// only afterwards, and the clone then completes. No timing threshold: the order of events is the check
// (the waits below only bound a hang).
#include "fleetconf/common/runtime.hpp"
#include "fleetconf/common/site.hpp"
#include "fleetconf/dhcp/service.hpp"
#include "fleetconf/dhcp/wire.hpp"
#include "fleetconf/gitconf/service.hpp"

#include "../support/temp_dir.hpp"

#include <asio/io_context.hpp>
#include <asio/ip/udp.hpp>
#include <catch2/catch.hpp>
#include <spdlog/sinks/null_sink.h>

#include <atomic>
#include <cstdlib>
#include <future>
#include <thread>

#include <poll.h>

using namespace fleetconf;
using namespace std::chrono_literals;

namespace {

bool have_git() { return std::system("git --version >/dev/null 2>&1") == 0; }

// Runs a shell command (bounded by timeout(1)); its exit status.
int run(const std::string& cmd) {
    const int rc = std::system(("timeout 60 " + cmd).c_str());
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

}  // namespace

TEST_CASE("serve isolation: a held pack build delays neither a DHCP exchange nor another git client", "[gitconf][isolation]") {
    if (!have_git()) {
        WARN("skipped: no git client on this machine");
        return;
    }
    test::TempDir d("fleetconf-isolation");
    const auto site = common::parse_site(R"({
      "networks": [{"name": "lo", "interface": "lo", "subnet": "127.0.0.0/8", "pools": ["127.0.0.100-127.0.0.110"], "lease_time": 600}],
      "unikernels": [{"name": "web", "mac": "02:00:00:00:00:05", "network": "lo", "git": {"git_protocol": true}}],
      "services": {"data_dir": ")" + d.path.string() +
                                             R"(", "git": {"git": "127.0.0.1:0"}}})",
                                         d.path, "site.json");
    auto quiet = std::make_shared<spdlog::logger>("test", std::make_shared<spdlog::sinks::null_sink_mt>());
    gitconf::ensure_repositories(site);

    // The held build: `entered` when a pack build starts, which then waits for `release`.
    std::promise<void> entered_p;
    auto entered = entered_p.get_future();
    struct Latch {  // released once, at the latest when the test leaves (a failed check must not hang it)
        std::promise<void> p;
        std::shared_future<void> f = p.get_future().share();
        bool open = false;
        void release() {
            if (!open) p.set_value();
            open = true;
        }
        ~Latch() { release(); }
    };
    auto latch = std::make_shared<Latch>();
    auto release = latch->f;
    std::atomic<int> builds{0};
    gitconf::ServiceOptions gopts;
    gopts.before_pack_build = [&](const std::string&) {
        if (builds++ == 0) {
            entered_p.set_value();
            release.wait();
        }
    };

    common::ServiceThread git_thread("git"), dhcp_thread("dhcp");
    gitconf::Service git(git_thread.io(), site, gopts, quiet);
    git.start();
    const auto port = git.git_endpoint()->port;

    asio::io_context client_io;
    asio::ip::udp::socket client(client_io);
    client.open(asio::ip::udp::v4());
    client.bind({asio::ip::make_address_v4("127.0.0.5"), 0});
    dhcp::ServiceOptions dopts;
    dopts.server_port = 0;
    dopts.client_port = client.local_endpoint().port();
    dopts.control_socket = "-";
    dopts.lease_store = [] { return std::make_unique<dhcp::MemoryLeaseStore>(); };
    dhcp::Service dhcp(dhcp_thread.io(), site, dopts, quiet);
    dhcp.start();
    git_thread.start();
    dhcp_thread.start();
    REQUIRE(dhcp_thread.call([&] {
        return dhcp.command({{"command", "lease4-add"}, {"arguments", {{"ip-address", "127.0.0.5"}, {"hw-address", "02:00:00:00:00:05"}}}});
    })["result"] == 0);

    const std::string url = "git://127.0.0.1:" + std::to_string(port) + "/web.git";
    const std::string env = "env HOME=" + d.path.string() + " GIT_CONFIG_NOSYSTEM=1 ";
    std::vector<std::string> events;
    std::mutex events_m;
    auto event = [&](const std::string& e) {
        std::lock_guard g(events_m);
        events.push_back(e);
    };
    std::jthread clone([&] {
        const int rc = run(env + "git clone -q " + url + " " + (d.path / "clone").string() + " 2>/dev/null");
        event("clone done rc=" + std::to_string(rc));
    });
    struct ReleaseOnExit {
        std::shared_ptr<Latch> l;
        ~ReleaseOnExit() { l->release(); }
    } release_on_exit{latch};
    REQUIRE(entered.wait_for(60s) == std::future_status::ready);  // the clone's pack build is running, and held

    // A DHCP exchange: a RENEWING client's REQUEST (ciaddr set), answered to ciaddr.
    dhcp::Message m;
    m.xid = 0x17;
    m.ciaddr = common::Ipv4(127, 0, 0, 5);
    const auto mac = *common::Mac::parse("02:00:00:00:00:05");
    std::copy(mac.bytes().begin(), mac.bytes().end(), m.chaddr.begin());
    m.options.push_back({dhcp::opt::message_type, {static_cast<std::uint8_t>(dhcp::MessageType::request)}});
    const auto bytes = dhcp::encode(m);
    client.send_to(asio::buffer(bytes), {asio::ip::make_address_v4("127.0.0.1"), dhcp.local_port()});
    std::optional<dhcp::Message> ack;
    std::vector<std::uint8_t> buf(2048);
    for (int tries = 0; tries < 100 && !ack; ++tries) {
        pollfd p{client.native_handle(), POLLIN, 0};
        if (::poll(&p, 1, 100) <= 0) continue;
        const auto n = client.receive(asio::buffer(buf));
        std::error_code ec;
        if (auto r = dhcp::decode(std::span<const std::uint8_t>(buf.data(), n), ec); r && r->xid == m.xid) ack = r;
    }
    REQUIRE(ack);
    CHECK(ack->type() == dhcp::MessageType::ack);
    event("dhcp ack");

    // Another git client: its repository open and ref advertisement run while the first build is held.
    CHECK(run(env + "git ls-remote " + url + " >/dev/null 2>&1") == 0);
    event("ls-remote done");

    event("release");
    latch->release();
    clone.join();
    CHECK(events == std::vector<std::string>{"dhcp ack", "ls-remote done", "release", "clone done rc=0"});
    CHECK(std::filesystem::exists(d.path / "clone" / ".git"));

    git_thread.call([&] { git.stop(); });
    dhcp_thread.call([&] { dhcp.stop(); });
    CHECK(git_thread.finish(5s));
    CHECK(dhcp_thread.finish(5s));
}
