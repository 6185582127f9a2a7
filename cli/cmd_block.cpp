// fleetconf block ...: the blockcfg editor's client (online) and device tools (offline).
#include "commands.hpp"

#include "fleetconf/blockcfg/client.hpp"
#include "fleetconf/blockcfg/routes.hpp"
#include "fleetconf/blockcfg/service.hpp"
#include "fleetconf/blockcfg/migrate.hpp"
#include "fleetconf/blockcfg/tlstunnel.hpp"
#include "fleetconf/common/crypto.hpp"
#include "fleetconf/common/files.hpp"
#include "fleetconf/common/text.hpp"
#include "fleetconf/common/log.hpp"
#include "fleetconf/common/runtime.hpp"

#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <ctime>
#include <iomanip>
#include <iostream>
#include <memory>

namespace fleetconf::cli {
namespace {

using nlohmann::json;
namespace bc = fleetconf::blockcfg;

struct BlockArgs {
    // online
    std::string connect;  // default 127.0.0.1:7300 (tlstunnel: 127.0.0.1:1234)
    bool legacy = false;  // --legacy-tlstunnel
    std::string format = "fleetconf";
    std::string key_file;
    std::string key_id;
    std::string device_name;
    bool json_out = false;
    std::optional<std::uint64_t> expect;
    std::string host, address, file;
    int port = 0;
    std::uint64_t generation = 0;
    // offline / serve
    std::string device, image;
    std::uint32_t sector_size = 0;
    std::uint64_t size = 0;
    std::uint32_t slots = 0;
    bool force = false;
    std::string listen = "127.0.0.1:7300";
    std::string commit_mode = "ordered";
    std::uint64_t create_size = 0;  // block serve --create-size
    // --site: --connect and --key-file from the site's services.block (what `serve` listens on and made)
    std::string site, data_dir;
};

// With --site, the editor's address and key file come from the site file (explicit options win).
bool from_site(BlockArgs& a) {
    if (a.site.empty() || a.legacy) return true;
    auto site = load_site_or_running(a.site, a.data_dir);
    if (!site) return false;
    if (a.connect.empty()) a.connect = site->services.block.listen.to_string();
    if (a.key_file.empty()) a.key_file = site->services.block.key_file.string();
    return true;
}

bc::protocol::Key pick_key(const BlockArgs& a) {
    std::string kf = a.key_file;
    if (kf.empty())
        if (const char* e = std::getenv("FLEETCONF_BLOCK_KEY_FILE")) kf = e;
    if (kf.empty()) throw std::runtime_error("no key: give --key-file FILE or set FLEETCONF_BLOCK_KEY_FILE");
    auto ring = bc::load_key_file(kf);
    if (a.key_id.empty()) return ring.keys.front();
    if (const auto* k = ring.find(a.key_id)) return *k;
    throw std::runtime_error(kf + ": no key with id \"" + a.key_id + "\"");
}

void print_routes(const json& routes) {
    std::cout << std::left << std::setw(40) << "HOST" << std::setw(42) << "ADDRESS"
              << "PORT\n";
    for (const auto& r : routes)
        std::cout << std::setw(40) << r["host"].get<std::string>() << std::setw(42) << r["address"].get<std::string>()
                  << r["port"].get<int>() << "\n";
}

namespace tt = fleetconf::blockcfg::tlstunnel;

// Opens a device read-write for the offline commands; prints recovery warnings.
std::optional<bc::Store> open_store(bc::Device& dev, std::string& err) {
    std::error_code ec;
    std::vector<std::string> warnings;
    auto s = bc::Store::open(dev, ec, err, &warnings);
    for (const auto& w : warnings) std::cerr << "fleetconf: warning: " << w << "\n";
    return s;
}

// ---- tlstunnel, as a client only ----

constexpr const char* kNoReplayWarning =
    "fleetconf: warning: tlstunnel's control protocol has no replay protection: anyone who captures this command "
    "can send it again, and replies are not authenticated. Use it only over a trusted path.";

const char* tlstunnel_exit_meaning(std::int64_t e) {
    switch (e) {
        case 0: return "ok";
        case 1: return "write failed or unexpected command";
        case 2: return "the proxy could not parse the DER";
        case 3: return "authentication failure (wrong key)";
    }
    return "unknown result code";
}

std::string tlstunnel_key(const BlockArgs& a) {
    std::string kf = a.key_file;
    if (kf.empty())
        if (const char* e = std::getenv("FLEETCONF_BLOCK_KEY_FILE")) kf = e;
    if (kf.empty())
        throw std::runtime_error("no key: give --key-file FILE (the proxy's --key, as raw bytes; one trailing newline ignored)");
    std::string key;
    if (auto err = common::read_secret_line(kf, key, common::Trim::one_newline)) throw std::runtime_error(*err);
    return key;
}

void print_snis(const std::vector<tt::Sni>& snis) {
    json routes = json::array();
    for (const auto& x : snis) routes.push_back({{"host", x.name}, {"address", common::to_string(x.host)}, {"port", x.port}});
    print_routes(routes);
}

int legacy_tlstunnel(const BlockArgs& a, const json& req) {
    const std::string op = req["op"];
    tt::Command cmd;
    if (op == "list") {
        cmd = tt::List{};
    } else if (op == "remove") {
        cmd = tt::Remove{req["host"].get<std::string>()};
    } else if (op == "add") {
        auto host = bc::normalize_host(req["host"].get<std::string>());
        if (auto* f = std::get_if<bc::Failure>(&host)) {
            print_error(f->message);
            return kExitInvalid;
        }
        auto addr = common::parse_ip(req["address"].get<std::string>());
        if (!addr || std::get<std::string>(host) == bc::kDefaultRoute) {
            print_error(addr ? "tlstunnel has no default route" : "\"" + req["address"].get<std::string>() + "\" is not an IP address");
            return kExitInvalid;
        }
        cmd = tt::Add{{std::get<std::string>(host), *addr, req["port"].get<int>()}};
    } else {
        print_error("tlstunnel knows only list, add and remove");
        return kExitInvalid;
    }
    std::cerr << kNoReplayWarning << "\n";
    auto ep = common::Endpoint::parse(a.connect.empty() ? "127.0.0.1:1234" : a.connect, 1234);
    if (!ep) {
        print_error("--connect: \"" + a.connect + "\" is not ADDRESS[:PORT]");
        return kExitInvalid;
    }
    const std::string key = tlstunnel_key(a);
    std::optional<tt::Command> reply;
    try {
        reply = bc::tlstunnel_call(*ep, key, cmd);
    } catch (const std::exception& e) {
        print_error(e.what());
        return kExitFailure;
    }
    if (const auto* r = std::get_if<tt::Result>(&*reply)) {
        if (a.json_out) std::cout << json{{"exit", r->exit}, {"message", r->message}}.dump() << "\n";
        if (r->exit != 0) {
            print_error("tlstunnel: result " + std::to_string(r->exit) + " (" + tlstunnel_exit_meaning(r->exit) + "): " + r->message);
            return kExitFailure;
        }
        if (!a.json_out) std::cout << tt::describe(cmd) << ": ok" << (r->message.empty() ? "" : " (tlstunnel: " + r->message + ")") << "\n";
        return kExitOk;
    }
    if (const auto* l = std::get_if<tt::Snis>(&*reply); l && op == "list") {
        if (a.json_out) {
            json routes = json::array();
            for (const auto& x : l->snis) routes.push_back({{"host", x.name}, {"address", common::to_string(x.host)}, {"port", x.port}});
            std::cout << routes.dump() << "\n";
        } else {
            print_snis(l->snis);
        }
        return kExitOk;
    }
    print_error(ep->to_string() + ": unexpected reply: " + tt::describe(*reply));
    return kExitFailure;
}

// Reads an image file or block device whole (tlstunnel disks are small), at most 1 GiB.
std::optional<std::vector<std::uint8_t>> read_image(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) {
        print_error(path + ": cannot open");
        return std::nullopt;
    }
    std::vector<std::uint8_t> data;
    char buf[1 << 16];
    while (f.read(buf, sizeof buf) || f.gcount() > 0) {
        data.insert(data.end(), buf, buf + f.gcount());
        if (data.size() > (std::size_t{1} << 30)) {
            print_error(path + ": larger than 1 GiB; not a tlstunnel configuration disk");
            return std::nullopt;
        }
    }
    return data;
}

// Reads a tlstunnel disk; the sector size is tried as given, or 512 then 4096 (tlstunnel::read_image).
std::optional<std::pair<tt::DiskContents, std::size_t>> read_tlstunnel(const std::string& path, std::uint32_t sector_size) {
    auto image = read_image(path);
    if (!image) return std::nullopt;
    auto r = tt::read_image(*image, sector_size);
    if (auto* ok = std::get_if<tt::ReadImage>(&r)) {
        for (const auto& n : ok->contents.notes) std::cerr << "fleetconf: warning: " << path << ": " << n << "\n";
        return std::pair{std::move(ok->contents), ok->sector_size};
    }
    std::cerr << "fleetconf: " << path << ": not a readable tlstunnel disk:\n";
    for (const auto& p : std::get<std::vector<std::string>>(r)) std::cerr << "  " << p << "\n";
    return std::nullopt;
}

int tlstunnel_offline(const BlockArgs& a, const std::string& what) {
    if (what == "dump") {
        auto r = read_tlstunnel(a.device, a.sector_size);
        if (!r) return kExitFailure;
        const auto& [c, ss] = *r;
        if (a.json_out) {
            json routes = json::array();
            for (const auto& x : c.snis) routes.push_back({{"host", x.name}, {"address", common::to_string(x.host)}, {"port", x.port}});
            std::cout << json{{"sector_size", ss},
                              {"superblock", c.used_last ? "last" : "first"},
                              {"counter", c.used.counter},
                              {"timestamp", c.used.timestamp},
                              {"unix_time", tt::decode_timestamp(c.used.timestamp)},
                              {"routes", routes},
                              {"warnings", c.notes}}
                             .dump(2)
                      << "\n";
            return kExitOk;
        }
        std::cout << a.device << ": tlstunnel disk, " << ss << "-byte sectors, read through the " << (c.used_last ? "last" : "first")
                  << " superblock (counter " << c.used.counter << ", written at Unix time " << tt::decode_timestamp(c.used.timestamp)
                  << "), " << c.snis.size() << " route(s)\n";
        print_snis(c.snis);
        return kExitOk;
    }
    if (what == "import") {  // import --format tlstunnel IMAGE DEVICE
        const std::string image = a.device, device = a.file;
        auto r = read_tlstunnel(image, a.sector_size);
        if (!r) return kExitFailure;
        auto converted = tt::to_config(r->first.snis);
        if (auto* bad = std::get_if<std::vector<std::string>>(&converted)) {
            std::cerr << "fleetconf: " << image << ": routes fleetconf cannot take (nothing imported):\n";
            for (const auto& b : *bad) std::cerr << "  " << b << "\n";
            return kExitInvalid;
        }
        const auto& cfg = std::get<bc::Config>(converted);
        auto dev = bc::FileDevice::open(device, 0, false);
        std::string err;
        auto s = open_store(*dev, err);
        if (!s) {
            print_error(device + ": " + err);
            return kExitFailure;
        }
        if (auto ec = s->commit(bc::to_payload(cfg), bc::now_ns())) {
            print_error(device + ": " + ec.message());
            return kExitFailure;
        }
        std::cout << device << ": imported " << cfg.routes.size() << " route(s) from the tlstunnel disk " << image << " as generation "
                  << s->generation() << "\n";
        return kExitOk;
    }
    // export --format tlstunnel DEVICE IMAGE
    if (a.image.empty()) {
        print_error("export --format tlstunnel needs the IMAGE to write after DEVICE");
        return kExitInvalid;
    }
    auto dev = bc::FileDevice::open(a.device, 0, true);
    std::string err;
    auto s = open_store(*dev, err);
    if (!s) {
        print_error(a.device + ": " + err);
        return kExitFailure;
    }
    auto c = bc::from_payload(s->payload());
    if (auto* f = std::get_if<bc::Failure>(&c)) {
        print_error(a.device + ": " + f->message);
        return kExitFailure;
    }
    const auto& cfg = std::get<bc::Config>(c);
    const auto exported = tt::from_config(cfg);
    const auto& snis = exported.snis;
    if (exported.default_dropped) std::cerr << "fleetconf: warning: tlstunnel has no default route; the default route is not exported\n";
    const std::size_t ss = a.sector_size ? a.sector_size : 512;
    struct stat st {};
    const bool exists = ::stat(a.image.c_str(), &st) == 0;
    const bool blockdev = exists && S_ISBLK(st.st_mode);
    std::uint64_t bytes = a.size ? a.size : 1 << 20;
    std::uint64_t counter = 1;
    if (exists) {  // write over it: keep its size, and count on from its newest verified superblock
        auto old = read_image(a.image);
        if (!old) return kExitFailure;
        if (!a.size) bytes = old->size();
        counter = tt::next_counter(*old, ss);
    }
    if (bytes % ss != 0) {
        print_error(a.image + ": " + std::to_string(bytes) + " bytes is not a whole number of " + std::to_string(ss) + "-byte sectors");
        return kExitInvalid;
    }
    const auto now = static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count());
    tt::Bytes out;
    try {
        out = tt::write_disk(snis, ss, bytes / ss, counter, tt::encode_timestamp(static_cast<std::int64_t>(now)));
    } catch (const std::exception& e) {
        print_error(a.image + ": " + e.what());
        return kExitInvalid;
    }
    if (blockdev) {
        const int fd = ::open(a.image.c_str(), O_WRONLY | O_CLOEXEC);
        bool ok = fd >= 0;
        for (std::size_t off = 0; ok && off < out.size();) {
            const auto n = ::pwrite(fd, out.data() + off, out.size() - off, static_cast<off_t>(off));
            ok = n > 0;
            if (ok) off += static_cast<std::size_t>(n);
        }
        ok = ok && ::fsync(fd) == 0;
        if (fd >= 0) ::close(fd);
        if (!ok) {
            print_error(a.image + ": write failed: " + std::strerror(errno));
            return kExitFailure;
        }
    } else {
        common::write_file_atomic(a.image, out, 0640);
    }
    std::cout << a.image << ": tlstunnel disk written: " << snis.size() << " route(s), " << ss << "-byte sectors, " << bytes / ss
              << " sectors, counter " << counter << "\n";
    return kExitOk;
}

