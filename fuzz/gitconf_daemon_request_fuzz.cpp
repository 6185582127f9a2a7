// The git:// request line (the first pkt-line a git daemon reads): any bytes split into a command, a
// path, a host and the version flag, never reading past the payload; a request built from the parsed
// fields parses back to the same fields.
#include "fleetconf/gitconf/daemon_request.hpp"

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

using namespace fleetconf::gitconf;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view in(reinterpret_cast<const char*>(data), size);
    const auto r = parse_daemon_request(in);
    if (!r) {
        if (!in.empty() && in.size() <= kMaxDaemonRequest) std::abort();
        return 0;
    }
    if (r->host.size() > 255 && r->host != "-") std::abort();
    if (r->command.find('\0') != std::string::npos || r->command.find(' ') != std::string::npos) std::abort();
    if (r->command.empty() && r->path.empty()) return 0;
    // Rebuild: "COMMAND PATH\0host=HOST\0\0version=2\0" and parse again.
    if (r->path.find('\0') != std::string::npos || r->host.find('\0') != std::string::npos) std::abort();
    std::string again = r->command + (r->path.empty() && in.find(' ') == std::string_view::npos ? "" : " " + r->path);
    again.push_back('\0');
    if (r->host != "-") again += "host=" + r->host + std::string(1, '\0');
    if (r->v2) again += std::string(1, '\0') + "version=2" + std::string(1, '\0');
    const auto b = parse_daemon_request(again);
    if (!b || b->command != r->command || b->v2 != r->v2 || b->host != r->host) std::abort();
    return 0;
}
