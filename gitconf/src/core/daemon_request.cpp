#include "fleetconf/gitconf/daemon_request.hpp"

namespace fleetconf::gitconf {

std::optional<DaemonRequest> parse_daemon_request(std::string_view request) {
    if (request.empty() || request.size() > kMaxDaemonRequest) return std::nullopt;
    DaemonRequest r;
    r.host = "-";
    const auto nul = request.find('\0');
    const std::string_view command_path = request.substr(0, nul);
    if (nul != std::string_view::npos) {
        std::size_t pos = nul + 1;
        while (pos < request.size()) {
            auto end = request.find('\0', pos);
            if (end == std::string_view::npos) end = request.size();
            const std::string_view param = request.substr(pos, end - pos);
            if (param.substr(0, 5) == "host=") r.host = std::string(param.substr(5, 255));
            if (param == "version=2") r.v2 = true;
            pos = end + 1;
        }
    }
    const auto sp = command_path.find(' ');
    r.command = std::string(command_path.substr(0, sp));
    if (sp != std::string_view::npos) r.path = std::string(command_path.substr(sp + 1));
    return r;
}

}  // namespace fleetconf::gitconf
