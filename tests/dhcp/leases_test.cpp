#include "fleetconf/dhcp/leases.hpp"

#include "fleetconf/common/crypto.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <fstream>
#include <random>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace fleetconf::dhcp;
using fleetconf::common::Ipv4;

namespace {

std::filesystem::path temp_dir() {
    auto d = std::filesystem::temp_directory_path() / ("fc-leases-" + fleetconf::common::to_hex(fleetconf::common::random_bytes(4)));
    std::filesystem::create_directories(d);
    return d;
}

Lease lease(std::uint8_t last, const std::string& host, LeaseState s = LeaseState::bound) {
    Lease l;
    l.address = Ipv4(10, 0, 0, last);
    l.client = {1, 2, 0, 0, 0, 0, last};
    l.mac = fleetconf::common::Mac({2, 0, 0, 0, 0, last});
    l.hostname = host;
    l.network = "br0";
    l.state = s;
    l.expires = 1'800'000'000 + last;
    return l;
}

}  // namespace

TEST_CASE("journal: replay after reopen, one sync for many changes", "[dhcp][leases]") {
    auto dir = temp_dir();
    const auto f = dir / "leases.journal";
    {
        JournalLeaseStore j(f);
        j.apply({{lease(1, "a")}, {lease(2, "b")}, {lease(3, "c")}});
        j.sync();
        CHECK(j.syncs() == 1);
        j.apply({{lease(2, "b"), true}});
        j.sync();
    }
    JournalLeaseStore r(f);
    CHECK(r.size() == 2);
    CHECK(r.by_address(Ipv4(10, 0, 0, 1))->hostname == "a");
    CHECK(r.by_address(Ipv4(10, 0, 0, 2)) == nullptr);
    CHECK(r.by_client(lease(3, "c").client)->address == Ipv4(10, 0, 0, 3));
    std::filesystem::remove_all(dir);
}

namespace {

void write_bytes(const std::filesystem::path& f, const std::string& text) {
    std::ofstream o(f, std::ios::trunc | std::ios::binary);
    o << text;
}

std::string read_bytes(const std::filesystem::path& f) {
    std::ifstream i(f, std::ios::binary);
    return {std::istreambuf_iterator<char>(i), {}};
}

std::vector<std::filesystem::path> damaged_copies(const std::filesystem::path& dir) {
    std::vector<std::filesystem::path> v;
    for (const auto& e : std::filesystem::directory_iterator(dir))
        if (e.path().filename().string().starts_with("leases.journal.damaged-")) v.push_back(e.path());
    return v;
}

}  // namespace

TEST_CASE("journal: a torn last record is dropped silently, and the file is cut back", "[dhcp][leases]") {
    auto dir = temp_dir();
    const auto f = dir / "leases.journal";
    const std::string head(JournalLeaseStore::kHeader);
    const std::string good = JournalLeaseStore::encode_record({lease(1, "a")}, 1);
    const std::string next = JournalLeaseStore::encode_record({lease(2, "b")}, 2);
    for (std::size_t cut = 1; cut < next.size(); ++cut) {  // every prefix without the LF
        write_bytes(f, head + good + next.substr(0, cut));
        std::vector<std::string> warnings;
        JournalLeaseStore j(f, &warnings, 4096);
        INFO("cut at " << cut);
        CHECK(j.size() == 1);
        REQUIRE(warnings.size() == 1);
        CHECK_THAT(warnings[0], Catch::Contains("torn last record"));
        CHECK(j.recovery().damaged.empty());
        j.apply({{lease(3, "c")}});
        j.sync();
        JournalLeaseStore again(f, nullptr, 4096);
        CHECK(again.size() == 2);  // the torn tail was cut, so the new record is readable
        CHECK(again.recovery().damaged.empty());
    }
    CHECK(damaged_copies(dir).empty());
    std::filesystem::remove_all(dir);
}

