#include "fleetconf/blockcfg/tlstunnel.hpp"

#include "fleetconf/common/crypto.hpp"

#include <algorithm>
#include <array>
#include <set>
#include <stdexcept>

namespace fleetconf::blockcfg::tlstunnel {

using common::Ipv4;
using common::Ipv6;

namespace {

constexpr std::uint8_t kInteger = 0x02, kNull = 0x05, kUtf8 = 0x0C, kSequence = 0x30;
constexpr std::uint8_t context(int n) { return static_cast<std::uint8_t>(0xA0 | n); }  // [n] EXPLICIT, constructed
constexpr std::size_t kMaxString = 65535;

// ---- DER writing ----
void put_length(Bytes& out, std::size_t n) {
    if (n < 0x80) {
        out.push_back(static_cast<std::uint8_t>(n));
        return;
    }
    std::uint8_t tmp[8];
    int k = 0;
    for (std::size_t v = n; v; v >>= 8) tmp[k++] = static_cast<std::uint8_t>(v);
    out.push_back(static_cast<std::uint8_t>(0x80 | k));
    while (k) out.push_back(tmp[--k]);
}

void put_tlv(Bytes& out, std::uint8_t tag, const Bytes& content) {
    out.push_back(tag);
    put_length(out, content.size());
    out.insert(out.end(), content.begin(), content.end());
}

Bytes integer(std::int64_t v) {
    // Minimal two's complement: drop leading bytes that only repeat the sign.
    Bytes b(8);
    for (int i = 0; i < 8; ++i) b[7 - i] = static_cast<std::uint8_t>(static_cast<std::uint64_t>(v) >> (8 * i));
    std::size_t s = 0;
    while (s < 7 && ((b[s] == 0x00 && !(b[s + 1] & 0x80)) || (b[s] == 0xFF && (b[s + 1] & 0x80)))) ++s;
    Bytes out;
    put_tlv(out, kInteger, Bytes(b.begin() + static_cast<std::ptrdiff_t>(s), b.end()));
    return out;
}

Bytes utf8(const std::string& s) {
    Bytes out;
    put_tlv(out, kUtf8, Bytes(s.begin(), s.end()));
    return out;
}

std::int32_t word(const std::uint8_t* p) {
    return static_cast<std::int32_t>(std::uint32_t{p[0]} << 24 | std::uint32_t{p[1]} << 16 | std::uint32_t{p[2]} << 8 | p[3]);
}

Bytes ip(const common::IpAddress& a) {
    Bytes out;
    if (const auto* v4 = std::get_if<Ipv4>(&a)) {
        put_tlv(out, context(0), integer(static_cast<std::int32_t>(v4->value())));  // signed: 128.0.0.0 and up are negative
    } else {
        const auto& b = std::get<Ipv6>(a).bytes();
        Bytes words;
        for (int i = 0; i < 4; ++i) {
            auto w = integer(word(b.data() + 4 * i));
            words.insert(words.end(), w.begin(), w.end());
        }
        Bytes seq;
        put_tlv(seq, kSequence, words);
        put_tlv(out, context(1), seq);
    }
    return out;
}

Bytes sni(const Sni& s) {
    Bytes body = utf8(s.name);
    auto h = ip(s.host);
    body.insert(body.end(), h.begin(), h.end());
    auto p = integer(s.port);
    body.insert(body.end(), p.begin(), p.end());
    Bytes out;
    put_tlv(out, kSequence, body);
    return out;
}

Bytes sni_sequence(const std::vector<Sni>& v) {
    Bytes body;
    for (const auto& s : v) {
        auto e = sni(s);
        body.insert(body.end(), e.begin(), e.end());
    }
    Bytes out;
    put_tlv(out, kSequence, body);
    return out;
}

// ---- DER reading ----
class Reader {
public:
    Reader(std::span<const std::uint8_t> d, std::string& err) : d_(d), err_(err) {}
    [[nodiscard]] bool done() const { return pos_ == d_.size(); }
    [[nodiscard]] std::optional<std::uint8_t> peek() const { return pos_ < d_.size() ? std::optional(d_[pos_]) : std::nullopt; }

