// The console's access rules, without sockets: the password file (scrypt hashes, docs/console.md), the
// sessions (cookie token, CSRF token, idle and absolute expiry), and the per-address login limiter.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace fleetconf::console {

// scrypt parameters of a new hash: N = 2^15, r = 8, p = 1 (32 MiB, ~0.1 s), as OpenSSL's EVP_PBE_scrypt takes them.
struct ScryptParams {
    unsigned log2_n = 15;
    unsigned r = 8;
    unsigned p = 1;
};

// One line of the password file: "USER:scrypt:LOG2N:R:P:SALT:HASH" (salt 16 bytes, hash 32 bytes, both
// padded base64). `salt` empty: 16 random bytes.
std::string hash_password_line(std::string_view user, std::string_view password, ScryptParams params = {}, std::string_view salt = {});

class PasswordFile {
public:
    // Parses the text; throws std::runtime_error naming the line that is wrong. At most 1000 users; the
    // parameters are bounded (LOG2N 10-20, R 1-32, P 1-16) so that a file cannot make a login take minutes.
    static PasswordFile parse(std::string_view text);
    // Reads a secret file (not group- or other-readable; at most 1 MiB) and parses it.
    static PasswordFile load(const std::filesystem::path& p);
    // Constant-time comparison of the derived key; an unknown user costs the same work as a known one.
    [[nodiscard]] bool verify(std::string_view user, std::string_view password) const;
    [[nodiscard]] std::size_t size() const { return users_.size(); }
    // The text with `line` (from hash_password_line) added, or replacing the same user's line.
    static std::string with_line(std::string_view text, std::string_view line);

private:
    struct Entry {
        ScryptParams params;
        std::string salt, hash;  // raw bytes
    };
    std::map<std::string, Entry, std::less<>> users_;
};

// Login attempts per client address: at most `max_failures` failures in `window`; then refused until the
// oldest of them leaves the window. Bounded: at most `max_addresses` addresses are tracked (the oldest
// entries are dropped first).
class LoginLimiter {
public:
    using Clock = std::chrono::steady_clock;
    explicit LoginLimiter(unsigned max_failures = 5, std::chrono::seconds window = std::chrono::seconds(60),
                          std::size_t max_addresses = 4096)
        : max_failures_(max_failures), window_(window), max_addresses_(max_addresses) {}
    // nullopt: may try now; otherwise how long to wait.
    [[nodiscard]] std::optional<std::chrono::seconds> blocked(const std::string& address, Clock::time_point now);
    void failed(const std::string& address, Clock::time_point now);
    void succeeded(const std::string& address) { failures_.erase(address); }

private:
    void prune(std::vector<Clock::time_point>& v, Clock::time_point now) const;
    unsigned max_failures_;
    std::chrono::seconds window_;
    std::size_t max_addresses_;
    std::map<std::string, std::vector<Clock::time_point>> failures_;
};

struct Session {
    std::string user;  // "" in the no-login mode (loopback without a password file)
    std::string csrf;  // sent back by the page in X-CSRF-Token on every state-changing request
    std::chrono::steady_clock::time_point created, last_seen;
};

// Sessions by cookie token (32 random bytes, base64url). Idle sessions end after `idle`, every session
// after `absolute`; at most `max_sessions` (the least recently used goes first).
class Sessions {
public:
    using Clock = std::chrono::steady_clock;
    explicit Sessions(std::chrono::seconds idle = std::chrono::hours(1), std::chrono::seconds absolute = std::chrono::hours(12),
                      std::size_t max_sessions = 1024)
        : idle_(idle), absolute_(absolute), max_(max_sessions) {}
    // Returns the new session's token.
    std::string open(std::string user, Clock::time_point now);
    // The live session of `token` (its last use moved to now), or nullptr.
    const Session* find(std::string_view token, Clock::time_point now);
    // Whether `token` names a live session (without counting this as a use).
    [[nodiscard]] bool valid(std::string_view token, Clock::time_point now) const;
    void close(std::string_view token) { sessions_.erase(std::string(token)); }
    [[nodiscard]] std::size_t size() const { return sessions_.size(); }

private:
    std::chrono::seconds idle_, absolute_;
    std::size_t max_;
    std::map<std::string, Session, std::less<>> sessions_;
};

// A random token: `bytes` random bytes in unpadded base64url.
std::string random_token(std::size_t bytes = 32);
// Constant-time equality of two strings (different lengths: false, after the same work).
bool same_secret(std::string_view a, std::string_view b);
// The value of cookie `name` in a Cookie header ("a=1; b=2"), or "".
std::string cookie_value(std::string_view header, std::string_view name);

}  // namespace fleetconf::console
