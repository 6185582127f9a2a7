// Untrusted tlstunnel bytes: a proxy's reply frames and DER, and disk images. Decoding returns a value or
// an error; whatever decodes must encode back to the same DER (the codec is strict DER, so canonical).
#include "fleetconf/blockcfg/tlstunnel.hpp"

#include <cstdint>

using namespace fleetconf::blockcfg::tlstunnel;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::span<const std::uint8_t> in(data, size);
    std::string err;
    if (auto c = decode(in, err)) {
        if (encode(*c) != Bytes(in.begin(), in.end())) __builtin_trap();
        (void)describe(*c);
    } else if (err.empty()) {
        __builtin_trap();
    }
    if (auto v = decode_snis(in, err)) {
        if (encode_snis(*v) != Bytes(in.begin(), in.end())) __builtin_trap();
    }
    (void)parse_reply(in, err);
    // As a disk image of 512-byte sectors (the input padded to at least three).
    if (size > 0 && size <= 64 * 512) {
        Bytes image(std::max<std::size_t>(3, (size + 511) / 512) * 512, 0);
        std::copy(in.begin(), in.end(), image.begin());
        auto r = read_disk(image, 512);
        if (auto* d = std::get_if<DiskContents>(&r)) {
            // What reads back writes back: the same routes from a fresh image.
            if (encode_snis(d->snis).size() < 20 * 504) {
                auto again = read_disk(write_disk(d->snis, 512, 24, 1, 0), 512);
                if (!std::holds_alternative<DiskContents>(again) || std::get<DiskContents>(again).snis != d->snis) __builtin_trap();
            }
        } else if (std::get<std::vector<std::string>>(r).empty()) {
            __builtin_trap();
        }
    }
    return 0;
}
