// The fleet site file: one JSON document (comments allowed) describing networks, unikernels and the
// services that serve them. Loading validates everything and reports every error with its JSON pointer.
// docs/site-file.md documents each key.
#pragma once

#include "fleetconf/common/admission.hpp"
#include "fleetconf/common/dhcp_options.hpp"
#include "fleetconf/common/net.hpp"

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace fleetconf::common {

struct SiteError {
    std::string pointer;  // JSON pointer (RFC 6901) of the offending value, "" for the document
    std::string message;  // what is wrong, lower-case, no trailing period
    bool operator==(const SiteError&) const = default;
};

// Thrown by load_site/parse_site; what() is every error, one per line, "FILE: POINTER: MESSAGE".
class SiteLoadError : public std::runtime_error {
public:
    SiteLoadError(std::string source, std::vector<SiteError> errors);
    const std::string& source() const { return source_; }
    const std::vector<SiteError>& errors() const { return errors_; }

private:
    std::string source_;
    std::vector<SiteError> errors_;
};

// A DHCP option given literally in the site file, already encoded to its wire value.
struct CustomOption {
    std::uint8_t code = 0;
    std::string type;  // ip, ips, u8, u16, u32, i32, bool, string, hex
    std::vector<std::uint8_t> data;
    bool always_send = false;
    bool operator==(const CustomOption&) const = default;
};

// Where the monitoring sink goes: by default option 125 (RFC 3925), enterprise 49836 (the MirageOS
// convention used by DNSvizor), sub-option 0. code 125 means a vendor-identifying block; any other code
// is sent as a plain string option.
struct MonitoringOption {
    std::uint8_t code = dhcp_options::code::vivso;
    std::uint32_t enterprise = dhcp_options::kMirageEnterprise;
    std::uint8_t suboption = dhcp_options::kMonitoringSuboption;
    bool operator==(const MonitoringOption&) const = default;
};

// Site options (sent over DHCP, or as boot arguments when DHCP is not used).
// Every field is optional so that a unikernel's options can override a network's field by field.
struct SiteOptions {
    std::optional<Endpoint> syslog;        // DHCP option 7 (address only); --syslog / --syslog-port
    std::optional<Endpoint> monitoring;    // DHCP option 125/49836/0 as "ip:port"; --monitor
    std::optional<std::vector<Ipv4>> ntp;  // DHCP option 42
    std::vector<CustomOption> custom;      // by code; a unikernel's entry replaces the network's
    // Option 125 sub-options of the MirageOS enterprise 49836 (DNSvizor's --mirage-vivso), code 1-255 (0 is
    // the monitoring sink); by code, a unikernel's entry replaces the network's.
    std::vector<CustomOption> vivso;
    std::set<std::string> always_send;  // "syslog", "monitoring", "ntp": sent even when not requested
    bool operator==(const SiteOptions&) const = default;
};

inline constexpr std::uint32_t kDefaultLeaseTime = 3600;

struct Network {
    std::string name;       // the bridge name (part of the Albatross MAC derivation)
    std::string interface;  // where the DHCP server listens; defaults to name
    Prefix subnet;
    std::optional<Ipv4> gateway;
    std::vector<Ipv4> dns;
    std::string domain;
    std::vector<Range> pools;
    std::uint32_t lease_time = kDefaultLeaseTime;  // seconds
    SiteOptions options;
    MonitoringOption monitoring_option;
    std::optional<Ipv4> server_address;  // the DHCP server's address here (option 54); default: gateway
    bool ignore_client_id = false;       // identify clients by hardware address only
    bool known_only = false;             // serve only the site's unikernels (Kea's KNOWN class): others get nothing
};

struct GitSettings {
    bool enabled = false;   // true when the unikernel's entry has a "git" object (its "enabled" defaults to true)
    bool writable = false;  // "access": "read-only" (default) or "read-write"
    std::string branch = "main";
    bool git_protocol = false;            // also served read-only over git:// (no credentials: development only)
    bool allow_non_fast_forward = false;  // pushes may rewrite the configuration branch
    bool allow_delete = false;            // pushes may delete the configuration branch
    bool allow_symlinks = false;          // pushes may add symbolic links whose target stays inside the tree
    std::string hook_url;                 // requested (GET) after each accepted push: unipi's /hook answers "pulled <oid>"
    std::string webhook_url;              // POSTed a JSON event, signed with HMAC-SHA256 (X-Fleetconf-Signature)
    std::vector<std::string> validator;   // argv run in the pushed tree's checkout; a non-zero exit refuses the push
};

struct BlockSettings {
    std::filesystem::path device;  // absolute; default <data_dir>/block/<name>.img
    bool device_given = false;     // false: created on first start
    std::uint32_t sector_size = 512;
    std::uint64_t size = 1 << 20;  // bytes, used when the service creates the image
};

struct Unikernel {
    std::string name;
    std::string network;
    Mac mac;
    bool mac_derived = false;  // true when absent from the site file and derived as Albatross does
    std::optional<Ipv4> address;
    bool dhcp = true;  // false: the address is given as --ipv4 boot arguments
    SiteOptions options;
    GitSettings git;
    std::optional<BlockSettings> block;
    std::vector<std::string> boot_args;
    std::vector<std::uint8_t> client_id;        // DHCP option 61 to reserve by (hex in the site file); empty: none
    std::string config_uri;                     // sent in the configuration-URI option when set
    std::vector<std::string> public_hosts;      // TLS host names routed to its leased address (services.dhcp.routes)
    std::optional<std::uint16_t> backend_port;  // the port behind those names (default: routes.port)
};

// Lease-driven proxy routes: when a unikernel with public host names (or a client asking, through option
// 81, for the server to update) is given an address, `host -> leased address : port` goes to a proxy's
// routes; on release (and expiry) the route is removed again when remove_on_release is set.
struct LeaseRoutes {
    enum class Kind { local, blockcfg, tlstunnel };
    Kind kind = Kind::local;
    std::string device;                // local: the unikernel whose block device (served by this process);
                                       // blockcfg: the device name on the remote editor ("" for its only one)
    std::optional<Endpoint> endpoint;  // blockcfg / tlstunnel: where the editor or proxy listens
    std::filesystem::path key_file;    // blockcfg: a key file (block keygen); tlstunnel: the proxy's --key
    std::string key_id;                // blockcfg: the key id in key_file ("" = the first)
    std::uint16_t port = 80;           // backend port unless the unikernel sets backend_port
    bool fqdn = false;                 // also route names clients send in option 81 with the S flag
    bool remove_on_release = true;
};

// Where the DHCP service keeps its leases (services.dhcp.leases; docs/scale-out.md).
struct LeaseDatabase {
    enum class Type { journal, postgresql };
    Type type = Type::journal;            // journal: <data_dir>/dhcp/leases.journal, one server
    std::string conninfo;                 // postgresql: a libpq connection string (key=value or URI), never a password
    std::filesystem::path password_file;  // postgresql: the password ("" = none, or ~/.pgpass / PGPASSWORD)
    bool operator==(const LeaseDatabase&) const = default;
};

struct DhcpService {
    bool enabled = true;
    std::uint16_t server_port = 67;
    std::uint16_t client_port = 68;
    bool authoritative = true;
    std::uint8_t config_uri_option = dhcp_options::kDefaultConfigUriCode;  // private-use code carrying a unikernel's configuration URI
    // The control commands over HTTP as kea-ctrl-agent serves them (POST /, Basic authentication with the
    // password in control_key_file). Off unless configured; the unix socket is always there.
    std::optional<Endpoint> control_http;
    std::filesystem::path control_key_file;
    std::optional<LeaseRoutes> routes;
    LeaseDatabase leases;
};

struct GitService {
    bool enabled = true;
    std::optional<Endpoint> http;   // smart HTTP listener (default 127.0.0.1:8080 when no listener is given)
    std::optional<Endpoint> https;  // smart HTTP over TLS
    std::optional<Endpoint> git;    // git:// listener (development only)
    std::optional<Endpoint> ssh;    // SSH listener (git-upload-pack / git-receive-pack only)
    struct Operator {
        std::string name;
        std::string key;  // OpenSSH public key line
        bool writable = false;
    };
    std::vector<Operator> operators;          // SSH keys with access to every repository
    std::string public_host;                  // host name or address unikernels use in --remote
    std::filesystem::path tls_cert, tls_key;  // PEM files; default: a self-signed pair made on first start
    std::filesystem::path template_dir;       // files of every new repository's first commit
    std::uint32_t pack_cache_mb = 64;         // packs kept for fleets fetching the same tip; 0 disables
    std::filesystem::path webhook_key_file;   // HMAC key for webhooks; default <data_dir>/git/webhook.key, made on first start
    std::uint32_t validator_timeout_s = 10;   // a validator still running after this is killed and the push refused
    std::uint32_t max_pack_mb = 16;           // one push's pack
    std::uint32_t max_object_mb = 8;          // any file a push adds (unikernels hold the repository in memory)
    std::uint32_t max_repo_mb = 64;           // a repository's objects on disk after a push
    std::uint32_t read_timeout_s = 30;        // a request that stalls this long is dropped (idle keep-alive: twice that)
};

struct BlockService {
    bool enabled = true;
    Endpoint listen{Ipv4{127, 0, 0, 1}, 7300};
    std::filesystem::path key_file;    // absolute; default <data_dir>/block/keys
    bool key_file_given = false;       // false: generated on first start
    bool checksummed_commits = false;  // "commit_mode": "ordered" (default, 2 syncs) or "checksummed" (1 sync)
};

// The operator console (docs/console.md): off unless the site file has services.console.
struct ConsoleService {
    bool enabled = false;
    Endpoint listen{Ipv4{127, 0, 0, 1}, 9468};
    std::filesystem::path tls_cert, tls_key;  // both or neither: HTTPS
    std::filesystem::path password_file;      // login required when set (always off loopback)
    bool operator==(const ConsoleService&) const = default;
};

struct Services {
    std::filesystem::path data_dir;  // absolute
    // GET /health and GET /metrics for every service of the process (docs/status.md); "off" disables.
    std::optional<Endpoint> status = Endpoint{Ipv4{127, 0, 0, 1}, 9467};
    // Log levels as --log-level writes them ("info,dhcp=debug"); applied at start unless --log-level is
    // given, and on every reload (log levels change without a restart). "": --log-level's.
    std::string log_level;
    DhcpService dhcp;
    GitService git;
    BlockService block;
    ConsoleService console;
    // Connection budgets and deadlines of each TCP listener (services.limits.NAME; docs/limits.md).
    std::map<std::string, ListenerLimits, std::less<>> limits;
    [[nodiscard]] ListenerLimits limits_for(std::string_view listener) const;
};

struct Site {
    std::string source;                       // file name used in messages
    std::string digest;                       // SHA-256 (hex) of the text it was parsed from: what runs, in /health and /metrics
    std::shared_ptr<const std::string> text;  // that text (config-get returns what runs, not what is on disk)
    std::string name;
    std::vector<Network> networks;
    std::vector<Unikernel> unikernels;
    Services services;

    [[nodiscard]] const Network* network(std::string_view name) const;
    [[nodiscard]] const Unikernel* unikernel(std::string_view name) const;
    // The network's options with the unikernel's fields laid over them.
    [[nodiscard]] SiteOptions effective_options(const Unikernel& u) const;
    // Moves the data directory (made absolute) and every default path under it that the site file did not
    // set: the block key file and the unikernels' block devices. The services derive the rest from
    // services.data_dir when they start (dhcp::lease_file, gitconf::git_root, ...). Every command's
    // --data-dir goes through here (load_site's second argument).
    void set_data_dir(const std::filesystem::path& dir);
};

// The MAC Albatross gives a unikernel: 00:80:41 then the first three bytes of MD5(bridge ++ name).
Mac albatross_mac(std::string_view bridge, std::string_view unikernel);

// Parses and validates. Relative paths resolve against base_dir. Throws SiteLoadError with all errors.
Site parse_site(std::string_view text, const std::filesystem::path& base_dir, std::string_view source_name);
// Reads the file (at most 16 MiB) and calls parse_site with its directory as base; a non-empty data_dir
// replaces services.data_dir (set_data_dir), as the commands' --data-dir does.
Site load_site(const std::filesystem::path& file, const std::filesystem::path& data_dir = {});

// services.data_dir when the site file does not set it.
inline constexpr const char* kDefaultDataDir = "/var/lib/fleetconf";

// Limits on the site file, so that a hostile or broken file cannot exhaust memory.
inline constexpr std::size_t kMaxSiteFileBytes = 16u << 20;
inline constexpr std::size_t kMaxNetworks = 256;
inline constexpr std::size_t kMaxUnikernels = 65536;

}  // namespace fleetconf::common
