// The DHCP control channel (Kea-compatible command names and reply shapes) on a unix socket and, as
// kea-ctrl-agent serves it, over HTTP; the statistics in Prometheus text format and the service's health
// for the process's status endpoint (common/status.hpp).
#include "service_impl.hpp"
#include "fleetconf/common/clock.hpp"

#include "fleetconf/common/crypto.hpp"
#include "fleetconf/common/files.hpp"
#include "fleetconf/common/http.hpp"
#include "fleetconf/common/log.hpp"
#include "fleetconf/common/runtime.hpp"
#include "fleetconf/common/text.hpp"

#include <asio/co_spawn.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <ctime>
#include <set>

namespace fleetconf::dhcp {

using common::unix_now;

using common::Ipv4;
using nlohmann::json;

namespace {

constexpr auto use_tuple = asio::experimental::as_tuple(asio::use_awaitable);
constexpr std::size_t kMaxCommandBytes = 1 << 20;
constexpr auto kCommandTimeout = std::chrono::seconds(10);

const char* const kCommands[] = {"config-get",    "config-reload", "lease4-add",    "lease4-del",        "lease4-get", "lease4-get-all",
                                 "list-commands", "log-level-get", "log-level-set", "statistic-get-all", "status-get"};

// The command's name for a log line, whatever the request's shape ("?" when it has none).
std::string command_name(const json& request) {
    if (!request.is_object()) return "?";
    const auto it = request.find("command");
    return it != request.end() && it->is_string() ? common::printable(it->get<std::string>()).substr(0, 60) : "?";
}

json reply(int result, std::string text, json arguments = nullptr) {
    json r{{"result", result}, {"text", std::move(text)}};
    if (!arguments.is_null()) r["arguments"] = std::move(arguments);
    return r;
}

std::string timestamp() {
    char buf[40];
    const std::time_t t = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&t, &tm);
    std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S.000000", &tm);
    return buf;
}

}  // namespace

namespace {

json lease_json(const Lease& l, const Config& cfg, std::uint64_t now) {
    int subnet_id = 0;
    for (std::size_t i = 0; i < cfg.networks.size(); ++i)
        if (cfg.networks[i].name == l.network) subnet_id = static_cast<int>(i + 1);
    json j{{"ip-address", l.address.to_string()},
           {"hw-address", l.mac.to_string()},
           {"hostname", l.hostname},
           {"subnet-id", subnet_id},
           {"valid-lft", l.expires > now ? l.expires - now : 0},
           {"expire", l.expires},
           {"state", l.state == LeaseState::declined ? 1 : (l.expires <= now ? 2 : 0)},
           {"fleetconf-state", std::string(to_string(l.state))}};
    if (!l.client.empty() && l.client[0] == 0xFF) j["client-id"] = common::to_hex(std::span(l.client).subspan(1));
    return j;
}

}  // namespace

