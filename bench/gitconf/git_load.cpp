// A load generator that replays recorded git fetch requests (a depth-1 fetch of one tip, as a
// booting unikernel makes) against a git:// or smart-HTTP server, from many concurrent clients, so
// that the client's own work (delta resolution, checkout) does not hide the server's.
//
//   git_load --mode git|http --port P --repo NAME --want OID [--auth USER:TOKEN] [--prefix /cgi-bin/git]
//            [--clients 50] [--seconds 5]
// Prints one JSON object: fetches, errors, seconds, rate, p50_ms, p99_ms, bytes.
#include "fleetconf/common/crypto.hpp"

#include <asio.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

namespace {
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;
constexpr auto use_tuple = asio::experimental::as_tuple(asio::use_awaitable);

struct Options {
    std::string mode = "git", repo, want, auth, prefix;
    std::uint16_t port = 0;
    int clients = 50;
    double seconds = 5;
};

std::string pkt(const std::string& s) {
    char len[5];
    std::snprintf(len, sizeof len, "%04x", static_cast<unsigned>(s.size() + 4));
    return len + s;
}

struct Stats {
    std::vector<double> latencies_ms;
    std::uint64_t errors = 0, bytes = 0;
};

// The upload-pack request git's client sends for `git fetch --depth 1` of one tip.
std::string fetch_body(const Options& o, bool http) {
    std::string caps = "multi_ack_detailed side-band-64k thin-pack no-progress ofs-delta shallow agent=git/2.39.5";
    if (http) caps += " no-done";
    return pkt("want " + o.want + " " + caps + "\n") + pkt("deepen 1\n") + "0000" + pkt("done\n");
}

asio::awaitable<bool> read_all(tcp::socket& s, std::string& out) {
    char buf[65536];
    while (true) {
        auto [ec, n] = co_await s.async_read_some(asio::buffer(buf), use_tuple);
        out.append(buf, n);
        if (ec == asio::error::eof) co_return true;
        if (ec) co_return false;
        if (out.size() > (64u << 20)) co_return false;
    }
}

bool looks_complete(const std::string& r) {
    return r.find("PACK") != std::string::npos && r.size() >= 4 && r.substr(r.size() - 4) == "0000";
}

asio::awaitable<bool> fetch_git(const Options& o, tcp::endpoint ep, std::uint64_t& bytes) {
    tcp::socket s(co_await asio::this_coro::executor);
    auto [ec] = co_await s.async_connect(ep, use_tuple);
    if (ec) co_return false;
    s.set_option(tcp::no_delay(true));
    const std::string line = "git-upload-pack /" + o.repo + ".git" + std::string("\0host=127.0.0.1\0", 16);
    auto [e1, n1] = co_await asio::async_write(s, asio::buffer(pkt(line)), use_tuple);
    if (e1) co_return false;
    // the advertisement ends with a flush
    std::string adv;
    char buf[65536];
    while (adv.size() < 4 || adv.substr(adv.size() - 4) != "0000") {
        auto [e2, n2] = co_await s.async_read_some(asio::buffer(buf), use_tuple);
        if (e2) co_return false;
        adv.append(buf, n2);
    }
    auto [e3, n3] = co_await asio::async_write(s, asio::buffer(fetch_body(o, false)), use_tuple);
    if (e3) co_return false;
    std::string resp;
    if (!co_await read_all(s, resp)) co_return false;
    bytes += adv.size() + resp.size();
    co_return looks_complete(resp);
}

asio::awaitable<bool> http_exchange(tcp::endpoint ep, const std::string& request, std::string& body) {
    tcp::socket s(co_await asio::this_coro::executor);
    auto [ec] = co_await s.async_connect(ep, use_tuple);
    if (ec) co_return false;
    s.set_option(tcp::no_delay(true));
    auto [e1, n1] = co_await asio::async_write(s, asio::buffer(request), use_tuple);
    if (e1) co_return false;
    std::string resp;
    if (!co_await read_all(s, resp)) co_return false;
    const auto hdr_end = resp.find("\r\n\r\n");
    if (resp.rfind("HTTP/1.", 0) != 0 || resp.substr(9, 3) != "200" || hdr_end == std::string::npos) co_return false;
    body = resp.substr(hdr_end + 4);
    co_return true;
}

asio::awaitable<bool> fetch_http(const Options& o, tcp::endpoint ep, std::uint64_t& bytes) {
    std::string auth;
    if (!o.auth.empty()) auth = "Authorization: Basic " + fleetconf::common::base64_encode(fleetconf::common::as_bytes(o.auth)) + "\r\n";
    const std::string base = o.prefix + "/" + o.repo + ".git";
    const std::string get = "GET " + base + "/info/refs?service=git-upload-pack HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: git/2.39.5\r\n" +
                            auth + "Connection: close\r\n\r\n";
    std::string adv;
    if (!co_await http_exchange(ep, get, adv)) co_return false;
    const auto body = fetch_body(o, true);
    const std::string post = "POST " + base + "/git-upload-pack HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: git/2.39.5\r\n" + auth +
                             "Content-Type: application/x-git-upload-pack-request\r\nAccept: application/x-git-upload-pack-result\r\n"
                             "Content-Length: " +
                             std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
    std::string resp;
    if (!co_await http_exchange(ep, post, resp)) co_return false;
    bytes += adv.size() + resp.size();
    co_return looks_complete(resp);
}

asio::awaitable<void> client(const Options& o, tcp::endpoint ep, Clock::time_point end, Stats& st) {
    while (Clock::now() < end) {
        const auto t0 = Clock::now();
        const bool ok = o.mode == "git" ? co_await fetch_git(o, ep, st.bytes) : co_await fetch_http(o, ep, st.bytes);
        if (ok) st.latencies_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
        else ++st.errors;
    }
}

}  // namespace

