#include "fleetconf/console/auth.hpp"

#include "fleetconf/common/crypto.hpp"
#include "fleetconf/common/files.hpp"
#include <cctype>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <algorithm>
#include <stdexcept>

namespace fleetconf::console {

namespace {

constexpr std::size_t kSaltBytes = 16, kHashBytes = 32, kMaxUsers = 1000, kMaxUser = 64, kMaxPassword = 1024;

std::string derive(std::string_view password, const std::string& salt, const ScryptParams& p) {
    std::string key(kHashBytes, '\0');
    const std::uint64_t n = std::uint64_t{1} << p.log2_n;
    // scrypt needs 128 * N * r bytes (plus p * 128 * r); allow that and a little more.
    const std::uint64_t maxmem = 128 * n * p.r + 128 * std::uint64_t{p.r} * p.p + (1u << 20);
    if (EVP_PBE_scrypt(password.data(), password.size(), reinterpret_cast<const unsigned char*>(salt.data()), salt.size(), n, p.r, p.p,
                       maxmem, reinterpret_cast<unsigned char*>(key.data()), key.size()) != 1)
        throw std::runtime_error("scrypt failed (parameters out of OpenSSL's range)");
    return key;
}

std::string b64(std::string_view raw) { return common::base64_encode(common::as_bytes(raw)); }

std::vector<std::string_view> split(std::string_view s, char sep) {
    std::vector<std::string_view> out;
    std::size_t start = 0;
    while (true) {
        const auto at = s.find(sep, start);
        out.push_back(s.substr(start, at == std::string_view::npos ? std::string_view::npos : at - start));
        if (at == std::string_view::npos) return out;
        start = at + 1;
    }
}

bool valid_user(std::string_view u) {
    return !u.empty() && u.size() <= kMaxUser && std::all_of(u.begin(), u.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
    });
}

}  // namespace

std::string hash_password_line(std::string_view user, std::string_view password, ScryptParams params, std::string_view salt) {
    if (!valid_user(user)) throw std::runtime_error("a user name is 1-64 of [A-Za-z0-9._-]");
    if (password.empty() || password.size() > kMaxPassword) throw std::runtime_error("a password is 1-1024 bytes");
    std::string s(salt);
    if (s.empty()) {
        s.resize(kSaltBytes);
        common::random_bytes(std::span(reinterpret_cast<std::uint8_t*>(s.data()), s.size()));
    }
    return std::string(user) + ":scrypt:" + std::to_string(params.log2_n) + ":" + std::to_string(params.r) + ":" +
           std::to_string(params.p) + ":" + b64(s) + ":" + b64(derive(password, s, params));
}

PasswordFile PasswordFile::parse(std::string_view text) {
    PasswordFile f;
    std::size_t lineno = 0;
    for (auto line : split(text, '\n')) {
        ++lineno;
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (line.empty() || line.front() == '#') continue;
        auto bad = [&](const std::string& why) {
            return std::runtime_error("password file line " + std::to_string(lineno) + ": " + why +
                                      " (expected USER:scrypt:LOG2N:R:P:SALT:HASH, as `fleetconf console passwd` writes)");
        };
        const auto f7 = split(line, ':');
        if (f7.size() != 7 || f7[1] != "scrypt") throw bad("not a scrypt entry");
        if (!valid_user(f7[0])) throw bad("the user name is not 1-64 of [A-Za-z0-9._-]");
        auto num = [&](std::string_view v, unsigned lo, unsigned hi, const char* what) {
            unsigned n = 0;
            if (v.empty() || v.size() > 3 || !std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; }))
                throw bad(std::string(what) + " is not a number");
            for (char c : v) n = n * 10 + static_cast<unsigned>(c - '0');
            if (n < lo || n > hi) throw bad(std::string(what) + " out of range " + std::to_string(lo) + "-" + std::to_string(hi));
            return n;
        };
        Entry e;
        e.params = {num(f7[2], 10, 20, "LOG2N"), num(f7[3], 1, 32, "R"), num(f7[4], 1, 16, "P")};
        const auto salt = common::base64_decode(f7[5]);
        const auto hash = common::base64_decode(f7[6]);
        if (!salt || salt->size() < 8 || salt->size() > 64) throw bad("the salt is not 8-64 bytes of base64");
        if (!hash || hash->size() != kHashBytes) throw bad("the hash is not 32 bytes of base64");
        e.salt.assign(salt->begin(), salt->end());
        e.hash.assign(hash->begin(), hash->end());
        if (f.users_.size() >= kMaxUsers) throw bad("more than 1000 users");
        if (!f.users_.emplace(std::string(f7[0]), std::move(e)).second) throw bad("user " + std::string(f7[0]) + " appears twice");
    }
    return f;
}