int online(const BlockArgs& a, json req) {
    if (a.legacy) return legacy_tlstunnel(a, req);
    auto ep = common::Endpoint::parse(a.connect.empty() ? "127.0.0.1:7300" : a.connect, 7300);
    if (!ep) {
        print_error("--connect: \"" + a.connect + "\" is not ADDRESS[:PORT]");
        return kExitInvalid;
    }
    if (!a.device_name.empty()) req["device"] = a.device_name;
    if (a.expect) req["expect_generation"] = *a.expect;
    bc::Client client(*ep, pick_key(a));
    const json r = client.call(req);
    if (a.json_out) std::cout << r.dump() << "\n";
    if (r.value("ok", false) != true) {
        const auto& e = r["error"];
        print_error(e.value("code", "ERROR") + ": " + e.value("message", "") + " (generation " + std::to_string(r.value("generation", 0)) +
                    ")");
        return kExitFailure;
    }
    if (a.json_out) return kExitOk;
    const std::string op = req["op"];
    if (op == "list") print_routes(r["routes"]);
    else if (op == "get") print_routes(json::array({r["route"]}));
    else if (op == "history") {
        // Newest first, as `git log`: the time in UTC (ISO 8601), who changed what (older generations,
        // written before fleetconf recorded it, show "-").
        std::cout << std::left << std::setw(12) << "GENERATION" << std::setw(22) << "TIME (UTC)" << std::setw(8) << "BYTES" << std::setw(28)
                  << "BY"
                  << "CHANGE\n";
        auto gens = r["generations"];
        std::sort(gens.begin(), gens.end(), [](const json& x, const json& y) { return x["generation"] > y["generation"]; });
        for (const auto& g : gens) {
            const auto ns = g["timestamp_ns"].get<std::uint64_t>();
            const auto t = static_cast<std::time_t>(ns / 1000000000u);
            std::tm tm{};
            gmtime_r(&t, &tm);
            char when[32];
            std::strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
            const auto changes = g.value("change", json::array());
            std::string by = "-", what = "-";
            for (const auto& c : changes) {
                by = (by == "-" ? "" : by + ", ") + c.value("by", "?");
                what = (what == "-" ? "" : what + "; ") + c.value("what", "?");
            }
            std::cout << std::setw(12) << g["generation"].get<std::uint64_t>() << std::setw(22) << when << std::setw(8)
                      << g["bytes"].get<std::uint64_t>() << std::setw(28) << common::printable(by) << common::printable(what) << "\n";
        }
    } else if (op == "status") {
        for (const auto& [k, v] : r.items())
            if (k != "ok") std::cout << k << ": " << v.dump() << "\n";
    } else {
        std::cout << op << ": ok, generation " << r["previous_generation"].get<std::uint64_t>() << " -> "
                  << r["generation"].get<std::uint64_t>() << "\n";
    }
    if (r.contains("warnings") && r["warnings"].is_array())
        for (const auto& w : r["warnings"])
            if (w.is_string()) std::cerr << "fleetconf: warning: " << w.get<std::string>() << "\n";
    return kExitOk;
}

