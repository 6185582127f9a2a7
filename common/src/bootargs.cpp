#include "fleetconf/common/bootargs.hpp"

namespace fleetconf::common {

std::string default_tap_name(std::string_view unikernel) {
    std::string t = "tap-";
    t.append(unikernel.substr(0, 11));
    return t;
}

BootArgs boot_args(const Site& site, const Unikernel& u, std::string_view tap_name) {
    BootArgs a;
    const Network* net = site.network(u.network);
    a.tender.push_back(std::string("--net:") + kNetDevice + "=" + std::string(tap_name));
    a.tender.push_back(std::string("--net-mac:") + kNetDevice + "=" + u.mac.to_string());
    a.notes.push_back(u.mac_derived ? "MAC derived as Albatross does: 00:80:41 + MD5(\"" + u.network + u.name + "\")[0..2]"
                                    : "MAC from the site file");
    if (u.block) {
        a.tender.push_back(std::string("--block:") + kBlockDevice + "=" + u.block->device.string());
        a.notes.push_back("block device " + u.block->device.string() + " (" + std::to_string(u.block->sector_size) + "-byte sectors)");
    }
    if (!u.dhcp && u.address && net) {
        a.unikernel.push_back("--ipv4=" + u.address->to_string() + "/" + std::to_string(net->subnet.length()));
        if (net->gateway) a.unikernel.push_back("--ipv4-gateway=" + net->gateway->to_string());
        a.notes.push_back("static address: the unikernel does not use DHCP");
    } else {
        a.notes.push_back(u.address ? "address " + u.address->to_string() + " reserved in DHCP" : "address from the DHCP pool");
    }
    const SiteOptions o = site.effective_options(u);
    // MirageOS' --syslog and --monitor keys take an address only (the ports are fixed in the unikernel).
    if (o.syslog) {
        a.unikernel.push_back("--syslog=" + o.syslog->host_string());
        if (o.syslog->port != 514)
            a.notes.push_back("syslog port " + std::to_string(o.syslog->port) + " cannot be given on the command line; "
                              "the unikernel uses its built-in port");
    }
    if (o.monitoring) a.unikernel.push_back("--monitor=" + o.monitoring->host_string());
    for (const auto& x : u.boot_args) a.unikernel.push_back(x);
    return a;
}

}  // namespace fleetconf::common
