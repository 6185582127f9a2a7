#include "fleetconf/common/bootargs.hpp"

namespace fleetconf::common {

std::string default_tap_name(std::string_view unikernel) {
    std::string t = "tap-";
    t.append(unikernel.substr(0, 11));
    return t;
}

namespace {
// The repository's URI over the preferred listener: https, http (both with `userinfo` before the host when
// not empty) or git:// (no credentials). Empty when no listener serves it.
std::string remote_uri(const Site& site, const Unikernel& u, const std::string& userinfo) {
    const auto& g = site.services.git;
    if (!g.enabled || !u.git.enabled) return {};
    auto host_of = [&](const Endpoint& e, std::uint16_t default_port) {
        std::string h = g.public_host.empty() ? e.host_string() : g.public_host;
        if (h.find(':') != std::string::npos) {  // (not "[" + h + "]": GCC 12 -O2 -Wrestrict false positive)
            h.insert(h.begin(), '[');
            h += ']';
        }
        if (e.port != default_port) h.append(":").append(std::to_string(e.port));
        return h;
    };
    const std::string cred = userinfo.empty() ? "" : userinfo + "@";
    std::string uri;
    if (g.https) uri = "https://" + cred + host_of(*g.https, 443) + "/" + u.name + ".git";
    else if (g.http) uri = "http://" + cred + host_of(*g.http, 80) + "/" + u.name + ".git";
    else if (g.git && u.git.git_protocol) uri = "git://" + host_of(*g.git, 9418) + "/" + u.name + ".git";
    else return {};
    if (u.git.branch != "main") uri += "#" + u.git.branch;
    return uri;
}
}  // namespace

std::string git_remote(const Site& site, const Unikernel& u, std::string_view token, bool ssh) {
    const auto& g = site.services.git;
    if (!g.enabled || !u.git.enabled) return {};
    if (ssh && g.ssh) {
        std::string host = g.public_host.empty() ? g.ssh->host_string() : g.public_host;
        return "git@" + host + ":" + u.name + ".git" + (u.git.branch != "main" ? "#" + u.git.branch : "");
    }
    return remote_uri(site, u, u.name + ":" + (token.empty() ? std::string("TOKEN") : std::string(token)));
}

std::string dhcp_config_uri(const Site& site, const Unikernel& u) {
    if (!u.config_uri.empty()) return u.config_uri;
    return remote_uri(site, u, u.name);
}

std::string loopback_uri_warning(const Site& site) {
    const auto& g = site.services.git;
    if (!g.enabled || !g.public_host.empty()) return {};
    const std::optional<Endpoint>& used = g.https ? g.https : g.http ? g.http : g.git;
    if (!used || !is_loopback(used->host)) return {};
    std::size_t n = 0;
    for (const auto& u : site.unikernels) n += u.git.enabled && u.config_uri.empty();
    if (n == 0) return {};
    return "the repository URIs of " + std::to_string(n) + " unikernel(s) (--remote, the configuration-URI option) name " +
           used->to_string() + ", a loopback address no unikernel can reach: set services.git.public_host, or a git listener on an " +
           "address of the unikernels' network";
}

const char* to_string(BootMode m) {
    switch (m) {
        case BootMode::static_address: return "static";
        case BootMode::dhcp: return "dhcp";
        case BootMode::dhcp_config: return "dhcp-config";
    }
    return "?";
}

std::optional<BootMode> parse_boot_mode(std::string_view s) {
    for (auto m : {BootMode::static_address, BootMode::dhcp, BootMode::dhcp_config})
        if (s == to_string(m)) return m;
    return std::nullopt;
}

std::vector<BootMode> boot_modes(const Site& site, const Unikernel& u) {
    if (!u.dhcp) return {BootMode::static_address};
    std::vector<BootMode> modes{BootMode::dhcp};
    if (site.services.dhcp.enabled && !dhcp_config_uri(site, u).empty()) modes.push_back(BootMode::dhcp_config);
    return modes;
}

namespace {
// dhcp-config: the address, the sinks and the configuration URI come from DHCP; what a DHCP reply must not
// carry stays on the command line: the credential, and the trust anchors (a DHCP reply is not authenticated).
void dhcp_config_args(const Site& site, const Unikernel& u, const GitBootInfo& git, BootArgs& a) {
    const auto uri = dhcp_config_uri(site, u);
    a.notes.push_back(u.address ? "address " + u.address->to_string() + " reserved in DHCP" : "address from the DHCP pool");
    const SiteOptions o = site.effective_options(u);
    if (o.syslog || o.monitoring)
        a.notes.push_back("syslog and monitoring sinks from DHCP options 7 and 125 (the unikernel asks for them)");
    a.notes.push_back("configuration URI " + uri + " from DHCP option " + std::to_string(site.services.dhcp.config_uri_option));
    // A repository on this site's git host needs its token (and, over HTTPS, its certificate pinned); a
    // config_uri pointing elsewhere has a credential this site does not know.
    const bool ours = !remote_uri(site, u, "").empty();
    if ((uri.rfind("http://", 0) == 0 || uri.rfind("https://", 0) == 0) && !ours) {
        a.notes.push_back("the configuration URI is not a repository of this site: its credential, if any, is not known here");
    } else if (uri.rfind("http://", 0) == 0 || uri.rfind("https://", 0) == 0) {
        a.unikernel.push_back("--git-token=" + (git.token.empty() ? std::string("TOKEN") : git.token));
        if (git.token.empty())
            a.notes.push_back("TOKEN: the unikernel's git credential; `fleetconf git token " + u.name +
                              "` issues one (only its hash is kept), --git-token-file fills it in here");
        if (uri.rfind("https://", 0) == 0) {
            if (!git.tls_authenticator.empty()) a.unikernel.push_back("--tls-authenticator=" + git.tls_authenticator);
            else
                a.notes.push_back(
                    "--tls-authenticator: the certificate is made when the git service first starts; run bootargs again then");
        }
    } else if (uri.rfind("git@", 0) == 0 || uri.rfind("ssh://", 0) == 0) {
        a.unikernel.push_back("--ssh-key=ed25519:" + (git.ssh_seed.empty() ? std::string("SEED") : git.ssh_seed));
        if (!git.ssh_authenticator.empty()) a.unikernel.push_back("--ssh-authenticator=" + git.ssh_authenticator);
    }
}
}  // namespace

BootArgs boot_args(const Site& site, const Unikernel& u, std::string_view tap_name, const GitBootInfo& git, BootMode mode) {
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
    if (mode == BootMode::dhcp_config) {
        dhcp_config_args(site, u, git, a);
        for (const auto& x : u.boot_args) a.unikernel.push_back(x);
        return a;
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
            a.notes.push_back("syslog port " + std::to_string(o.syslog->port) +
                              " cannot be given on the command line; "
                              "the unikernel uses its built-in port");
    }
    if (o.monitoring) a.unikernel.push_back("--monitor=" + o.monitoring->host_string());
    if (git.ssh_key && site.services.git.ssh && u.git.enabled && site.services.git.enabled) {
        // The usual MirageOS boot line: SSH with the unikernel's own key and the host's key pinned.
        a.unikernel.push_back("--remote=" + git_remote(site, u, "", true));
        a.unikernel.push_back("--ssh-key=ed25519:" + (git.ssh_seed.empty() ? std::string("SEED") : git.ssh_seed));
        if (git.ssh_seed.empty())
            a.notes.push_back("SEED: the unikernel's SSH key, printed once by `fleetconf git keygen " + u.name +
                              "` (only its public half is kept); --ssh-key-file fills it in here");
        if (!git.ssh_authenticator.empty()) a.unikernel.push_back("--ssh-authenticator=" + git.ssh_authenticator);
        else
            a.notes.push_back(
                "--ssh-authenticator: the host key is made when the git service first starts with SSH on; run bootargs again then");
        if (site.services.git.ssh->port != 22)
            a.notes.push_back("the git@host:path form always uses port 22; the SSH listener is on port " +
                              std::to_string(site.services.git.ssh->port) + " (give the git host its own address with port 22)");
        a.notes.push_back(std::string("configuration repository over SSH: ") + (u.git.writable ? "read-write" : "read-only") + ", branch " +
                          u.git.branch);
    } else if (const auto remote = git_remote(site, u, git.token); !remote.empty()) {
        a.unikernel.push_back("--remote=" + remote);
        if (git.token.empty() && remote.find("TOKEN@") != std::string::npos)
            a.notes.push_back("TOKEN: the unikernel's git credential; `fleetconf git token " + u.name +
                              "` issues one (only its hash is kept), --git-token-file fills it in here");
        if (remote.rfind("https://", 0) == 0) {
            if (!git.tls_authenticator.empty()) a.unikernel.push_back("--tls-authenticator=" + git.tls_authenticator);
            else
                a.notes.push_back(
                    "--tls-authenticator: the certificate is made when the git service first starts; run bootargs again then");
        }
        a.notes.push_back(std::string("configuration repository: ") + (u.git.writable ? "read-write" : "read-only") + ", branch " +
                          u.git.branch);
    }
    for (const auto& x : u.boot_args) a.unikernel.push_back(x);
    return a;
}

}  // namespace fleetconf::common