json Service::command(const json& request) {
    auto& im = *impl_;
    if (!request.is_object() || !request.contains("command") || !request["command"].is_string())
        return reply(1, "invalid command: expected {\"command\": NAME, \"arguments\": {...}}");
    const std::string cmd = request["command"];
    const json args = request.value("arguments", json::object());
    if (!args.is_object()) return reply(1, "\"arguments\" must be an object");
    const std::uint64_t now = unix_now();
    auto arg_ip = [&](std::string& err) -> std::optional<Ipv4> {
        if (!args.contains("ip-address") || !args["ip-address"].is_string()) {
            err = "missing parameter 'ip-address'";
            return std::nullopt;
        }
        auto a = Ipv4::parse(args["ip-address"].get<std::string>());
        if (!a) err = "'" + args["ip-address"].get<std::string>().substr(0, 60) + "' is not an IPv4 address";
        return a;
    };
    if (cmd == "list-commands") return reply(0, std::to_string(std::size(kCommands)) + " commands", json(kCommands));
    if (cmd == "status-get") {
        const auto up = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - im.started).count();
        return reply(0, "",
                     {{"pid", ::getpid()},
                      {"uptime", up},
                      {"leases", im.store->all().size()},
                      {"durable", im.opts.durable},
                      {"interfaces", im.sockets.size()}});
    }
    if (cmd == "statistic-get-all") {
        json a = json::object();
        const std::string ts = timestamp();
        auto put = [&](const std::string& name, std::uint64_t v) { a[name] = json::array({json::array({v, ts})}); };
        put("pkt4-received", im.stats.received);
        put("pkt4-parse-failed", im.stats.parse_failed);
        put("pkt4-receive-drop", im.stats.receive_drop);
        put("pkt4-sent", im.stats.sent);
        static const char* rx[] = {"", "discover", "offer", "request", "decline", "ack", "nak", "release", "inform"};
        for (int t = 1; t <= 8; ++t) {
            put(std::string("pkt4-") + rx[t] + "-received", im.stats.received_by_type[t]);
            put(std::string("pkt4-") + rx[t] + "-sent", im.stats.sent_by_type[t]);
        }
        const auto all = im.store->all();
        for (std::size_t i = 0; i < im.cfg.networks.size(); ++i) {
            const auto& n = im.cfg.networks[i];
            std::uint64_t total = 0, assigned = 0, declined = 0;
            for (const auto& r : n.pools) total += r.size();
            for (const auto& l : all)
                if (l.network == n.name && l.expires > now) {
                    if (l.state == LeaseState::bound) ++assigned;
                    if (l.state == LeaseState::declined) ++declined;
                }
            const std::string p = "subnet[" + std::to_string(i + 1) + "].";
            put(p + "total-addresses", total);
            put(p + "assigned-addresses", assigned);
            put(p + "declined-addresses", declined);
            const auto e = im.exhaustion.find(n.name);
            put(p + "v4-allocation-fail", e == im.exhaustion.end() ? 0 : e->second.failures);
        }
        put("v4-allocation-fail", im.stats.allocation_failures);
        put("fleetconf-unknown-clients-refused", im.stats.unknown_clients);
        return reply(0, "", a);
    }
    if (cmd == "lease4-get") {
        const Lease* l = nullptr;
        if (args.contains("ip-address")) {
            std::string err;
            auto a = arg_ip(err);
            if (!a) return reply(1, err);
            l = im.store->by_address(*a);
        } else if (args.value("identifier-type", "") == "hw-address" && args.contains("identifier") && args["identifier"].is_string()) {
            auto mac = common::Mac::parse(args["identifier"].get<std::string>());
            if (!mac) return reply(1, "'identifier' is not a hardware address");
            for (const auto& x : im.store->all())
                if (x.mac == *mac && (!l || x.expires > l->expires)) l = im.store->by_address(x.address);
        } else {
            return reply(1, "missing parameter: 'ip-address', or 'identifier-type': 'hw-address' with 'identifier'");
        }
        if (!l) return reply(3, "Lease not found.");
        return reply(0, "IPv4 lease found.", lease_json(*l, im.cfg, now));
    }
    if (cmd == "lease4-get-all") {
        // Kea's "subnets": [id, ...] (1-based network numbers, site order) limits the answer to those networks.
        std::set<std::string> only;
        if (args.contains("subnets")) {
            if (!args["subnets"].is_array()) return reply(1, "'subnets' must be an array of subnet ids");
            for (const auto& id : args["subnets"]) {
                if (!id.is_number_unsigned() || id.get<std::uint64_t>() == 0 || id.get<std::uint64_t>() > im.cfg.networks.size())
                    return reply(1, "'subnets': " + id.dump().substr(0, 30) + " is not a subnet id (1-" +
                                        std::to_string(im.cfg.networks.size()) + ")");
                only.insert(im.cfg.networks[id.get<std::size_t>() - 1].name);
            }
        }
        json leases = json::array();
        for (const auto& l : im.store->all())
            if (only.empty() || only.count(l.network)) leases.push_back(lease_json(l, im.cfg, now));
        const auto n = leases.size();
        return reply(n ? 0 : 3, std::to_string(n) + " IPv4 lease(s) found.", {{"leases", leases}});
    }
    if (cmd == "lease4-del") {
        std::string err;
        auto a = arg_ip(err);
        if (!a) return reply(1, err);
        const Lease* l = im.store->by_address(*a);
        if (!l) return reply(3, "IPv4 lease not found.");
        const Lease gone = *l;
        im.store->apply({{gone, true}});
        if (!im.journal_write(true, "lease4-del of " + a->to_string() + " not confirmed"))
            return reply(1, "lease journal: " + im.journal_error + "; the deletion is not durable yet");
        im.report({LeaseEvent::Kind::released, gone, "lease4-del"});
        im.log->info("control: lease {} deleted", a->to_string());
        return reply(0, "IPv4 lease deleted.");
    }
    if (cmd == "lease4-add") {
        std::string err;
        auto a = arg_ip(err);
        if (!a) return reply(1, err);
        if (!args.contains("hw-address") || !args["hw-address"].is_string()) return reply(1, "missing parameter 'hw-address'");
        auto mac = common::Mac::parse(args["hw-address"].get<std::string>());
        if (!mac) return reply(1, "'hw-address' is not a hardware address");
        const NetworkConfig* net = nullptr;
        for (const auto& n : im.cfg.networks)
            if (n.subnet.is_host(*a)) net = &n;
        if (!net) return reply(1, a->to_string() + " is not a host address of any network");
        if (const Lease* old = im.store->by_address(*a); old && old->expires > now && old->mac != *mac)
            return reply(1, a->to_string() + " is leased to " + old->mac.to_string());
        Lease l;
        l.address = *a;
        l.mac = *mac;
        l.client = {1};
        l.client.insert(l.client.end(), mac->bytes().begin(), mac->bytes().end());
        if (args.contains("client-id") && args["client-id"].is_string()) {
            auto cid = common::from_hex(args["client-id"].get<std::string>());
            if (!cid || cid->empty()) return reply(1, "'client-id' is not hex");
            l.client = {0xFF};
            l.client.insert(l.client.end(), cid->begin(), cid->end());
        }
        l.hostname = common::printable(args.value("hostname", ""));
        l.network = net->name;
        l.state = LeaseState::bound;
        const auto valid = args.value("valid-lft", static_cast<std::uint64_t>(net->lease_time));
        l.expires = now + valid;
        im.store->apply({{l}});
        if (!im.journal_write(true, "lease4-add of " + a->to_string() + " not confirmed"))
            return reply(1, "lease journal: " + im.journal_error + "; the lease is not durable yet");
        im.report({LeaseEvent::Kind::bound, l, "lease4-add"});
        im.log->info("control: lease {} added for {}", a->to_string(), mac->to_string());
        return reply(0, "Lease for address " + a->to_string() + " added.");
    }
    if (cmd == "config-get") {
        // What runs, not what is on disk (they differ after an edit or a refused reload).
        if (!im.site_text) return reply(1, "no site file known to this service");
        return reply(0, "",
                     {{"site-file", im.opts.site_file.string()},
                      {"sha256", im.site_digest},
                      {"site", json::parse(*im.site_text, nullptr, false, /*ignore_comments=*/true)}});
    }
    if (cmd == "log-level-get") return reply(0, "", {{"levels", common::log::levels()}});
    if (cmd == "log-level-set") {
        if (!args.contains("levels") || !args["levels"].is_string())
            return reply(1, "missing parameter 'levels' (as --log-level: \"info,dhcp=debug\")");
        const auto spec = args["levels"].get<std::string>();
        if (auto err = common::log::set_levels(spec)) return reply(1, *err);
        im.log->info("control: log levels now {}", common::log::levels());
        return reply(0, "log levels set", {{"levels", common::log::levels()}});
    }
    if (cmd == "config-reload") return reply(1, "config-reload waits for the reload's verdict: send it over the control channel");
    return reply(2, "'" + cmd.substr(0, 60) + "' command not supported.");
}

