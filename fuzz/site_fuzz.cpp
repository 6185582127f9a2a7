// The site-file loader must turn any input into a Site or a SiteLoadError, never crash or hang.
#include "fleetconf/common/site.hpp"

#include <cstdint>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view text(reinterpret_cast<const char*>(data), size);
    try {
        auto site = fleetconf::common::parse_site(text, "/nonexistent-fuzz-base", "fuzz.json");
        for (const auto& u : site.unikernels) (void)site.effective_options(u);
    } catch (const fleetconf::common::SiteLoadError& e) {
        if (e.errors().empty()) __builtin_trap();  // an error must say what is wrong
    }
    return 0;
}
