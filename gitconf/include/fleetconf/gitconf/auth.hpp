// Per-unikernel credentials: user = unikernel name, password = a random token of which only the
// SHA-256 is stored (tokens are 192-bit random, so a fast hash is enough), and the pure decision of
// what one request may reach.
#pragma once

#include "fleetconf/common/http.hpp"

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace fleetconf::gitconf {

struct TokenRecord {
    std::string sha256_hex;
    std::int64_t created = 0;  // seconds since the epoch
    // After a rotation with an overlap: the token it replaced, still valid until previous_expires (the
    // running unikernel keeps fetching while it is rebooted with its new boot arguments).
    std::string previous_sha256_hex;
    std::int64_t previous_expires = 0;
};

// The token file (<data_dir>/git/tokens.json, mode 0600), documented in docs/gitconf.md.
class TokenStore {
public:
    // Loads the file; a missing file is an empty store. Throws std::runtime_error on a damaged file.
    static TokenStore load(const std::filesystem::path& file);

    // Issues (or replaces) the token of `name`, saves the file atomically, and returns the token. When it
    // replaces one and `overlap_s` > 0, the old token stays valid `overlap_s` more seconds from `now`.
    std::string issue(const std::string& name, std::int64_t overlap_s = 0, std::int64_t now = 0);
    // Removes the token of `name` (and any previous one still in its overlap).
    bool revoke(const std::string& name);
    // Constant-time check of `token` against the stored hash of `name` and, until it expires at `now`,
    // the previous one (the same work is spent when `name` has no token, so timing does not tell which
    // names exist). now 0: the clock.
    [[nodiscard]] bool verify(std::string_view name, std::string_view token, std::int64_t now = 0) const;
    [[nodiscard]] bool has(const std::string& name) const { return tokens_.count(name) > 0; }
    [[nodiscard]] const std::map<std::string, TokenRecord>& records() const { return tokens_; }
    [[nodiscard]] const std::filesystem::path& file() const { return file_; }

private:
    void save() const;
    std::filesystem::path file_;
    std::map<std::string, TokenRecord> tokens_;
};

using common::BasicCredentials;
using common::parse_basic_auth;  // RFC 7617 `Authorization: Basic` header values

enum class Verdict { allow, unauthorized, forbidden, not_found };

// What a repository in the site allows (from its unikernel entry).
struct RepoAccess {
    bool exists = false;        // a unikernel with git enabled has this name
    bool writable = false;      // read-write credentials
    bool git_protocol = false;  // reachable over git:// (read-only, no credentials)
};

enum class Operation { fetch, push };

// Who a request comes as, once its transport has checked the secret (an HTTP token against the token
// store, an SSH key against the site's keys). git:// has no credential: every client there is anonymous.
struct Credential {
    enum class Kind {
        rejected,   // a credential was needed and none, or a wrong one, was given (HTTP)
        anonymous,  // git:// (read-only, for repositories exported with git_protocol)
        unikernel,  // a unikernel's token or key: its own repository only
        operator_,  // an operator's SSH key: every repository
    } kind = Kind::rejected;
    std::string name;       // the unikernel's or operator's name
    bool writable = false;  // operator keys only: may push (a unikernel's right comes from its repository)

    static Credential rejected() { return {}; }
    static Credential anonymous() { return {Kind::anonymous, "-", false}; }
    static Credential unikernel(std::string name) { return {Kind::unikernel, std::move(name), false}; }
    static Credential operator_key(std::string name, bool writable) { return {Kind::operator_, std::move(name), writable}; }
    // How logs and the audit log name it: "-", "NAME" or "operator:NAME".
    [[nodiscard]] std::string label() const;
};

// The one access rule of every transport (docs/gitconf.md, "Access"):
//  - rejected -> unauthorized, whatever the repository (nothing about it is revealed);
//  - anonymous -> a fetch of a repository exported over git:// is allowed; any other repository is
//    not_found (git daemon's one answer for missing and unexported); a push is forbidden;
//  - a unikernel reaches its own repository only: another one, or one that does not exist, is the same
//    not_found; a push needs a writable repository, else forbidden (the repository is theirs: no leak);
//  - an operator key reaches every existing repository; a push needs a writable key.
Verdict authorize(const Credential& who, std::string_view repo, const RepoAccess& access, Operation op);

// An HTTP Basic credential checked against the token store (constant time): a unikernel, or rejected.
Credential authenticate(const std::optional<BasicCredentials>& cred, const TokenStore& tokens);

}  // namespace fleetconf::gitconf