TEST_CASE("journal: a whole last line with a bad checksum is damage, not a torn write", "[dhcp][leases]") {
    auto dir = temp_dir();
    const auto f = dir / "leases.journal";
    std::string bad = JournalLeaseStore::encode_record({lease(2, "b")}, 2);
    bad[20] ^= 1;
    const std::string text = std::string(JournalLeaseStore::kHeader) + JournalLeaseStore::encode_record({lease(1, "a")}, 1) + bad;
    write_bytes(f, text);
    JournalLeaseStore j(f);
    CHECK(j.size() == 1);
    const auto off = JournalLeaseStore::kHeader.size() + JournalLeaseStore::encode_record({lease(1, "a")}, 1).size();
    REQUIRE(j.recovery().damaged.size() == 1);
    CHECK(j.recovery().damaged[0] == JournalRegion{off, bad.size()});
    const auto copies = damaged_copies(dir);
    REQUIRE(copies.size() == 1);
    CHECK(read_bytes(copies[0]) == text);  // the damaged bytes kept, exactly
    CHECK(j.recovery().damaged_copy == copies[0]);
    std::filesystem::remove_all(dir);
}

TEST_CASE("journal: preallocated zeros; appends inside them keep the file size; a write torn into them is dropped", "[dhcp][leases]") {
    auto dir = temp_dir();
    const auto f = dir / "leases.journal";
    std::uintmax_t size = 0;
    {
        JournalLeaseStore j(f, nullptr, 8192);
        size = std::filesystem::file_size(f);
        CHECK(size == JournalLeaseStore::kHeader.size() + 8192);
        j.apply({{lease(1, "a")}});
        j.sync();
        CHECK(std::filesystem::file_size(f) == size);  // no metadata change for fdatasync to write
        for (int i = 0; i < 200; ++i) j.apply({{lease(static_cast<std::uint8_t>(i % 250), "h" + std::to_string(i))}});
        j.sync();  // past the zeros: the file grows by another chunk
        CHECK(std::filesystem::file_size(f) > size);
    }
    {
        std::vector<std::string> warnings;
        JournalLeaseStore j(f, &warnings, 8192);
        CHECK(warnings.empty());  // trailing zeros are free space, not damage
        CHECK(j.recovery().damaged.empty());
        CHECK(j.size() == 200);
    }
    // A record torn inside the zeros (its head written, no newline, zeros after it).
    std::string text = std::string(JournalLeaseStore::kHeader) + JournalLeaseStore::encode_record({lease(1, "a")}, 1) +
                       JournalLeaseStore::encode_record({lease(2, "b")}, 2).substr(0, 30);
    text.resize(4096, '\0');
    write_bytes(f, text);
    std::vector<std::string> warnings;
    JournalLeaseStore j(f, &warnings, 8192);
    CHECK(j.size() == 1);
    REQUIRE(warnings.size() == 1);
    CHECK_THAT(warnings[0], Catch::Contains("torn"));
    j.apply({{lease(3, "c")}});
    j.sync();
    CHECK(JournalLeaseStore(f, nullptr, 8192).size() == 2);
    std::filesystem::remove_all(dir);
}

TEST_CASE("journal: format 1 (no header, no sequence numbers) is read and rewritten as format 2", "[dhcp][leases]") {
    auto dir = temp_dir();
    const auto f = dir / "leases.journal";
    std::string v1 = JournalLeaseStore::encode_record({lease(1, "a")}) + JournalLeaseStore::encode_record({lease(2, "b")});
    v1.resize(v1.size() + 4096, '\0');
    write_bytes(f, v1);
    std::vector<std::string> warnings;
    {
        JournalLeaseStore j(f, &warnings, 4096);
        CHECK(j.size() == 2);
        CHECK(j.recovery().version_read == 1);
        CHECK(j.recovery().damaged.empty());
        REQUIRE(warnings.size() == 1);
        CHECK_THAT(warnings[0], Catch::Contains("format 1 rewritten as format 2"));
    }
    const auto text = read_bytes(f);
    CHECK(text.starts_with(JournalLeaseStore::kHeader));
    const auto scan = scan_journal(text);
    CHECK(scan.version == 2);
    CHECK(scan.records.size() == 2);
    CHECK(scan.last_seq == 2);
    std::filesystem::remove_all(dir);
}

