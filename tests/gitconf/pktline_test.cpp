#include "fleetconf/gitconf/pktline.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

using namespace fleetconf::gitconf;

namespace {

struct Parsed {
    std::vector<std::pair<pkt::Kind, std::string>> packets;
    std::error_code error;
};

// Feeds `stream` to the incremental parser in pieces cut at `split`, as a socket would deliver it.
Parsed parse_split(const std::string& stream, std::size_t split) {
    Parsed out;
    std::string buf;
    std::size_t fed = 0;
    auto drain = [&] {
        while (true) {
            pkt::Packet p;
            std::size_t used = 0;
            auto ec = pkt::parse(buf, p, used);
            if (ec == pkt::errc::need_more) return true;
            if (ec) {
                out.error = ec;
                return false;
            }
            out.packets.emplace_back(p.kind, std::string(p.payload));
            buf.erase(0, used);
        }
    };
    for (std::size_t cut : {split, stream.size()}) {
        buf.append(stream.substr(fed, cut - fed));
        fed = cut;
        if (!drain()) break;
    }
    return out;
}

}  // namespace

TEST_CASE("pkt-line: data, flush, delim and response-end at every split point", "[gitconf][pktline]") {
    // git-kv writes lengths in upper case and leaves LF off all but the first want.
    const std::string stream = std::string("0040want 1c62a270edc858f843bda98bf9c5d59ef8cfe6b8 side-band-64k\n") + "000Cdeepen 1" + "0000" +
                               "0001" + "0008done" + "0002" + "0009done\n";
    const auto split = GENERATE_COPY(range<std::size_t>(0, stream.size() + 1));
    const auto r = parse_split(stream, split);
    REQUIRE_FALSE(r.error);
    REQUIRE(r.packets.size() == 7);
    CHECK(r.packets[0].first == pkt::Kind::data);
    CHECK(r.packets[0].second == "want 1c62a270edc858f843bda98bf9c5d59ef8cfe6b8 side-band-64k\n");
    CHECK(r.packets[1].second == "deepen 1");
    CHECK(r.packets[2].first == pkt::Kind::flush);
    CHECK(r.packets[3].first == pkt::Kind::delim);
    CHECK(r.packets[4].second == "done");
    CHECK(r.packets[5].first == pkt::Kind::response_end);
    CHECK(r.packets[6].second == "done\n");
}

TEST_CASE("pkt-line: line() strips exactly one LF", "[gitconf][pktline]") {
    pkt::Packet p;
    std::size_t used = 0;
    REQUIRE_FALSE(pkt::parse("000ahave\n\n", p, used));
    CHECK(p.line() == "have\n");
    REQUIRE_FALSE(pkt::parse("0008have", p, used));
    CHECK(p.line() == "have");
    REQUIRE_FALSE(pkt::parse("0004", p, used));  // an empty data packet is not a flush
    CHECK(p.kind == pkt::Kind::data);
    CHECK(p.payload.empty());
}

TEST_CASE("pkt-line: malformed lengths are refused as soon as they are visible", "[gitconf][pktline]") {
    struct Case {
        const char* input;
        pkt::errc expected;
    };
    const Case cases[] = {
        {"g", pkt::errc::bad_length},         {"00x0abc", pkt::errc::bad_length}, {" 004", pkt::errc::bad_length},
        {"0003", pkt::errc::reserved_length}, {"fff1", pkt::errc::too_long},      {"FFFF", pkt::errc::too_long},
        {"-001", pkt::errc::bad_length},      {"000", pkt::errc::need_more},      {"0010abc", pkt::errc::need_more},
    };
    for (const auto& c : cases) {
        INFO(c.input);
        pkt::Packet p;
        std::size_t used = 99;
        CHECK(pkt::parse(c.input, p, used) == c.expected);
        CHECK(used == 0);
    }
    pkt::Packet p;
    std::size_t used = 0;
    std::string max(pkt::kMaxPacket, 'x');
    max.replace(0, 4, "fff0");
    REQUIRE_FALSE(pkt::parse(max, p, used));
    CHECK(used == pkt::kMaxPacket);
}

TEST_CASE("pkt-line: writers", "[gitconf][pktline]") {
    std::string out;
    pkt::write_line(out, "NAK");
    pkt::write(out, "abc");
    pkt::write_flush(out);
    pkt::write_delim(out);
    pkt::write_response_end(out);
    CHECK(out == "0008NAK\n0007abc000000010002");
    CHECK_THROWS_AS(pkt::write(out, std::string(pkt::kMaxPayload + 1, 'x')), std::length_error);

    // side-band: 65520-byte packets carry 65515 bytes of data after the band byte
    std::string sb;
    pkt::write_sideband(sb, 1, std::string(70000, 'p'));
    pkt::Packet p;
    std::size_t used = 0;
    REQUIRE_FALSE(pkt::parse(sb, p, used));
    CHECK(used == pkt::kMaxPacket);
    CHECK(p.payload[0] == '\1');
    REQUIRE_FALSE(pkt::parse(std::string_view(sb).substr(used), p, used));
    CHECK(p.payload.size() == 1 + 70000 - 65515);
    std::string small;
    pkt::write_sideband(small, 2, "hello", 1000);
    CHECK(small == std::string("000a\2hello"));
}

// ---- the git:// request line (daemon_request.hpp) ----
#include "fleetconf/gitconf/daemon_request.hpp"

TEST_CASE("git:// request line: command, path, host and version=2", "[gitconf][daemon]") {
    using fleetconf::gitconf::parse_daemon_request;
    using namespace std::string_literals;
    auto r = parse_daemon_request("git-upload-pack /web.git\0host=10.0.0.1:9418\0\0version=2\0"s);
    REQUIRE(r);
    CHECK(r->command == "git-upload-pack");
    CHECK(r->path == "/web.git");
    CHECK(r->host == "10.0.0.1:9418");
    CHECK(r->v2);
    r = parse_daemon_request("git-upload-pack /web.git\0host=x\0"s);  // v0: no extra parameters
    REQUIRE(r);
    CHECK_FALSE(r->v2);
    r = parse_daemon_request("git-receive-pack /cal.git"s);  // no parameters at all
    REQUIRE(r);
    CHECK(r->command == "git-receive-pack");
    CHECK(r->host == "-");
    r = parse_daemon_request("frobnicate"s);
    REQUIRE(r);
    CHECK(r->command == "frobnicate");
    CHECK(r->path.empty());
    r = parse_daemon_request("git-upload-pack /a\0host="s + std::string(300, 'h') + "\0"s);
    REQUIRE(r);
    CHECK(r->host.size() == 255);  // bounded
    CHECK_FALSE(parse_daemon_request(""));
    CHECK_FALSE(parse_daemon_request(std::string(fleetconf::gitconf::kMaxDaemonRequest + 1, 'a')));
}
