#include "fleetconf/blockcfg/store.hpp"

#include "fleetconf/common/crypto.hpp"

#include <catch2/catch.hpp>

#include <functional>

using namespace fleetconf::blockcfg;

namespace {

Store open_ok(Device& d, std::vector<std::string>* warnings = nullptr) {
    std::error_code ec;
    std::string msg;
    auto s = Store::open(d, ec, msg, warnings);
    INFO(msg);
    REQUIRE(s);
    return std::move(*s);
}

std::pair<std::error_code, std::string> open_err(Device& d) {
    std::error_code ec;
    std::string msg;
    auto s = Store::open(d, ec, msg);
    REQUIRE_FALSE(s);
    return {ec, msg};
}

// Rewrites the last sector's header copy of `d` after `change`; returns the new header (valid on its own).
layout::Header rewrite_last_header(MemoryDevice& d, std::uint64_t n, const std::function<void(layout::Header&)>& change) {
    std::vector<std::uint8_t> sector(d.sector_size());
    d.read(n - 1, sector);
    auto last = layout::decode_header(sector);
    REQUIRE(last);
    change(*last);
    d.write(n - 1, layout::encode_header(*last));
    return *last;
}

FormatOptions fixed_uuid() {
    FormatOptions o;
    o.uuid = Uuid{};
    return o;
}

}  // namespace

TEST_CASE("format, commit, reopen: both sector sizes", "[store]") {
    const std::uint32_t ss = GENERATE(512u, 4096u);
    MemoryDevice d(ss, (256 * 1024) / ss);
    CHECK(open_err(d).first == errc::blank_device);
    REQUIRE_FALSE(Store::format(d, {}, "v1"));
    auto s = open_ok(d);
    CHECK(s.generation() == 1);
    CHECK(s.payload() == "v1");
    CHECK(s.geometry().sector_size == ss);
    CHECK(s.geometry().slots >= 2);
    REQUIRE_FALSE(s.commit("v2", 42));
    REQUIRE_FALSE(s.commit(std::string(3000, 'x'), 43));  // several sectors
    auto r = open_ok(d);
    CHECK(r.generation() == 3);
    CHECK(r.payload() == std::string(3000, 'x'));
    CHECK(r.current().timestamp_ns == 43);
    auto h = r.history();
    REQUIRE(h.size() == 3);
    CHECK(h[0].generation == 3);
    CHECK(h[2].generation == 1);
    CHECK(*r.read_generation(2) == "v2");
    // Format refuses a device with data, unless forced.
    CHECK(Store::format(d, {}, "again") == errc::not_blank);
    FormatOptions force;
    force.force = true;
    REQUIRE_FALSE(Store::format(d, force, "fresh"));
    auto f = open_ok(d);
    CHECK(f.generation() == 1);
    CHECK(f.history().size() == 1);  // nothing of the previous format is taken for history
}

TEST_CASE("history keeps as many generations as there are slots", "[store]") {
    MemoryDevice d(512, 64);
    FormatOptions o;
    o.slots = 4;
    REQUIRE_FALSE(Store::format(d, o, "g1"));
    auto s = open_ok(d);
    for (int i = 2; i <= 10; ++i) REQUIRE_FALSE(s.commit(std::string(1, 'g').append(std::to_string(i)), 0));
    auto h = s.history();
    REQUIRE(h.size() == 4);
    CHECK(h.front().generation == 10);
    CHECK(h.back().generation == 7);
    CHECK_FALSE(s.read_generation(6));
    CHECK(s.commit(std::string(s.geometry().max_payload() + 1, 'x'), 0) == errc::too_large);
    CHECK(s.generation() == 10);
}