TEST_CASE("journal recovery: damage anywhere loses no intact record (issue 16.3)", "[dhcp][leases]") {
    // 120 records, one address each, so that every intact record is one lease to look for.
    std::string clean(JournalLeaseStore::kHeader);
    std::vector<std::pair<std::size_t, std::size_t>> spans;  // [begin, end) of each record
    for (int i = 0; i < 120; ++i) {
        Lease l = lease(static_cast<std::uint8_t>(i + 1), "host-" + std::to_string(i));
        const auto rec = JournalLeaseStore::encode_record({l}, static_cast<std::uint64_t>(i + 1));
        spans.emplace_back(clean.size(), clean.size() + rec.size());
        clean += rec;
    }
    const std::size_t records_end = clean.size();
    clean.resize(records_end + 8192, '\0');  // the preallocated zeros

    auto dir = temp_dir();
    const auto f = dir / "leases.journal";
    std::size_t cases = 0;
    // `text` is the damaged journal; bytes [from, to) of the clean one were changed (removed for a cut).
    auto verify = [&](const std::string& what, const std::string& text, std::size_t from, std::size_t to, bool cut) {
        ++cases;
        INFO(what << " [" << from << ", " << to << ")");
        std::filesystem::remove_all(dir);
        std::filesystem::create_directories(dir);
        write_bytes(f, text);
        std::vector<std::string> warnings;
        JournalLeaseStore j(f, &warnings, 4096);
        std::size_t intact = 0;
        for (std::size_t i = 0; i < spans.size(); ++i) {
            const auto [b, e] = spans[i];
            const bool hit = cut ? e > from : (b < to && e > from);
            const auto* l = j.by_address(Ipv4(10, 0, 0, static_cast<std::uint8_t>(i + 1)));
            if (!hit) {
                ++intact;
                REQUIRE(l != nullptr);  // no intact lease lost
                CHECK(l->hostname == "host-" + std::to_string(i));
            } else {
                CHECK(l == nullptr);  // a damaged record is not half-read
            }
        }
        CHECK(j.size() == intact);
        const bool damaged = !j.recovery().damaged.empty();
        if (damaged) {
            // Copied aside before the rewrite, exactly; the rewritten journal opens clean with the same leases.
            const auto copies = damaged_copies(dir);
            REQUIRE(copies.size() == 1);
            CHECK(read_bytes(copies[0]) == text);
            for (const auto& r : j.recovery().damaged) CHECK(r.offset + r.length <= text.size());
        }
        JournalLeaseStore again(f, nullptr, 4096);
        CHECK(again.size() == intact);
        CHECK(again.recovery().damaged.empty());
        return damaged;
    };
    // Zeroed sectors of 512 and 4096 bytes, at every sector of the records.
    for (std::size_t sector : {std::size_t{512}, std::size_t{4096}})
        for (std::size_t at = 0; at < records_end; at += sector) {
            std::string t = clean;
            const auto to = std::min(at + sector, t.size());
            std::fill(t.begin() + static_cast<std::ptrdiff_t>(at), t.begin() + static_cast<std::ptrdiff_t>(to), '\0');
            const bool damaged = verify("zeroed sector of " + std::to_string(sector), t, at, to, false);
            // A sector in the middle of the records is reported as damage, never dropped silently.
            if (to < spans.back().first) CHECK(damaged);
        }
    // A NUL byte, a run of garbage, and a flipped bit: at every record boundary and inside every record.
    for (std::size_t i = 0; i < spans.size(); ++i) {
        for (std::size_t at : {spans[i].first, (spans[i].first + spans[i].second) / 2}) {
            std::string nul = clean;
            nul[at] = '\0';
            CHECK(verify("NUL byte", nul, at, at + 1, false));
            std::string garbage = clean;
            const auto to = std::min(at + 37, records_end);
            std::fill(garbage.begin() + static_cast<std::ptrdiff_t>(at), garbage.begin() + static_cast<std::ptrdiff_t>(to), '\xa5');
            verify("garbage run", garbage, at, to, false);
            std::string flip = clean;
            flip[at + 12] ^= 0x10;
            CHECK(verify("flipped bit", flip, at + 12, at + 13, false));
        }
        // Garbage inserted between two records (a misdirected write): every record kept.
        std::string inserted = clean;
        inserted.insert(spans[i].first, "\xa5\xa5 garbage \x01\x02\n\xa5");
        verify("inserted garbage", inserted, 0, 0, false);
    }
    // Truncation at every byte of the last records: only the cut record is lost, silently.
    for (std::size_t at = spans[spans.size() - 3].first; at <= records_end; ++at) {
        const bool damaged = verify("truncation", clean.substr(0, at), at, at, true);
        CHECK_FALSE(damaged);
    }
    CHECK(cases > 1000);
    std::filesystem::remove_all(dir);
}

