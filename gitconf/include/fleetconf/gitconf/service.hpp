// fleetconf::gitconf: the git host. One bare repository per unikernel of the site, served over smart
// HTTP(S) with per-unikernel tokens and over SSH with per-unikernel and operator keys (fetch, and push
// for read-write credentials), and read-only over git:// for repositories that allow it.
#pragma once

#include "fleetconf/common/asio_fwd.hpp"
#include "fleetconf/common/net.hpp"
#include "fleetconf/common/service.hpp"
#include "fleetconf/common/site.hpp"
#include "fleetconf/common/status.hpp"

#include <spdlog/logger.h>

#include <chrono>
#include <functional>
#include <map>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace fleetconf::gitconf {

common::ServiceInfo service_info();

// Where things live under the site's data directory (documented in docs/gitconf.md).
std::filesystem::path git_root(const common::Site& site);                         // <data_dir>/git
std::filesystem::path repo_dir(const common::Site& site, std::string_view name);  // <root>/repos/NAME.git
std::filesystem::path token_file(const common::Site& site);                       // <root>/tokens.json
std::filesystem::path tls_cert_file(const common::Site& site);                    // site's tls_cert or <root>/tls/cert.pem
std::filesystem::path tls_key_file(const common::Site& site);                     // site's tls_key or <root>/tls/key.pem

// Unikernels of the site that have a repository (git enabled), in site order.
std::vector<const common::Unikernel*> repo_unikernels(const common::Site& site);

// Creates each missing repository of the site (bare, HEAD on the unikernel's branch, a first commit
// from the site's template folder or an empty tree). Refuses a repository path that is a symbolic
// link or not a directory. Returns the names created.
std::vector<std::string> ensure_repositories(const common::Site& site, spdlog::logger* log = nullptr);
// Moves the repositories of unikernels no longer in the site (or without git) to
// <root>/archive/NAME-<UTC time>.git: never deleted, no longer served. Returns the names archived.
std::vector<std::string> archive_removed_repositories(const common::Site& site, spdlog::logger* log = nullptr,
                                                      std::chrono::system_clock::time_point now = std::chrono::system_clock::now());

// Creates a self-signed certificate (ECDSA P-256, 10 years, the public host as subject name) when
// the site names no certificate and none was made before.
void ensure_tls_pair(const common::Site& site, spdlog::logger* log = nullptr);
// SSH (docs/gitconf.md): the host key (<root>/ssh/host_ed25519, made on first start) and the
// unikernels' public keys (<root>/ssh/NAME.pub, written by `fleetconf git keygen`).
std::filesystem::path ssh_host_key_file(const common::Site& site);
std::filesystem::path ssh_user_key_file(const common::Site& site, std::string_view name);
void ensure_ssh_host_key(const common::Site& site, spdlog::logger* log = nullptr);
// The unikernel's --ssh-authenticator value: "ed25519:" + unpadded base64 of SHA-256 over the host
// key's SSH wire-format public key blob.
std::string ssh_host_authenticator(const common::Site& site);
struct SshKeyPair {
    std::string seed_base64;     // --ssh-key=ed25519:<this>: the 32-byte private seed, padded base64
    std::string public_openssh;  // "ssh-ed25519 AAAA... NAME"
};
// Creates an ed25519 key for unikernel `name`, stores its public half (replacing an older one) and
// returns both halves; the private seed is not kept.
SshKeyPair ssh_keygen(const common::Site& site, const std::string& name);

// The last notification state of a repository (<root>/notify/NAME.json; docs/gitconf.md).
std::filesystem::path notify_state_file(const common::Site& site, std::string_view repo);

// The unikernel's --tls-authenticator value for a certificate: "key-fp:SHA256:" + base64 of the
// SHA-256 of its SubjectPublicKeyInfo. Throws std::runtime_error when the file cannot be read.
std::string tls_key_fingerprint(const std::filesystem::path& cert_pem);

struct ServiceOptions {
    std::size_t pack_threads = 2;  // pack building off the I/O thread
    // A request that stalls this long is dropped; an idle keep-alive connection is closed after
    // idle_timeout. 0: from the site file (services.git.read_timeout, idle twice that).
    std::chrono::milliseconds read_timeout{0};
    std::chrono::milliseconds idle_timeout{0};
    // Connection budgets: services.limits.{git,http,https,ssh} of the site file (docs/limits.md).
    std::size_t max_body = 8 << 20;            // request body on the wire
    std::size_t max_inflated_body = 32 << 20;  // after gzip decoding
    // Called on a pool thread before each pack is built (not for one taken from the cache), with the
    // repository's name: a tracing point; tests hold a build on it to show what does not wait for it.
    std::function<void(const std::string& repo)> before_pack_build;
};

// A repository's fetches and pushes since the process started (the console's fleet view; the pushes'
// details are in the audit log).
struct RepoActivity {
    std::int64_t last_fetch = 0;  // Unix seconds; 0: none since start
    std::string transport;        // of the last fetch: "git", "http", "https" or "ssh"
    std::string peer;             // "ADDR:PORT"
    std::string credential;       // "-", "NAME" or "operator:NAME"
    std::uint64_t fetches = 0;
    std::uint64_t pushes = 0;  // accepted or not
};

class Service final : public common::Service {
public:
    Service(asio::io_context& io, const common::Site& site, ServiceOptions opts, std::shared_ptr<spdlog::logger> log);
    ~Service() override;
    // Creates missing repositories (and the TLS pair when HTTPS is on) and opens the listeners.
    void start() override;
    void stop() override;
    // New unikernels get their repositories; access rules follow the new site; connections stay.
    void reload(const common::Site& site) override;
    [[nodiscard]] std::string prometheus() const;
    // Healthy while every configured listener is open.
    [[nodiscard]] common::Health health() const;
    // Both, for the process's status endpoint ("git").
    [[nodiscard]] common::StatusSource status_source() const override;
    // Bound addresses (after start), for tests that listen on port 0.
    [[nodiscard]] std::optional<common::Endpoint> http_endpoint() const;
    [[nodiscard]] std::optional<common::Endpoint> https_endpoint() const;
    [[nodiscard]] std::optional<common::Endpoint> git_endpoint() const;
    [[nodiscard]] std::optional<common::Endpoint> ssh_endpoint() const;
    // Fetches by repository since start; safe from any thread.
    [[nodiscard]] std::map<std::string, RepoActivity> activity() const;

    struct Impl;

private:
    std::shared_ptr<Impl> impl_;
};

}  // namespace fleetconf::gitconf
