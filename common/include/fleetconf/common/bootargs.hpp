// The boot arguments a unikernel still needs once the site file and the services have done their part.
#pragma once

#include "fleetconf/common/site.hpp"

#include <optional>
#include <string>
#include <vector>

namespace fleetconf::common {

struct BootArgs {
    // Arguments for the solo5-hvt tender (Albatross passes the same through its create command).
    std::vector<std::string> tender;
    // Arguments for the unikernel itself (MirageOS runtime keys).
    std::vector<std::string> unikernel;
    // Why each group of arguments is there, for humans.
    std::vector<std::string> notes;
};

// Network device name the unikernel expects (MirageOS' default "service").
inline constexpr const char* kNetDevice = "service";
inline constexpr const char* kBlockDevice = "storage";

// What the git host adds for a unikernel with a repository: its token (only its hash is stored, so
// the caller supplies it; empty prints a TOKEN placeholder) and, for HTTPS, the certificate's
// --tls-authenticator value.
struct GitBootInfo {
    std::string token;
    std::string tls_authenticator;  // "key-fp:SHA256:..."; empty when unknown
    bool ssh_key = false;           // the unikernel has an SSH key (fleetconf git keygen): use the SSH form
    std::string ssh_seed;           // its private seed (base64), when the caller has it; else a placeholder
    std::string ssh_authenticator;  // "ed25519:<base64>" of the host key; empty when unknown
};

// How the unikernel learns its settings; each mode has its own shortest argument list (docs/cli.md, "bootargs").
enum class BootMode {
    static_address,  // no DHCP ("dhcp": false): address, gateway, sinks and remote on the command line
    dhcp,            // today's MirageOS: address from DHCP; sinks and remote on the command line
    dhcp_config,     // built to read DHCP options 7, 125 and the configuration URI: only secrets and trust anchors
};
const char* to_string(BootMode m);  // "static", "dhcp", "dhcp-config"
std::optional<BootMode> parse_boot_mode(std::string_view s);
// The modes that work for `u`, the usual one first: static for a unikernel without DHCP; dhcp, then
// dhcp-config (when the site's DHCP service sends it a configuration URI) otherwise.
std::vector<BootMode> boot_modes(const Site& site, const Unikernel& u);

// Computes the arguments for unikernel `u` of `site`:
// - tender: --net:service=<tap> --net-mac:service=<mac> [--block:storage=<device>]
// - --ipv4=<addr>/<len> and --ipv4-gateway=<gw> when the unikernel does not use DHCP;
// - --syslog=<ip> and --monitor=<ip> from its effective site options
//   (a unikernel on DHCP also receives them as options 7 and 125, but MirageOS only reads them
//   from the command line today, so they are printed in both modes);
// - --remote=<uri>[#branch] for a unikernel with a repository: https (preferred), http or git://,
//   with NAME:TOKEN credentials over HTTP(S);
// - its extra boot_args last, so they can override anything above.
// In dhcp_config mode only what DHCP must not carry is printed: the credential (--git-token or --ssh-key)
// and the trust anchors (--tls-authenticator, --ssh-authenticator), since a DHCP reply is not authenticated.
BootArgs boot_args(const Site& site, const Unikernel& u, std::string_view tap_name, const GitBootInfo& git = {},
                   BootMode mode = BootMode::dhcp);

// The URI the DHCP service sends in the configuration-URI option (services.dhcp.config_uri_option):
// the unikernel's "config_uri" when the site file sets one, else its repository's URI with the user name
// and no secret (http://NAME@HOST/NAME.git), else empty.
std::string dhcp_config_uri(const Site& site, const Unikernel& u);
// Safe defaults (issue 23): when the repositories' URIs (--remote, the configuration-URI option) would
// name a loopback address (no public_host, a listener on 127.0.0.1, the default when none is configured),
// no unikernel can reach them: one line saying so and what to set, else "".
std::string loopback_uri_warning(const Site& site);

// The URI a unikernel fetches its configuration from (empty when it has no repository or no
// listener serves it). `token` empty: "TOKEN" stands in for it.
// With `ssh` (and an SSH listener): "git@HOST:NAME.git".
std::string git_remote(const Site& site, const Unikernel& u, std::string_view token, bool ssh = false);

// Default tap device name for a unikernel: "tap-" + name, cut to the 15-character interface limit.
std::string default_tap_name(std::string_view unikernel);

}  // namespace fleetconf::common
