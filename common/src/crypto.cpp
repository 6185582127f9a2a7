#include "fleetconf/common/crypto.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/rand.h>

#include <limits>
#include <stdexcept>

namespace fleetconf::common {
namespace {

// Fetched once: an implicit fetch on every call costs a provider lookup (OpenSSL 3 "fetching" docs).
const EVP_MD* md_sha256() {
    static EVP_MD* md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    return md;
}
const EVP_MD* md_md5() {
    static EVP_MD* md = EVP_MD_fetch(nullptr, "MD5", nullptr);
    return md;
}
EVP_MAC* mac_hmac() {
    static EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
    return mac;
}

template <std::size_t N>
std::array<std::uint8_t, N> digest(const EVP_MD* md, std::span<const std::uint8_t> data) {
    std::array<std::uint8_t, N> out{};
    unsigned len = 0;
    if (EVP_Digest(data.data(), data.size(), out.data(), &len, md, nullptr) != 1 || len != N) throw std::runtime_error("digest failed");
    return out;
}

}  // namespace

Sha256Digest sha256(std::span<const std::uint8_t> data) { return digest<32>(md_sha256(), data); }
Md5Digest md5(std::span<const std::uint8_t> data) { return digest<16>(md_md5(), data); }

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
    if (ctx_ == nullptr || EVP_DigestInit_ex(static_cast<EVP_MD_CTX*>(ctx_), md_sha256(), nullptr) != 1)
        throw std::runtime_error("sha256 init failed");
}
Sha256::~Sha256() { EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(ctx_)); }
Sha256& Sha256::update(std::span<const std::uint8_t> data) {
    EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(ctx_), data.data(), data.size());
    return *this;
}
Sha256Digest Sha256::finish() {
    Sha256Digest out{};
    unsigned len = 0;
    EVP_DigestFinal_ex(static_cast<EVP_MD_CTX*>(ctx_), out.data(), &len);
    return out;
}

Sha256Digest hmac_sha256(std::span<const std::uint8_t> key, std::initializer_list<std::span<const std::uint8_t>> parts) {
    if (key.size() > static_cast<std::size_t>(std::numeric_limits<int>::max())) throw std::invalid_argument("hmac key too long");
    EVP_MAC* mac = mac_hmac();
    if (mac == nullptr) throw std::runtime_error("HMAC unavailable");
    EVP_MAC_CTX* mctx = EVP_MAC_CTX_new(mac);
    if (mctx == nullptr) throw std::runtime_error("HMAC context allocation failed");
    char digest_name[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", digest_name, 0), OSSL_PARAM_construct_end()};
    static const std::uint8_t empty = 0;
    bool ok = EVP_MAC_init(mctx, key.empty() ? &empty : key.data(), key.size(), params) == 1;
    for (auto p : parts)
        if (ok && !p.empty()) ok = EVP_MAC_update(mctx, p.data(), p.size()) == 1;
    Sha256Digest out{};
    std::size_t len = 0;
    if (ok) ok = EVP_MAC_final(mctx, out.data(), &len, out.size()) == 1 && len == out.size();
    EVP_MAC_CTX_free(mctx);
    if (!ok) throw std::runtime_error("HMAC-SHA256 failed");
    return out;
}

void random_bytes(std::span<std::uint8_t> out) {
    if (out.size() > static_cast<std::size_t>(std::numeric_limits<int>::max()) || RAND_bytes(out.data(), static_cast<int>(out.size())) != 1)
        throw std::runtime_error("CSPRNG failure");
}

Bytes random_bytes(std::size_t n) {
    Bytes b(n);
    random_bytes(b);
    return b;
}

bool constant_time_equal(std::span<const std::uint8_t> a, std::span<const std::uint8_t> b) {
    if (a.size() != b.size()) return false;
    if (a.empty()) return true;
    return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string to_hex(std::span<const std::uint8_t> data) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string s;
    s.reserve(data.size() * 2);
    for (auto b : data) {
        s.push_back(digits[b >> 4]);
        s.push_back(digits[b & 0xF]);
    }
    return s;
}

std::optional<Bytes> from_hex(std::string_view hex) {
    if (hex.size() % 2 != 0) return std::nullopt;
    auto val = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    };
    Bytes out(hex.size() / 2);
    for (std::size_t i = 0; i < out.size(); ++i) {
        int hi = val(hex[2 * i]), lo = val(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) return std::nullopt;
        out[i] = static_cast<std::uint8_t>(hi << 4 | lo);
    }
    return out;
}

std::string base64_encode(std::span<const std::uint8_t> data, bool padded) {
    if (data.size() > static_cast<std::size_t>(std::numeric_limits<int>::max() / 4 * 3 - 3))
        throw std::invalid_argument("base64 input too long");
    std::string out(4 * ((data.size() + 2) / 3) + 1, '\0');
    int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), data.data(), static_cast<int>(data.size()));
    out.resize(static_cast<std::size_t>(n));
    if (!padded)
        while (!out.empty() && out.back() == '=') out.pop_back();
    return out;
}

std::optional<Bytes> base64_decode(std::string_view text) {
    // Validate strictly first: EVP_DecodeBlock skips whitespace and tolerates oddities we do not want.
    std::size_t pad = 0;
    while (!text.empty() && text.back() == '=' && pad < 2) {
        text.remove_suffix(1);
        ++pad;
    }
    auto is_b64 = [](char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/'; };
    for (char c : text)
        if (!is_b64(c)) return std::nullopt;
    const std::size_t rem = text.size() % 4;
    if (rem == 1) return std::nullopt;
    if (pad != 0 && (rem == 0 || pad != 4 - rem)) return std::nullopt;
    if (text.size() > static_cast<std::size_t>(std::numeric_limits<int>::max() / 2)) return std::nullopt;
    std::string full(text);
    if (rem != 0) full.append(4 - rem, '=');
    Bytes out(full.size() / 4 * 3);
    int n = EVP_DecodeBlock(out.data(), reinterpret_cast<const unsigned char*>(full.data()), static_cast<int>(full.size()));
    if (n < 0) return std::nullopt;
    const std::size_t drop = rem == 0 ? 0 : 4 - rem;  // EVP_DecodeBlock counts padding as zero bytes
    out.resize(static_cast<std::size_t>(n) - drop);
    // Canonical form only: the unused low bits of the last character must be zero.
    if (rem != 0) {
        auto idx = [](char c) -> int {
            if (c >= 'A' && c <= 'Z') return c - 'A';
            if (c >= 'a' && c <= 'z') return c - 'a' + 26;
            if (c >= '0' && c <= '9') return c - '0' + 52;
            return c == '+' ? 62 : 63;
        };
        const int last = idx(text.back());
        if ((rem == 2 && (last & 0x0F) != 0) || (rem == 3 && (last & 0x03) != 0)) return std::nullopt;
    }
    return out;
}

}  // namespace fleetconf::common
