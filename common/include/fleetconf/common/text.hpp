// Text that came from the network, made safe for every output (docs/text-escaping.md).
//
// Host names, vendor classes, FQDN labels, user names and paths arrive as arbitrary bytes. Before such a
// value reaches JSON, a log line, a Prometheus label or a terminal it goes through `printable`: printable
// UTF-8 passes unchanged; every control character (U+0000-U+001F, U+007F-U+009F), every byte that is not
// part of a well-formed UTF-8 sequence, and the backslash itself are written as `\xHH` (the backslash as
// `\\`). The result is valid UTF-8 without control characters, and `unescape_printable` gives the bytes
// back exactly.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace fleetconf::common {

// Escapes `bytes` as described above. Idempotent only on text that needs no escaping.
[[nodiscard]] std::string printable(std::string_view bytes);

// True when `printable(bytes) == bytes` (no byte would be escaped).
[[nodiscard]] bool is_printable(std::string_view bytes);

// The bytes back from `printable`'s output; nullopt on a malformed escape.
[[nodiscard]] std::optional<std::string> unescape_printable(std::string_view text);

// For log lines: control characters and bytes outside well-formed UTF-8 as `\xHH`; the backslash is
// left alone (a log line must not be split or forged; it need not be reversible).
[[nodiscard]] std::string log_safe(std::string_view text);

}  // namespace fleetconf::common
