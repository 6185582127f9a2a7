#include "fleetconf/dhcp/wire.hpp"

#include "fleetconf/common/crypto.hpp"

#include <algorithm>
#include <cstring>

namespace fleetconf::dhcp {

using common::Ipv4;

std::string_view to_string(MessageType t) {
    static constexpr std::string_view names[] = {"?", "DISCOVER", "OFFER", "REQUEST", "DECLINE", "ACK", "NAK", "RELEASE", "INFORM"};
    const auto i = static_cast<std::size_t>(t);
    return i < std::size(names) ? names[i] : "?";
}

namespace {

class DecodeCategory final : public std::error_category {
public:
    const char* name() const noexcept override { return "dhcp-decode"; }
    std::string message(int ev) const override {
        switch (static_cast<DecodeError>(ev)) {
            case DecodeError::too_short: return "message shorter than the BOOTP header and magic cookie";
            case DecodeError::bad_op: return "op is neither BOOTREQUEST nor BOOTREPLY";
            case DecodeError::bad_hlen: return "hardware address length above 16";
            case DecodeError::bad_cookie: return "no DHCP magic cookie";
            case DecodeError::option_truncated: return "option length runs past the end";
            case DecodeError::missing_end: return "no END option";
            case DecodeError::bad_overload: return "malformed option overload (52)";
            case DecodeError::too_long: return "message longer than a UDP datagram";
        }
        return "unknown decode error";
    }
};

constexpr std::uint8_t kCookie[4] = {99, 130, 83, 99};

std::uint32_t get32(const std::uint8_t* p) {
    return std::uint32_t{p[0]} << 24 | std::uint32_t{p[1]} << 16 | std::uint32_t{p[2]} << 8 | p[3];
}
void put32(Bytes& b, std::uint32_t v) {
    for (int i = 3; i >= 0; --i) b.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}

// Parses one options area into `out`, joining repeated codes (RFC 3396).
std::error_code parse_area(std::span<const std::uint8_t> area, std::vector<Option>& out, bool need_end) {
    std::size_t i = 0;
    while (i < area.size()) {
        const std::uint8_t code = area[i];
        if (code == opt::pad) {
            ++i;
            continue;
        }
        if (code == opt::end) return {};
        if (i + 1 >= area.size()) return DecodeError::option_truncated;
        const std::size_t len = area[i + 1];
        if (i + 2 + len > area.size()) return DecodeError::option_truncated;
        auto data = area.subspan(i + 2, len);
        auto it = std::find_if(out.begin(), out.end(), [&](const Option& o) { return o.code == code; });
        if (it == out.end()) out.push_back({code, Bytes(data.begin(), data.end())});
        else it->data.insert(it->data.end(), data.begin(), data.end());
        i += 2 + len;
    }
    return need_end ? std::error_code(DecodeError::missing_end) : std::error_code{};
}

}  // namespace

const std::error_category& decode_category() {
    static const DecodeCategory c;
    return c;
}

const Option* Message::find(std::uint8_t code) const {
    for (const auto& o : options)
        if (o.code == code) return &o;
    return nullptr;
}

std::optional<MessageType> Message::type() const {
    const auto* o = find(opt::message_type);
    if (!o || o->data.size() != 1 || o->data[0] < 1 || o->data[0] > 8) return std::nullopt;
    return static_cast<MessageType>(o->data[0]);
}

std::optional<Ipv4> Message::address_option(std::uint8_t code) const {
    const auto* o = find(code);
    if (!o || o->data.size() != 4) return std::nullopt;
    return Ipv4{get32(o->data.data())};
}

std::optional<std::string> Message::string_option(std::uint8_t code) const {
    const auto* o = find(code);
    if (!o || o->data.empty()) return std::nullopt;
    std::string s(o->data.begin(), o->data.end());
    while (!s.empty() && s.back() == '\0') s.pop_back();  // some clients NUL-terminate
    return s;
}

common::Mac Message::mac() const {
    std::array<std::uint8_t, 6> b{};
    std::copy_n(chaddr.begin(), 6, b.begin());
    return common::Mac{b};
}

void Message::set(std::uint8_t code, Bytes data) {
    for (auto& o : options)
        if (o.code == code) {
            o.data = std::move(data);
            return;
        }
    options.push_back({code, std::move(data)});
}

std::optional<Message> decode(std::span<const std::uint8_t> d, std::error_code& ec) {
    ec = {};
    if (d.size() > 65507) return ec = DecodeError::too_long, std::nullopt;
    if (d.size() < kHeaderSize + 4) return ec = DecodeError::too_short, std::nullopt;
    Message m;
    m.options.reserve(16);  // a typical request's options, without regrowing
    m.op = d[0];
    if (m.op != 1 && m.op != 2) return ec = DecodeError::bad_op, std::nullopt;
    m.htype = d[1];
    m.hlen = d[2];
    if (m.hlen > 16) return ec = DecodeError::bad_hlen, std::nullopt;
    m.hops = d[3];
    m.xid = get32(&d[4]);
    m.secs = static_cast<std::uint16_t>(d[8] << 8 | d[9]);
    m.flags = static_cast<std::uint16_t>(d[10] << 8 | d[11]);
    m.ciaddr = Ipv4{get32(&d[12])};
    m.yiaddr = Ipv4{get32(&d[16])};
    m.siaddr = Ipv4{get32(&d[20])};
    m.giaddr = Ipv4{get32(&d[24])};
    std::copy_n(d.begin() + 28, 16, m.chaddr.begin());
    std::copy_n(d.begin() + 44, 64, m.sname.begin());
    std::copy_n(d.begin() + 108, 128, m.file.begin());
    if (!std::equal(std::begin(kCookie), std::end(kCookie), d.begin() + kHeaderSize)) return ec = DecodeError::bad_cookie, std::nullopt;
    if ((ec = parse_area(d.subspan(kHeaderSize + 4), m.options, true))) return std::nullopt;
    // RFC 2132 9.3: option overload moves more options into file (1), sname (2) or both (3).
    if (const auto* ov = m.find(opt::overload)) {
        if (ov->data.size() != 1 || ov->data[0] < 1 || ov->data[0] > 3) return ec = DecodeError::bad_overload, std::nullopt;
        const std::uint8_t v = ov->data[0];
        if (v & 1) {
            if ((ec = parse_area(std::span<const std::uint8_t>(m.file), m.options, false))) return std::nullopt;
            m.file.fill(0);
        }
        if (v & 2) {
            if ((ec = parse_area(std::span<const std::uint8_t>(m.sname), m.options, false))) return std::nullopt;
            m.sname.fill(0);
        }
    }
    return m;
}

void encode_append(const Message& m, Bytes& b, std::size_t max_size, std::vector<std::uint8_t>* dropped) {
    max_size = std::max(max_size, kMinMessageSize);
    const std::size_t start = b.size();
    b.push_back(m.op);
    b.push_back(m.htype);
    b.push_back(m.hlen);
    b.push_back(m.hops);
    put32(b, m.xid);
    b.push_back(static_cast<std::uint8_t>(m.secs >> 8));
    b.push_back(static_cast<std::uint8_t>(m.secs));
    b.push_back(static_cast<std::uint8_t>(m.flags >> 8));
    b.push_back(static_cast<std::uint8_t>(m.flags));
    for (Ipv4 a : {m.ciaddr, m.yiaddr, m.siaddr, m.giaddr}) put32(b, a.value());
    b.insert(b.end(), m.chaddr.begin(), m.chaddr.end());
    b.insert(b.end(), m.sname.begin(), m.sname.end());
    b.insert(b.end(), m.file.begin(), m.file.end());
    b.insert(b.end(), std::begin(kCookie), std::end(kCookie));
    for (const auto& o : m.options) {
        if (o.code == opt::pad || o.code == opt::end) continue;
        // Each 255-byte chunk costs 2 bytes of header; an empty option is one header (RFC 3396).
        const std::size_t chunks = o.data.empty() ? 1 : (o.data.size() + 254) / 255;
        const std::size_t need = o.data.size() + 2 * chunks;
        if (b.size() - start + need + 1 > max_size) {
            if (dropped) dropped->push_back(o.code);
            continue;
        }
        std::size_t off = 0;
        do {
            const std::size_t n = std::min<std::size_t>(255, o.data.size() - off);
            b.push_back(o.code);
            b.push_back(static_cast<std::uint8_t>(n));
            b.insert(b.end(), o.data.begin() + static_cast<std::ptrdiff_t>(off), o.data.begin() + static_cast<std::ptrdiff_t>(off + n));
            off += n;
        } while (off < o.data.size());
    }
    b.push_back(opt::end);
    if (b.size() - start < kBootpMinSize) b.resize(start + kBootpMinSize, opt::pad);
}

Bytes encode(const Message& m, std::size_t max_size, std::vector<std::uint8_t>* dropped) {
    Bytes b;
    b.reserve(512);
    encode_append(m, b, max_size, dropped);
    return b;
}

Bytes u32_bytes(std::uint32_t v) {
    return {static_cast<std::uint8_t>(v >> 24), static_cast<std::uint8_t>(v >> 16), static_cast<std::uint8_t>(v >> 8),
            static_cast<std::uint8_t>(v)};
}
Bytes addr_bytes(Ipv4 a) { return u32_bytes(a.value()); }
Bytes addrs_bytes(const std::vector<Ipv4>& v) {
    Bytes b;
    b.reserve(4 * v.size());
    for (auto a : v) put32(b, a.value());
    return b;
}

Bytes vivso_bytes(std::uint32_t enterprise, const std::vector<std::pair<std::uint8_t, Bytes>>& subs) {
    Bytes data;
    for (const auto& [code, value] : subs) {
        data.push_back(code);
        data.push_back(static_cast<std::uint8_t>(std::min<std::size_t>(value.size(), 255)));
        data.insert(data.end(), value.begin(), value.begin() + static_cast<std::ptrdiff_t>(std::min<std::size_t>(value.size(), 255)));
    }
    Bytes b;
    put32(b, enterprise);
    b.push_back(static_cast<std::uint8_t>(std::min<std::size_t>(data.size(), 255)));
    b.insert(b.end(), data.begin(), data.begin() + static_cast<std::ptrdiff_t>(std::min<std::size_t>(data.size(), 255)));
    return b;
}

std::optional<std::vector<std::pair<std::uint32_t, std::vector<std::pair<std::uint8_t, Bytes>>>>> parse_vivso(
    std::span<const std::uint8_t> d) {
    std::vector<std::pair<std::uint32_t, std::vector<std::pair<std::uint8_t, Bytes>>>> out;
    std::size_t i = 0;
    while (i < d.size()) {
        if (i + 5 > d.size()) return std::nullopt;
        const std::uint32_t ent = get32(&d[i]);
        const std::size_t len = d[i + 4];
        if (i + 5 + len > d.size()) return std::nullopt;
        std::vector<std::pair<std::uint8_t, Bytes>> subs;
        std::size_t j = i + 5;
        while (j < i + 5 + len) {
            if (j + 2 > i + 5 + len || j + 2 + d[j + 1] > i + 5 + len) return std::nullopt;
            subs.emplace_back(
                d[j], Bytes(d.begin() + static_cast<std::ptrdiff_t>(j + 2), d.begin() + static_cast<std::ptrdiff_t>(j + 2 + d[j + 1])));
            j += 2 + d[j + 1];
        }
        out.emplace_back(ent, std::move(subs));
        i += 5 + len;
    }
    return out;
}

std::optional<ClientFqdn> parse_fqdn(std::span<const std::uint8_t> d) {
    if (d.size() < 3) return std::nullopt;
    ClientFqdn f;
    f.flags = d[0];
    const auto name = d.subspan(3);
    if (f.flags & fqdn_flag::E) {
        std::size_t i = 0;
        while (i < name.size()) {
            const std::size_t len = name[i];
            if (len == 0) {
                if (i + 1 != name.size()) return std::nullopt;  // bytes after the root label
                f.fully_qualified = true;
                break;
            }
            if (len > 63 || i + 1 + len > name.size()) return std::nullopt;
            if (!f.name.empty()) f.name += '.';
            f.name.append(name.begin() + static_cast<std::ptrdiff_t>(i + 1), name.begin() + static_cast<std::ptrdiff_t>(i + 1 + len));
            i += 1 + len;
        }
        if (name.size() > 255) return std::nullopt;
    } else {
        std::string text(name.begin(), name.end());
        while (!text.empty() && text.back() == '\0') text.pop_back();  // some clients NUL-terminate
        if (text.size() > 255) return std::nullopt;
        if (!text.empty() && text.back() == '.') {
            text.pop_back();
            f.fully_qualified = true;
        }
        f.name = std::move(text);
    }
    return f;
}

Bytes fqdn_bytes(const ClientFqdn& f) {
    Bytes b;
    b.reserve(3 + f.name.size() + 2);
    b.push_back(f.flags);
    b.push_back(255);
    b.push_back(255);
    if (f.flags & fqdn_flag::E) {
        std::size_t start = 0;
        while (start < f.name.size()) {
            auto dot = f.name.find('.', start);
            if (dot == std::string::npos) dot = f.name.size();
            const auto len = std::min<std::size_t>(dot - start, 63);
            b.push_back(static_cast<std::uint8_t>(len));
            b.insert(b.end(), f.name.begin() + static_cast<std::ptrdiff_t>(start),
                     f.name.begin() + static_cast<std::ptrdiff_t>(start + len));
            start = dot + 1;
        }
        if (f.fully_qualified) b.push_back(0);
    } else {
        b.insert(b.end(), f.name.begin(), f.name.end());
        if (f.fully_qualified && !f.name.empty()) b.push_back('.');
    }
    return b;
}

Bytes classless_routes_bytes(const std::vector<ClasslessRoute>& routes) {
    Bytes b;
    for (const auto& r : routes) {
        const int len = r.destination.length();
        b.push_back(static_cast<std::uint8_t>(len));
        const auto net = r.destination.network().bytes();
        b.insert(b.end(), net.begin(), net.begin() + (len + 7) / 8);  // significant octets only
        const auto gw = r.router.bytes();
        b.insert(b.end(), gw.begin(), gw.end());
    }
    return b;
}

std::optional<std::vector<ClasslessRoute>> parse_classless_routes(std::span<const std::uint8_t> d) {
    std::vector<ClasslessRoute> out;
    std::size_t i = 0;
    while (i < d.size()) {
        const int len = d[i];
        if (len > 32) return std::nullopt;
        const std::size_t octets = static_cast<std::size_t>((len + 7) / 8);
        if (i + 1 + octets + 4 > d.size()) return std::nullopt;
        std::uint32_t net = 0;
        for (std::size_t k = 0; k < 4; ++k) net = net << 8 | (k < octets ? d[i + 1 + k] : 0u);
        out.push_back({common::Prefix::of(Ipv4{net}, len), Ipv4{get32(&d[i + 1 + octets])}});
        i += 1 + octets + 4;
    }
    return out;
}

std::string format_option(std::uint8_t code, std::span<const std::uint8_t> d) {
    const auto* def = option_def(code);
    const OptionType t = def ? def->type : (code >= 224 && code <= 254 ? OptionType::bytes : OptionType::bytes);
    auto printable = [&] { return std::all_of(d.begin(), d.end(), [](std::uint8_t c) { return c >= 0x20 && c < 0x7f; }); };
    switch (t) {
        case OptionType::address:
        case OptionType::addresses: {
            if (d.empty() || d.size() % 4 != 0) break;
            std::string s;
            for (std::size_t i = 0; i < d.size(); i += 4) {
                if (!s.empty()) s.push_back(',');
                s.append(Ipv4{get32(&d[i])}.to_string());
            }
            return s;
        }
        case OptionType::u8:
            if (d.size() == 1) return std::to_string(d[0]);
            break;
        case OptionType::u16:
            if (d.size() == 2) return std::to_string(d[0] << 8 | d[1]);
            break;
        case OptionType::u32:
            if (d.size() == 4) return std::to_string(get32(d.data()));
            break;
        case OptionType::i32:
            if (d.size() == 4) return std::to_string(static_cast<std::int32_t>(get32(d.data())));
            break;
        case OptionType::flag:
            if (d.size() == 1) return d[0] ? "true" : "false";
            break;
        case OptionType::string:
            if (printable()) {
                std::string s(1, '"');
                s.append(d.begin(), d.end()).push_back('"');
                return s;
            }
            break;
        case OptionType::parameter_list: {
            std::string s(1, '[');
            for (auto c : d) {
                if (s.size() > 1) s.push_back(',');
                s.append(std::to_string(c));
            }
            s.push_back(']');
            return s;
        }
        default: break;
    }
    return common::to_hex(d);
}

}  // namespace fleetconf::dhcp
