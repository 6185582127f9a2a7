// Untrusted DHCP datagrams: decode must return a message or an error; the decision function must
// cope with whatever decodes, and its replies must encode and decode again. Each input starts from an empty
// lease store (no state carried between inputs, so every crash reproduces from its input alone) and is
// decided twice, the second time against the state the first left, 10 minutes later.
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
    MemoryLeaseStore leases;
    std::error_code ec;
    auto m = decode({data, size}, ec);
    if (!m) {
        if (!ec) __builtin_trap();
        return 0;
    }
    (void)format_option(opt::parameter_list, m->find(opt::parameter_list) ? m->find(opt::parameter_list)->data : Bytes{});
    for (int round = 0; round < 2; ++round) {
        const std::uint64_t now = 1'800'000'000 + (size % 7) * 1000 + static_cast<std::uint64_t>(round) * 600;
        auto d = decide(Request{*m, size % 2 ? "br0" : "other"}, now, leases, config());
        leases.apply(d.changes);
        if (d.reply) {
            const auto bytes = encode(*d.reply, d.max_reply_size);
            if (bytes.size() > std::max<std::size_t>(d.max_reply_size, kBootpMinSize)) __builtin_trap();
            if (!decode(bytes, ec)) __builtin_trap();
        }
    }
    return 0;
}
