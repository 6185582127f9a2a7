#include "fleetconf/blockcfg/protocol.hpp"

#include "fleetconf/common/crypto.hpp"

#include <algorithm>
#include <cstring>

namespace fleetconf::blockcfg::protocol {

namespace cm = fleetconf::common;

namespace {

constexpr std::uint8_t kDirRequest = 1;
constexpr std::uint8_t kDirReply = 2;

void put32(Bytes& b, std::uint32_t v) {
    for (int i = 3; i >= 0; --i) b.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}
void put64(Bytes& b, std::uint64_t v) {
    for (int i = 7; i >= 0; --i) b.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}
std::uint64_t get64(const std::uint8_t* p) {
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v = v << 8 | p[i];
    return v;
}

// The authenticated data, laid out exactly as docs/blockcfg-protocol.md specifies.
Tag compute_tag(const Key& key, std::uint8_t dir, const Nonce& nonce, std::string_view key_id, std::uint64_t seq, const Tag* request,
                std::string_view body) {
    Bytes head;
    head.reserve(kLabel.size() + 1 + 2 + 32 + 1 + key_id.size() + 8 + 32 + 4);
    head.insert(head.end(), kLabel.begin(), kLabel.end());
    head.push_back(0);
    head.push_back(kVersion);
    head.push_back(dir);
    head.insert(head.end(), nonce.begin(), nonce.end());
    head.push_back(static_cast<std::uint8_t>(key_id.size()));
    head.insert(head.end(), key_id.begin(), key_id.end());
    put64(head, seq);
    if (request) head.insert(head.end(), request->begin(), request->end());
    put32(head, static_cast<std::uint32_t>(body.size()));
    return cm::hmac_sha256(key.secret, {head, cm::as_bytes(body)});
}

}  // namespace

const Key* KeyRing::find(std::string_view id) const {
    for (const auto& k : keys)
        if (k.id == id) return &k;
    return nullptr;
}

bool valid_key_id(std::string_view id) {
    if (id.empty() || id.size() > kMaxKeyIdBytes) return false;
    return std::all_of(id.begin(), id.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    });
}

std::optional<KeyRing> parse_key_file(std::string_view text, std::string& error) {
    KeyRing ring;
    std::size_t line_no = 0;
    while (!text.empty()) {
        ++line_no;
        auto nl = text.find('\n');
        std::string_view line = text.substr(0, nl);
        text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
        if (auto hash = line.find('#'); hash != std::string_view::npos) line = line.substr(0, hash);
        while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) line.remove_suffix(1);
        while (!line.empty() && std::isspace(static_cast<unsigned char>(line.front()))) line.remove_prefix(1);
        if (line.empty()) continue;
        auto sp = line.find_first_of(" \t");
        const std::string where = "line " + std::to_string(line_no) + ": ";
        if (sp == std::string_view::npos) {
            error = where + "expected \"KEY-ID BASE64-SECRET\"";
            return std::nullopt;
        }
        auto id = line.substr(0, sp);
        auto secret = line.substr(sp + 1);
        while (!secret.empty() && std::isspace(static_cast<unsigned char>(secret.front()))) secret.remove_prefix(1);
        if (!valid_key_id(id)) {
            error = where + "key id must be 1-32 characters of A-Z a-z 0-9 . _ -";
            return std::nullopt;
        }
        auto bytes = cm::base64_decode(secret);
        if (!bytes) {
            error = where + "secret is not valid base64";
            return std::nullopt;
        }
        if (bytes->size() < kMinKeyBytes) {
            error = where + "secret is " + std::to_string(bytes->size()) + " bytes; at least 32 are required";
            return std::nullopt;
        }
        if (ring.find(id)) {
            error = where + "key id " + std::string(id) + " is defined twice";
            return std::nullopt;
        }
        ring.keys.push_back({std::string(id), std::move(*bytes)});
    }
    if (ring.keys.empty()) {
        error = "no keys";
        return std::nullopt;
    }
    return ring;
}

std::string format_key_line(const Key& k) { return k.id + " " + cm::base64_encode(k.secret) + "\n"; }