void Service::command_async(const json& request, std::function<void(json)> done) {
    auto& im = *impl_;
    if (command_name(request) != "config-reload") {
        json answer;
        try {
            answer = command(request);
        } catch (const std::exception& e) {
            answer = reply(1, std::string("internal error: ") + e.what());
        }
        done(std::move(answer));
        return;
    }
    if (!im.reload_hook) {
        done(reply(1, "reload is not available here"));
        return;
    }
    // Kea's answers: 0 "Configuration successful." when applied; 1 with the reason when refused.
    im.reload_hook([done](const common::ReloadVerdict& v) {
        json args{{"seq", v.seq}, {"sha256", v.running_digest}};
        if (!v.restart_keys.empty()) args["restart-keys"] = v.restart_keys;
        done(v.applied ? reply(0, "Configuration successful.", args)
                       : reply(1, "configuration refused, the running one stays: " + v.message, args));
    });
}

void Service::set_reload_hook(std::function<void(ReloadDone)> hook) { impl_->reload_hook = std::move(hook); }
void Service::set_lease_hook(std::function<void(const LeaseEvent&)> hook) { impl_->lease_hook = std::move(hook); }

std::string Service::prometheus() const {
    const auto& im = *impl_;
    std::string out;
    auto metric = [&](const std::string& name, const std::string& help, const char* type, const std::string& labels, std::uint64_t v) {
        out += "# HELP fleetconf_dhcp_" + name + " " + help + "\n# TYPE fleetconf_dhcp_" + name + " " + type + "\n";
        out += "fleetconf_dhcp_" + name + labels + " " + std::to_string(v) + "\n";
    };
    metric("packets_received_total", "DHCP packets received", "counter", "", im.stats.received);
    metric("packets_sent_total", "DHCP packets sent", "counter", "", im.stats.sent);
    metric("parse_errors_total", "Malformed packets", "counter", "", im.stats.parse_failed);
    metric("naks_sent_total", "DHCPNAK replies", "counter", "", im.stats.sent_by_type[6]);
    metric("declines_received_total", "DHCPDECLINE messages", "counter", "", im.stats.declines);
    metric("journal_syncs_total", "Lease journal fdatasync calls", "counter", "", im.stats.journal_syncs);
    if (im.journal) {
        std::uint64_t bytes = 0;
        for (const auto& r : im.journal->recovery().damaged) bytes += r.length;
        metric("journal_damaged_regions", "Damaged regions the lease journal held at start (skipped, copied aside)", "gauge", "",
               im.journal->recovery().damaged.size());
        metric("journal_damaged_bytes", "Bytes in those damaged regions", "gauge", "", bytes);
        metric("journal_lost_records", "Records lost in those regions (gaps in the sequence numbers)", "gauge", "",
               im.journal->recovery().missing_records);
    }
    metric("journal_failures_total", "Lease journal writes that failed (their replies were withheld)", "counter", "",
           im.stats.journal_failures);
    metric("store_unavailable_drops_total", "Requests left unanswered while the lease database was unreachable", "counter", "",
           im.stats.store_unavailable);
    metric("conflict_withheld_acks_total", "ACKs withheld because another server wrote the lease first", "counter", "",
           im.stats.withheld_conflicts);
    metric("lease_store_available", "1 while leases can be offered and promised (the lease database is reachable)", "gauge", "",
           im.store->unavailable() ? 0 : 1);
    for (const auto& [name, value] : im.store->counters())
        metric("lease_" + name + "_total", "Lease database: " + name, "counter", "", value);
    metric("unknown_clients_refused_total", "DISCOVERs and REQUESTs refused by a network's known_only", "counter", "",
           im.stats.unknown_clients);
    out +=
        "# HELP fleetconf_dhcp_allocation_failures_total DISCOVERs that found no free address (Kea: v4-allocation-fail)\n"
        "# TYPE fleetconf_dhcp_allocation_failures_total counter\n";
    for (const auto& n : im.cfg.networks) {
        const auto e = im.exhaustion.find(n.name);
        out += "fleetconf_dhcp_allocation_failures_total{network=\"" + n.name + "\"} " +
               std::to_string(e == im.exhaustion.end() ? 0 : e->second.failures) + "\n";
    }
    static const char* names[] = {"", "discover", "offer", "request", "decline", "ack", "nak", "release", "inform"};
    out += "# HELP fleetconf_dhcp_messages_total DHCP messages by type and direction\n# TYPE fleetconf_dhcp_messages_total counter\n";
    for (int t = 1; t <= 8; ++t) {
        out += "fleetconf_dhcp_messages_total{type=\"" + std::string(names[t]) + "\",direction=\"received\"} " +
               std::to_string(im.stats.received_by_type[t]) + "\n";
        out += "fleetconf_dhcp_messages_total{type=\"" + std::string(names[t]) + "\",direction=\"sent\"} " +
               std::to_string(im.stats.sent_by_type[t]) + "\n";
    }
    const auto now = unix_now();
    const auto all = im.store->all();
    out += "# HELP fleetconf_dhcp_pool_addresses Addresses in the dynamic pools\n# TYPE fleetconf_dhcp_pool_addresses gauge\n";
    std::string assigned = "# HELP fleetconf_dhcp_leases_active Bound, unexpired leases\n# TYPE fleetconf_dhcp_leases_active gauge\n";
    for (const auto& n : im.cfg.networks) {
        std::uint64_t total = 0, active = 0;
        for (const auto& r : n.pools) total += r.size();
        for (const auto& l : all)
            if (l.network == n.name && l.state == LeaseState::bound && l.expires > now) ++active;
        out += "fleetconf_dhcp_pool_addresses{network=\"" + n.name + "\"} " + std::to_string(total) + "\n";
        assigned += "fleetconf_dhcp_leases_active{network=\"" + n.name + "\"} " + std::to_string(active) + "\n";
    }
    if (im.control_http) im.control_http->metrics(assigned);
    return out + assigned;
}

