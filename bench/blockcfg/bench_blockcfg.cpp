// blockcfg benchmark: authenticated reads/s and durable updates/s over the real control socket on
// loopback, with 1 and 16 clients, next to the raw pwrite+fdatasync rate of the same filesystem, all in
// one run. Prints a table with ratios. No thresholds: the figures go to docs/benchmarks.md.
//
//   bench_blockcfg [--seconds S] [--dir DIR]
#include "fleetconf/blockcfg/client.hpp"
#include "fleetconf/blockcfg/control_server.hpp"
#include "fleetconf/common/crypto.hpp"
#include "fleetconf/common/log.hpp"

#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <fcntl.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <thread>

using namespace fleetconf;
using namespace fleetconf::blockcfg;
using Clock = std::chrono::steady_clock;

namespace {

struct Result {
    double ops_per_s = 0;
    double p50_ms = 0, p99_ms = 0;
};

Result summarize(std::vector<double>& lat_ms, double seconds) {
    Result r;
    r.ops_per_s = static_cast<double>(lat_ms.size()) / seconds;
    if (!lat_ms.empty()) {
        std::sort(lat_ms.begin(), lat_ms.end());
        r.p50_ms = lat_ms[lat_ms.size() / 2];
        r.p99_ms = lat_ms[std::min(lat_ms.size() - 1, lat_ms.size() * 99 / 100)];
    }
    return r;
}

Result raw_fdatasync(const std::filesystem::path& file, double seconds) {
    int fd = ::open(file.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || ::ftruncate(fd, 1 << 20) != 0) throw std::runtime_error("cannot create " + file.string());
    std::vector<std::uint8_t> sector(512, 0xA5);
    std::vector<double> lat;
    const auto end = Clock::now() + std::chrono::duration<double>(seconds);
    for (std::uint64_t i = 0; Clock::now() < end; ++i) {
        const auto t0 = Clock::now();
        if (::pwrite(fd, sector.data(), sector.size(), static_cast<off_t>((i % 64) * 512)) != 512 || ::fdatasync(fd) != 0)
            throw std::runtime_error("raw write failed");
        lat.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    }
    ::close(fd);
    return summarize(lat, seconds);
}

// `clients` threads, each with its own connection, repeating `op` for `seconds`.
template <class Op>
Result run_clients(const common::Endpoint& ep, const protocol::Key& key, int clients, double seconds, Op op) {
    std::vector<std::vector<double>> lats(clients);
    std::vector<std::thread> threads;
    std::atomic<bool> go{false};
    std::atomic<int> failures{0};
    Clock::time_point end;
    for (int t = 0; t < clients; ++t)
        threads.emplace_back([&, t] {
            Client c(ep, key);
            while (!go) std::this_thread::yield();
            for (std::uint64_t i = 0; Clock::now() < end; ++i) {
                const auto t0 = Clock::now();
                auto r = c.call(op(t, i));
                if (r.value("ok", false) != true) ++failures;
                lats[t].push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
            }
        });
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // all connected
    end = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
    go = true;
    for (auto& t : threads) t.join();
    if (failures) throw std::runtime_error(std::to_string(failures.load()) + " requests failed");
    std::vector<double> all;
    for (auto& l : lats) all.insert(all.end(), l.begin(), l.end());
    return summarize(all, seconds);
}

}  // namespace