Bytes frame(std::span<const std::uint8_t> body) {
    Bytes out;
    out.reserve(4 + body.size());
    put32(out, static_cast<std::uint32_t>(body.size()));
    out.insert(out.end(), body.begin(), body.end());
    return out;
}

std::error_code FrameReader::feed(std::span<const std::uint8_t> data) {
    if (consumed_ > 0 && consumed_ == buf_.size()) {
        buf_.clear();
        consumed_ = 0;
    }
    buf_.insert(buf_.end(), data.begin(), data.end());
    // Check every complete length prefix now, before buffering a body we would refuse anyway.
    std::size_t pos = consumed_;
    while (buf_.size() - pos >= 4) {
        const std::uint32_t len =
            std::uint32_t{buf_[pos]} << 24 | std::uint32_t{buf_[pos + 1]} << 16 | std::uint32_t{buf_[pos + 2]} << 8 | buf_[pos + 3];
        if (len > max_) return errc::too_large;
        if (buf_.size() - pos - 4 < len) break;
        pos += 4 + len;
    }
    return {};
}

std::optional<Bytes> FrameReader::next() {
    if (buf_.size() - consumed_ < 4) return std::nullopt;
    const std::uint8_t* p = buf_.data() + consumed_;
    const std::uint32_t len = std::uint32_t{p[0]} << 24 | std::uint32_t{p[1]} << 16 | std::uint32_t{p[2]} << 8 | p[3];
    if (len > max_ || buf_.size() - consumed_ - 4 < len) return std::nullopt;
    Bytes body(p + 4, p + 4 + len);
    consumed_ += 4 + len;
    if (consumed_ == buf_.size()) {
        buf_.clear();
        consumed_ = 0;
    }
    return body;
}

Bytes encode_hello(const Nonce& nonce) {
    Bytes b(kHelloMagic.begin(), kHelloMagic.end());
    b.push_back(kVersion);
    b.insert(b.end(), nonce.begin(), nonce.end());
    return b;
}

Bytes encode_busy(const Busy& b) {
    Bytes out(kBusyMagic.begin(), kBusyMagic.end());
    out.push_back(kVersion);
    out.push_back(static_cast<std::uint8_t>(b.reason));
    const auto text = b.message.substr(0, 200);
    out.insert(out.end(), text.begin(), text.end());
    return out;
}

std::optional<Busy> decode_busy(std::span<const std::uint8_t> body) {
    if (body.size() < 6 || body.size() > 206 || !std::equal(kBusyMagic.begin(), kBusyMagic.end(), body.begin()) || body[4] != kVersion)
        return std::nullopt;
    if (body[5] != 1 && body[5] != 2) return std::nullopt;
    Busy b;
    b.reason = static_cast<BusyReason>(body[5]);
    b.message.assign(body.begin() + 6, body.end());
    return b;
}

std::optional<Nonce> decode_hello(std::span<const std::uint8_t> body) {
    if (body.size() != 37 || !std::equal(kHelloMagic.begin(), kHelloMagic.end(), body.begin()) || body[4] != kVersion) return std::nullopt;
    Nonce n;
    std::copy_n(body.begin() + 5, 32, n.begin());
    return n;
}

Tag request_tag(const Key& key, const Nonce& nonce, std::uint64_t seq, std::string_view body) {
    return compute_tag(key, kDirRequest, nonce, key.id, seq, nullptr, body);
}

Tag reply_tag(const Key& key, const Nonce& nonce, std::uint64_t seq, const Tag& request, std::string_view body) {
    return compute_tag(key, kDirReply, nonce, key.id, seq, &request, body);
}

Bytes encode_request(const Key& key, const Nonce& nonce, std::uint64_t seq, std::string_view body) {
    Bytes b;
    b.reserve(2 + key.id.size() + 8 + 32 + body.size());
    b.push_back(kTypeRequest);
    b.push_back(static_cast<std::uint8_t>(key.id.size()));
    b.insert(b.end(), key.id.begin(), key.id.end());
    put64(b, seq);
    const auto tag = request_tag(key, nonce, seq, body);
    b.insert(b.end(), tag.begin(), tag.end());
    b.insert(b.end(), body.begin(), body.end());
    return b;
}