PasswordFile PasswordFile::load(const std::filesystem::path& p) {
    std::string text;
    if (auto err = common::read_secret_file(p, 1u << 20, text)) throw std::runtime_error(*err);
    try {
        return parse(text);
    } catch (const std::runtime_error& e) {
        throw std::runtime_error(p.string() + ": " + e.what());
    }
}

bool PasswordFile::verify(std::string_view user, std::string_view password) const {
    if (password.size() > kMaxPassword) return false;
    const auto it = users_.find(user);
    // An unknown user: the same derivation against a fixed entry, so that timing does not tell who exists.
    static const Entry dummy{{}, std::string(kSaltBytes, 'x'), std::string(kHashBytes, '\0')};
    const Entry& e = it != users_.end() ? it->second : dummy;
    const auto key = derive(password, e.salt, e.params);
    const bool same = CRYPTO_memcmp(key.data(), e.hash.data(), kHashBytes) == 0;
    return same && it != users_.end();
}

std::string PasswordFile::with_line(std::string_view text, std::string_view line) {
    const auto user = line.substr(0, line.find(':'));
    std::string out;
    bool replaced = false;
    for (auto l : split(text, '\n')) {
        if (l.empty()) continue;
        if (l.substr(0, l.find(':')) == user) {
            if (replaced) continue;
            out += line;
            replaced = true;
        } else {
            out += l;
        }
        out += '\n';
    }
    if (!replaced) out += std::string(line) + "\n";
    return out;
}

void LoginLimiter::prune(std::vector<Clock::time_point>& v, Clock::time_point now) const {
    std::erase_if(v, [&](Clock::time_point t) { return now - t >= window_; });
}

std::optional<std::chrono::seconds> LoginLimiter::blocked(const std::string& address, Clock::time_point now) {
    auto it = failures_.find(address);
    if (it == failures_.end()) return std::nullopt;
    prune(it->second, now);
    if (it->second.empty()) {
        failures_.erase(it);
        return std::nullopt;
    }
    if (it->second.size() < max_failures_) return std::nullopt;
    const auto wait = std::chrono::ceil<std::chrono::seconds>(it->second.front() + window_ - now);
    return std::max(wait, std::chrono::seconds(1));
}

void LoginLimiter::failed(const std::string& address, Clock::time_point now) {
    if (failures_.size() >= max_addresses_ && !failures_.count(address)) {
        // Forget the address whose latest failure is oldest.
        auto oldest = std::min_element(failures_.begin(), failures_.end(),
                                       [](const auto& a, const auto& b) { return a.second.back() < b.second.back(); });
        failures_.erase(oldest);
    }
    auto& v = failures_[address];
    prune(v, now);
    v.push_back(now);
    if (v.size() > max_failures_) v.erase(v.begin());
}

std::string random_token(std::size_t bytes) {
    auto raw = common::random_bytes(bytes);
    auto s = common::base64_encode(raw, false);
    for (auto& c : s) c = c == '+' ? '-' : c == '/' ? '_' : c;
    return s;
}

bool same_secret(std::string_view a, std::string_view b) { return common::constant_time_equal(common::as_bytes(a), common::as_bytes(b)); }

std::string Sessions::open(std::string user, Clock::time_point now) {
    for (auto it = sessions_.begin(); it != sessions_.end();)
        it = (now - it->second.last_seen >= idle_ || now - it->second.created >= absolute_) ? sessions_.erase(it) : std::next(it);
    if (sessions_.size() >= max_) {
        auto lru = std::min_element(sessions_.begin(), sessions_.end(),
                                    [](const auto& a, const auto& b) { return a.second.last_seen < b.second.last_seen; });
        sessions_.erase(lru);
    }
    auto token = random_token();
    sessions_.emplace(token, Session{std::move(user), random_token(), now, now});
    return token;
}

const Session* Sessions::find(std::string_view token, Clock::time_point now) {
    if (token.empty() || token.size() > 128) return nullptr;
    auto it = sessions_.find(token);
    if (it == sessions_.end()) return nullptr;
    if (now - it->second.last_seen >= idle_ || now - it->second.created >= absolute_) {
        sessions_.erase(it);
        return nullptr;
    }
    it->second.last_seen = now;
    return &it->second;
}

bool Sessions::valid(std::string_view token, Clock::time_point now) const {
    const auto it = sessions_.find(token);
    return it != sessions_.end() && now - it->second.last_seen < idle_ && now - it->second.created < absolute_;
}

std::string cookie_value(std::string_view header, std::string_view name) {
    for (auto part : split(header, ';')) {
        while (!part.empty() && part.front() == ' ') part.remove_prefix(1);
        const auto eq = part.find('=');
        if (eq != std::string_view::npos && part.substr(0, eq) == name) return std::string(part.substr(eq + 1));
    }
    return {};
}

}  // namespace fleetconf::console