common::Health Service::health() const {
    const auto& im = *impl_;
    if (im.stopped) return {false, "stopped"};
    if (im.sockets.empty()) return {false, "not listening on any interface"};
    if (auto why = im.store->unavailable()) return {false, *why + " (no lease offered or acknowledged until it is back)"};
    if (!im.journal_error.empty()) return {false, "lease journal: " + im.journal_error + " (replies withheld)"};
    std::string ifs;
    for (const auto& s : im.sockets) ifs += (ifs.empty() ? "" : ", ") + s->ifname;
    common::Health h{true, "listening on " + ifs + "; " + std::to_string(im.store->all().size()) +
                               (im.journal ? " leases in the journal" : " leases in the store")};
    // A pool that ran out within the last 5 minutes: serving, but new clients get nothing.
    for (const auto& [name, e] : im.exhaustion)
        if (e.last + 300 > unix_now()) {
            h.degraded = true;
            h.detail += "; network " + name + ": pool exhausted (" + std::to_string(e.failures) +
                        " DISCOVER(s) without a free address, the last " + std::to_string(unix_now() - e.last) + " s ago)";
        }
    if (im.journal && !im.journal->recovery().damaged.empty()) {
        const auto& rec = im.journal->recovery();
        h.degraded = true;
        h.detail += "; lease journal had " + std::to_string(rec.damaged.size()) + " damaged region(s) at start (" +
                    std::to_string(rec.missing_records) + " record(s) lost), copied to " + rec.damaged_copy.string();
    }
    return h;
}

