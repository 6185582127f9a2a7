// The store reader on arbitrary device contents: open must recover or refuse, never crash; what it
// recovers must parse or be reported.
#include "fleetconf/blockcfg/model.hpp"
#include "fleetconf/blockcfg/store.hpp"

#include <algorithm>
#include <cstdint>

using namespace fleetconf::blockcfg;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    MemoryDevice dev(512, 32);
    std::copy_n(data, std::min(size, dev.bytes().size()), dev.bytes().begin());
    std::error_code ec;
    std::string msg;
    std::vector<std::string> warnings;
    if (auto s = Store::open(dev, ec, msg, &warnings)) {
        (void)from_payload(s->payload());
        (void)change_of(s->payload());  // the "change" record block history shows
        (void)s->history();
        (void)s->commit("{}", 0);
    } else if (msg.empty()) {
        __builtin_trap();  // a refusal must say why
    }
    // Header decoders on the first sector directly.
    if (size >= 512) {
        (void)layout::decode_header({data, 512});
        (void)layout::decode_slot_header({data, 512});
    }
    return 0;
}
