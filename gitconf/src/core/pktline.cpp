#include "fleetconf/gitconf/pktline.hpp"

#include <stdexcept>

namespace fleetconf::gitconf::pkt {
namespace {

class Category final : public std::error_category {
public:
    const char* name() const noexcept override { return "pkt-line"; }
    std::string message(int c) const override {
        switch (static_cast<errc>(c)) {
            case errc::need_more: return "incomplete pkt-line";
            case errc::bad_length: return "pkt-line length is not four hex digits";
            case errc::reserved_length: return "pkt-line length 0003 is reserved";
            case errc::too_long: return "pkt-line longer than 65520 bytes";
        }
        return "unknown pkt-line error";
    }
};

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

constexpr char kHex[] = "0123456789abcdef";

void put_length(std::string& out, std::size_t n) {
    out.push_back(kHex[(n >> 12) & 0xf]);
    out.push_back(kHex[(n >> 8) & 0xf]);
    out.push_back(kHex[(n >> 4) & 0xf]);
    out.push_back(kHex[n & 0xf]);
}

}  // namespace

const std::error_category& category() {
    static const Category c;
    return c;
}

std::error_code parse(std::string_view in, Packet& out, std::size_t& consumed) {
    consumed = 0;
    if (in.size() < 4) {
        // Reject a bad prefix as early as it is visible, so garbage never waits for more bytes.
        for (char c : in)
            if (hex_value(c) < 0) return errc::bad_length;
        return errc::need_more;
    }
    std::size_t len = 0;
    for (int i = 0; i < 4; ++i) {
        const int v = hex_value(in[static_cast<std::size_t>(i)]);
        if (v < 0) return errc::bad_length;
        len = (len << 4) | static_cast<std::size_t>(v);
    }
    switch (len) {
        case 0:
            out = {Kind::flush, {}};
            consumed = 4;
            return {};
        case 1:
            out = {Kind::delim, {}};
            consumed = 4;
            return {};
        case 2:
            out = {Kind::response_end, {}};
            consumed = 4;
            return {};
        case 3: return errc::reserved_length;
        default: break;
    }
    if (len > kMaxPacket) return errc::too_long;
    if (in.size() < len) return errc::need_more;
    out = {Kind::data, in.substr(4, len - 4)};
    consumed = len;
    return {};
}

void write(std::string& out, std::string_view payload) {
    if (payload.size() > kMaxPayload) throw std::length_error("pkt-line payload over 65516 bytes");
    put_length(out, payload.size() + 4);
    out.append(payload);
}

void write_line(std::string& out, std::string_view text) {
    if (text.size() + 1 > kMaxPayload) throw std::length_error("pkt-line payload over 65516 bytes");
    put_length(out, text.size() + 5);
    out.append(text);
    out.push_back('\n');
}

void write_flush(std::string& out) { out.append("0000"); }
void write_delim(std::string& out) { out.append("0001"); }
void write_response_end(std::string& out) { out.append("0002"); }

void write_sideband(std::string& out, std::uint8_t band, std::string_view data, std::size_t max_packet) {
    if (max_packet < 6 || max_packet > kMaxPacket) throw std::invalid_argument("side-band packet size out of range");
    const std::size_t chunk = max_packet - 5;
    out.reserve(out.size() + data.size() + (data.size() / chunk + 1) * 5);
    while (!data.empty()) {
        const auto n = std::min(chunk, data.size());
        put_length(out, n + 5);
        out.push_back(static_cast<char>(band));
        out.append(data.substr(0, n));
        data.remove_prefix(n);
    }
}

}  // namespace fleetconf::gitconf::pkt