int offline(const BlockArgs& a, const std::string& what) {
    // A device a server runs as its own user: written as another (root), it would be locked out.
    if ((what == "format" || what == "import") && std::filesystem::exists(a.device) &&
        !writes_as_owner(std::filesystem::absolute(a.device).parent_path()))
        return kExitFailure;
    if (a.format == "tlstunnel") {
        if (what != "dump" && what != "import" && what != "export") {
            print_error("--format tlstunnel applies to dump, import and export");
            return kExitInvalid;
        }
        return tlstunnel_offline(a, what);
    }
    if (!a.image.empty()) {
        print_error("IMAGE is for export --format tlstunnel; the fleetconf export writes JSON to standard output");
        return kExitInvalid;
    }
    if (what == "format") {
        if (!std::filesystem::exists(a.device)) {
            if (a.size == 0) {
                print_error(a.device + " does not exist; give --size BYTES to create an image file");
                return kExitInvalid;
            }
            bc::FileDevice::create_image(a.device, a.size);
        }
        auto dev = bc::FileDevice::open(a.device, a.sector_size);
        bc::FormatOptions o;
        o.force = a.force;
        o.slots = a.slots;
        std::string msg;
        if (auto ec = bc::Store::format(*dev, o, bc::to_payload(bc::Config{}), &msg)) {
            print_error(a.device + ": " + (msg.empty() ? ec.message() : msg));
            return ec == bc::errc::not_blank ? kExitInvalid : kExitFailure;
        }
        std::error_code ec;
        auto s = bc::Store::open(*dev, ec, msg);
        std::cout << a.device << ": formatted: " << s->geometry().sectors << " sectors of " << s->geometry().sector_size << " bytes, "
                  << s->geometry().slots << " slots of " << s->geometry().max_payload() << " bytes, uuid " << common::to_hex(s->uuid())
                  << "\n";
        return kExitOk;
    }
    const bool writes = what == "import";
    auto dev = bc::FileDevice::open(a.device, a.sector_size, !writes);
    if (dev->shared_with_editor())
        std::cerr << "fleetconf: note: " << a.device << " is served by a running fleetconf; read without a lock (the slots' checksums "
                  << "guard against a generation being overwritten meanwhile)\n";
    std::string err;
    auto s = open_store(*dev, err);
    if (!s) {
        print_error(a.device + ": " + err);
        return kExitFailure;
    }
    if (what == "fsck") {
        const auto& g = s->geometry();
        std::cout << a.device << ": ok: generation " << s->generation() << ", " << s->history().size() << " of " << g.slots
                  << " slots hold intact generations, uuid " << common::to_hex(s->uuid()) << "\n";
        auto c = bc::from_payload(s->payload());
        if (auto* f = std::get_if<bc::Failure>(&c)) {
            print_error(a.device + ": " + f->message);
            return kExitFailure;
        }
        return kExitOk;
    }
    std::string payload = s->payload();
    if (a.generation) {
        auto p = s->read_generation(a.generation);
        if (!p) {
            print_error(a.device + ": generation " + std::to_string(a.generation) + " is not on the device");
            return kExitFailure;
        }
        payload = *p;
    }
    if (what == "dump" || what == "export") {
        auto c = bc::from_payload(payload);
        if (auto* f = std::get_if<bc::Failure>(&c)) {
            print_error(a.device + ": " + f->message);
            return kExitFailure;
        }
        if (what == "export" || a.json_out) std::cout << json::parse(bc::to_payload(std::get<bc::Config>(c))).dump(2) << "\n";
        else print_routes(bc::routes_json(std::get<bc::Config>(c)));
        return kExitOk;
    }
    // import FILE: a new generation from an exported document
    std::string text;
    if (auto e = common::read_file_limited(a.file, 16 << 20, text)) {
        print_error(*e);
        return kExitInvalid;
    }
    auto c = bc::from_payload(text);
    if (auto* f = std::get_if<bc::Failure>(&c)) {
        print_error(a.file + ": " + f->message);
        return kExitInvalid;
    }
    if (auto ec = s->commit(bc::to_payload(std::get<bc::Config>(c)), bc::now_ns())) {
        print_error(a.device + ": " + ec.message());
        return kExitFailure;
    }
    std::cout << a.device << ": imported " << std::get<bc::Config>(c).routes.size() << " routes as generation " << s->generation() << "\n";
    return kExitOk;
}

