// The git:// request (gitprotocol-pack "Git Transport"), without sockets: the payload of the first
// pkt-line a client sends to a git daemon,
//     COMMAND " " PATH "\0" [ "host=" HOST [ ":" PORT ] "\0" ] [ "\0" ( EXTRA "\0" )* ]
// e.g. "git-upload-pack /web.git\0host=10.0.0.1\0\0version=2\0". docs/gitconf.md, "git://".
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace fleetconf::gitconf {

struct DaemonRequest {
    std::string command;  // "git-upload-pack", "git-receive-pack", or whatever the client asked for
    std::string path;     // as sent, e.g. "/web.git" (empty when the line has no space)
    std::string host;     // the host= parameter (at most 255 bytes), "-" when absent
    bool v2 = false;      // an extra parameter "version=2"
};

inline constexpr std::size_t kMaxDaemonRequest = 65516;  // a pkt-line payload

// Splits the request line. Never fails on content: what the server allows is decided by the caller (only
// git-upload-pack of an exported repository is served); nullopt only for an empty or oversized payload.
std::optional<DaemonRequest> parse_daemon_request(std::string_view payload);

}  // namespace fleetconf::gitconf