TEST_CASE("padding and unused bytes are zero", "[store]") {
    MemoryDevice d(512, 64);
    REQUIRE_FALSE(Store::format(d, fixed_uuid(), "abc"));
    const auto& b = d.bytes();
    // Header: bytes 112..479 zero; slot 0 payload sector: "abc" then zeros.
    for (std::size_t i = 112; i < 480; ++i) REQUIRE(b[i] == 0);
    auto s = open_ok(d);
    const std::size_t payload_off = (1 + 1) * 512;  // slot 0 starts at sector 1; its payload at sector 2
    CHECK(std::string(b.begin() + payload_off, b.begin() + payload_off + 3) == "abc");
    for (std::size_t i = payload_off + 3; i < payload_off + 512; ++i) REQUIRE(b[i] == 0);
}

TEST_CASE("power loss at every byte and every write of a commit: old or new, never anything else", "[store][powerloss]") {
    const std::uint32_t ss = GENERATE(512u, 4096u);
    MemoryDevice base(ss, 64 * 1024 / ss);
    FormatOptions o;
    o.slots = 3;
    REQUIRE_FALSE(Store::format(base, o, "old configuration"));
    {
        auto s = open_ok(base);
        REQUIRE_FALSE(s.commit("older", 1));
        REQUIRE_FALSE(s.commit("old configuration", 2));
    }
    const std::string next(ss + 100, 'n');  // spans two payload sectors
    // Count the bytes and writes of one commit.
    std::uint64_t total_bytes = 0, total_writes = 0;
    {
        MemoryDevice copy = base;
        PowerLossDevice unlimited(copy, std::nullopt, std::nullopt);
        std::error_code ec;
        std::string msg;
        auto s = Store::open(unlimited, ec, msg);
        REQUIRE(s);
        // Bytes: slot header + 2 payload sectors + 2 headers.
        total_bytes = std::uint64_t{ss} * 5;
        total_writes = 3;
        REQUIRE_FALSE(s->commit(next, 3));
    }
    auto check_after = [&](MemoryDevice& dev, const char* what, std::uint64_t k) {
        std::vector<std::string> warnings;
        std::error_code ec;
        std::string msg;
        auto s = Store::open(dev, ec, msg, &warnings);
        INFO(what << " k=" << k << " " << msg);
        REQUIRE(s);
        const bool old_state = s->payload() == "old configuration" && s->generation() == 3;
        const bool new_state = s->payload() == next && s->generation() == 4;
        REQUIRE((old_state || new_state));
        // And the store keeps working: the next commit lands and reopens.
        REQUIRE_FALSE(s->commit("after", 5));
        auto again = Store::open(dev, ec, msg);
        REQUIRE(again);
        REQUIRE(again->payload() == "after");
        return new_state;
    };
    bool saw_new = false, saw_old = false;
    for (std::uint64_t k = 0; k <= total_bytes; k += (k < 2 * ss ? 1 : 7)) {
        MemoryDevice dev = base;
        PowerLossDevice pl(dev, k, std::nullopt);
        auto s = open_ok(pl);
        (void)s.commit(next, 3);
        (check_after(dev, "byte budget", k) ? saw_new : saw_old) = true;
    }
    for (std::uint64_t k = 0; k <= total_writes; ++k) {
        MemoryDevice dev = base;
        PowerLossDevice pl(dev, std::nullopt, k);
        auto s = open_ok(pl);
        (void)s.commit(next, 3);
        check_after(dev, "write budget", k);
    }
    CHECK(saw_new);
    CHECK(saw_old);
}

TEST_CASE("an I/O error before the commit point leaves the store at the old generation", "[store]") {
    MemoryDevice base(512, 128);
    REQUIRE_FALSE(Store::format(base, {}, "old"));
    // A commit is: write slot, sync, write header 0, sync (the commit point), write header 1.
    for (auto [fail_write, fail_sync] : {std::pair<int, int>{1, 0}, {2, 0}, {0, 1}, {0, 2}}) {
        INFO("write " << fail_write << " sync " << fail_sync);
        MemoryDevice dev = base;
        FailingDevice f(dev, fail_write, fail_sync);
        auto s = open_ok(f);
        CHECK(s.commit("new", 1) == errc::io_error);
        CHECK(s.payload() == "old");
        CHECK(s.generation() == 1);
        // The device itself may hold either, never anything else.
        auto r = open_ok(dev);
        CHECK((r.payload() == "old" || r.payload() == "new"));
    }
    // A failure of the second header copy comes after the commit point: the change stands.
    MemoryDevice dev = base;
    FailingDevice f(dev, 3, 0);
    auto s = open_ok(f);
    CHECK_FALSE(s.commit("new", 1));
    std::vector<std::string> warnings;
    auto r = open_ok(dev, &warnings);
    CHECK(r.payload() == "new");
    CHECK(r.generation() == 2);
}