    // The content of the next element, which must have tag `tag`.
    std::optional<std::span<const std::uint8_t>> tlv(std::uint8_t tag, const char* what) {
        if (pos_ >= d_.size()) return fail(std::string("missing ") + what);
        if (d_[pos_] != tag) return fail(std::string(what) + ": tag " + hex(d_[pos_]) + " where " + hex(tag) + " belongs");
        ++pos_;
        if (pos_ >= d_.size()) return fail(std::string(what) + ": missing length");
        std::size_t len = d_[pos_++];
        if (len == 0x80) return fail(std::string(what) + ": indefinite length (not DER)");
        if (len > 0x80) {
            const std::size_t k = len & 0x7F;
            if (k > 4 || pos_ + k > d_.size()) return fail(std::string(what) + ": bad length");
            if (d_[pos_] == 0) return fail(std::string(what) + ": non-minimal length (not DER)");
            len = 0;
            for (std::size_t i = 0; i < k; ++i) len = len << 8 | d_[pos_++];
            if (len < 0x80) return fail(std::string(what) + ": non-minimal length (not DER)");
        }
        if (len > d_.size() - pos_) return fail(std::string(what) + ": length " + std::to_string(len) + " runs past the end");
        auto c = d_.subspan(pos_, len);
        pos_ += len;
        return c;
    }

    std::optional<std::int64_t> integer(const char* what) {
        auto c = tlv(kInteger, what);
        if (!c) return std::nullopt;
        if (c->empty() || c->size() > 8) return fail(std::string(what) + ": INTEGER of " + std::to_string(c->size()) + " bytes");
        if (c->size() > 1 && (((*c)[0] == 0x00 && !((*c)[1] & 0x80)) || ((*c)[0] == 0xFF && ((*c)[1] & 0x80))))
            return fail(std::string(what) + ": non-minimal INTEGER (not DER)");
        std::uint64_t v = ((*c)[0] & 0x80) ? ~std::uint64_t{0} : 0;
        for (auto b : *c) v = v << 8 | b;
        return static_cast<std::int64_t>(v);
    }

    std::optional<std::string> string(const char* what) {
        auto c = tlv(kUtf8, what);
        if (!c) return std::nullopt;
        if (c->size() > kMaxString) return fail(std::string(what) + ": string too long");
        return std::string(c->begin(), c->end());
    }

