#include "fleetconf/common/http.hpp"

#include "fleetconf/common/crypto.hpp"

#include <cctype>

namespace fleetconf::common {

std::optional<BasicCredentials> parse_basic_auth(std::string_view header) {
    while (!header.empty() && header.front() == ' ') header.remove_prefix(1);
    if (header.size() < 6) return std::nullopt;
    std::string scheme(header.substr(0, 6));
    for (auto& c : scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (scheme != "basic ") return std::nullopt;
    header.remove_prefix(6);
    while (!header.empty() && header.front() == ' ') header.remove_prefix(1);
    while (!header.empty() && header.back() == ' ') header.remove_suffix(1);
    if (header.size() > 1024) return std::nullopt;
    auto raw = base64_decode(header);
    if (!raw) return std::nullopt;
    const std::string text(raw->begin(), raw->end());
    const auto colon = text.find(':');
    if (colon == std::string::npos) return std::nullopt;
    return BasicCredentials{text.substr(0, colon), text.substr(colon + 1)};
}

const char* http_reason(int status) {
    switch (status) {
        case 200: return "OK";
        case 204: return "No Content";
        case 400: return "Bad Request";
        case 401: return "Unauthorized";
        case 403: return "Forbidden";
        case 404: return "Not Found";
        case 405: return "Method Not Allowed";
        case 408: return "Request Timeout";
        case 411: return "Length Required";
        case 413: return "Content Too Large";
        case 415: return "Unsupported Media Type";
        case 500: return "Internal Server Error";
        case 503: return "Service Unavailable";
    }
    return "Error";
}

}  // namespace fleetconf::common