TEST_CASE("scan_journal: regions, torn tail, sequence gaps (docs/dhcp-leases.md test vectors)", "[dhcp][leases]") {
    const std::string h(JournalLeaseStore::kHeader);
    const auto r1 = JournalLeaseStore::encode_record({lease(1, "a")}, 1);
    const auto r2 = JournalLeaseStore::encode_record({lease(2, "b")}, 2);
    const auto r3 = JournalLeaseStore::encode_record({lease(3, "c")}, 3);
    // A zeroed hole that swallowed r2 entirely: r3 kept, one record missing.
    auto s = scan_journal(h + r1 + std::string(r2.size(), '\0') + r3 + std::string(100, '\0'));
    CHECK(s.version == 2);
    CHECK(s.records.size() == 2);
    CHECK(s.missing_records == 1);
    REQUIRE(s.damaged.size() == 1);
    CHECK(s.damaged[0] == JournalRegion{h.size() + r1.size(), r2.size()});
    CHECK_FALSE(s.torn_tail);
    CHECK(s.end == h.size() + r1.size() + r2.size() + r3.size());
    // Only a torn tail.
    s = scan_journal(h + r1 + r2.substr(0, 10));
    CHECK(s.damaged.empty());
    REQUIRE(s.torn_tail);
    CHECK(*s.torn_tail == JournalRegion{h.size() + r1.size(), 10});
    // A torn tail followed by more non-zero bytes is damage.
    s = scan_journal(h + r1 + r2.substr(0, 10) + std::string(20, '\0') + "xyz");
    CHECK_FALSE(s.torn_tail);
    CHECK(s.damaged.size() == 1);
    // Empty and all-zero files hold nothing and no damage.
    CHECK(scan_journal("").damaged.empty());
    CHECK(scan_journal(std::string(4096, '\0')).records.empty());
    CHECK(scan_journal(std::string(4096, '\0')).damaged.empty());
}

TEST_CASE("journal: compaction keeps exactly the live leases", "[dhcp][leases]") {
    auto dir = temp_dir();
    const auto f = dir / "leases.journal";
    JournalLeaseStore j(f);
    for (int round = 0; round < 50; ++round) {
        j.apply({{lease(1, "a" + std::to_string(round))}, {lease(2, "b")}});
        j.sync();
    }
    CHECK(j.records() == 100);
    j.compact();
    CHECK(j.records() == 2);
    j.apply({{lease(4, "d")}});
    j.sync();
    JournalLeaseStore r(f);
    CHECK(r.size() == 3);
    CHECK(r.by_address(Ipv4(10, 0, 0, 1))->hostname == "a49");
    std::filesystem::remove_all(dir);
}

TEST_CASE("journal: compaction is due just over twice the live leases plus the slack (issue 22.11)", "[dhcp][leases]") {
    auto dir = temp_dir();
    JournalLeaseStore j(dir / "leases.journal", nullptr, 1 << 16);
    j.apply({{lease(1, "a")}, {lease(2, "b")}});
    // 2 live leases: due above 2 * 2 + kCompactSlack records.
    const auto limit = 2 * 2 + JournalLeaseStore::kCompactSlack;
    while (j.records() < limit) j.apply({{lease(1, "a" + std::to_string(j.records()))}});
    CHECK(j.records() == limit);
    CHECK_FALSE(j.needs_compaction());  // exactly at the limit
    j.apply({{lease(2, "b2")}});
    CHECK(j.needs_compaction());  // one over
    j.compact();
    CHECK(j.records() == 2);
    CHECK_FALSE(j.needs_compaction());
    std::filesystem::remove_all(dir);
}

