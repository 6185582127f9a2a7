#include "fleetconf/blockcfg/error.hpp"

#include <string>

namespace fleetconf::blockcfg {
namespace {

struct Entry {
    errc code;
    std::string_view name;
    const char* message;
};

constexpr Entry kEntries[] = {
    {errc::conflict, "CONFLICT", "generation conflict"},
    {errc::not_found, "NOT_FOUND", "not found"},
    {errc::exists, "EXISTS", "already exists"},
    {errc::invalid, "INVALID", "invalid value"},
    {errc::unauthorized, "UNAUTHORIZED", "authentication failed"},
    {errc::too_large, "TOO_LARGE", "over a size limit"},
    {errc::blank_device, "BLANK_DEVICE", "blank device (run format)"},
    {errc::damaged, "DAMAGED", "device damaged beyond recovery"},
    {errc::not_blank, "NOT_BLANK", "device is not blank"},
    {errc::io_error, "IO_ERROR", "device i/o error"},
    {errc::bad_request, "BAD_REQUEST", "bad request"},
    {errc::internal, "INTERNAL", "internal error"},
};

class Category final : public std::error_category {
public:
    const char* name() const noexcept override { return "blockcfg"; }
    std::string message(int ev) const override {
        for (const auto& e : kEntries)
            if (static_cast<int>(e.code) == ev) return e.message;
        return "unknown error";
    }
};

}  // namespace

const std::error_category& category() {
    static const Category c;
    return c;
}

std::string_view code_name(errc e) {
    for (const auto& x : kEntries)
        if (x.code == e) return x.name;
    return "INTERNAL";
}

errc code_from_name(std::string_view name) {
    for (const auto& x : kEntries)
        if (x.name == name) return x.code;
    return errc::internal;
}

}  // namespace fleetconf::blockcfg