int main(int argc, char** argv) {
    Options o;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string k = argv[i], v = argv[i + 1];
        if (k == "--mode") o.mode = v;
        else if (k == "--port") o.port = static_cast<std::uint16_t>(std::stoi(v));
        else if (k == "--repo") o.repo = v;
        else if (k == "--want") o.want = v;
        else if (k == "--auth") o.auth = v;
        else if (k == "--prefix") o.prefix = v;
        else if (k == "--clients") o.clients = std::stoi(v);
        else if (k == "--seconds") o.seconds = std::stod(v);
        else {
            std::cerr << "git_load: unknown option " << k << "\n";
            return 2;
        }
    }
    if (o.port == 0 || o.repo.empty() || o.want.size() != 40 || (o.mode != "git" && o.mode != "http")) {
        std::cerr << "usage: git_load --mode git|http --port P --repo NAME --want OID [--auth U:T] [--prefix P] [--clients N] "
                     "[--seconds S]\n";
        return 2;
    }
    asio::io_context io(1);
    const tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), o.port);  // loopback only
    Stats st;
    const auto start = Clock::now();
    const auto end = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.seconds));
    for (int i = 0; i < o.clients; ++i) asio::co_spawn(io, client(o, ep, end, st), asio::detached);
    io.run();
    const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    auto& l = st.latencies_ms;
    std::sort(l.begin(), l.end());
    auto pct = [&](double p) {
        return l.empty() ? 0.0 : l[std::min(l.size() - 1, static_cast<std::size_t>(p * static_cast<double>(l.size())))];
    };
    std::cout << nlohmann::json{{"fetches", l.size()}, {"errors", st.errors},
                                {"seconds", elapsed},  {"rate", static_cast<double>(l.size()) / elapsed},
                                {"p50_ms", pct(0.5)},  {"p99_ms", pct(0.99)},
                                {"bytes", st.bytes}}
                     .dump()
              << "\n";
    return 0;
}