// Compaction killed at any moment (SIGKILL of a process compacting in a loop) leaves a journal that opens
// with every live lease: the rename is the only step that replaces the old file. The order of the syscalls
// that make it safe across a power loss (fsync of the new file, rename, fsync of the directory) is checked
// under strace by tests/dhcp/compaction_order_test.sh, which runs the next test case.
TEST_CASE("journal: compaction killed at any moment loses nothing (issue 22.11)", "[dhcp][leases][compaction]") {
    auto dir = temp_dir();
    const auto f = dir / "leases.journal";
    std::map<Ipv4, std::string> live;
    {
        JournalLeaseStore j(f, nullptr, 1 << 12);
        for (int round = 0; round < 40; ++round)
            for (std::uint8_t a = 1; a <= 30; ++a) j.apply({{lease(a, "h" + std::to_string(a) + "-" + std::to_string(round))}});
        j.sync();
        for (std::uint8_t a = 1; a <= 30; ++a) live[Ipv4(10, 0, 0, a)] = "h" + std::to_string(a) + "-39";
    }
    std::mt19937 rng(22011);
    for (int kill = 0; kill < 25; ++kill) {
        int ready[2];
        REQUIRE(::pipe(ready) == 0);
        const pid_t child = ::fork();
        REQUIRE(child >= 0);
        if (child == 0) {
            ::close(ready[0]);
            try {
                JournalLeaseStore j(f, nullptr, 1 << 12);
                (void)!::write(ready[1], "r", 1);
                for (;;) j.compact();
            } catch (...) {}
            ::_exit(3);
        }
        ::close(ready[1]);
        char c = 0;
        REQUIRE(::read(ready[0], &c, 1) == 1);  // the child has opened the journal and is compacting
        ::close(ready[0]);
        ::usleep(std::uniform_int_distribution<unsigned>(0, 3000)(rng));
        ::kill(child, SIGKILL);
        int status = 0;
        REQUIRE(::waitpid(child, &status, 0) == child);
        REQUIRE(WIFSIGNALED(status));  // killed while compacting, not failed
        std::vector<std::string> warnings;
        JournalLeaseStore r(f, &warnings, 1 << 12);
        INFO("kill " << kill);
        CHECK(r.recovery().damaged.empty());
        REQUIRE(r.size() == live.size());
        for (const auto& [a, host] : live) {
            REQUIRE(r.by_address(a));
            CHECK(r.by_address(a)->hostname == host);
        }
    }
    std::filesystem::remove_all(dir);
}

TEST_CASE("journal: one compaction, for the syscall-order check", "[.compaction-syscalls]") {
    const auto dir = std::filesystem::path(std::getenv("FLEETCONF_COMPACTION_DIR") ? std::getenv("FLEETCONF_COMPACTION_DIR") : "");
    REQUIRE(!dir.empty());
    JournalLeaseStore j(dir / "leases.journal", nullptr, 1 << 12);
    for (int round = 0; round < 3; ++round) j.apply({{lease(1, "a" + std::to_string(round))}});
    j.sync();
    j.compact();
    CHECK(j.records() == 1);
}

TEST_CASE("journal record codec", "[dhcp][leases]") {
    const auto rec = JournalLeaseStore::encode_record({lease(7, "web")});
    CHECK(rec.back() == '\n');
    auto back = JournalLeaseStore::decode_record(std::string_view(rec).substr(0, rec.size() - 1));
    REQUIRE(back);
    CHECK(back->lease == lease(7, "web"));
    CHECK_FALSE(JournalLeaseStore::decode_record("00000000 {}"));
    CHECK_FALSE(JournalLeaseStore::decode_record("garbage"));
}

TEST_CASE("the record example of docs/dhcp-leases.md (CRC computed with Python's zlib)", "[dhcp][leases]") {
    auto r = JournalLeaseStore::decode_record(
        R"(a31584fa {"a":"10.88.0.100","c":"ff01020000aabbcc","m":"02:00:00:aa:bb:cc","h":"web","n":"br0","s":"bound","e":1800000600})");
    REQUIRE(r);
    CHECK(r->lease.address == Ipv4(10, 88, 0, 100));
    CHECK(r->lease.state == LeaseState::bound);
    CHECK(r->lease.expires == 1800000600);
    CHECK(r->lease.client == Bytes{0xff, 0x01, 0x02, 0x00, 0x00, 0xaa, 0xbb, 0xcc});
}