common::StatusSource Service::status_source() const {
    return {"dhcp", [this] { return prometheus(); }, [this] { return health(); }};
}

void Service::Impl::start_control() {
    if (opts.control_socket == "-") return;
    common::ensure_directory(opts.control_socket.parent_path(), 0750);
    std::error_code ec;
    std::filesystem::remove(opts.control_socket, ec);  // a stale socket from a crash
    control = std::make_unique<asio::local::stream_protocol::acceptor>(io);
    const auto old = ::umask(0177);  // the socket is created 0600: the owner only
    control->open();
    control->bind(asio::local::stream_protocol::endpoint(opts.control_socket.string()));
    ::umask(old);
    control->listen();
    log->info("control channel on {}", opts.control_socket.string());
    asio::co_spawn(io, control_loop(), common::log_exception(log, "control channel"));
}

asio::awaitable<json> Service::Impl::run_command(const json& request) {
    auto answer = std::make_shared<std::optional<json>>();
    auto signal = std::make_shared<asio::steady_timer>(io, std::chrono::minutes(1));
    owner->command_async(request, [answer, signal](json a) {
        *answer = std::move(a);
        signal->cancel();
    });
    if (!*answer) co_await signal->async_wait(use_tuple);
    if (!*answer) co_return reply(1, "no verdict within a minute; see the server's log");
    co_return std::move(**answer);
}

