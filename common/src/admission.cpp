#include "fleetconf/common/admission.hpp"

#include <algorithm>

namespace fleetconf::common {

std::string_view to_string(Refusal r) {
    switch (r) {
        case Refusal::listener_full: return "listener_full";
        case Refusal::address_full: return "address_full";
        case Refusal::unauthenticated_full: return "unauthenticated_full";
        case Refusal::stopping: return "stopping";
    }
    return "?";
}

ListenerLimits default_limits(std::string_view listener) {
    using namespace std::chrono_literals;
    // git transports: fetches are short and anonymous until their request is read; the whole-phase
    // deadlines, not a login budget, bound a silent connection.
    if (listener == "git" || listener == "http" || listener == "https")
        return {.max_connections = 1024, .max_per_address = 64, .max_unauthenticated = 0};
    if (listener == "ssh") return {.max_connections = 64, .max_per_address = 8, .max_unauthenticated = 16, .login_grace = 10s};
    if (listener == "block") return {.max_connections = 256, .max_per_address = 32, .max_unauthenticated = 64, .login_grace = 10s};
    // console: a page holds its live stream and a few requests; 32 live streams at most (ConsoleServer).
    if (listener == "console") return {.max_connections = 128, .max_per_address = 48, .max_unauthenticated = 0};
    return {.max_connections = 64, .max_per_address = 16, .max_unauthenticated = 0};  // dhcp-control, status
}

std::string peer_key(const std::string& address, int ipv4_prefix, int ipv6_prefix) {
    auto ip = parse_ip(address);
    if (!ip) return address;
    if (auto* v4 = std::get_if<Ipv4>(&*ip)) {
        const int len = std::clamp(ipv4_prefix, 0, 32);
        return Prefix::of(*v4, len).network().to_string() + "/" + std::to_string(len);
    }
    auto bytes = std::get<Ipv6>(*ip).bytes();
    const int len = std::clamp(ipv6_prefix, 0, 128);
    for (int i = 0; i < 16; ++i) {
        const int keep = std::clamp(len - 8 * i, 0, 8);
        bytes[static_cast<std::size_t>(i)] &= static_cast<std::uint8_t>(0xFF00u >> keep);
    }
    return Ipv6{bytes}.to_string() + "/" + std::to_string(len);
}

Admission::Decision Admission::admit(const std::string& address, Clock::time_point now) {
    std::lock_guard g(m_);
    Decision d;
    d.key = peer_key(address, limits_.ipv4_prefix, limits_.ipv6_prefix);
    const auto it = per_key_.find(d.key);
    const std::size_t from_key = it == per_key_.end() ? 0 : it->second;
    if (open_ >= limits_.max_connections) d.refused = Refusal::listener_full;
    else if (limits_.max_per_address && from_key >= limits_.max_per_address) d.refused = Refusal::address_full;
    else if (limits_.max_unauthenticated && unauthenticated_ >= limits_.max_unauthenticated) d.refused = Refusal::unauthenticated_full;
    if (d.refused) {
        ++refused_[*d.refused];
        auto [at, fresh] = last_logged_.try_emplace(d.key, now);
        if (fresh || now - at->second >= limits_.log_interval) {
            at->second = now;
            d.log = true;
        }
        if (last_logged_.size() > 4096)  // forget old entries; a new address logs at once anyway
            std::erase_if(last_logged_, [&](const auto& e) { return now - e.second >= limits_.log_interval; });
        return d;
    }
    ++open_;
    ++per_key_[d.key];
    if (limits_.max_unauthenticated) ++unauthenticated_;
    return d;
}

void Admission::authenticated(const std::string&) {
    std::lock_guard g(m_);
    if (limits_.max_unauthenticated && unauthenticated_ > 0) --unauthenticated_;
}

void Admission::release(const std::string& key, bool authenticated) {
    std::lock_guard g(m_);
    if (open_ > 0) --open_;
    if (!authenticated && limits_.max_unauthenticated && unauthenticated_ > 0) --unauthenticated_;
    if (auto it = per_key_.find(key); it != per_key_.end() && --it->second == 0) per_key_.erase(it);
}

void Admission::set_limits(const ListenerLimits& l) {
    std::lock_guard g(m_);
    limits_ = l;
}

Admission::Stats Admission::stats() const {
    std::lock_guard g(m_);
    return {open_, unauthenticated_, per_key_.size(), refused_};
}

ListenerLimits Admission::limits() const {
    std::lock_guard g(m_);
    return limits_;
}

std::chrono::milliseconds phase_deadline(std::chrono::milliseconds base, std::size_t bytes, std::size_t min_rate) {
    if (min_rate == 0) return base;
    return base + std::chrono::milliseconds(bytes * 1000 / min_rate);
}

}  // namespace fleetconf::common