int serve(const BlockArgs& a) {
    auto log = common::log::get("block");
    auto ep = common::Endpoint::parse_listen(a.listen);
    if (!ep) {
        print_error("--listen: \"" + a.listen + "\" is not ADDRESS:PORT");
        return kExitInvalid;
    }
    if (a.key_file.empty()) {
        print_error("--key-file is required (create one with: fleetconf block keygen FILE)");
        return kExitInvalid;
    }
    const auto name = std::filesystem::path(a.device).stem().string();
    // --create-size: a device that does not exist yet is created and formatted (a systemd template's first start).
    auto svc =
        bc::open_device(name, a.device, a.sector_size ? a.sector_size : 512, a.create_size ? std::optional(a.create_size) : std::nullopt,
                        log, a.commit_mode == "checksummed" ? bc::CommitMode::checksummed : bc::CommitMode::ordered);
    common::Runtime rt;
    bc::ControlServerOptions opts;
    opts.listen = *ep;
    bc::ControlServer server(rt.io(), {{name, svc.get()}}, bc::load_key_file(a.key_file), opts, log);
    server.start();
    rt.on_stop([&] { server.stop(); });
    rt.on_reload([&] {
        try {
            server.set_keys(bc::load_key_file(a.key_file));
            log->info("reloaded keys from {}", a.key_file);
        } catch (const std::exception& e) {
            log->error("key reload refused, keeping the current keys: {}", e.what());
        }
    });
    common::notify_systemd("READY=1");  // systemd Type=notify: the control socket is bound
    return rt.run() ? kExitOk : kExitFailure;
}

}  // namespace