TEST_CASE("the format-2 record example of docs/dhcp-leases.md (CRC computed with Python's zlib)", "[dhcp][leases]") {
    const std::string doc =
        R"(c7a44bf1 {"q":1,"a":"10.88.0.100","c":"ff01020000aabbcc","m":"02:00:00:aa:bb:cc","h":"web","n":"br0","s":"bound","e":1800000600})";
    std::uint64_t seq = 0;
    auto r = JournalLeaseStore::decode_record(doc, &seq);
    REQUIRE(r);
    CHECK(seq == 1);
    CHECK(JournalLeaseStore::encode_record(*r, 1) == doc + "\n");
    CHECK(JournalLeaseStore::kHeader.size() == 26);
}

TEST_CASE("journal records are byte-identical to nlohmann's ordered JSON, hostile host names included", "[dhcp][leases]") {
    // The encoder writes the JSON by hand (it runs on the packet path); this pins it to the documented form.
    for (const std::string& host : {std::string("web"), std::string(""), std::string("quote\"back\\slash"), std::string("ctl\x01\n\t"),
                                    std::string("caf\xc3\xa9"), std::string("bad\xff\xfeutf8"), std::string(63, 'x')}) {
        for (bool remove : {false, true}) {
            LeaseChange c{lease(9, host, LeaseState::offered), remove};
            nlohmann::ordered_json j;
            j["a"] = c.lease.address.to_string();
            if (remove) {
                j["remove"] = true;
            } else {
                j["c"] = fleetconf::common::to_hex(c.lease.client);
                j["m"] = c.lease.mac.to_string();
                j["h"] = c.lease.hostname;
                j["n"] = c.lease.network;
                j["s"] = "offered";
                j["e"] = c.lease.expires;
            }
            const auto body = j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
            const auto rec = JournalLeaseStore::encode_record(c);
            INFO(host);
            CHECK(rec.substr(9, rec.size() - 10) == body);
            auto back = JournalLeaseStore::decode_record(std::string_view(rec).substr(0, rec.size() - 1));
            REQUIRE(back);
            CHECK(back->remove == remove);
        }
    }
}

TEST_CASE("journal: the option-81 name travels in \"f\" only when set", "[dhcp][leases]") {
    auto l = lease(5, "laptop");
    CHECK(JournalLeaseStore::encode_record({l}).find("\"f\"") == std::string::npos);
    l.fqdn = "laptop.fleet.example";
    const auto rec = JournalLeaseStore::encode_record({l});
    CHECK(rec.find(R"(,"e":1800000005,"f":"laptop.fleet.example"})") != std::string::npos);
    auto back = JournalLeaseStore::decode_record(std::string_view(rec).substr(0, rec.size() - 1));
    REQUIRE(back);
    CHECK(back->lease == l);
}

TEST_CASE(
    "memory store: a renewal updates in place; a new client of an address, a client's new address and a removal keep both indexes true",
    "[dhcp][leases]") {
    MemoryLeaseStore s;
    auto lease = [](Ipv4 a, std::uint8_t who, LeaseState st, std::uint64_t exp) {
        Lease l;
        l.address = a;
        l.client = Bytes{1, 2, who};
        l.state = st;
        l.expires = exp;
        l.network = "lan";
        return l;
    };
    const Ipv4 a1(10, 0, 0, 5), a2(10, 0, 0, 6);
    s.apply({{lease(a1, 1, LeaseState::offered, 10)}});
    s.apply({{lease(a1, 1, LeaseState::bound, 100)}});  // the same client: in place
    REQUIRE(s.by_address(a1));
    CHECK(s.by_address(a1)->state == LeaseState::bound);
    CHECK(s.by_client(Bytes{1, 2, 1}) == s.by_address(a1));
    s.apply({{lease(a1, 2, LeaseState::bound, 200)}});  // another client takes the address
    CHECK(s.by_client(Bytes{1, 2, 1}) == nullptr);
    CHECK(s.by_client(Bytes{1, 2, 2})->address == a1);
    s.apply({{lease(a2, 2, LeaseState::bound, 300)}});  // that client moves: one address per client
    CHECK(s.by_address(a1) == nullptr);
    CHECK(s.by_client(Bytes{1, 2, 2})->address == a2);
    s.apply({{lease(a2, 2, LeaseState::bound, 300), true}});
    CHECK(s.by_client(Bytes{1, 2, 2}) == nullptr);
    CHECK(s.size() == 0);
}
