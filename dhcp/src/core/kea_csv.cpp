#include "fleetconf/dhcp/kea_csv.hpp"

#include "fleetconf/common/crypto.hpp"
#include "fleetconf/common/text.hpp"

#include <charconv>
#include <map>
#include <stdexcept>

namespace fleetconf::dhcp {

namespace {

std::vector<std::string_view> split(std::string_view line) {
    std::vector<std::string_view> out;
    std::size_t start = 0;
    for (std::size_t i = 0; i <= line.size(); ++i)
        if (i == line.size() || line[i] == ',') {
            out.push_back(line.substr(start, i - start));
            start = i + 1;
        }
    return out;
}

// Kea escapes a comma (and other separators) in a text column as "&#x" followed by two hex digits.
std::string unescape(std::string_view s) {
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s.substr(i, 3) == "&#x" && i + 5 <= s.size())
            if (auto b = common::from_hex(s.substr(i + 3, 2)); b && b->size() == 1) {
                out += static_cast<char>((*b)[0]);
                i += 4;
                continue;
            }
        out += s[i];
    }
    return out;
}

// "01:02:0a" (or "" ) -> bytes; nullopt on anything else.
std::optional<Bytes> colon_hex(std::string_view s) {
    std::string hex;
    for (char c : s)
        if (c != ':') hex += c;
    if (hex.size() % 2) hex.insert(hex.begin(), '0');
    return common::from_hex(hex);
}

template <typename T>
std::optional<T> number(std::string_view s) {
    T v{};
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
    return v;
}

}  // namespace

KeaImport parse_kea_lease4_csv(std::string_view text, const std::function<std::optional<std::string>(common::Ipv4)>& network_of) {
    KeaImport out;
    std::map<std::string, std::size_t> col;
    std::map<common::Ipv4, Lease> by_addr;
    std::size_t line_no = 0;
    bool header = false;
    while (!text.empty()) {
        auto nl = text.find('\n');
        std::string_view line = text.substr(0, nl);
        text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
        ++line_no;
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (line.empty()) continue;
        const auto f = split(line);
        if (!header) {
            for (std::size_t i = 0; i < f.size(); ++i) col[std::string(f[i])] = i;
            for (const char* need : {"address", "hwaddr", "client_id", "valid_lifetime", "expire", "hostname", "state"})
                if (!col.count(need))
                    throw std::runtime_error("line 1: not a Kea lease4 CSV header (no \"" + std::string(need) +
                                             "\" column; expected address,hwaddr,client_id,valid_lifetime,expire,...)");
            header = true;
            continue;
        }
        ++out.records;
        auto warn = [&](const std::string& why) { out.warnings.push_back("line " + std::to_string(line_no) + ": " + why + "; left out"); };
        auto get = [&](const char* name) -> std::string_view {
            const auto i = col.at(name);
            return i < f.size() ? f[i] : std::string_view{};
        };
        if (f.size() < col.size()) {
            warn("fewer columns than the header");
            continue;
        }
        const auto addr = common::Ipv4::parse(get("address"));
        if (!addr) {
            warn("address \"" + common::printable(get("address")) + "\" is not IPv4");
            continue;
        }
        const auto valid = number<std::uint64_t>(get("valid_lifetime"));
        const auto expire = number<std::uint64_t>(get("expire"));
        const auto state = number<unsigned>(get("state"));
        if (!valid || !expire || !state || *state > 2) {
            warn("valid_lifetime, expire or state is not a number Kea writes");
            continue;
        }
        if (*valid == 0) {  // Kea's record of a deleted lease
            by_addr.erase(*addr);
            continue;
        }
        const auto hw = colon_hex(get("hwaddr"));
        const auto cid = colon_hex(get("client_id"));
        if (!hw || hw->size() != 6 || !cid) {
            warn("hwaddr is not a 6-byte Ethernet address, or client_id is not hex");
            continue;
        }
        auto net = network_of(*addr);
        if (!net) {
            warn(addr->to_string() + " is in no network of the site");
            continue;
        }
        Lease l;
        l.address = *addr;
        std::array<std::uint8_t, 6> m{};
        std::copy(hw->begin(), hw->end(), m.begin());
        l.mac = common::Mac(m);
        // fleetconf's client identity (the decision function's client_key): 0xFF + option 61's data when the
        // client sent one, else htype 1 + chaddr.
        // (Sized first, then copied: push_back + insert trips GCC 12's -Warray-bounds false positive at -O2.)
        const auto& id = cid->empty() ? *hw : *cid;
        l.client.assign(1 + id.size(), cid->empty() ? 1 : 0xFF);
        std::copy(id.begin(), id.end(), l.client.begin() + 1);
        l.hostname = common::printable(unescape(get("hostname")));
        l.network = *net;
        l.state = *state == 1 ? LeaseState::declined : *state == 2 ? LeaseState::released : LeaseState::bound;
        l.expires = *expire;
        by_addr[*addr] = std::move(l);
    }
    if (!header) throw std::runtime_error("empty file: not a Kea lease4 CSV");
    // One address per client, as the server keeps them: a client's later record (by expiry) wins.
    // (Keyed by the identity's bytes as a string: a map keyed by std::vector<std::uint8_t> trips GCC 12's
    // -Wstringop-overread false positive at -O2.)
    std::map<std::string, common::Ipv4> by_client;
    for (auto& [a, l] : by_addr) {
        auto [it, fresh] = by_client.emplace(std::string(l.client.begin(), l.client.end()), a);
        if (fresh) continue;
        auto& other = by_addr.at(it->second);
        const bool keep_new = l.expires > other.expires;
        out.warnings.push_back("client " + common::to_hex(l.client) + " holds " + it->second.to_string() + " and " + a.to_string() +
                               ": kept " + (keep_new ? a : it->second).to_string() + " (the later expiry)");
        if (keep_new) {
            other.state = LeaseState::released;  // marked for removal below
            other.client.clear();
            it->second = a;
        } else {
            l.client.clear();
        }
    }
    for (auto& [a, l] : by_addr)
        if (!l.client.empty()) out.leases.push_back(std::move(l));
    return out;
}

}  // namespace fleetconf::dhcp