asio::awaitable<void> Service::Impl::control_loop() {
    while (!stopped) {
        auto [ec, s] = co_await control->async_accept(use_tuple);
        if (ec) co_return;
        asio::co_spawn(io, control_session(std::move(s)), common::log_exception(log, "control session", spdlog::level::warn));
    }
}

asio::awaitable<void> Service::Impl::control_session(asio::local::stream_protocol::socket s) {
    using namespace asio::experimental::awaitable_operators;
    // One command per connection, as Kea's control socket: read until the bytes form a JSON document.
    std::string in;
    char buf[4096];
    asio::steady_timer deadline(io, kCommandTimeout);
    json request;
    while (true) {
        auto r = co_await (s.async_read_some(asio::buffer(buf), use_tuple) || deadline.async_wait(use_tuple));
        if (r.index() == 1) co_return;  // timeout: close
        auto [ec, n] = std::get<0>(r);
        if (n) in.append(buf, n);
        if (in.size() > kMaxCommandBytes) {
            auto out = reply(1, "command larger than 1 MiB").dump();
            co_await asio::async_write(s, asio::buffer(out), use_tuple);
            co_return;
        }
        if (json::accept(in)) {
            request = json::parse(in);
            break;
        }
        if (ec) {
            if (in.empty()) co_return;
            auto out = reply(1, "invalid JSON: the command is not a complete JSON document").dump();
            co_await asio::async_write(s, asio::buffer(out), use_tuple);
            co_return;
        }
    }
    const json answer = co_await run_command(request);
    log->info("control: {} -> result {}", command_name(request), answer.value("result", -1));
    auto out = answer.dump(-1, ' ', false, json::error_handler_t::replace);
    co_await asio::async_write(s, asio::buffer(out), use_tuple);
}

void Service::Impl::start_control_http() {
    if (!opts.control_http) return;
    std::string text;
    if (auto err = common::read_secret_line(opts.control_key_file, text)) throw std::runtime_error("control_key_file: " + *err);
    if (text.size() < 16)
        throw std::runtime_error(opts.control_key_file.string() +
                                 ": the control password must have at least 16 characters "
                                 "(make one: head -c 24 /dev/urandom | base64)");
    control_password = std::move(text);
    control_http = std::make_unique<common::TcpListener>(io.get_executor(), "dhcp-control", control_limits, log);
    control_http->open(*opts.control_http, "control channel (HTTP, Basic authentication)");
    if (!common::is_loopback(opts.control_http->host))
        log->warn("control channel on a non-loopback address: plain HTTP, the password crosses the network in clear");
    control_http->start(
        [this](auto sock, common::AdmissionTicket ticket, const std::string&) {
            asio::co_spawn(io, http_session(std::move(sock), std::move(ticket)),
                           common::log_exception(log, "HTTP session", spdlog::level::warn));
        },
        [](asio::ip::tcp::socket& s, common::Refusal) {
            common::refuse_with(s, common::http_response(503, "application/json", R"({"result": 1, "text": "busy: too many connections"})",
                                                         "Retry-After: 5\r\n"));
        });
}

