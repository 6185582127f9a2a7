// blockcfg's error codes: stable names on the wire (CONFLICT, NOT_FOUND, ...), short messages locally.
#pragma once

#include <string_view>
#include <system_error>

namespace fleetconf::blockcfg {

enum class errc {
    conflict = 1,  // expected generation does not match
    not_found,     // route (or generation) absent
    exists,        // route already present
    invalid,       // request or value fails validation
    unauthorized,  // authentication failed
    too_large,     // frame, payload or configuration over a limit
    blank_device,  // all-zero device: needs `format`
    damaged,       // no valid generation could be recovered
    not_blank,     // format refused: the device holds data
    io_error,      // the device failed
    bad_request,   // unknown operation, malformed JSON
    internal,
};

const std::error_category& category();
inline std::error_code make_error_code(errc e) { return {static_cast<int>(e), category()}; }
// The stable wire name: "CONFLICT", "NOT_FOUND", ...
std::string_view code_name(errc e);
// Parses a wire name back; errc::internal for unknown names.
errc code_from_name(std::string_view name);

}  // namespace fleetconf::blockcfg

template <>
struct std::is_error_code_enum<fleetconf::blockcfg::errc> : std::true_type {};