void add_block_commands(CLI::App& app, Action& action) {
    auto* b = app.add_subcommand("block",
                                 "The block-device configuration store: edit a running editor over its "
                                 "authenticated control socket, or work on a device offline");
    b->require_subcommand(1);
    auto a = std::make_shared<BlockArgs>();
    b->add_flag("--legacy-tlstunnel", a->legacy,
                "list, add and remove against a running tlstunnel proxy, in its own protocol (default port 1234; --key-file "
                "holds its --key). That protocol has NO replay protection: use it only over a trusted path");
    auto add_online = [&](const char* name, const char* help) {
        auto* c = b->add_subcommand(name, help);
        c->add_option("--connect", a->connect, "Editor address HOST:PORT (default 127.0.0.1:7300; tlstunnel: 127.0.0.1:1234)");
        c->add_option("--key-file", a->key_file, "Key file (or FLEETCONF_BLOCK_KEY_FILE); never a key on the command line");
        c->add_option("--key-id", a->key_id, "Key id in the key file (default: the first)");
        c->add_option("--device", a->device_name, "Device name when the editor serves several");
        c->add_flag("--json", a->json_out, "Print the raw JSON reply");
        c->add_option("--site", a->site,
                      "Site file: --connect and --key-file from its services.block (the listener and key file serve uses)");
        add_data_dir_option(c, a->data_dir);
        return c;
    };
    auto mutating = [&](CLI::App* c) {
        c->add_option("--expect-generation", a->expect, "Fail with CONFLICT unless the configuration is at this generation");
    };
    auto bind = [&](CLI::App* c, std::function<json(const BlockArgs&)> req) {
        c->callback([&action, a, req] { action = [a, req] { return from_site(*a) ? online(*a, req(*a)) : kExitInvalid; }; });
    };
    bind(add_online("list", "List the routes"), [](const BlockArgs&) { return json{{"op", "list"}}; });
    auto* get = add_online("get", "Show one route");
    get->add_option("HOST", a->host, "Host name (\"default\" for the default route)")->required();
    bind(get, [](const BlockArgs& x) { return json{{"op", "get"}, {"host", x.host}}; });
    for (const char* op : {"add", "update", "upsert"}) {
        auto* c = add_online(op, op == std::string("add")      ? "Add a route (fails if present)"
                                 : op == std::string("update") ? "Change a route (fails if absent)"
                                                               : "Add or change a route");
        c->add_option("HOST", a->host, "TLS SNI host name, *.wildcard, or \"default\"")->required();
        c->add_option("ADDRESS", a->address, "Backend IPv4 or IPv6 address")->required();
        c->add_option("PORT", a->port, "Backend port")->required()->check(CLI::Range(1, 65535));
        mutating(c);
        std::string o = op;
        bind(c, [o](const BlockArgs& x) { return json{{"op", o}, {"host", x.host}, {"address", x.address}, {"port", x.port}}; });
    }
    auto* rm = add_online("remove", "Remove a route (fails if absent)");
    rm->add_option("HOST", a->host, "Host name")->required();
    mutating(rm);
    bind(rm, [](const BlockArgs& x) { return json{{"op", "remove"}, {"host", x.host}}; });
    auto* rep = add_online("replace", "Replace every route with those of a JSON file ({\"routes\":[...],\"default\":...})");
    rep->add_option("FILE", a->file, "JSON file, as written by `block export`")->required()->check(CLI::ExistingFile);
    mutating(rep);
    rep->callback([&action, a] {
        action = [a] {
            std::string text;
            if (auto e = common::read_file_limited(a->file, 16 << 20, text)) throw std::runtime_error(*e);
            json doc = json::parse(text, nullptr, false);
            if (doc.is_discarded() || !doc.is_object() || !doc.contains("routes"))
                throw std::runtime_error(a->file + ": expected a JSON object with \"routes\"");
            json req{{"op", "replace"}, {"routes", doc["routes"]}};
            if (doc.contains("default")) req["default"] = doc["default"];
            return online(*a, req);
        };
    });
    bind(add_online("history", "List the generations still on the device"), [](const BlockArgs&) { return json{{"op", "history"}}; });
    auto* rb = add_online("rollback", "Restore an earlier generation's routes (as a new generation)");
    rb->add_option("GENERATION", a->generation, "Generation number (see history)")->required();
    mutating(rb);
    bind(rb, [](const BlockArgs& x) { return json{{"op", "rollback"}, {"generation", x.generation}}; });
    bind(add_online("status", "Generation, device geometry, route count"), [](const BlockArgs&) { return json{{"op", "status"}}; });

    auto add_offline = [&](const char* name, const char* help) {
        auto* c = b->add_subcommand(name, help);
        c->add_option("DEVICE", a->device, "Image file or block device")->required();
        c->add_option("--sector-size", a->sector_size, "512 or 4096 (default: detected; with --format tlstunnel: the tlstunnel image's)");
        if (std::string(name) == "dump" || std::string(name) == "import" || std::string(name) == "export")
            c->add_option("--format", a->format,
                          "fleetconf, or tlstunnel: dump IMAGE, import IMAGE DEVICE (routes of a tlstunnel disk into a fleetconf "
                          "device), export DEVICE IMAGE (write a tlstunnel disk; --size for a new file, default 1 MiB)")
                ->check(CLI::IsMember({"fleetconf", "tlstunnel"}))
                ->capture_default_str();
        std::string n = name;
        c->callback([&action, a, n] { action = [a, n] { return offline(*a, n); }; });
        return c;
    };
    auto* fmt = add_offline("format", "Initialise a device (refuses one that holds data unless --force)");
    fmt->add_option("--size", a->size, "Create an image file of this many bytes if DEVICE does not exist");
    fmt->add_option("--slots", a->slots, "Number of generations kept (2-16; default: as many 64 KiB slots as fit)");
    fmt->add_flag("--force", a->force, "Erase a device that holds data");
    auto* dump = add_offline("dump", "Print the routes stored on a device, without a server");
    dump->add_option("--generation", a->generation, "An older generation");
    dump->add_flag("--json", a->json_out, "JSON output");
    add_offline("fsck", "Check a device: headers, payload checksums, history; exit 1 if it cannot be read");
    auto* exp = add_offline("export", "Write the stored configuration as JSON to standard output (or a tlstunnel disk image)");
    exp->add_option("--generation", a->generation, "An older generation");
    exp->add_option("IMAGE", a->image, "With --format tlstunnel: the image file or block device to write");
    exp->add_option("--size", a->size, "With --format tlstunnel: size in bytes of a new image file (default 1 MiB)");
    auto* imp = add_offline("import", "Commit a JSON configuration (from export) as a new generation");
    imp->add_option("FILE", a->file, "JSON file (with --format tlstunnel: DEVICE is the tlstunnel image, this the fleetconf device)")
        ->required()
        ->check(CLI::ExistingFile);

    auto* srv = b->add_subcommand("serve", "Run the editor for one device in the foreground (SIGHUP reloads the key file)");
    srv->add_option("DEVICE", a->device, "Formatted image file or block device (with --create-size: created when absent)")->required();
    srv->add_option("--create-size", a->create_size,
                    "When DEVICE does not exist: create an image file of this many bytes and format it (a device that exists is "
                    "never formatted)");
    srv->add_option("--listen", a->listen, "Control socket ADDRESS:PORT (loopback by default)")->capture_default_str();
    srv->add_option("--key-file", a->key_file, "Key file (mode 600)")->required();
    srv->add_option("--commit-mode", a->commit_mode,
                    "ordered: sync the payload, then the header (2 syncs per commit); checksummed: one sync, safe "
                    "through checksum-verified recovery (docs/blockcfg-format.md)")
        ->check(CLI::IsMember({"ordered", "checksummed"}))
        ->capture_default_str();
    srv->callback([&action, a] {
        action = [a] {
            if (!a->create_size && !std::filesystem::exists(a->device)) {
                print_error(a->device + " does not exist (format it with `fleetconf block format`, or give --create-size BYTES)");
                return kExitInvalid;
            }
            return serve(*a);
        };
    });

    auto* kg = b->add_subcommand("keygen", "Create a key file with one fresh 32-byte key (mode 600)");
    kg->add_option("FILE", a->file, "Key file to create (never overwritten)")->required();
    kg->add_option("--key-id", a->key_id, "Key id (default: admin)");
    kg->callback([&action, a] {
        action = [a] {
            auto k = bc::create_key_file(a->file, a->key_id.empty() ? "admin" : a->key_id);
            std::cout << a->file << ": created key \"" << k.id << "\"\n";
            return kExitOk;
        };
    });
}

}  // namespace fleetconf::cli
