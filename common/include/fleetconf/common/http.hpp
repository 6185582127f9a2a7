// Small HTTP helpers shared by the services' HTTP endpoints (request parsing itself is nodejs
// http-parser's job).
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace fleetconf::common {

struct BasicCredentials {
    std::string user;
    std::string password;
};
// Parses an `Authorization: Basic ...` header value (RFC 7617); empty when absent or malformed.
std::optional<BasicCredentials> parse_basic_auth(std::string_view header);

// The reason phrase for the status codes the services send ("OK", "Not Found", ...; "Error" otherwise).
const char* http_reason(int status);

}  // namespace fleetconf::common