namespace {

std::string json_response(int status, std::string_view body, bool challenge = false) {
    return common::http_response(status, "application/json", body, challenge ? "WWW-Authenticate: Basic realm=\"fleetconf dhcp\"\r\n" : "");
}

}  // namespace

// Control (kea-ctrl-agent's shape): POST / with a JSON command, Basic authentication; the reply is a JSON
// array holding the service's answer.
asio::awaitable<void> Service::Impl::http_session(std::shared_ptr<asio::ip::tcp::socket> sp, common::AdmissionTicket ticket) {
    using namespace asio::experimental::awaitable_operators;
    (void)ticket;  // holds the connection's slot until the session ends
    auto& s = *sp;
    common::HttpRequestReader reader(
        common::HttpLimits{.max_url = 2048, .max_header_bytes = 16384, .max_body = kMaxCommandBytes, .body_limit = {}});
    char buf[4096];
    asio::steady_timer deadline(io, kCommandTimeout);
    std::string out;
    while (reader.state() == common::HttpRequestReader::State::reading) {
        auto r = co_await (s.async_read_some(asio::buffer(buf), use_tuple) || deadline.async_wait(use_tuple));
        if (r.index() == 1) co_return;  // timeout: close
        auto [ec, n] = std::get<0>(r);
        if (ec) co_return;
        reader.feed(std::string_view(buf, n));
    }
    const auto& req = reader.request();
    if (reader.state() == common::HttpRequestReader::State::too_large) {
        out = json_response(413, R"({"result": 1, "text": "request too large"})");
    } else if (reader.state() != common::HttpRequestReader::State::complete) {
        out = json_response(400, R"({"result": 1, "text": "malformed HTTP request"})");
    } else {
        std::error_code pec;
        const auto peer = s.remote_endpoint(pec);
        const std::string from = pec ? std::string("?") : peer.address().to_string();
        const auto cred = common::parse_basic_auth(req.header("authorization"));
        if (!cred || !common::constant_time_equal(common::as_bytes(cred->password), common::as_bytes(control_password))) {
            log->warn("control (HTTP from {}): {} credentials refused", from, cred ? "wrong" : "no");
            out = json_response(401, R"({"result": 401, "text": "Unauthorized"})", true);
        } else if (req.method != "POST") {
            out = json_response(405, R"({"result": 1, "text": "POST a JSON command"})");
        } else if (req.url != "/") {
            out = json_response(404, R"({"result": 1, "text": "POST commands to /"})");
        } else {
            auto request = json::parse(req.body, nullptr, false);
            json answer;
            if (request.is_discarded()) {
                answer = reply(1, "invalid JSON: the body is not a JSON document");
            } else if (request.is_object() && request.contains("service") &&
                       !(request["service"].is_array() && request["service"].size() == 1 && request["service"][0] == "dhcp4")) {
                answer = reply(1, "this control channel serves [\"dhcp4\"] only");
            } else {
                if (request.is_object()) request.erase("service");
                answer = co_await run_command(request);
                log->info("control (HTTP from {}): {} -> result {}", from, command_name(request), answer.value("result", -1));
            }
            out = json_response(200, json::array({answer}).dump(-1, ' ', false, json::error_handler_t::replace));
        }
    }
    deadline.expires_after(kCommandTimeout);  // a client that does not read its reply is cut
    co_await (asio::async_write(s, asio::buffer(out), use_tuple) || deadline.async_wait(use_tuple));
}

}  // namespace fleetconf::dhcp
