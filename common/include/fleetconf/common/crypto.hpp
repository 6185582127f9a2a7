// Thin wrappers over OpenSSL's EVP interfaces. Nothing here implements a primitive itself.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace fleetconf::common {

using Bytes = std::vector<std::uint8_t>;
using Sha256Digest = std::array<std::uint8_t, 32>;
using Md5Digest = std::array<std::uint8_t, 16>;

inline std::span<const std::uint8_t> as_bytes(std::string_view s) { return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()}; }

Sha256Digest sha256(std::span<const std::uint8_t> data);
inline Sha256Digest sha256(std::string_view s) { return sha256(as_bytes(s)); }
Md5Digest md5(std::span<const std::uint8_t> data);
inline Md5Digest md5(std::string_view s) { return md5(as_bytes(s)); }

// Incremental SHA-256 for data that arrives in pieces.
class Sha256 {
public:
    Sha256();
    ~Sha256();
    Sha256(const Sha256&) = delete;
    Sha256& operator=(const Sha256&) = delete;
    Sha256& update(std::span<const std::uint8_t> data);
    Sha256& update(std::string_view s) { return update(as_bytes(s)); }
    Sha256Digest finish();

private:
    void* ctx_;
};

// HMAC-SHA256 over the concatenation of `parts` (avoids copying the message together).
Sha256Digest hmac_sha256(std::span<const std::uint8_t> key, std::initializer_list<std::span<const std::uint8_t>> parts);
inline Sha256Digest hmac_sha256(std::span<const std::uint8_t> key, std::span<const std::uint8_t> data) { return hmac_sha256(key, {data}); }

// Bytes from OpenSSL's CSPRNG. Throws std::runtime_error if the generator fails.
void random_bytes(std::span<std::uint8_t> out);
Bytes random_bytes(std::size_t n);

// Constant-time equality (CRYPTO_memcmp). Different lengths compare unequal; the length is not secret.
bool constant_time_equal(std::span<const std::uint8_t> a, std::span<const std::uint8_t> b);

std::string to_hex(std::span<const std::uint8_t> data);
std::optional<Bytes> from_hex(std::string_view hex);  // either case, even length

// RFC 4648 section 4 alphabet. `padded=false` omits '=' (the "unpadded base64" MirageOS uses).
std::string base64_encode(std::span<const std::uint8_t> data, bool padded = true);
// Accepts padded or unpadded input; rejects other characters, bad padding and non-zero trailing bits.
std::optional<Bytes> base64_decode(std::string_view text);

}  // namespace fleetconf::common