TEST_CASE("each commit costs two syncs", "[store]") {
    MemoryDevice d(512, 128);
    REQUIRE_FALSE(Store::format(d, {}, "a"));
    auto s = open_ok(d);
    const auto before = d.syncs();
    REQUIRE_FALSE(s.commit("b", 1));
    CHECK(d.syncs() - before == 2);
}

TEST_CASE("bit flips in every header field, in each copy, and in the payload", "[store][corruption]") {
    const std::uint32_t ss = GENERATE(512u, 4096u);
    MemoryDevice base(ss, 128 * 1024 / ss);
    REQUIRE_FALSE(Store::format(base, {}, "gen1"));
    {
        auto s = open_ok(base);
        REQUIRE_FALSE(s.commit("gen2", 1));
    }
    const std::uint64_t last = base.sectors() - 1;
    // Every byte of the meaningful header area (0..111) and of the checksum, in either copy: the damaged
    // copy is rejected and the other one is used, with a warning.
    for (int copy = 0; copy < 2; ++copy)
        for (std::size_t off : {0, 8, 10, 12, 16, 24, 40, 44, 48, 56, 64, 68, 72, 80, 111, 200, static_cast<int>(ss) - 1}) {
            MemoryDevice d = base;
            d.bytes()[(copy == 0 ? 0 : last) * ss + off] ^= 0x01;
            std::vector<std::string> warnings;
            auto s = open_ok(d, &warnings);
            INFO("copy " << copy << " offset " << off);
            CHECK(s.payload() == "gen2");
            CHECK_FALSE(warnings.empty());
        }
    // Both copies damaged: refused, never read as empty.
    {
        MemoryDevice d = base;
        d.bytes()[48] ^= 1;
        d.bytes()[last * ss + 48] ^= 1;
        auto [ec, msg] = open_err(d);
        CHECK(ec == errc::damaged);
        CHECK_THAT(msg, Catch::Contains("no valid fleetconf header"));
    }
    // The newest payload damaged: falls back to generation 1, with a warning.
    {
        MemoryDevice d = base;
        std::error_code ec;
        std::string msg;
        auto s = Store::open(base, ec, msg);
        const auto slot = s->current().slot;
        d.bytes()[(1 + std::uint64_t{slot} * s->geometry().slot_sectors + 1) * ss] ^= 0x20;  // first payload byte
        std::vector<std::string> warnings;
        auto r = open_ok(d, &warnings);
        CHECK(r.payload() == "gen1");
        CHECK(r.generation() == 1);
        REQUIRE_FALSE(warnings.empty());
        CHECK_THAT(warnings.back(), Catch::Contains("fell back to generation 1"));
        // The next commit never reuses generation number 2.
        REQUIRE_FALSE(r.commit("gen3", 2));
        CHECK(r.generation() == 3);
    }
    // Every payload damaged: refused.
    {
        MemoryDevice d = base;
        std::error_code ec;
        std::string msg;
        auto s = Store::open(base, ec, msg);
        for (std::uint32_t i = 0; i < s->geometry().slots; ++i)
            d.bytes()[(1 + std::uint64_t{i} * s->geometry().slot_sectors) * ss + 40] ^= 1;
        CHECK(open_err(d).first == errc::damaged);
    }
    // Unrecognised data is refused, not taken for a blank device.
    {
        MemoryDevice d(ss, 64);
        d.bytes()[ss * 10] = 0x55;
        auto [ec, msg] = open_err(d);
        CHECK(ec == errc::damaged);
    }
}

