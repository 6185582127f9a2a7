// The control socket's untrusted input: frames, request decoding, verification, and request bodies.
#include "fleetconf/blockcfg/model.hpp"
#include "fleetconf/blockcfg/protocol.hpp"

#include <cstdint>

using namespace fleetconf::blockcfg;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static const protocol::KeyRing keys{{{"admin", protocol::Bytes(32, 7)}}};
    protocol::FrameReader reader(4096);
    protocol::ServerSession session(keys, protocol::Nonce{});
    // Feed in two pieces to exercise partial frames.
    const std::size_t cut = size ? data[0] % (size + 1) : 0;
    if (reader.feed({data, cut})) return 0;
    if (reader.feed({data + cut, size - cut})) return 0;
    while (auto f = reader.next()) {
        protocol::Verified v;
        std::string why;
        (void)protocol::decode_request(*f);
        (void)protocol::decode_reply(*f);
        (void)protocol::decode_hello(*f);  // what a client reads first: HELLO or BUSY
        if (auto b = protocol::decode_busy(*f); b && b->message.size() > 200) __builtin_trap();
        (void)session.on_request(*f, v, why);
        auto j = nlohmann::json::parse(f->begin(), f->end(), nullptr, false);
        if (!j.is_discarded()) {
            auto r = parse_request(j);
            if (auto* req = std::get_if<Request>(&r))
                if (auto* c = std::get_if<ChangeRequest>(req)) {
                    Config cfg;
                    (void)apply_all(cfg, c->ops);
                    (void)to_payload(cfg);
                }
        }
    }
    return 0;
}
