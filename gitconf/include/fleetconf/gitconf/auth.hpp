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
};

// The token file (<data_dir>/git/tokens.json, mode 0600), documented in docs/gitconf.md.
class TokenStore {
public:
    // Loads the file; a missing file is an empty store. Throws std::runtime_error on a damaged file.
    static TokenStore load(const std::filesystem::path& file);

    // Issues (or replaces) the token of `name`, saves the file atomically, and returns the token.
    std::string issue(const std::string& name);
    bool revoke(const std::string& name);
    // Constant-time check of `token` against the stored hash of `name` (also spends the same work
    // when `name` has no token, so timing does not tell which names exist).
    [[nodiscard]] bool verify(std::string_view name, std::string_view token) const;
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

// The access rule for smart HTTP: no or wrong credentials -> 401 (whatever the repository);
// valid credentials for another repository, or a repository that does not exist -> 404, the same
// answer for both; valid credentials for this repository -> allow, except a push with read-only
// credentials -> 403 (the repository is theirs, so nothing leaks).
Verdict authorize_http(std::string_view repo, const RepoAccess& access, const std::optional<BasicCredentials>& cred,
                       const TokenStore& tokens, bool push);

}  // namespace fleetconf::gitconf