TEST_CASE("header codec round trip and rejection table", "[store][layout]") {
    layout::Header h;
    h.copy = 1;
    h.geometry = {512, 2048, 4, 511};
    h.uuid = Uuid{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    h.gen = {7, 1700000000000000000ull, 10, 3};
    h.payload_sha256 = fleetconf::common::sha256("0123456789");
    auto bytes = layout::encode_header(h);
    auto back = layout::decode_header(bytes);
    REQUIRE(back);
    CHECK(back->gen.generation == 7);
    CHECK(back->gen.slot == 3);
    CHECK(back->uuid == h.uuid);
    std::string why;
    auto bad = bytes;
    bad[0] = 'X';
    CHECK_FALSE(layout::decode_header(bad, &why));
    CHECK(why == "no fleetconf magic");
    bad = bytes;
    bad[300] = 1;
    CHECK_FALSE(layout::decode_header(bad, &why));
    CHECK(why == "header checksum mismatch");
    CHECK_FALSE(layout::decode_header(std::vector<std::uint8_t>(512, 0), &why));
    CHECK(why == "all zero");
    layout::Header g = h;
    g.gen.slot = 4;  // past the slot count
    CHECK_FALSE(layout::decode_header(layout::encode_header(g), &why));
    CHECK(why == "inconsistent geometry");
}

TEST_CASE("two valid header copies for different devices are refused (issue 22.11)", "[store][layout]") {
    const std::uint32_t ss = GENERATE(512u, 4096u);
    const std::uint64_t n = (256 * 1024) / ss;
    struct Case {
        const char* name;
        void (*change)(layout::Header&);
        const char* message;
    };
    const Case cases[] = {
        {"uuid", [](layout::Header& h) { h.uuid[15] ^= 1; },
         "the two header copies describe different devices (UUID 00000000000000000000000000000000 and 00000000000000000000000000000001); "
         "refusing to guess which is right"},
        {"slots", [](layout::Header& h) { h.geometry.slots -= 1; }, nullptr},
        {"slot sectors", [](layout::Header& h) { h.geometry.slot_sectors -= 1; }, nullptr},
    };
    for (const auto& c : cases) {
        INFO(c.name << ", sector size " << ss);
        MemoryDevice d(ss, n);
        REQUIRE_FALSE(Store::format(d, fixed_uuid(), "v1"));
        const auto last = rewrite_last_header(d, n, c.change);
        REQUIRE(layout::decode_header(layout::encode_header(last)));  // each copy on its own is valid
        const auto [ec, msg] = open_err(d);
        CHECK(ec == errc::damaged);
        if (c.message) CHECK(msg == c.message);
        else CHECK(msg.starts_with("the two header copies describe different devices ("));
    }
    // A copy for a device of another size is not valid here: the other copy is used, with a warning.
    MemoryDevice d(ss, n);
    REQUIRE_FALSE(Store::format(d, fixed_uuid(), "v1"));
    rewrite_last_header(d, n, [](layout::Header& h) { h.geometry.sectors += 1; });
    std::vector<std::string> warnings;
    auto s = open_ok(d, &warnings);
    CHECK(s.payload() == "v1");
    REQUIRE(warnings.size() == 1);
    CHECK(warnings[0] ==
          "last header copy is damaged (header describes a device of another size); the other copy is used and the next "
          "commit rewrites both");
}

TEST_CASE("file device: create, lock, detect the sector size", "[store][device]") {
    auto dir = std::filesystem::temp_directory_path() / ("fc-dev-" + fleetconf::common::to_hex(fleetconf::common::random_bytes(4)));
    std::filesystem::create_directories(dir);
    const auto img = dir / "d.img";
    FileDevice::create_image(img, 256 * 1024);
    CHECK_THROWS(FileDevice::create_image(img, 1024));
    {
        auto d = FileDevice::open(img, 4096);
        CHECK(d->sectors() == 64);
        REQUIRE_FALSE(Store::format(*d, {}, "x"));
        CHECK_THROWS_WITH(FileDevice::open(img), Catch::Contains("in use"));
    }
    auto d = FileDevice::open(img);  // sector size read from the header
    REQUIRE(d);
    CHECK(d->sector_size() == 4096);
    std::error_code ec;
    std::string msg;
    auto s = Store::open(*d, ec, msg);
    REQUIRE(s);
    CHECK(s->payload() == "x");
    std::filesystem::remove_all(dir);
}

TEST_CASE("the header example of docs/blockcfg-format.md", "[store][layout]") {
    MemoryDevice d(512, 64);
    FormatOptions o;
    o.slots = 4;
    o.uuid = Uuid{};
    REQUIRE_FALSE(Store::format(d, o, R"({"default":null,"routes":[],"schema":1})"));
    const std::span<const std::uint8_t> h(d.bytes().data(), 512);
    CHECK(fleetconf::common::to_hex(h.first(112)) ==
          "464c4545544346470001000000000200000000000000004000000000000000000000000000000000000000040000000f0000000000000001"
          "000000000000000000000000000000000000000000000027cbea5ca429306de219c8bff2fb8713947b75b95e6fbbc373ab1db9bb1c8814bf");
    CHECK(fleetconf::common::to_hex(h.last(32)) == "413a55c2510b1467fdb2c190d484482a0cd85725a31c96579a03773439cda674");
}

TEST_CASE("crash at every operation of a commit with any subset of unsynced writes persisted", "[store][powerloss]") {
    const auto mode = GENERATE(CommitMode::ordered, CommitMode::checksummed);
    const std::uint32_t ss = GENERATE(512u, 4096u);
    MemoryDevice base(ss, 64 * 1024 / ss);
    FormatOptions o;
    o.slots = 3;
    REQUIRE_FALSE(Store::format(base, o, "gen1"));
    const std::string next(ss + 10, 'n');  // two payload sectors
    // Count the operations: commit gen2 (acknowledged; its lazy header write stays pending), then gen3.
    std::uint64_t first = 0, total = 0;
    {
        MemoryDevice probe = base;
        CrashDevice c(probe, std::nullopt);
        auto s = open_ok(c);
        s.set_commit_mode(mode);
        REQUIRE_FALSE(s.commit("gen2", 1));
        first = c.operations();
        REQUIRE_FALSE(s.commit(next, 2));
        total = c.operations() - first;
    }
    CHECK(total == (mode == CommitMode::ordered ? 5u : 4u));  // writes + syncs of one commit
    int new_seen = 0, old_seen = 0;
    for (std::uint64_t crash = 0; crash <= total; ++crash)
        for (std::uint64_t mask = 0; mask < 8; ++mask) {
            MemoryDevice dev = base;
            CrashDevice c(dev, first + crash);
            auto s = open_ok(c);
            s.set_commit_mode(mode);
            REQUIRE_FALSE(s.commit("gen2", 1));
            (void)s.commit(next, 2);  // interrupted at operation `crash` (or completed when crash == total)
            REQUIRE(c.pending() <= 3);
            c.persist(mask);  // whichever unsynced writes happened to reach the medium
            std::error_code ec;
            std::string msg;
            auto r = Store::open(dev, ec, msg);
            INFO("mode " << static_cast<int>(mode) << ", crash at operation " << crash << ", persisted mask " << mask << ": " << msg);
            REQUIRE(r);
            const bool is_old = r->payload() == "gen2" && r->generation() == 2;
            const bool is_new = r->payload() == next && r->generation() == 3;
            REQUIRE((is_old || is_new));
            (is_new ? new_seen : old_seen)++;
            if (crash == total) REQUIRE(is_new);  // the completed commit was acknowledged
        }
    CHECK(new_seen > 0);
    CHECK(old_seen > 0);
}
