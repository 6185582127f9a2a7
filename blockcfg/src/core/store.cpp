#include "fleetconf/blockcfg/store.hpp"

#include "fleetconf/common/crypto.hpp"

#include <algorithm>
#include <cstring>
#include <system_error>

namespace fleetconf::blockcfg {

namespace cm = fleetconf::common;

namespace layout {
namespace {

void put16(std::uint8_t* p, std::uint16_t v) {
    p[0] = static_cast<std::uint8_t>(v >> 8);
    p[1] = static_cast<std::uint8_t>(v);
}
void put32(std::uint8_t* p, std::uint32_t v) {
    for (int i = 0; i < 4; ++i) p[i] = static_cast<std::uint8_t>(v >> (24 - 8 * i));
}
void put64(std::uint8_t* p, std::uint64_t v) {
    for (int i = 0; i < 8; ++i) p[i] = static_cast<std::uint8_t>(v >> (56 - 8 * i));
}
std::uint16_t get16(const std::uint8_t* p) { return static_cast<std::uint16_t>(p[0] << 8 | p[1]); }
std::uint32_t get32(const std::uint8_t* p) {
    return std::uint32_t{p[0]} << 24 | std::uint32_t{p[1]} << 16 | std::uint32_t{p[2]} << 8 | p[3];
}
std::uint64_t get64(const std::uint8_t* p) {
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v = v << 8 | p[i];
    return v;
}

// The last 32 bytes of a sector are the SHA-256 of everything before them.
void seal(std::vector<std::uint8_t>& s) {
    auto d = cm::sha256(std::span<const std::uint8_t>(s.data(), s.size() - 32));
    std::copy(d.begin(), d.end(), s.end() - 32);
}
bool sealed(std::span<const std::uint8_t> s) {
    auto d = cm::sha256(s.first(s.size() - 32));
    return cm::constant_time_equal(d, s.last(32));
}
bool zero(std::span<const std::uint8_t> s) {
    return std::all_of(s.begin(), s.end(), [](std::uint8_t b) { return b == 0; });
}
void set(std::string* why, const char* msg) {
    if (why) *why = msg;
}

}  // namespace

std::vector<std::uint8_t> encode_header(const Header& h) {
    std::vector<std::uint8_t> s(h.geometry.sector_size, 0);
    std::memcpy(s.data(), kHeaderMagic, 8);
    put16(&s[8], kVersion);
    put16(&s[10], h.copy);
    put32(&s[12], h.geometry.sector_size);
    put64(&s[16], h.geometry.sectors);
    std::copy(h.uuid.begin(), h.uuid.end(), s.begin() + 24);
    put32(&s[40], h.geometry.slots);
    put32(&s[44], h.geometry.slot_sectors);
    put64(&s[48], h.gen.generation);
    put64(&s[56], h.gen.timestamp_ns);
    put32(&s[64], h.gen.slot);
    put64(&s[72], h.gen.length);
    std::copy(h.payload_sha256.begin(), h.payload_sha256.end(), s.begin() + 80);
    seal(s);
    return s;
}

std::optional<Header> decode_header(std::span<const std::uint8_t> s, std::string* why) {
    if (s.size() != 512 && s.size() != 4096) return set(why, "bad sector size"), std::nullopt;
    if (zero(s)) return set(why, "all zero"), std::nullopt;
    if (std::memcmp(s.data(), kHeaderMagic, 8) != 0) return set(why, "no fleetconf magic"), std::nullopt;
    if (!sealed(s)) return set(why, "header checksum mismatch"), std::nullopt;
    if (get16(&s[8]) != kVersion) return set(why, "unsupported format version"), std::nullopt;
    Header h;
    h.copy = get16(&s[10]);
    h.geometry.sector_size = get32(&s[12]);
    h.geometry.sectors = get64(&s[16]);
    std::copy_n(s.begin() + 24, 16, h.uuid.begin());
    h.geometry.slots = get32(&s[40]);
    h.geometry.slot_sectors = get32(&s[44]);
    h.gen.generation = get64(&s[48]);
    h.gen.timestamp_ns = get64(&s[56]);
    h.gen.slot = get32(&s[64]);
    h.gen.length = get64(&s[72]);
    std::copy_n(s.begin() + 80, 32, h.payload_sha256.begin());
    const auto& g = h.geometry;
    if (g.sector_size != s.size() || h.copy > 1 || get32(&s[68]) != 0 || !zero(s.subspan(112, s.size() - 144)))
        return set(why, "inconsistent header fields"), std::nullopt;
    if (g.slots < 2 || g.slots > 1024 || g.slot_sectors < 2 || std::uint64_t{g.slots} * g.slot_sectors + 2 > g.sectors ||
        h.gen.slot >= g.slots || h.gen.generation == 0 || h.gen.length > g.max_payload())
        return set(why, "inconsistent geometry"), std::nullopt;
    return h;
}

std::vector<std::uint8_t> encode_slot_header(const SlotHeader& h, std::uint32_t sector_size) {
    std::vector<std::uint8_t> s(sector_size, 0);
    std::memcpy(s.data(), kSlotMagic, 8);
    put16(&s[8], kVersion);
    std::copy(h.uuid.begin(), h.uuid.end(), s.begin() + 16);
    put64(&s[32], h.gen.generation);
    put64(&s[40], h.gen.timestamp_ns);
    put64(&s[48], h.gen.length);
    std::copy(h.payload_sha256.begin(), h.payload_sha256.end(), s.begin() + 56);
    seal(s);
    return s;
}

std::optional<SlotHeader> decode_slot_header(std::span<const std::uint8_t> s, std::string* why) {
    if (s.size() < 128) return set(why, "bad sector size"), std::nullopt;
    if (std::memcmp(s.data(), kSlotMagic, 8) != 0) return set(why, "no slot magic"), std::nullopt;
    if (!sealed(s)) return set(why, "slot header checksum mismatch"), std::nullopt;
    if (get16(&s[8]) != kVersion || !zero(s.subspan(10, 6)) || !zero(s.subspan(88, s.size() - 120)))
        return set(why, "inconsistent slot header"), std::nullopt;
    SlotHeader h;
    std::copy_n(s.begin() + 16, 16, h.uuid.begin());
    h.gen.generation = get64(&s[32]);
    h.gen.timestamp_ns = get64(&s[40]);
    h.gen.length = get64(&s[48]);
    std::copy_n(s.begin() + 56, 32, h.payload_sha256.begin());
    return h;
}

}  // namespace layout

namespace {

std::uint64_t slot_start(const Geometry& g, std::uint32_t slot) { return 1 + std::uint64_t{slot} * g.slot_sectors; }

std::error_code write_generation(Device& dev, const Geometry& g, const Uuid& uuid, const GenerationInfo& gen, std::string_view payload,
                                 CommitMode mode = CommitMode::ordered) {
    const auto digest = cm::sha256(payload);
    // 1. The payload and its slot header, in one write, then sync.
    const std::uint64_t payload_sectors = (payload.size() + g.sector_size - 1) / g.sector_size;
    std::vector<std::uint8_t> buf((1 + payload_sectors) * g.sector_size, 0);
    layout::SlotHeader sh{uuid, gen, digest};
    auto shb = layout::encode_slot_header(sh, g.sector_size);
    std::copy(shb.begin(), shb.end(), buf.begin());
    std::memcpy(buf.data() + g.sector_size, payload.data(), payload.size());
    try {
        dev.write(slot_start(g, gen.slot), buf);
        if (mode == CommitMode::ordered) dev.sync();
        // 2. Header copy 0, then a sync: the commit point. Copy 1 still holds the previous generation, so
        //    a torn copy 0 (or, in checksummed mode, a copy 0 whose slot did not make it) falls back to it.
        dev.write(0, layout::encode_header(layout::Header{0, g, uuid, gen, digest}));
        dev.sync();
        // 3. Header copy 1, without a sync of its own: it becomes durable with the next commit's first
        //    sync (or Store::flush). Until then copy 0 alone carries the new generation, which is enough.
    } catch (const std::system_error&) {
        return errc::io_error;
    } catch (const std::out_of_range&) {
        return errc::internal;
    }
    // Past the commit point: the change is durable whatever happens to this write, so a failure here
    // must not be reported as a failed commit (the next commit, or open's fallback, handles the stale copy).
    try {
        dev.write(g.sectors - 1, layout::encode_header(layout::Header{1, g, uuid, gen, digest}));
    } catch (const std::exception&) {}
    return {};
}

}  // namespace

std::error_code Store::format(Device& dev, const FormatOptions& opts, std::string_view initial_payload, std::string* message) {
    auto say = [&](std::string m) {
        if (message) *message = std::move(m);
    };
    Geometry g;
    g.sector_size = dev.sector_size();
    g.sectors = dev.sectors();
    if (g.sectors < 8) {
        say("device has " + std::to_string(g.sectors) + " sectors; at least 8 are needed");
        return errc::too_large;
    }
    const std::uint64_t data_sectors = g.sectors - 2;
    const std::uint64_t min_slot = std::max<std::uint64_t>(2, (opts.min_slot_bytes + g.sector_size - 1) / g.sector_size + 1);
    std::uint64_t slots = opts.slots ? opts.slots : std::clamp<std::uint64_t>(data_sectors / min_slot, 2, 16);
    if (slots < 2 || slots > 1024 || data_sectors / slots < 2) {
        say("device too small for " + std::to_string(slots) + " slots");
        return errc::too_large;
    }
    g.slots = static_cast<std::uint32_t>(slots);
    g.slot_sectors = static_cast<std::uint32_t>(std::min<std::uint64_t>(data_sectors / slots, 0xFFFFFFFFu));
    if (initial_payload.size() > g.max_payload()) {
        say("initial configuration is larger than a slot");
        return errc::too_large;
    }
    if (!opts.force) {
        std::vector<std::uint8_t> s(g.sector_size);
        for (std::uint64_t sec : {std::uint64_t{0}, g.sectors - 1}) {
            try {
                dev.read(sec, s);
            } catch (const std::system_error&) {
                return errc::io_error;
            }
            if (!layout::zero(s)) {
                say("device is not blank (sector " + std::to_string(sec) + " holds data); use --force to erase it");
                return errc::not_blank;
            }
        }
    }
    Uuid uuid{};
    if (opts.uuid) uuid = *opts.uuid;
    else cm::random_bytes(uuid);
    // Zero every slot header so that no stale generation from an earlier format is taken for history.
    try {
        std::vector<std::uint8_t> z(g.sector_size, 0);
        for (std::uint32_t i = 0; i < g.slots; ++i) dev.write(slot_start(g, i), z);
    } catch (const std::system_error&) {
        return errc::io_error;
    }
    GenerationInfo gen{1, 0, initial_payload.size(), 0};
    if (auto ec = write_generation(dev, g, uuid, gen, initial_payload)) return ec;
    try {
        dev.sync();  // a freshly formatted device has both copies durable
    } catch (const std::system_error&) {
        return errc::io_error;
    }
    return {};
}

std::optional<std::pair<GenerationInfo, std::string>> Store::read_slot(std::uint32_t slot) const {
    std::vector<std::uint8_t> s(geo_.sector_size);
    try {
        dev_->read(slot_start(geo_, slot), s);
        auto sh = layout::decode_slot_header(s);
        if (!sh || sh->uuid != uuid_ || sh->gen.length > geo_.max_payload() || sh->gen.generation == 0) return std::nullopt;
        const std::uint64_t n = (sh->gen.length + geo_.sector_size - 1) / geo_.sector_size;
        std::vector<std::uint8_t> data(n * geo_.sector_size);
        if (n) dev_->read(slot_start(geo_, slot) + 1, data);
        // Padding after the payload must be zero: anything else is damage.
        if (!layout::zero(std::span<const std::uint8_t>(data).subspan(sh->gen.length))) return std::nullopt;
        std::string payload(data.begin(), data.begin() + static_cast<std::ptrdiff_t>(sh->gen.length));
        if (!cm::constant_time_equal(cm::sha256(payload), sh->payload_sha256)) return std::nullopt;
        GenerationInfo g = sh->gen;
        g.slot = slot;
        return std::make_pair(g, std::move(payload));
    } catch (const std::exception&) {
        return std::nullopt;
    }
}

std::optional<Store> Store::open(Device& dev, std::error_code& ec, std::string& message, std::vector<std::string>* warnings) {
    auto warn = [&](std::string w) {
        if (warnings) warnings->push_back(std::move(w));
    };
    const std::uint32_t ss = dev.sector_size();
    const std::uint64_t n = dev.sectors();
    if (n < 8) {
        ec = errc::damaged;
        message = "device too small (" + std::to_string(n) + " sectors)";
        return std::nullopt;
    }
    std::optional<layout::Header> hdr[2];
    std::string why[2];
    bool all_zero_headers = true;
    for (int c = 0; c < 2; ++c) {
        std::vector<std::uint8_t> s(ss);
        try {
            dev.read(c == 0 ? 0 : n - 1, s);
        } catch (const std::system_error& e) {
            ec = errc::io_error;
            message = e.what();
            return std::nullopt;
        }
        all_zero_headers = all_zero_headers && layout::zero(s);
        hdr[c] = layout::decode_header(s, &why[c]);
        if (hdr[c] && (hdr[c]->geometry.sectors != n || hdr[c]->copy != c)) {
            why[c] = hdr[c]->copy != c ? "header copy index does not match its position" : "header describes a device of another size";
            hdr[c].reset();
        }
    }
    if (!hdr[0] && !hdr[1]) {
        if (all_zero_headers) {
            // Blank only if the whole device is zero; otherwise this is data we do not recognise.
            std::vector<std::uint8_t> buf(std::size_t{ss} * 256);
            bool blank = true;
            try {
                for (std::uint64_t s = 0; s < n && blank; s += 256) {
                    const std::uint64_t cnt = std::min<std::uint64_t>(256, n - s);
                    std::span<std::uint8_t> part(buf.data(), cnt * ss);
                    dev.read(s, part);
                    blank = layout::zero(part);
                }
            } catch (const std::system_error& e) {
                ec = errc::io_error;
                message = e.what();
                return std::nullopt;
            }
            if (blank) {
                ec = errc::blank_device;
                message = "device is blank (all zero); run `fleetconf block format` to initialise it";
                return std::nullopt;
            }
        }
        ec = errc::damaged;
        message = "no valid fleetconf header (first sector: " + why[0] + "; last sector: " + why[1] +
                  "); refusing to start with an empty configuration";
        return std::nullopt;
    }
    // Two valid copies that disagree on identity or layout: which one is right cannot be told, so neither
    // is used (docs/blockcfg-format.md, "Recovery").
    if (hdr[0] && hdr[1]) {
        const auto& a = *hdr[0];
        const auto& b = *hdr[1];
        std::string differ;
        if (a.uuid != b.uuid) differ = "UUID " + cm::to_hex(a.uuid) + " and " + cm::to_hex(b.uuid);
        else if (a.geometry.slots != b.geometry.slots)
            differ = std::to_string(a.geometry.slots) + " and " + std::to_string(b.geometry.slots) + " slots";
        else if (a.geometry.slot_sectors != b.geometry.slot_sectors)
            differ = "slots of " + std::to_string(a.geometry.slot_sectors) + " and " + std::to_string(b.geometry.slot_sectors) + " sectors";
        if (!differ.empty()) {
            ec = errc::damaged;
            message = "the two header copies describe different devices (" + differ + "); refusing to guess which is right";
            return std::nullopt;
        }
    }
    for (int c = 0; c < 2; ++c)
        if (!hdr[c])
            warn(std::string(c == 0 ? "first" : "last") + " header copy is damaged (" + why[c] +
                 "); the other copy is used and the next commit rewrites both");
    const layout::Header& any = hdr[0] ? *hdr[0] : *hdr[1];
    Store st(dev);
    st.geo_ = any.geometry;
    st.uuid_ = any.uuid;
    std::vector<layout::Header> cands;
    for (auto& h : hdr)
        if (h) cands.push_back(*h);
    std::sort(cands.begin(), cands.end(), [](const auto& a, const auto& b) { return a.gen.generation > b.gen.generation; });
    if (cands.size() == 2 && cands[0].gen.generation != cands[1].gen.generation)
        warn("header copies disagree (generation " + std::to_string(cands[0].gen.generation) + " and " +
             std::to_string(cands[1].gen.generation) + "): the device was not closed cleanly after its last commit");
    // The newest intact slot whose generation is not above the newest valid header wins. Such a slot was
    // either acknowledged (a later commit's header exists, and commits are sequential) or is that
    // header's own generation. This also covers a header that reached the disk without its slot, and a
    // header copy whose last write was still in the cache when power went.
    const std::uint64_t newest = cands[0].gen.generation;
    st.highest_seen_ = newest;
    std::optional<std::pair<GenerationInfo, std::string>> best;
    for (std::uint32_t i = 0; i < st.geo_.slots; ++i) {
        auto s = st.read_slot(i);
        if (!s) continue;
        st.highest_seen_ = std::max(st.highest_seen_, s->first.generation);
        if (s->first.generation <= newest && (!best || s->first.generation > best->first.generation)) best = std::move(s);
    }
    if (!best) {
        ec = errc::damaged;
        message = "generation " + std::to_string(newest) + " is damaged and no older generation survives";
        return std::nullopt;
    }
    if (best->first.generation != newest)
        warn("generation " + std::to_string(newest) + " is damaged or was not completely written; fell back to generation " +
             std::to_string(best->first.generation));
    st.current_ = best->first;
    st.payload_ = std::move(best->second);
    return st;
}

std::error_code Store::commit(std::string_view payload, std::uint64_t timestamp_ns) {
    if (payload.size() > geo_.max_payload()) return errc::too_large;
    GenerationInfo gen{highest_seen_ + 1, timestamp_ns, payload.size(), (current_.slot + 1) % geo_.slots};
    if (auto ec = write_generation(*dev_, geo_, uuid_, gen, payload, mode_)) return ec;
    highest_seen_ = gen.generation;
    current_ = gen;
    payload_.assign(payload);
    return {};
}

std::error_code Store::flush() {
    try {
        dev_->sync();
    } catch (const std::system_error&) {
        return errc::io_error;
    }
    return {};
}

std::vector<GenerationInfo> Store::history() const {
    std::vector<GenerationInfo> out;
    for (std::uint32_t i = 0; i < geo_.slots; ++i)
        if (auto s = read_slot(i); s && s->first.generation <= current_.generation) out.push_back(s->first);
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.generation > b.generation; });
    return out;
}

std::optional<std::string> Store::read_generation(std::uint64_t generation) const {
    if (generation == current_.generation) return payload_;
    for (std::uint32_t i = 0; i < geo_.slots; ++i)
        if (auto s = read_slot(i); s && s->first.generation == generation) return std::move(s->second);
    return std::nullopt;
}

}  // namespace fleetconf::blockcfg