    std::nullopt_t fail(std::string e) {
        if (err_.empty()) err_ = std::move(e);
        return std::nullopt;
    }

private:
    static std::string hex(std::uint8_t b) {
        static const char* d = "0123456789abcdef";
        return std::string("0x") + d[b >> 4] + d[b & 15];
    }
    std::span<const std::uint8_t> d_;
    std::size_t pos_ = 0;
    std::string& err_;
};

std::optional<common::IpAddress> read_ip(Reader& r, std::string& err) {
    const auto t = r.peek();
    if (t == context(0)) {
        auto c = r.tlv(context(0), "Ip v4");
        if (!c) return std::nullopt;
        Reader in(*c, err);
        auto v = in.integer("Ip v4");
        if (!v) return std::nullopt;
        if (!in.done()) return r.fail("Ip v4: trailing bytes");
        if (*v < INT32_MIN || *v > INT32_MAX) return r.fail("Ip v4: " + std::to_string(*v) + " is not a signed 32-bit integer");
        return Ipv4{static_cast<std::uint32_t>(static_cast<std::int32_t>(*v))};
    }
    if (t == context(1)) {
        auto c = r.tlv(context(1), "Ip v6");
        if (!c) return std::nullopt;
        Reader in(*c, err);
        auto seq = in.tlv(kSequence, "Ip v6 words");
        if (!seq || !in.done()) return r.fail("Ip v6: malformed");
        Reader w(*seq, err);
        std::array<std::uint8_t, 16> b{};
        for (int i = 0; i < 4; ++i) {
            auto v = w.integer("Ip v6 word");
            if (!v) return std::nullopt;
            if (*v < INT32_MIN || *v > INT32_MAX) return r.fail("Ip v6: a word is not a signed 32-bit integer");
            const auto u = static_cast<std::uint32_t>(static_cast<std::int32_t>(*v));
            for (int k = 0; k < 4; ++k) b[4 * i + k] = static_cast<std::uint8_t>(u >> (24 - 8 * k));
        }
        if (!w.done()) return r.fail("Ip v6: more than four words");
        return Ipv6{b};
    }
    return r.fail("Ip: neither v4 [0] nor v6 [1]");
}

std::optional<Sni> read_sni(Reader& r, std::string& err) {
    auto c = r.tlv(kSequence, "Sni");
    if (!c) return std::nullopt;
    Reader in(*c, err);
    Sni s;
    auto name = in.string("Sni name");
    if (!name) return std::nullopt;
    s.name = std::move(*name);
    auto host = read_ip(in, err);
    if (!host) return std::nullopt;
    s.host = *host;
    auto port = in.integer("Sni port");
    if (!port) return std::nullopt;
    s.port = *port;
    if (!in.done()) return r.fail("Sni: trailing bytes");
    return s;
}

std::optional<std::vector<Sni>> read_snis(std::span<const std::uint8_t> seq, std::string& err) {
    Reader r(seq, err);
    std::vector<Sni> v;
    while (!r.done()) {
        auto s = read_sni(r, err);
        if (!s) return std::nullopt;
        v.push_back(std::move(*s));
    }
    return v;
}

void put64(std::uint8_t* p, std::uint64_t v) {
    for (int i = 0; i < 8; ++i) p[i] = static_cast<std::uint8_t>(v >> (56 - 8 * i));
}
std::uint64_t get64(const std::uint8_t* p) {
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v = v << 8 | p[i];
    return v;
}

}  // namespace

Bytes encode(const Command& c) {
    Bytes out;
    std::visit(
        [&](const auto& x) {
            using T = std::decay_t<decltype(x)>;
            if constexpr (std::is_same_v<T, Add>) put_tlv(out, context(0), sni(x.sni));
            else if constexpr (std::is_same_v<T, Remove>) put_tlv(out, context(1), utf8(x.name));
            else if constexpr (std::is_same_v<T, List>) put_tlv(out, context(2), Bytes{kNull, 0x00});
            else if constexpr (std::is_same_v<T, Snis>) put_tlv(out, context(3), sni_sequence(x.snis));
            else {
                Bytes body = integer(x.exit);
                auto m = utf8(x.message);
                body.insert(body.end(), m.begin(), m.end());
                Bytes seq;
                put_tlv(seq, kSequence, body);
                put_tlv(out, context(4), seq);
            }
        },
        c);
    return out;
}

std::optional<Command> decode(std::span<const std::uint8_t> der, std::string& error) {
    error.clear();
    Reader r(der, error);
    const auto tag = r.peek();
    if (!tag) return r.fail("empty message");
    std::optional<Command> out;
    if (*tag == context(0)) {
        auto c = r.tlv(context(0), "add");
        if (!c) return std::nullopt;
        Reader in(*c, error);
        auto s = read_sni(in, error);
        if (!s) return std::nullopt;
        if (!in.done()) return r.fail("add: trailing bytes");
        out = Add{std::move(*s)};
    } else if (*tag == context(1)) {
        auto c = r.tlv(context(1), "remove");
        if (!c) return std::nullopt;
        Reader in(*c, error);
        auto n = in.string("remove name");
        if (!n) return std::nullopt;
        if (!in.done()) return r.fail("remove: trailing bytes");
        out = Remove{std::move(*n)};
    } else if (*tag == context(2)) {
        auto c = r.tlv(context(2), "list");
        if (!c) return std::nullopt;
        Reader in(*c, error);
        auto n = in.tlv(kNull, "list NULL");
        if (!n) return std::nullopt;
        if (!n->empty() || !in.done()) return r.fail("list: not NULL");
        out = List{};
    } else if (*tag == context(3)) {
        auto c = r.tlv(context(3), "snis");
        if (!c) return std::nullopt;
        Reader in(*c, error);
        auto seq = in.tlv(kSequence, "snis SEQUENCE");
        if (!seq) return std::nullopt;
        if (!in.done()) return r.fail("snis: trailing bytes");
        auto v = read_snis(*seq, error);
        if (!v) return std::nullopt;
        out = Snis{std::move(*v)};
    } else if (*tag == context(4)) {
        auto c = r.tlv(context(4), "result");
        if (!c) return std::nullopt;
        Reader in(*c, error);
        auto seq = in.tlv(kSequence, "result SEQUENCE");
        if (!seq) return std::nullopt;
        if (!in.done()) return r.fail("result: trailing bytes");
        Reader s(*seq, error);
        auto exit = s.integer("result exit");
        if (!exit) return std::nullopt;
        auto msg = s.string("result message");
        if (!msg) return std::nullopt;
        if (!s.done()) return r.fail("result: trailing bytes");
        out = Result{*exit, std::move(*msg)};
    } else {
        return r.fail("unknown command tag");
    }
    if (!r.done()) return r.fail("trailing bytes after the command");
    return out;
}

Bytes encode_snis(const std::vector<Sni>& snis) { return sni_sequence(snis); }

std::optional<std::vector<Sni>> decode_snis(std::span<const std::uint8_t> der, std::string& error) {
    error.clear();
    Reader r(der, error);
    auto seq = r.tlv(kSequence, "SEQUENCE OF Sni");
    if (!seq) return std::nullopt;
    if (!r.done()) return r.fail("trailing bytes after the routes");
    return read_snis(*seq, error);
}

Bytes frame_request(std::span<const std::uint8_t> key, std::span<const std::uint8_t> der) {
    Bytes out(8);
    put64(out.data(), kMacSize + der.size());
    const auto mac = common::hmac_sha256(key, der);
    out.insert(out.end(), mac.begin(), mac.end());
    out.insert(out.end(), der.begin(), der.end());
    return out;
}

std::optional<Bytes> parse_reply(std::span<const std::uint8_t> buf, std::string& error) {
    error.clear();
    if (buf.size() < 8) return std::nullopt;
    const std::uint64_t len = get64(buf.data());
    if (len > kMaxFrame) {
        error = "reply announces " + std::to_string(len) + " bytes (limit " + std::to_string(kMaxFrame) + ")";
        return std::nullopt;
    }
    if (buf.size() - 8 < len) return std::nullopt;
    return Bytes(buf.begin() + 8, buf.begin() + 8 + static_cast<std::ptrdiff_t>(len));
}

std::string describe(const Command& c) {
    auto sni_text = [](const Sni& s) {
        return s.name + " -> " +
               (s.port >= 0 && s.port <= 65535 ? common::host_port(s.host, static_cast<std::uint32_t>(s.port))
                                               : common::to_string(s.host) + " port " + std::to_string(s.port));
    };
    return std::visit(
        [&](const auto& x) -> std::string {
            using T = std::decay_t<decltype(x)>;
            if constexpr (std::is_same_v<T, Add>) return "add " + sni_text(x.sni);
            else if constexpr (std::is_same_v<T, Remove>) return "remove " + x.name;
            else if constexpr (std::is_same_v<T, List>) return "list";
            else if constexpr (std::is_same_v<T, Snis>) return std::to_string(x.snis.size()) + " route(s)";
            else return "result " + std::to_string(x.exit) + ": " + x.message;
        },
        c);
}

// ---- disk ----

namespace {
constexpr std::uint64_t kNsPerTlstunnelDay = 86'000ull * 1'000'000'000ull;  // filesystem.ml ns_per_day
}

std::uint64_t encode_timestamp(std::int64_t unix_seconds) {
    if (unix_seconds < 0) unix_seconds = 0;
    const auto s = static_cast<std::uint64_t>(unix_seconds);
    return s / 86'400 * kNsPerTlstunnelDay + s % 86'400 * 1'000'000'000ull;
}

std::int64_t decode_timestamp(std::uint64_t field) {
    return static_cast<std::int64_t>(field / kNsPerTlstunnelDay * 86'400 + field % kNsPerTlstunnelDay / 1'000'000'000ull);
}

Bytes encode_superblock(const Superblock& sb, std::size_t sector_size) {
    Bytes s(sector_size, 0);
    s[0] = static_cast<std::uint8_t>(sb.version >> 8);
    s[1] = static_cast<std::uint8_t>(sb.version);
    put64(s.data() + 8, sb.counter);
    put64(s.data() + 16, sb.timestamp);
    put64(s.data() + 24, sb.first_sector);
    put64(s.data() + 32, sb.data_length);
    std::copy(sb.data_hash.begin(), sb.data_hash.end(), s.begin() + 40);
    const auto h = common::sha256(std::span<const std::uint8_t>(s.data(), sector_size - 32));
    std::copy(h.begin(), h.end(), s.end() - 32);
    return s;
}

std::optional<Superblock> decode_superblock(std::span<const std::uint8_t> s, std::string& error) {
    if (s.size() < 128) return error = "sector too small", std::nullopt;
    const auto h = common::sha256(s.first(s.size() - 32));
    if (!std::equal(h.begin(), h.end(), s.end() - 32)) return error = "checksum mismatch", std::nullopt;
    Superblock sb;
    sb.version = static_cast<std::uint16_t>(s[0] << 8 | s[1]);
    if (sb.version != 1) return error = "version " + std::to_string(sb.version) + " (only 1 is known)", std::nullopt;
    sb.counter = get64(s.data() + 8);
    sb.timestamp = get64(s.data() + 16);
    sb.first_sector = get64(s.data() + 24);
    sb.data_length = get64(s.data() + 32);
    std::copy(s.begin() + 40, s.begin() + 72, sb.data_hash.begin());
    return sb;
}

std::variant<DiskContents, std::vector<std::string>> read_disk(std::span<const std::uint8_t> image, std::size_t sector_size) {
    std::vector<std::string> problems;
    if (sector_size != 512 && sector_size != 4096) return std::vector<std::string>{"sector size must be 512 or 4096"};
    if (image.size() % sector_size != 0 || image.size() < 3 * sector_size)
        return std::vector<std::string>{"image of " + std::to_string(image.size()) + " bytes is not at least 3 whole " +
                                        std::to_string(sector_size) + "-byte sectors"};
    const std::uint64_t sectors = image.size() / sector_size;
    auto sector = [&](std::uint64_t i) { return image.subspan(i * sector_size, sector_size); };

    struct Candidate {
        Superblock sb;
        bool last;
    };
    std::vector<Candidate> good;
    for (bool last : {false, true}) {
        std::string e;
        const std::uint64_t at = last ? sectors - 1 : 0;
        if (auto sb = decode_superblock(sector(at), e)) good.push_back({*sb, last});
        else problems.push_back(std::string(last ? "last" : "first") + " superblock (sector " + std::to_string(at) + "): " + e);
    }
    // The newer counter first; the older one is the fallback.
    std::sort(good.begin(), good.end(), [](const Candidate& a, const Candidate& b) { return a.sb.counter > b.sb.counter; });
    for (const auto& c : good) {
        const std::string which = std::string(c.last ? "last" : "first") + " superblock (counter " + std::to_string(c.sb.counter) + ")";
        const std::size_t per = sector_size - 8;
        if (c.sb.data_length > (sectors - 2) * per) {
            problems.push_back(which + ": data length " + std::to_string(c.sb.data_length) + " exceeds the device");
            continue;
        }
        Bytes data;
        data.reserve(c.sb.data_length);
        std::set<std::uint64_t> seen;
        std::uint64_t at = c.sb.first_sector;
        std::string broken;
        while (data.size() < c.sb.data_length) {
            if (at == 0 || at >= sectors - 1) {
                broken = "chain reaches sector " + std::to_string(at) + " (outside the data area) after " + std::to_string(data.size()) +
                         " of " + std::to_string(c.sb.data_length) + " bytes";
                break;
            }
            if (!seen.insert(at).second) {
                broken = "chain loops back to sector " + std::to_string(at);
                break;
            }
            const auto s = sector(at);
            const std::size_t take = std::min<std::uint64_t>(per, c.sb.data_length - data.size());
            data.insert(data.end(), s.begin() + 8, s.begin() + 8 + static_cast<std::ptrdiff_t>(take));
            const std::uint64_t next = get64(s.data());
            if (data.size() == c.sb.data_length) {
                if (next != 0) broken = "chain does not end (sector " + std::to_string(at) + " points on to " + std::to_string(next) + ")";
                break;
            }
            at = next;
        }
        if (!broken.empty()) {
            problems.push_back(which + ": " + broken);
            continue;
        }
        const auto h = common::sha256(data);
        if (!std::equal(h.begin(), h.end(), c.sb.data_hash.begin())) {
            problems.push_back(which + ": data checksum mismatch");
            continue;
        }
        std::string e;
        auto snis = data.empty() && c.sb.data_length == 0 ? std::optional<std::vector<Sni>>(std::vector<Sni>{}) : decode_snis(data, e);
        if (!snis) {
            problems.push_back(which + ": data is not a DER SEQUENCE OF Sni: " + e);
            continue;
        }
        return DiskContents{std::move(*snis), c.sb, c.last, std::move(problems)};
    }
    if (good.empty()) problems.push_back("both superblocks are damaged: this is NOT an empty configuration");
    return problems;
}

Bytes write_disk(const std::vector<Sni>& snis, std::size_t sector_size, std::uint64_t sectors, std::uint64_t counter,
                 std::uint64_t timestamp) {
    if (sector_size != 512 && sector_size != 4096) throw std::invalid_argument("sector size must be 512 or 4096");
    const Bytes data = encode_snis(snis);
    const std::size_t per = sector_size - 8;
    const std::uint64_t need = (data.size() + per - 1) / per;
    if (sectors < 3 || need > sectors - 2)
        throw std::length_error(std::to_string(data.size()) + " bytes of routes need " + std::to_string(need + 2) +
                                " sectors; the image has " + std::to_string(sectors));
    Bytes image(sectors * sector_size, 0);
    for (std::uint64_t i = 0; i < need; ++i) {
        auto* s = image.data() + (1 + i) * sector_size;
        put64(s, i + 1 < need ? i + 2 : 0);
        const std::size_t off = i * per;
        std::copy_n(data.begin() + static_cast<std::ptrdiff_t>(off), std::min(per, data.size() - off), s + 8);
    }
    Superblock sb;
    sb.counter = counter;
    sb.timestamp = timestamp;
    sb.first_sector = need ? 1 : 0;
    sb.data_length = data.size();
    sb.data_hash = common::sha256(data);
    const auto enc = encode_superblock(sb, sector_size);
    std::copy(enc.begin(), enc.end(), image.begin());
    std::copy(enc.begin(), enc.end(), image.end() - static_cast<std::ptrdiff_t>(sector_size));
    return image;
}

}  // namespace fleetconf::blockcfg::tlstunnel
