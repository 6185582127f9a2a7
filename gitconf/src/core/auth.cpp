#include "fleetconf/gitconf/auth.hpp"

#include "fleetconf/common/crypto.hpp"
#include "fleetconf/common/files.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <stdexcept>

namespace fleetconf::gitconf {

namespace {
std::string hash_hex(std::string_view token) { return common::to_hex(common::sha256(token)); }
}  // namespace

TokenStore TokenStore::load(const std::filesystem::path& file) {
    TokenStore s;
    s.file_ = file;
    std::error_code ec;
    if (!std::filesystem::exists(file, ec)) return s;
    std::string text;
    if (auto err = common::read_secret_file(file, 1 << 20, text)) throw std::runtime_error(*err);
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(text);
    } catch (const std::exception& e) {
        throw std::runtime_error(file.string() + ": not valid JSON: " + e.what());
    }
    if (!j.is_object() || j.value("version", 0) != 1 || !j.contains("tokens") || !j["tokens"].is_object())
        throw std::runtime_error(file.string() + ": not a fleetconf token file (version 1)");
    for (const auto& [name, rec] : j["tokens"].items()) {
        if (!rec.is_object() || !rec.contains("sha256") || !rec["sha256"].is_string() || rec["sha256"].get<std::string>().size() != 64)
            throw std::runtime_error(file.string() + ": /tokens/" + name + ": expected {\"sha256\": 64 hex digits}");
        TokenRecord r;
        r.sha256_hex = rec["sha256"].get<std::string>();
        if (rec.contains("created") && rec["created"].is_number_integer()) r.created = rec["created"].get<std::int64_t>();
        if (rec.contains("previous_sha256") && rec["previous_sha256"].is_string() &&
            rec["previous_sha256"].get<std::string>().size() == 64 && rec.contains("previous_expires") &&
            rec["previous_expires"].is_number_integer()) {
            r.previous_sha256_hex = rec["previous_sha256"].get<std::string>();
            r.previous_expires = rec["previous_expires"].get<std::int64_t>();
        }
        s.tokens_.emplace(name, std::move(r));
    }
    return s;
}

void TokenStore::save() const {
    nlohmann::json t = nlohmann::json::object();
    for (const auto& [name, r] : tokens_) {
        t[name] = {{"sha256", r.sha256_hex}, {"created", r.created}};
        if (!r.previous_sha256_hex.empty()) {
            t[name]["previous_sha256"] = r.previous_sha256_hex;
            t[name]["previous_expires"] = r.previous_expires;
        }
    }
    const std::string text = nlohmann::json{{"version", 1}, {"tokens", t}}.dump(2) + "\n";
    common::ensure_directory(file_.parent_path());
    common::write_file_atomic(file_, common::as_bytes(text), 0600);
}

namespace {
std::int64_t clock_now() {
    return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}
}  // namespace

std::string TokenStore::issue(const std::string& name, std::int64_t overlap_s, std::int64_t now) {
    if (now == 0) now = clock_now();
    const std::string token = common::to_hex(common::random_bytes(24));
    TokenRecord r;
    r.sha256_hex = hash_hex(token);
    r.created = now;
    if (auto old = tokens_.find(name); old != tokens_.end() && overlap_s > 0) {
        r.previous_sha256_hex = old->second.sha256_hex;
        r.previous_expires = now + overlap_s;
    }
    tokens_[name] = std::move(r);
    save();
    return token;
}

bool TokenStore::revoke(const std::string& name) {
    if (!tokens_.erase(name)) return false;
    save();
    return true;
}

bool TokenStore::verify(std::string_view name, std::string_view token, std::int64_t now) const {
    static const std::string dummy(64, '0');
    const auto it = tokens_.find(std::string(name));
    const bool found = it != tokens_.end();
    const std::string& expected = found ? it->second.sha256_hex : dummy;
    const bool previous_live = found && !it->second.previous_sha256_hex.empty() && (now ? now : clock_now()) < it->second.previous_expires;
    const std::string& previous = previous_live ? it->second.previous_sha256_hex : dummy;
    const std::string got = hash_hex(token);
    // Both comparisons always run: the time spent does not tell whether a previous token exists.
    const bool eq = common::constant_time_equal(common::as_bytes(expected), common::as_bytes(got));
    const bool eq_previous = common::constant_time_equal(common::as_bytes(previous), common::as_bytes(got));
    return found && (eq || (previous_live && eq_previous));
}

std::string Credential::label() const {
    switch (kind) {
        case Kind::rejected:
        case Kind::anonymous: return "-";
        case Kind::unikernel: return name;
        case Kind::operator_: return "operator:" + name;
    }
    return "-";
}

Credential authenticate(const std::optional<BasicCredentials>& cred, const TokenStore& tokens) {
    if (!cred || !tokens.verify(cred->user, cred->password)) return Credential::rejected();
    return Credential::unikernel(cred->user);
}

Verdict authorize(const Credential& who, std::string_view repo, const RepoAccess& access, Operation op) {
    switch (who.kind) {
        case Credential::Kind::rejected: return Verdict::unauthorized;
        case Credential::Kind::anonymous:
            if (op == Operation::push) return Verdict::forbidden;
            return access.exists && access.git_protocol ? Verdict::allow : Verdict::not_found;
        case Credential::Kind::unikernel:
            // The answer for "not yours" and "does not exist" is the same.
            if (who.name != repo || !access.exists) return Verdict::not_found;
            return op == Operation::push && !access.writable ? Verdict::forbidden : Verdict::allow;
        case Credential::Kind::operator_:
            if (!access.exists) return Verdict::not_found;
            return op == Operation::push && !who.writable ? Verdict::forbidden : Verdict::allow;
    }
    return Verdict::unauthorized;
}

}  // namespace fleetconf::gitconf