std::optional<RequestFrame> decode_request(std::span<const std::uint8_t> b) {
    if (b.size() < 2 || b[0] != kTypeRequest) return std::nullopt;
    const std::size_t idlen = b[1];
    if (idlen == 0 || idlen > kMaxKeyIdBytes || b.size() < 2 + idlen + 8 + 32) return std::nullopt;
    RequestFrame r;
    r.key_id.assign(reinterpret_cast<const char*>(b.data() + 2), idlen);
    r.seq = get64(b.data() + 2 + idlen);
    std::copy_n(b.begin() + static_cast<std::ptrdiff_t>(2 + idlen + 8), 32, r.tag.begin());
    r.body.assign(reinterpret_cast<const char*>(b.data() + 2 + idlen + 40), b.size() - (2 + idlen + 40));
    return r;
}

Bytes encode_reply(const Key& key, const Nonce& nonce, std::uint64_t seq, const Tag& request, std::string_view body) {
    Bytes b;
    b.reserve(1 + 8 + 32 + body.size());
    b.push_back(kTypeReply);
    put64(b, seq);
    const auto tag = reply_tag(key, nonce, seq, request, body);
    b.insert(b.end(), tag.begin(), tag.end());
    b.insert(b.end(), body.begin(), body.end());
    return b;
}

std::optional<ReplyFrame> decode_reply(std::span<const std::uint8_t> b) {
    if (b.size() < 41 || b[0] != kTypeReply) return std::nullopt;
    ReplyFrame r;
    r.seq = get64(b.data() + 1);
    std::copy_n(b.begin() + 9, 32, r.tag.begin());
    r.body.assign(reinterpret_cast<const char*>(b.data() + 41), b.size() - 41);
    return r;
}

std::error_code ServerSession::on_request(std::span<const std::uint8_t> frame_body, Verified& out, std::string& why) {
    auto r = decode_request(frame_body);
    if (!r) {
        why = "malformed request frame";
        return errc::bad_request;
    }
    const Key* key = keys_.find(r->key_id);
    if (!key) {
        why = "unknown key id \"" + (valid_key_id(r->key_id) ? r->key_id : std::string("?")) + "\"";
        return errc::unauthorized;
    }
    if (key_ && key != key_) {
        why = "key changed within a connection";
        return errc::unauthorized;
    }
    // The tag is checked before the sequence number so that nothing about the sequence leaks to a
    // sender without the key.
    const auto expect = request_tag(*key, nonce_, r->seq, r->body);
    if (!cm::constant_time_equal(expect, r->tag)) {
        why = "bad tag for key \"" + key->id + "\"";
        return errc::unauthorized;
    }
    if (r->seq != last_seq_ + 1) {
        why = "sequence " + std::to_string(r->seq) + " where " + std::to_string(last_seq_ + 1) + " was expected (replay or reorder)";
        return errc::unauthorized;
    }
    last_seq_ = r->seq;
    key_ = key;
    last_tag_ = r->tag;
    out.key = key;
    out.seq = r->seq;
    out.body = std::move(r->body);
    return {};
}

Bytes ServerSession::reply(std::string_view body) const { return encode_reply(*key_, nonce_, last_seq_, last_tag_, body); }

std::error_code ClientSession::on_hello(std::span<const std::uint8_t> frame_body) {
    auto n = decode_hello(frame_body);
    if (!n) return errc::bad_request;
    nonce_ = *n;
    return {};
}

Bytes ClientSession::request(std::string_view body) {
    ++seq_;
    last_tag_ = request_tag(key_, *nonce_, seq_, body);
    waiting_ = true;
    return encode_request(key_, *nonce_, seq_, body);
}

std::error_code ClientSession::on_reply(std::span<const std::uint8_t> frame_body, std::string& body) {
    auto r = decode_reply(frame_body);
    if (!r || !waiting_) return errc::bad_request;
    if (r->seq != seq_) return errc::unauthorized;
    const auto expect = reply_tag(key_, *nonce_, seq_, last_tag_, r->body);
    if (!cm::constant_time_equal(expect, r->tag)) return errc::unauthorized;
    waiting_ = false;
    body = std::move(r->body);
    return {};
}

}  // namespace fleetconf::blockcfg::protocol
