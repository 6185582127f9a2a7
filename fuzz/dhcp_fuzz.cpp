// Untrusted DHCP datagrams: decode must return a message or an error; the decision function must
// cope with whatever decodes (any state), and its replies must encode and decode again.
#include "fleetconf/dhcp/server.hpp"

#include <cstdint>

using namespace fleetconf::dhcp;

namespace {

const Config& config() {
    static const Config cfg = [] {
        auto site = fleetconf::common::parse_site(R"({
          "networks": [{"name": "br0", "subnet": "10.0.0.0/24", "gateway": "10.0.0.1", "domain": "fleet.example", "pools": ["10.0.0.100-10.0.0.103"],
                        "options": {"syslog": "10.0.0.2", "monitoring": "10.0.0.3:8094", "ntp": ["10.0.0.4"]}}],
          "unikernels": [{"name": "web", "network": "br0", "address": "10.0.0.10", "config_uri": "git://x/web.git"}]})",
                                                  "/nonexistent", "fuzz.json");
        return make_config(site, [](const std::string&) { return std::nullopt; });
    }();
    return cfg;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static MemoryLeaseStore leases;  // state carries over between inputs: exercises many lease states
    std::error_code ec;
    auto m = decode({data, size}, ec);
    if (!m) {
        if (!ec) __builtin_trap();
        return 0;
    }
    (void)format_option(opt::parameter_list, m->find(opt::parameter_list) ? m->find(opt::parameter_list)->data : Bytes{});
    const std::uint64_t now = 1'800'000'000 + (size % 7) * 1000;
    auto d = decide(Request{*m, size % 2 ? "br0" : "other"}, now, leases, config());
    leases.apply(d.changes);
    if (leases.size() > 10000) leases = MemoryLeaseStore{};
    if (d.reply) {
        const auto bytes = encode(*d.reply, d.max_reply_size);
        if (bytes.size() > std::max<std::size_t>(d.max_reply_size, kBootpMinSize)) __builtin_trap();
        if (!decode(bytes, ec)) __builtin_trap();
    }
    return 0;
}