int main(int argc, char** argv) {
    double seconds = 5;
    std::filesystem::path dir = std::filesystem::current_path();
    for (int i = 1; i < argc; ++i) {
        if (!std::strcmp(argv[i], "--seconds") && i + 1 < argc) seconds = std::atof(argv[++i]);
        else if (!std::strcmp(argv[i], "--dir") && i + 1 < argc) dir = argv[++i];
        else {
            std::fprintf(stderr, "usage: bench_blockcfg [--seconds S] [--dir DIR]\n");
            return 2;
        }
    }
    common::log::Options lo;
    lo.level = spdlog::level::warn;
    common::log::setup(lo);
    const auto work = dir / ("fleetconf-bench-" + common::to_hex(common::random_bytes(4)));
    std::filesystem::create_directories(work);
    struct Cleanup {
        std::filesystem::path p;
        ~Cleanup() { std::filesystem::remove_all(p); }
    } cleanup{work};

    struct statfs sf {};
    ::statfs(work.c_str(), &sf);
    std::printf("blockcfg benchmark: %s (filesystem magic 0x%lx), %.1f s per measurement, loopback TCP\n", work.c_str(),
                static_cast<unsigned long>(sf.f_type), seconds);

    const Result raw = raw_fdatasync(work / "raw.bin", seconds);

    // The store alone: commits of a small payload, no network, no queue.
    auto direct = [&](CommitMode mode, const char* file) {
        FileDevice::create_image(work / file, 16 << 20);
        auto d = FileDevice::open(work / file, 512);
        if (Store::format(*d, {}, "{}")) throw std::runtime_error("format failed");
        std::error_code ec0;
        std::string m0;
        auto st = Store::open(*d, ec0, m0);
        st->set_commit_mode(mode);
        std::vector<double> lat;
        const std::string payload(600, 'x');
        const auto end = Clock::now() + std::chrono::duration<double>(seconds);
        while (Clock::now() < end) {
            const auto t0 = Clock::now();
            if (st->commit(payload, 0)) throw std::runtime_error("commit failed");
            lat.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
        }
        return summarize(lat, seconds);
    };
    const Result direct_ordered = direct(CommitMode::ordered, "d1.img");
    const Result direct_checksummed = direct(CommitMode::checksummed, "d2.img");

    auto upsert = [](int t, std::uint64_t i) {
        std::string host(1, 'c');
        host.append(std::to_string(t)).append("-").append(std::to_string(i % 20)).append(".bench.example");
        return nlohmann::json{{"op", "upsert"}, {"host", host}, {"address", "10.0.0.1"}, {"port", 1 + static_cast<int>(i % 60000)}};
    };
    auto get = [](int t, std::uint64_t) {
        std::string host(1, 'c');
        host.append(std::to_string(t % 16)).append("-0.bench.example");
        return nlohmann::json{{"op", "get"}, {"host", host}};
    };
    struct Row {
        std::string what;
        int clients;
        Result r;
    };
    std::vector<Row> rows;
    rows.push_back({"raw pwrite+fdatasync (same fs)", 1, raw});
    rows.push_back({"Store::commit ordered, no network", 1, direct_ordered});
    rows.push_back({"Store::commit checksummed, no net", 1, direct_checksummed});
    std::string batching;
    for (CommitMode mode : {CommitMode::ordered, CommitMode::checksummed}) {
        const std::string m = mode == CommitMode::ordered ? "ordered" : "checksummed";
        const auto img = work / (m + ".img");
        FileDevice::create_image(img, 16 << 20);
        auto dev = FileDevice::open(img, 512);
        if (Store::format(*dev, {}, to_payload(Config{}))) return 1;
        std::error_code ec;
        std::string msg;
        auto store = Store::open(*dev, ec, msg);
        store->set_commit_mode(mode);
        ConfigService svc("bench", std::move(dev), std::move(*store), common::log::get("block"));
        asio::io_context io;
        protocol::Key key{"bench", common::random_bytes(32)};
        ControlServerOptions opts;
        opts.listen = common::Endpoint{common::Ipv4{127, 0, 0, 1}, 0};
        ControlServer server(io, {{"bench", &svc}}, protocol::KeyRing{{key}}, opts, common::log::get("block"));
        server.start();
        std::thread io_thread([&] { io.run(); });
        const common::Endpoint ep{common::Ipv4{127, 0, 0, 1}, server.port()};
        Result u1 = run_clients(ep, key, 1, seconds, upsert);
        const auto g1 = svc.snapshot().gen.generation;
        Result u16 = run_clients(ep, key, 16, seconds, upsert);
        const auto g16 = svc.snapshot().gen.generation - g1;
        rows.push_back({"durable updates, " + m, 1, u1});
        rows.push_back({"durable updates, " + m, 16, u16});
        if (mode == CommitMode::ordered) {
            rows.push_back({"authenticated reads (get)", 1, run_clients(ep, key, 1, seconds, get)});
            rows.push_back({"authenticated reads (get)", 16, run_clients(ep, key, 16, seconds, get)});
        }
        char line[200];
        std::snprintf(line, sizeof line, "%s, 16 clients: %.0f acknowledged updates in %llu commits (%.1f per commit)\n", m.c_str(),
                      u16.ops_per_s * seconds, static_cast<unsigned long long>(g16), u16.ops_per_s * seconds / static_cast<double>(g16));
        batching += line;
        asio::post(io, [&] { server.stop(); });
        io_thread.join();
    }

    std::printf("\n%-34s %7s %12s %9s %9s %12s\n", "measurement", "clients", "ops/s", "p50 ms", "p99 ms", "x raw sync");
    for (const auto& row : rows)
        std::printf("%-34s %7d %12.0f %9.3f %9.3f %12.2f\n", row.what.c_str(), row.clients, row.r.ops_per_s, row.r.p50_ms, row.r.p99_ms,
                    row.r.ops_per_s / raw.ops_per_s);
    std::printf("\ngroup commit:\n%s", batching.c_str());
    return 0;
}
