#include "fleetconf/common/site.hpp"

#include "fleetconf/common/crypto.hpp"
#include "fleetconf/common/files.hpp"
#include "fleetconf/common/log.hpp"

#include <nlohmann/json.hpp>

#include <sys/stat.h>

#include <algorithm>
#include <map>
#include <unordered_set>

namespace fleetconf::common {

using nlohmann::json;

namespace {

std::string pointer_escape(std::string_view key) {
    std::string out;
    for (char c : key) {
        if (c == '~') out += "~0";
        else if (c == '/') out += "~1";
        else out += c;
    }
    return out;
}

std::string join(const std::string& ptr, std::string_view key) { return ptr + "/" + pointer_escape(key); }
std::string join(const std::string& ptr, std::size_t index) { return ptr + "/" + std::to_string(index); }

std::string type_name(const json& j) {
    switch (j.type()) {
        case json::value_t::null: return "null";
        case json::value_t::object: return "an object";
        case json::value_t::array: return "an array";
        case json::value_t::string: return "a string";
        case json::value_t::boolean: return "a boolean";
        case json::value_t::number_float: return "a fractional number";
        default: return "a number";
    }
}

// Collects errors while walking the document. Every accessor reports what it expected and returns
// nullopt on mismatch, so validation carries on and finds all errors in one pass.
class Checker {
public:
    std::vector<SiteError> errors;

    void error(std::string ptr, std::string msg) { errors.push_back({std::move(ptr), std::move(msg)}); }

    bool object(const json& j, const std::string& ptr, std::initializer_list<std::string_view> allowed,
                std::initializer_list<std::string_view> required = {}) {
        if (!j.is_object()) {
            error(ptr, "expected an object, found " + type_name(j));
            return false;
        }
        for (const auto& [k, v] : j.items()) {
            if (std::find(allowed.begin(), allowed.end(), k) == allowed.end()) {
                std::string list;
                for (auto a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
                error(join(ptr, k), "unknown key \"" + k + "\" (expected one of: " + list + ")");
            }
        }
        for (auto r : required)
            if (!j.contains(r)) error(join(ptr, r), "is required");
        return true;
    }

    std::optional<std::string> string(const json& obj, const std::string& ptr, std::string_view key) {
        auto it = obj.find(key);
        if (it == obj.end()) return std::nullopt;
        if (!it->is_string()) {
            error(join(ptr, key), "expected a string, found " + type_name(*it));
            return std::nullopt;
        }
        return it->get<std::string>();
    }

    std::optional<bool> boolean(const json& obj, const std::string& ptr, std::string_view key) {
        auto it = obj.find(key);
        if (it == obj.end()) return std::nullopt;
        if (!it->is_boolean()) {
            error(join(ptr, key), "expected true or false, found " + type_name(*it));
            return std::nullopt;
        }
        return it->get<bool>();
    }

    std::optional<std::uint64_t> integer(const json& obj, const std::string& ptr, std::string_view key, std::uint64_t min,
                                         std::uint64_t max) {
        auto it = obj.find(key);
        if (it == obj.end()) return std::nullopt;
        return integer_value(*it, join(ptr, key), min, max);
    }

    std::optional<std::uint64_t> integer_value(const json& v, const std::string& ptr, std::uint64_t min, std::uint64_t max) {
        if (!v.is_number_integer() || (v.is_number_integer() && !v.is_number_unsigned() && v.get<std::int64_t>() < 0)) {
            if (v.is_number_integer())
                error(ptr, "must be between " + std::to_string(min) + " and " + std::to_string(max) + ", found " + v.dump());
            else error(ptr, "expected a whole number, found " + type_name(v));
            return std::nullopt;
        }
        auto n = v.get<std::uint64_t>();
        if (n < min || n > max) {
            error(ptr, "must be between " + std::to_string(min) + " and " + std::to_string(max) + ", found " + std::to_string(n));
            return std::nullopt;
        }
        return n;
    }

    // A string value parsed by `parse`; `what` names the expected form in the message.
    template <class Parse>
    auto parsed(const json& obj, const std::string& ptr, std::string_view key, Parse parse, std::string_view what)
        -> decltype(parse(std::string_view{})) {
        auto s = string(obj, ptr, key);
        if (!s) return std::nullopt;
        return parsed_value(*s, join(ptr, key), parse, what);
    }

    template <class Parse>
    auto parsed_value(const std::string& s, const std::string& ptr, Parse parse, std::string_view what)
        -> decltype(parse(std::string_view{})) {
        auto v = parse(s);
        if (!v) error(ptr, "\"" + s + "\" is not " + std::string(what));
        return v;
    }

    // An array of strings parsed by `parse`.
    template <class Parse>
    auto parsed_list(const json& obj, const std::string& ptr, std::string_view key, Parse parse, std::string_view what,
                     std::size_t max_items) -> std::optional<std::vector<typename decltype(parse(std::string_view{}))::value_type>> {
        using T = typename decltype(parse(std::string_view{}))::value_type;
        auto it = obj.find(key);
        if (it == obj.end()) return std::nullopt;
        const auto p = join(ptr, key);
        if (!it->is_array()) {
            error(p, "expected an array, found " + type_name(*it));
            return std::nullopt;
        }
        if (it->size() > max_items) {
            error(p, "has " + std::to_string(it->size()) + " entries, at most " + std::to_string(max_items) + " allowed");
            return std::nullopt;
        }
        std::vector<T> out;
        bool ok = true;
        for (std::size_t i = 0; i < it->size(); ++i) {
            const auto& e = (*it)[i];
            if (!e.is_string()) {
                error(join(p, i), "expected a string, found " + type_name(e));
                ok = false;
                continue;
            }
            auto v = parsed_value(e.get<std::string>(), join(p, i), parse, what);
            if (v) out.push_back(*v);
            else ok = false;
        }
        if (!ok) return std::nullopt;
        return out;
    }
};

auto parse_ipv4 = [](std::string_view s) { return Ipv4::parse(s); };
auto parse_endpoint_syslog = [](std::string_view s) { return Endpoint::parse(s, 514); };
auto parse_endpoint_required_port = [](std::string_view s) { return Endpoint::parse(s); };
auto parse_listen_endpoint = [](std::string_view s) { return Endpoint::parse_listen(s); };

bool valid_interface_name(std::string_view s) {
    // Linux IFNAMSIZ is 16 including the NUL; no '/', whitespace or ':'.
    if (s.empty() || s.size() > 15 || s == "." || s == "..") return false;
    for (char c : s)
        if (c == '/' || c == ':' || c == ' ' || c == '\t' || c == '\n' || static_cast<unsigned char>(c) < 0x20) return false;
    return true;
}

std::filesystem::path resolve(const std::filesystem::path& base, const std::string& p) {
    std::filesystem::path path(p);
    return (path.is_absolute() ? path : base / path).lexically_normal();
}

// Encodes a custom option's JSON value according to its declared type.
std::optional<std::vector<std::uint8_t>> encode_custom(Checker& c, const std::string& type, const json& v, const std::string& ptr) {
    std::vector<std::uint8_t> out;
    auto put_be = [&](std::uint64_t n, int bytes) {
        for (int i = bytes - 1; i >= 0; --i) out.push_back(static_cast<std::uint8_t>(n >> (8 * i)));
    };
    if (type == "ip" || type == "ips") {
        std::vector<json> items;
        if (type == "ips") {
            if (!v.is_array() || v.empty()) {
                c.error(ptr, "type ips expects a non-empty array of IPv4 addresses");
                return std::nullopt;
            }
            items.assign(v.begin(), v.end());
        } else {
            items.push_back(v);
        }
        for (std::size_t i = 0; i < items.size(); ++i) {
            const auto p = type == "ips" ? join(ptr, i) : ptr;
            auto a = items[i].is_string() ? Ipv4::parse(items[i].get<std::string>()) : std::nullopt;
            if (!a) {
                c.error(p, items[i].dump() + " is not an IPv4 address");
                return std::nullopt;
            }
            for (auto b : a->bytes()) out.push_back(b);
        }
    } else if (type == "u8" || type == "u16" || type == "u32") {
        const int bytes = type == "u8" ? 1 : type == "u16" ? 2 : 4;
        auto n = c.integer_value(v, ptr, 0, bytes == 4 ? 0xFFFFFFFFull : (1ull << (8 * bytes)) - 1);
        if (!n) return std::nullopt;
        put_be(*n, bytes);
    } else if (type == "i32") {
        if (!v.is_number_integer() || v.get<std::int64_t>() < INT32_MIN || v.get<std::int64_t>() > INT32_MAX) {
            c.error(ptr, "type i32 expects a whole number from -2147483648 to 2147483647");
            return std::nullopt;
        }
        put_be(static_cast<std::uint32_t>(static_cast<std::int32_t>(v.get<std::int64_t>())), 4);
    } else if (type == "bool") {
        if (!v.is_boolean()) {
            c.error(ptr, "type bool expects true or false");
            return std::nullopt;
        }
        out.push_back(v.get<bool>() ? 1 : 0);
    } else if (type == "string") {
        if (!v.is_string() || v.get<std::string>().empty()) {
            c.error(ptr, "type string expects a non-empty string");
            return std::nullopt;
        }
        auto s = v.get<std::string>();
        out.assign(s.begin(), s.end());
    } else if (type == "hex") {
        auto b = v.is_string() ? from_hex(v.get<std::string>()) : std::nullopt;
        if (!b || b->empty()) {
            c.error(ptr, "type hex expects a non-empty string of hex digit pairs");
            return std::nullopt;
        }
        out = std::move(*b);
    } else {
        return std::nullopt;  // type already reported
    }
    if (out.size() > 1024) {
        c.error(ptr, "encoded value is " + std::to_string(out.size()) + " bytes, at most 1024 allowed");
        return std::nullopt;
    }
    return out;
}

constexpr std::string_view kAlwaysSendNames[] = {"syslog", "monitoring", "ntp"};

// A list of literal options ("custom") or option-125 sub-options ("vivso"): [{code, type, value, always_send}].
std::vector<CustomOption> parse_option_list(Checker& c, const json& j, const std::string& ptr, const char* key, int min_code, int max_code,
                                            bool (*managed)(std::uint8_t)) {
    std::vector<CustomOption> out;
    auto it = j.find(key);
    if (it == j.end()) return out;
    const auto p = join(ptr, key);
    if (!it->is_array()) {
        c.error(p, "expected an array, found " + type_name(*it));
        return out;
    }
    std::set<int> seen;
    for (std::size_t i = 0; i < it->size(); ++i) {
        const auto& e = (*it)[i];
        const auto ep = join(p, i);
        if (!c.object(e, ep, {"code", "type", "value", "always_send"}, {"code", "type", "value"})) continue;
        CustomOption co;
        int code = -1;
        if (auto n = c.integer(e, ep, "code", min_code, max_code)) {
            // Codes the server computes itself (RFC 2132 section 9, RFC 3046) cannot be set by hand.
            if (managed && managed(static_cast<std::uint8_t>(*n)))
                c.error(join(ep, "code"), "option " + std::to_string(*n) + " is managed by the server and cannot be set");
            else if (!seen.insert(static_cast<int>(*n)).second) c.error(join(ep, "code"), "code " + std::to_string(*n) + " is given twice");
            else code = static_cast<int>(*n);
        }
        auto type = c.string(e, ep, "type");
        static const std::set<std::string> types{"ip", "ips", "u8", "u16", "u32", "i32", "bool", "string", "hex"};
        if (type && !types.contains(*type)) {
            c.error(join(ep, "type"), "\"" + *type + "\" is not one of: ip, ips, u8, u16, u32, i32, bool, string, hex");
            type.reset();
        }
        std::optional<std::vector<std::uint8_t>> data;
        if (type && e.contains("value")) data = encode_custom(c, *type, e["value"], join(ep, "value"));
        co.always_send = c.boolean(e, ep, "always_send").value_or(false);
        if (code >= 0 && type && data) {
            co.code = static_cast<std::uint8_t>(code);
            co.type = *type;
            co.data = std::move(*data);
            out.push_back(std::move(co));
        }
    }
    return out;
}

SiteOptions parse_options(Checker& c, const json& j, const std::string& ptr) {
    SiteOptions o;
    if (!c.object(j, ptr, {"syslog", "monitoring", "ntp", "custom", "vivso", "always_send"})) return o;
    o.syslog = c.parsed(j, ptr, "syslog", parse_endpoint_syslog, "an IPv4 address with an optional :port (default 514)");
    o.monitoring = c.parsed(j, ptr, "monitoring", parse_endpoint_required_port, "an IPv4 address with :port");
    o.ntp = c.parsed_list(j, ptr, "ntp", parse_ipv4, "an IPv4 address", 16);
    if (auto it = j.find("always_send"); it != j.end()) {
        const auto p = join(ptr, "always_send");
        if (!it->is_array()) c.error(p, "expected an array of option names");
        else
            for (std::size_t i = 0; i < it->size(); ++i) {
                const auto& e = (*it)[i];
                const auto name = e.is_string() ? e.get<std::string>() : std::string{};
                if (std::find(std::begin(kAlwaysSendNames), std::end(kAlwaysSendNames), name) == std::end(kAlwaysSendNames))
                    c.error(join(p, i), e.dump() + " is not one of: syslog, monitoring, ntp");
                else o.always_send.insert(name);
            }
    }
    o.custom = parse_option_list(c, j, ptr, "custom", 1, 254, dhcp_options::managed_by_server);
    // Sub-options of option 125 for the MirageOS enterprise; 0 is the monitoring sink.
    o.vivso = parse_option_list(c, j, ptr, "vivso", 1, 255, nullptr);
    std::size_t block = 0;
    for (const auto& v : o.vivso) block += 2 + v.data.size();
    if (block > 200)
        c.error(join(ptr, "vivso"), "the sub-options take " + std::to_string(block) +
                                        " bytes; at most 200 fit in option 125's enterprise block beside the monitoring sink");
    return o;
}

struct ParsedDocument {
    json doc;
    std::vector<SiteError> errors;
};

// Parses JSON with comments, and reports duplicate object keys (nlohmann keeps the last silently).
ParsedDocument parse_json(std::string_view text) {
    ParsedDocument out;
    struct Frame {
        bool array;
        std::size_t index = 0;
        std::string key;
        std::set<std::string> keys;
    };
    std::vector<Frame> stack;
    auto path = [&](std::size_t upto) {
        std::string p;
        for (std::size_t i = 0; i < upto; ++i) p = stack[i].array ? join(p, stack[i].index) : join(p, stack[i].key);
        return p;
    };
    auto child_done = [&] {
        if (!stack.empty() && stack.back().array) ++stack.back().index;
    };
    auto cb = [&](int /*depth*/, json::parse_event_t ev, json& parsed) -> bool {
        switch (ev) {
            case json::parse_event_t::object_start: stack.push_back(Frame{false, 0, {}, {}}); break;
            case json::parse_event_t::array_start: stack.push_back(Frame{true, 0, {}, {}}); break;
            case json::parse_event_t::key: {
                auto& f = stack.back();
                f.key = parsed.get<std::string>();
                if (!f.keys.insert(f.key).second) out.errors.push_back({path(stack.size()), "duplicate key \"" + f.key + "\""});
                break;
            }
            case json::parse_event_t::object_end:
            case json::parse_event_t::array_end:
                if (!stack.empty()) stack.pop_back();
                child_done();
                break;
            case json::parse_event_t::value: child_done(); break;
        }
        return true;
    };
    try {
        out.doc = json::parse(text.begin(), text.end(), cb, /*allow_exceptions=*/true, /*ignore_comments=*/true);
    } catch (const json::exception& e) {  // parse_error, and out_of_range for a number too large for a double
        std::string msg = e.what();
        if (auto p = msg.find("] "); msg.rfind("[json.exception", 0) == 0 && p != std::string::npos) msg = msg.substr(p + 2);
        out.errors.push_back({"", "invalid JSON: " + msg});
        out.doc = json();
    }
    return out;
}

void check_file_exists(Checker& c, const std::string& ptr, const std::filesystem::path& p, bool directory) {
    std::error_code ec;
    auto st = std::filesystem::status(p, ec);
    if (ec || !std::filesystem::exists(st)) {
        c.error(ptr, (directory ? "directory " : "file ") + p.string() + " does not exist");
    } else if (directory && !std::filesystem::is_directory(st)) {
        c.error(ptr, p.string() + " is not a directory");
    } else if (!directory && std::filesystem::is_directory(st)) {
        c.error(ptr, p.string() + " is a directory, expected a file");
    }
}

// A secret the services read with read_secret_file: the same rule here, so that `site check` refuses what
// `serve` would refuse at start.
void check_secret_file(Checker& c, const std::string& ptr, const std::filesystem::path& p) {
    check_file_exists(c, ptr, p, false);
    struct stat st {};
    if (::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 077) != 0)
        c.error(ptr, "secret file " + p.string() + " is accessible by group or others (mode " + std::to_string((st.st_mode >> 6) & 7) +
                         std::to_string((st.st_mode >> 3) & 7) + std::to_string(st.st_mode & 7) + "); run chmod 600 " + p.string());
}

}  // namespace

SiteLoadError::SiteLoadError(std::string source, std::vector<SiteError> errors)
    : std::runtime_error([&] {
          std::string s;
          for (const auto& e : errors)
              s += (s.empty() ? "" : "\n") + source + ": " + (e.pointer.empty() ? "" : e.pointer + ": ") + e.message;
          return s;
      }()),
      source_(std::move(source)),
      errors_(std::move(errors)) {}

const Network* Site::network(std::string_view n) const {
    for (const auto& x : networks)
        if (x.name == n) return &x;
    return nullptr;
}

const Unikernel* Site::unikernel(std::string_view n) const {
    for (const auto& x : unikernels)
        if (x.name == n) return &x;
    return nullptr;
}

SiteOptions Site::effective_options(const Unikernel& u) const {
    const Network* n = network(u.network);
    SiteOptions o = n ? n->options : SiteOptions{};
    const SiteOptions& over = u.options;
    if (over.syslog) o.syslog = over.syslog;
    if (over.monitoring) o.monitoring = over.monitoring;
    if (over.ntp) o.ntp = over.ntp;
    for (auto* list : {&o.custom, &o.vivso}) {
        const auto& from = list == &o.custom ? over.custom : over.vivso;
        for (const auto& c : from) {
            auto it = std::find_if(list->begin(), list->end(), [&](const CustomOption& x) { return x.code == c.code; });
            if (it != list->end()) *it = c;
            else list->push_back(c);
        }
    }
    o.always_send.insert(over.always_send.begin(), over.always_send.end());
    return o;
}

Mac albatross_mac(std::string_view bridge, std::string_view unikernel) {
    std::string input;
    input.reserve(bridge.size() + unikernel.size());
    input.append(bridge).append(unikernel);
    const auto h = md5(input);
    return Mac{{0x00, 0x80, 0x41, h[0], h[1], h[2]}};
}

namespace {

// Reads a site document section by section (services, networks, unikernels), then checks what spans
// sections. Every error goes to the Checker, so that one run reports all of them.
class SiteParser {
public:
    SiteParser(Checker& c, const std::filesystem::path& base_dir, Site& site) : c_(c), base_dir_(base_dir), site_(site) {}

    void services(const json& doc);
    void networks(const json& doc);
    void unikernels(const json& doc);
    void cross_checks();

private:
    void dhcp_service(const json& j);
    std::optional<LeaseRoutes> lease_routes(const json& r);
    void lease_database(const json& j);
    void git_service(const json& j);
    void git_operators(const json& ops);
    void block_service(const json& j);
    void console_service(const json& j);
    // "tls_cert" and "tls_key" of the object at `p`: both or neither, resolved and checked to exist (the
    // key also as a secret file when `secret_key`).
    void tls_pair(const json& j, const std::string& p, std::filesystem::path& cert_out, std::filesystem::path& key_out, bool secret_key);
    void limits(const json& j);
    void network(const json& j, const std::string& p);
    void pools(Network& n, const json& list, const std::string& pp, const std::optional<Prefix>& subnet);
    void monitoring_option(Network& n, const json& m, const std::string& mp);
    void unikernel(const json& j, const std::string& p);
    void unikernel_public_hosts(Unikernel& u, const json& list, const std::string& hp);
    void unikernel_address(Unikernel& u, const Network* net, const std::string& ap);
    void unikernel_git(Unikernel& u, const json& g, const std::string& gp);
    void unikernel_block(Unikernel& u, const json& b, const std::string& bp);
    void unikernel_boot_args(Unikernel& u, const json& args, const std::string& ap);

    Checker& c_;
    const std::filesystem::path& base_dir_;
    Site& site_;
    // What must be unique across unikernels (a set or map each, not a scan: there may be 65,536 of them).
    std::unordered_set<std::string> unikernel_names_;
    std::map<Mac, std::string> macs_;
    std::map<Ipv4, std::string> addresses_;
    std::map<std::string, std::string> public_hosts_;  // host name -> unikernel
};

// ---- services ----

void SiteParser::services(const json& doc) {
    json services = doc.value("services", json::object());
    if (c_.object(services, "/services", {"data_dir", "status", "log_level", "dhcp", "git", "block", "console", "limits"})) {
        if (auto l = c_.string(services, "/services", "log_level")) {
            log::Options probe;
            if (auto err = log::parse_levels(*l, probe)) c_.error("/services/log_level", *err);
            else site_.services.log_level = *l;
        }
        if (auto d = c_.string(services, "/services", "data_dir")) {
            if (d->empty()) c_.error("/services/data_dir", "must not be empty");
            else site_.services.data_dir = resolve(base_dir_, *d);
        }
        if (auto m = c_.string(services, "/services", "status")) {
            if (*m == "off") site_.services.status.reset();
            else if (auto e = Endpoint::parse_listen(*m)) site_.services.status = *e;
            else c_.error("/services/status", "\"" + *m + "\" is not an address with :port, or \"off\"");
        }
        if (services.contains("dhcp")) dhcp_service(services["dhcp"]);
        if (services.contains("git")) git_service(services["git"]);
        if (services.contains("block")) block_service(services["block"]);
        if (services.contains("console")) console_service(services["console"]);
        if (services.contains("limits")) limits(services["limits"]);
    }
    if (auto& g = site_.services.git; !g.http && !g.https && !g.git && !g.ssh) g.http = Endpoint{Ipv4{127, 0, 0, 1}, 8080};
}

void SiteParser::dhcp_service(const json& j) {
    const std::string p = "/services/dhcp";
    auto& s = site_.services.dhcp;
    if (j.is_object() && j.contains("metrics"))
        c_.error(join(p, "metrics"), "moved to \"services.status\": one endpoint serves /health and /metrics for every service");
    if (!c_.object(j, p,
                   {"enabled", "server_port", "client_port", "authoritative", "config_uri_option", "metrics", "control_http",
                    "control_key_file", "routes", "leases"}))
        return;
    if (j.contains("routes")) s.routes = lease_routes(j["routes"]);
    if (j.contains("leases")) lease_database(j["leases"]);
    if (auto m = c_.string(j, p, "control_http"); m && *m != "off") {
        if (auto e = Endpoint::parse_listen(*m)) s.control_http = *e;
        else c_.error(join(p, "control_http"), "\"" + *m + "\" is not an address with :port, or \"off\"");
    }
    if (auto k = c_.string(j, p, "control_key_file")) {
        s.control_key_file = resolve(base_dir_, *k);
        check_secret_file(c_, join(p, "control_key_file"), s.control_key_file);
    }
    if (s.control_http && s.control_key_file.empty())
        c_.error(join(p, "control_http"), "needs \"control_key_file\": the HTTP control channel is never open without a password");
    s.config_uri_option =
        static_cast<std::uint8_t>(c_.integer(j, p, "config_uri_option", dhcp_options::kFirstSiteCode, dhcp_options::kLastSiteCode)
                                      .value_or(dhcp_options::kDefaultConfigUriCode));
    s.enabled = c_.boolean(j, p, "enabled").value_or(true);
    s.server_port = static_cast<std::uint16_t>(c_.integer(j, p, "server_port", 1, 65535).value_or(67));
    s.client_port = static_cast<std::uint16_t>(c_.integer(j, p, "client_port", 1, 65535).value_or(68));
    s.authoritative = c_.boolean(j, p, "authoritative").value_or(true);
    if (s.server_port == s.client_port) c_.error(join(p, "client_port"), "must differ from server_port");
}

void SiteParser::lease_database(const json& j) {
    const std::string p = "/services/dhcp/leases";
    if (!c_.object(j, p, {"type", "conninfo", "password_file"}, {"type"})) return;
    auto& db = site_.services.dhcp.leases;
    const auto type = c_.string(j, p, "type");
    if (!type) return;
    if (*type == "journal") {
        db.type = LeaseDatabase::Type::journal;
        if (j.contains("conninfo") || j.contains("password_file"))
            c_.error(p, "\"conninfo\" and \"password_file\" are for \"type\": \"postgresql\"");
        return;
    }
    if (*type != "postgresql") {
        c_.error(join(p, "type"), "\"" + *type + "\" is not a lease store: \"journal\" (the default) or \"postgresql\"");
        return;
    }
    db.type = LeaseDatabase::Type::postgresql;
    if (auto ci = c_.string(j, p, "conninfo")) {
        db.conninfo = *ci;
        // Secrets never in the site file: a password (key=value or in a URI's user:password@) is refused.
        std::string lower = *ci;
        for (auto& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        const auto at = lower.find('@');
        const auto scheme = lower.find("://");
        const bool uri_password = scheme != std::string::npos && at != std::string::npos &&
                                  lower.substr(scheme + 3, at - scheme - 3).find(':') != std::string::npos;
        if (lower.find("password") != std::string::npos || uri_password)
            c_.error(join(p, "conninfo"), "carries a password: put it in \"password_file\" (secrets are never in the site file)");
        if (ci->size() > 4096) c_.error(join(p, "conninfo"), "longer than 4,096 characters");
    } else {
        c_.error(join(p, "conninfo"), "required for \"type\": \"postgresql\" (a libpq connection string)");
    }
    if (auto f = c_.string(j, p, "password_file")) {
        db.password_file = resolve(base_dir_, *f);
        check_secret_file(c_, join(p, "password_file"), db.password_file);
    }
}

std::optional<LeaseRoutes> SiteParser::lease_routes(const json& r) {
    const std::string rp = "/services/dhcp/routes";
    if (!c_.object(r, rp, {"target", "key_file", "key_id", "port", "fqdn", "remove_on_release"}, {"target"})) return std::nullopt;
    LeaseRoutes lr;
    if (auto t = c_.string(r, rp, "target")) {
        const bool bc = t->rfind("blockcfg://", 0) == 0;
        if (bc || t->rfind("tlstunnel://", 0) == 0) {
            lr.kind = bc ? LeaseRoutes::Kind::blockcfg : LeaseRoutes::Kind::tlstunnel;
            std::string rest = t->substr(t->find("://") + 3);
            if (auto slash = rest.find('/'); slash != std::string::npos) {
                lr.device = rest.substr(slash + 1);
                rest = rest.substr(0, slash);
                if (!bc || lr.device.empty()) c_.error(join(rp, "target"), "a path is only for blockcfg://HOST:PORT/DEVICE");
            }
            lr.endpoint = Endpoint::parse(rest, bc ? 7300 : 1234);
            if (!lr.endpoint) c_.error(join(rp, "target"), "\"" + rest + "\" is not HOST:PORT");
            if (auto k = c_.string(r, rp, "key_file")) {
                lr.key_file = resolve(base_dir_, *k);
                check_file_exists(c_, join(rp, "key_file"), lr.key_file, false);
            } else {
                c_.error(join(rp, "key_file"), "a remote target needs the key to authenticate with");
            }
        } else if (t->find("://") != std::string::npos) {
            c_.error(join(rp, "target"), "\"" + *t + "\" is not a unikernel name, blockcfg://HOST:PORT[/DEVICE] or tlstunnel://HOST:PORT");
        } else {
            lr.device = *t;  // checked against the unikernels in cross_checks
        }
    }
    lr.key_id = c_.string(r, rp, "key_id").value_or("");
    lr.port = static_cast<std::uint16_t>(c_.integer(r, rp, "port", 1, 65535).value_or(80));
    lr.fqdn = c_.boolean(r, rp, "fqdn").value_or(false);
    lr.remove_on_release = c_.boolean(r, rp, "remove_on_release").value_or(true);
    return lr;
}

void SiteParser::git_service(const json& j) {
    const std::string p = "/services/git";
    auto& s = site_.services.git;
    if (!c_.object(j, p,
                   {"enabled", "http", "https", "git", "public_host", "tls_cert", "tls_key", "template", "pack_cache_mb", "read_timeout",
                    "max_pack_mb", "max_object_mb", "max_repo_mb", "ssh", "operators", "webhook_key_file", "validator_timeout"}))
        return;
    s.validator_timeout_s = static_cast<std::uint32_t>(c_.integer(j, p, "validator_timeout", 1, 3600).value_or(10));
    if (auto k = c_.string(j, p, "webhook_key_file")) {
        s.webhook_key_file = resolve(base_dir_, *k);
        check_file_exists(c_, join(p, "webhook_key_file"), s.webhook_key_file, false);
    }
    s.enabled = c_.boolean(j, p, "enabled").value_or(true);
    s.http = c_.parsed(j, p, "http", parse_listen_endpoint, "an address with :port");
    s.https = c_.parsed(j, p, "https", parse_listen_endpoint, "an address with :port");
    s.git = c_.parsed(j, p, "git", parse_listen_endpoint, "an address with :port");
    s.ssh = c_.parsed(j, p, "ssh", parse_listen_endpoint, "an address with :port");
    if (j.contains("operators")) git_operators(j["operators"]);
    s.pack_cache_mb = static_cast<std::uint32_t>(c_.integer(j, p, "pack_cache_mb", 0, 65536).value_or(64));
    s.read_timeout_s = static_cast<std::uint32_t>(c_.integer(j, p, "read_timeout", 1, 3600).value_or(30));
    s.max_pack_mb = static_cast<std::uint32_t>(c_.integer(j, p, "max_pack_mb", 1, 4096).value_or(16));
    s.max_object_mb = static_cast<std::uint32_t>(c_.integer(j, p, "max_object_mb", 1, 4096).value_or(8));
    s.max_repo_mb = static_cast<std::uint32_t>(c_.integer(j, p, "max_repo_mb", 1, 65536).value_or(64));
    tls_pair(j, p, s.tls_cert, s.tls_key, false);
    if (auto t = c_.string(j, p, "template")) {
        s.template_dir = resolve(base_dir_, *t);
        std::error_code ec;
        if (!std::filesystem::is_directory(s.template_dir, ec))
            c_.error(join(p, "template"), s.template_dir.string() + " is not a directory");
    }
    if (auto h = c_.string(j, p, "public_host")) {
        if (!is_dns_name(*h) && !parse_ip(*h)) c_.error(join(p, "public_host"), "\"" + *h + "\" is not a host name or IP address");
        else s.public_host = *h;
    }
}

void SiteParser::git_operators(const json& ops) {
    if (!ops.is_array()) {
        c_.error("/services/git/operators", "expected an array of {name, key, access}");
        return;
    }
    for (std::size_t i = 0; i < ops.size(); ++i) {
        const std::string op = join("/services/git/operators", i);
        if (!c_.object(ops[i], op, {"name", "key", "access"})) continue;
        GitService::Operator o;
        o.name = c_.string(ops[i], op, "name").value_or("");
        o.key = c_.string(ops[i], op, "key").value_or("");
        const auto access = c_.string(ops[i], op, "access").value_or("read-only");
        o.writable = access == "read-write";
        if (o.name.empty() || o.name.size() > 64) c_.error(op + "/name", "an operator needs a name (1-64 characters)");
        if (o.key.rfind("ssh-ed25519 ", 0) != 0 && o.key.rfind("ssh-rsa ", 0) != 0 && o.key.rfind("ecdsa-sha2-", 0) != 0)
            c_.error(op + "/key", "expected an OpenSSH public key line (ssh-ed25519 AAAA...)");
        if (access != "read-only" && access != "read-write") c_.error(op + "/access", "\"" + access + "\" is not read-only or read-write");
        site_.services.git.operators.push_back(std::move(o));
    }
}

void SiteParser::block_service(const json& j) {
    const std::string p = "/services/block";
    auto& s = site_.services.block;
    if (!c_.object(j, p, {"enabled", "listen", "key_file", "commit_mode"})) return;
    if (auto m = c_.string(j, p, "commit_mode")) {
        if (*m == "checksummed") s.checksummed_commits = true;
        else if (*m != "ordered") c_.error(join(p, "commit_mode"), "\"" + *m + "\" is not ordered or checksummed");
    }
    s.enabled = c_.boolean(j, p, "enabled").value_or(true);
    if (auto e = c_.parsed(j, p, "listen", parse_listen_endpoint, "an address with :port")) s.listen = *e;
    if (auto k = c_.string(j, p, "key_file")) {
        s.key_file = resolve(base_dir_, *k);
        s.key_file_given = true;
        check_file_exists(c_, join(p, "key_file"), s.key_file, false);
    }
}

void SiteParser::tls_pair(const json& j, const std::string& p, std::filesystem::path& cert_out, std::filesystem::path& key_out,
                          bool secret_key) {
    const auto cert = c_.string(j, p, "tls_cert");
    const auto key = c_.string(j, p, "tls_key");
    if (cert.has_value() != key.has_value()) c_.error(join(p, cert ? "tls_key" : "tls_cert"), "tls_cert and tls_key go together");
    if (!cert || !key) return;
    cert_out = resolve(base_dir_, *cert);
    key_out = resolve(base_dir_, *key);
    check_file_exists(c_, join(p, "tls_cert"), cert_out, false);
    if (secret_key) check_secret_file(c_, join(p, "tls_key"), key_out);
    else check_file_exists(c_, join(p, "tls_key"), key_out, false);
}

void SiteParser::console_service(const json& j) {
    const std::string p = "/services/console";
    auto& s = site_.services.console;
    if (j.is_string() && j.get<std::string>() == "off") return;
    if (!c_.object(j, p, {"enabled", "listen", "tls_cert", "tls_key", "password_file"})) return;
    s.enabled = c_.boolean(j, p, "enabled").value_or(true);
    if (auto e = c_.parsed(j, p, "listen", parse_listen_endpoint, "an address with :port")) s.listen = *e;
    tls_pair(j, p, s.tls_cert, s.tls_key, true);
    if (auto f = c_.string(j, p, "password_file")) {
        s.password_file = resolve(base_dir_, *f);
        check_secret_file(c_, join(p, "password_file"), s.password_file);
    }
    // Off loopback the console is reachable by others: it needs a login and HTTPS (docs/console.md).
    if (s.enabled && !is_loopback(s.listen.host) && (s.tls_cert.empty() || s.password_file.empty()))
        c_.error(join(p, "listen"), s.listen.to_string() + " is not a loopback address: the console there needs tls_cert, tls_key and " +
                                        "password_file (HTTPS and a login)");
}

void SiteParser::limits(const json& j) {
    const std::string p = "/services/limits";
    if (!c_.object(j, p, {"git", "http", "https", "ssh", "block", "dhcp-control", "status", "console"})) return;  // kListenerNames
    for (const auto name : kListenerNames) {
        auto it = j.find(name);
        if (it == j.end()) continue;
        const auto lp = join(p, name);
        if (!c_.object(
                *it, lp,
                {"max_connections", "max_per_address", "max_unauthenticated", "login_grace", "ipv4_prefix", "ipv6_prefix", "min_rate"}))
            continue;
        auto l = default_limits(name);
        l.max_connections = c_.integer(*it, lp, "max_connections", 1, 65536).value_or(l.max_connections);
        l.max_per_address = c_.integer(*it, lp, "max_per_address", 0, 65536).value_or(l.max_per_address);
        l.max_unauthenticated = c_.integer(*it, lp, "max_unauthenticated", 0, 65536).value_or(l.max_unauthenticated);
        if (auto g = c_.integer(*it, lp, "login_grace", 1, 600)) l.login_grace = std::chrono::seconds(*g);
        l.ipv4_prefix = static_cast<int>(c_.integer(*it, lp, "ipv4_prefix", 8, 32).value_or(static_cast<std::uint64_t>(l.ipv4_prefix)));
        l.ipv6_prefix = static_cast<int>(c_.integer(*it, lp, "ipv6_prefix", 16, 128).value_or(static_cast<std::uint64_t>(l.ipv6_prefix)));
        l.min_rate = c_.integer(*it, lp, "min_rate", 0, 1ull << 30).value_or(l.min_rate);
        if (l.max_per_address > l.max_connections)
            c_.error(join(lp, "max_per_address"), "is more than max_connections: one address could take every slot");
        else if (l.max_per_address == l.max_connections && l.max_connections > 1)
            c_.error(join(lp, "max_per_address"), "equals max_connections: one address could take every slot");
        if (l.max_unauthenticated > l.max_connections) c_.error(join(lp, "max_unauthenticated"), "is more than max_connections");
        site_.services.limits[std::string(name)] = l;
    }
}

// ---- networks ----

void SiteParser::networks(const json& doc) {
    auto it = doc.find("networks");
    if (it == doc.end()) return;
    if (!it->is_array()) c_.error("/networks", "expected an array, found " + type_name(*it));
    else if (it->empty()) c_.error("/networks", "at least one network is required");
    else if (it->size() > kMaxNetworks) c_.error("/networks", "at most " + std::to_string(kMaxNetworks) + " networks allowed");
    else
        for (std::size_t i = 0; i < it->size(); ++i) network((*it)[i], join("/networks", i));
}

void SiteParser::network(const json& j, const std::string& p) {
    if (!c_.object(j, p,
                   {"name", "interface", "subnet", "gateway", "dns", "domain", "pools", "lease_time", "options", "monitoring_option",
                    "server_address", "ignore_client_id", "known_only"},
                   {"name", "subnet"}))
        return;
    Network n;
    if (auto name = c_.string(j, p, "name")) {
        if (!valid_interface_name(*name))
            c_.error(join(p, "name"), "\"" + *name + "\" is not a valid bridge name (1-15 characters, no '/', ':' or spaces)");
        else if (site_.network(*name)) c_.error(join(p, "name"), "network \"" + *name + "\" is defined twice");
        n.name = *name;
    }
    n.interface = n.name;
    if (auto ifn = c_.string(j, p, "interface")) {
        if (!valid_interface_name(*ifn)) c_.error(join(p, "interface"), "\"" + *ifn + "\" is not a valid interface name");
        n.interface = *ifn;
    }
    auto subnet = c_.parsed(
        j, p, "subnet", [](std::string_view s) { return Prefix::parse(s); }, "an IPv4 prefix with no host bits set (like 10.0.0.0/24)");
    if (subnet) {
        if (subnet->length() > 30) {
            c_.error(join(p, "subnet"), subnet->to_string() + " leaves no room for hosts (use /30 or larger)");
            subnet.reset();
        } else {
            n.subnet = *subnet;
        }
    }
    auto inside = [&](Ipv4 a, const std::string& ptr) {
        if (subnet && !subnet->is_host(a)) c_.error(ptr, a.to_string() + " is not a host address in subnet " + subnet->to_string());
    };
    if ((n.gateway = c_.parsed(j, p, "gateway", parse_ipv4, "an IPv4 address"))) inside(*n.gateway, join(p, "gateway"));
    if ((n.server_address = c_.parsed(j, p, "server_address", parse_ipv4, "an IPv4 address")))
        inside(*n.server_address, join(p, "server_address"));
    n.ignore_client_id = c_.boolean(j, p, "ignore_client_id").value_or(false);
    n.known_only = c_.boolean(j, p, "known_only").value_or(false);
    n.dns = c_.parsed_list(j, p, "dns", parse_ipv4, "an IPv4 address", 16).value_or(std::vector<Ipv4>{});
    if (auto d = c_.string(j, p, "domain")) {
        if (!is_dns_name(*d)) c_.error(join(p, "domain"), "\"" + *d + "\" is not a valid domain name");
        n.domain = *d;
    }
    if (auto list = j.find("pools"); list != j.end()) pools(n, *list, join(p, "pools"), subnet);
    n.lease_time = static_cast<std::uint32_t>(c_.integer(j, p, "lease_time", 60, 0x7FFFFFFF).value_or(kDefaultLeaseTime));
    if (j.contains("options")) n.options = parse_options(c_, j["options"], join(p, "options"));
    if (j.contains("monitoring_option")) monitoring_option(n, j["monitoring_option"], join(p, "monitoring_option"));
    site_.networks.push_back(std::move(n));
}

void SiteParser::pools(Network& n, const json& list, const std::string& pp, const std::optional<Prefix>& subnet) {
    if (!list.is_array()) {
        c_.error(pp, "expected an array of ranges like \"10.0.0.100-10.0.0.199\"");
        return;
    }
    for (std::size_t k = 0; k < list.size(); ++k) {
        const auto& e = list[k];
        const auto ep = join(pp, k);
        bool reversed = false;
        auto r = e.is_string() ? Range::parse(e.get<std::string>(), &reversed) : std::nullopt;
        if (!r) {
            c_.error(ep, reversed ? "range " + e.get<std::string>() + " is reversed"
                                  : e.dump() + " is not a range like \"10.0.0.100-10.0.0.199\"");
            continue;
        }
        if (subnet && (!subnet->is_host(r->first()) || !subnet->is_host(r->last()))) {
            c_.error(ep, "range " + r->to_string() + " is not inside subnet " + subnet->to_string() +
                             " (network and broadcast addresses excluded)");
            continue;
        }
        if (n.gateway && r->contains(*n.gateway)) {
            c_.error(ep, "range " + r->to_string() + " contains the gateway " + n.gateway->to_string());
            continue;
        }
        for (const auto& q : n.pools)
            if (q.overlaps(*r)) c_.error(ep, "range " + r->to_string() + " overlaps " + q.to_string());
        n.pools.push_back(*r);
    }
}

void SiteParser::monitoring_option(Network& n, const json& m, const std::string& mp) {
    if (!c_.object(m, mp, {"code", "enterprise", "suboption"})) return;
    const MonitoringOption defaults;
    n.monitoring_option.code = static_cast<std::uint8_t>(c_.integer(m, mp, "code", 1, 254).value_or(defaults.code));
    n.monitoring_option.enterprise =
        static_cast<std::uint32_t>(c_.integer(m, mp, "enterprise", 0, 0xFFFFFFFF).value_or(defaults.enterprise));
    n.monitoring_option.suboption = static_cast<std::uint8_t>(c_.integer(m, mp, "suboption", 0, 255).value_or(defaults.suboption));
}

// ---- unikernels ----

void SiteParser::unikernels(const json& doc) {
    auto it = doc.find("unikernels");
    if (it == doc.end()) return;
    if (!it->is_array()) c_.error("/unikernels", "expected an array, found " + type_name(*it));
    else if (it->size() > kMaxUnikernels) c_.error("/unikernels", "at most " + std::to_string(kMaxUnikernels) + " unikernels allowed");
    else
        for (std::size_t i = 0; i < it->size(); ++i) unikernel((*it)[i], join("/unikernels", i));
}

void SiteParser::unikernel(const json& j, const std::string& p) {
    if (!c_.object(j, p,
                   {"name", "network", "mac", "address", "dhcp", "options", "git", "block", "boot_args", "client_id", "config_uri",
                    "public_hosts", "backend_port"},
                   {"name", "network"}))
        return;
    Unikernel u;
    if (auto name = c_.string(j, p, "name")) {
        if (!is_dns_label(*name))
            c_.error(join(p, "name"),
                     "\"" + *name + "\" is not a valid DNS label (1-63 letters, digits and '-', not starting or ending with '-')");
        else if (!unikernel_names_.insert(*name).second) c_.error(join(p, "name"), "unikernel \"" + *name + "\" is defined twice");
        u.name = *name;
    }
    const Network* net = nullptr;
    if (auto nn = c_.string(j, p, "network")) {
        net = site_.network(*nn);
        if (!net) {
            std::string names;
            for (const auto& x : site_.networks) names += (names.empty() ? "" : ", ") + x.name;
            c_.error(join(p, "network"), "no network named \"" + *nn + "\" (defined: " + (names.empty() ? "none" : names) + ")");
        }
        u.network = *nn;
    }
    if (auto m = c_.parsed(
            j, p, "mac", [](std::string_view s) { return Mac::parse(s); }, "a MAC address like 00:80:41:12:34:56")) {
        if (m->is_multicast() || m->is_zero()) c_.error(join(p, "mac"), m->to_string() + " is not a unicast MAC address");
        u.mac = *m;
    } else if (!j.contains("mac") && net && !u.name.empty()) {
        u.mac = albatross_mac(net->name, u.name);
        u.mac_derived = true;
    }
    if (!u.name.empty() && !u.mac.is_zero()) {
        auto [m, fresh] = macs_.emplace(u.mac, u.name);
        if (!fresh)
            c_.error(join(p, u.mac_derived ? "name" : "mac"),
                     "MAC " + u.mac.to_string() + (u.mac_derived ? " (derived)" : "") + " is also used by unikernel \"" + m->second + "\"");
    }
    u.dhcp = c_.boolean(j, p, "dhcp").value_or(true);
    if (auto cid = c_.string(j, p, "client_id")) {
        auto b = from_hex(*cid);
        if (!b || b->size() < 2 || b->size() > 255) c_.error(join(p, "client_id"), "\"" + *cid + "\" is not 2-255 bytes of hex");
        else u.client_id = *b;
    }
    if (auto ph = j.find("public_hosts"); ph != j.end()) unikernel_public_hosts(u, *ph, join(p, "public_hosts"));
    if (auto bp = c_.integer(j, p, "backend_port", 1, 65535)) u.backend_port = static_cast<std::uint16_t>(*bp);
    if (auto uri = c_.string(j, p, "config_uri")) {
        if (uri->empty() || uri->size() > 255) c_.error(join(p, "config_uri"), "must be 1-255 characters");
        else u.config_uri = *uri;
    }
    if ((u.address = c_.parsed(j, p, "address", parse_ipv4, "an IPv4 address"))) unikernel_address(u, net, join(p, "address"));
    if (!u.dhcp && !u.address) c_.error(join(p, "dhcp"), "a unikernel without DHCP needs a fixed \"address\"");
    if (j.contains("options")) u.options = parse_options(c_, j["options"], join(p, "options"));
    if (j.contains("git")) unikernel_git(u, j["git"], join(p, "git"));
    if (j.contains("block")) unikernel_block(u, j["block"], join(p, "block"));
    if (auto args = j.find("boot_args"); args != j.end()) unikernel_boot_args(u, *args, join(p, "boot_args"));
    site_.unikernels.push_back(std::move(u));
}

void SiteParser::unikernel_public_hosts(Unikernel& u, const json& list, const std::string& hp) {
    if (!list.is_array() || list.size() > 64) {
        c_.error(hp, "expected an array of at most 64 host names");
        return;
    }
    for (std::size_t k = 0; k < list.size(); ++k) {
        const auto& h = list[k];
        std::string name = h.is_string() ? h.get<std::string>() : std::string{};
        for (auto& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        const bool wildcard = name.rfind("*.", 0) == 0;
        if (!is_dns_name(wildcard ? name.substr(2) : name)) c_.error(join(hp, k), h.dump() + " is not a host name");
        else if (auto [at, fresh] = public_hosts_.emplace(name, u.name); !fresh)
            c_.error(join(hp, k), "\"" + name + "\" is also a public host of unikernel \"" + at->second + "\"");
        else u.public_hosts.push_back(name);
    }
}

void SiteParser::unikernel_address(Unikernel& u, const Network* net, const std::string& ap) {
    const Ipv4 a = *u.address;
    if (net) {
        if (!net->subnet.is_host(a))
            c_.error(ap,
                     a.to_string() + " is not a host address in subnet " + net->subnet.to_string() + " of network \"" + net->name + "\"");
        for (const auto& r : net->pools)
            if (r.contains(a))
                c_.error(ap, a.to_string() + " is inside dynamic pool " + r.to_string() + "; fixed addresses must be outside the pools");
        if (net->gateway && *net->gateway == a) c_.error(ap, a.to_string() + " is the network's gateway");
    }
    if (auto [at, fresh] = addresses_.emplace(a, u.name); !fresh)
        c_.error(ap, a.to_string() + " is also assigned to unikernel \"" + at->second + "\"");
}

void SiteParser::unikernel_git(Unikernel& u, const json& g, const std::string& gp) {
    if (!c_.object(g, gp,
                   {"enabled", "access", "branch", "git_protocol", "allow_non_fast_forward", "allow_delete", "allow_symlinks", "hook_url",
                    "webhook_url", "validator"}))
        return;
    u.git.enabled = c_.boolean(g, gp, "enabled").value_or(true);
    u.git.git_protocol = c_.boolean(g, gp, "git_protocol").value_or(false);
    u.git.allow_non_fast_forward = c_.boolean(g, gp, "allow_non_fast_forward").value_or(false);
    u.git.allow_delete = c_.boolean(g, gp, "allow_delete").value_or(false);
    u.git.allow_symlinks = c_.boolean(g, gp, "allow_symlinks").value_or(false);
    if (g.contains("validator")) {
        const auto& v = g["validator"];
        bool ok = v.is_array() && !v.empty() && v.size() <= 64;
        if (ok)
            for (const auto& x : v) ok = ok && x.is_string() && !x.get<std::string>().empty() && x.get<std::string>().size() <= 4096;
        if (!ok) {
            c_.error(join(gp, "validator"), "expected a command as an array of strings, e.g. [\"/usr/local/bin/check\", \"--strict\"]");
        } else {
            for (const auto& x : v) u.git.validator.push_back(x.get<std::string>());
            if (u.git.validator[0].front() != '/') u.git.validator[0] = resolve(base_dir_, u.git.validator[0]).string();
        }
    }
    for (const char* key : {"hook_url", "webhook_url"}) {
        auto v = c_.string(g, gp, key);
        if (!v) continue;
        if (v->rfind("http://", 0) != 0 || v->size() > 2048 || v->size() < 8 || v->find_first_of(" \r\n") != std::string::npos)
            c_.error(join(gp, key), "\"" + v->substr(0, 64) + "\" is not an http:// URL (https is not supported for notifications yet)");
        (std::string_view(key) == "hook_url" ? u.git.hook_url : u.git.webhook_url) = *v;
    }
    if (auto a = c_.string(g, gp, "access")) {
        if (*a == "read-write") u.git.writable = true;
        else if (*a != "read-only") c_.error(join(gp, "access"), "\"" + *a + "\" is not read-only or read-write");
    }
    if (auto b = c_.string(g, gp, "branch")) {
        const bool ok = !b->empty() && b->size() <= 200 && b->find("..") == std::string::npos && b->front() != '/' && b->back() != '/' &&
                        b->find_first_of(" ~^:?*[\\") == std::string::npos;
        if (!ok) c_.error(join(gp, "branch"), "\"" + *b + "\" is not a valid branch name");
        u.git.branch = *b;
    }
}

void SiteParser::unikernel_block(Unikernel& u, const json& b, const std::string& bp) {
    if (!c_.object(b, bp, {"device", "sector_size", "size"})) return;
    BlockSettings bs;
    if (auto d = c_.string(b, bp, "device")) {
        bs.device = resolve(base_dir_, *d);
        bs.device_given = true;
        check_file_exists(c_, join(bp, "device"), bs.device, false);
    }  // else: under the data directory (Site::set_data_dir)
    if (auto s = c_.integer(b, bp, "sector_size", 512, 4096)) {
        if (*s != 512 && *s != 4096) c_.error(join(bp, "sector_size"), "must be 512 or 4096");
        bs.sector_size = static_cast<std::uint32_t>(*s);
    }
    bs.size = c_.integer(b, bp, "size", 16 * 1024, 1ull << 32).value_or(bs.size);
    if (bs.size % bs.sector_size != 0)
        c_.error(join(bp, "size"), "must be a multiple of the sector size " + std::to_string(bs.sector_size));
    u.block = bs;
}

void SiteParser::unikernel_boot_args(Unikernel& u, const json& args, const std::string& ap) {
    if (!args.is_array()) {
        c_.error(ap, "expected an array of strings");
        return;
    }
    for (std::size_t k = 0; k < args.size(); ++k) {
        const auto& a = args[k];
        if (!a.is_string() || a.get<std::string>().rfind("--", 0) != 0)
            c_.error(join(ap, k), a.dump() + " is not a boot argument of the form \"--key=value\"");
        else u.boot_args.push_back(a.get<std::string>());
    }
}

// ---- what spans sections ----

void SiteParser::cross_checks() {
    // Lease-driven routes: a local target is a unikernel with a block device; public hosts need routes.
    if (const auto& r = site_.services.dhcp.routes; r && r->kind == LeaseRoutes::Kind::local && !r->device.empty()) {
        const Unikernel* t = site_.unikernel(r->device);
        if (!t || !t->block) c_.error("/services/dhcp/routes/target", "\"" + r->device + "\" is not a unikernel with a \"block\" device");
    }
    if (!site_.services.dhcp.routes)
        for (std::size_t i = 0; i < site_.unikernels.size(); ++i)
            if (!site_.unikernels[i].public_hosts.empty())
                c_.error(join(join("/unikernels", i), "public_hosts"), "needs services.dhcp.routes (where the routes go)");

    // Subnets of different networks must not overlap: an address would belong to two networks.
    const auto& nets = site_.networks;
    for (std::size_t i = 0; i < nets.size(); ++i)
        for (std::size_t k = i + 1; k < nets.size(); ++k) {
            const auto& a = nets[i].subnet;
            const auto& b = nets[k].subnet;
            if (a.length() > 0 && b.length() > 0 && (a.contains(b.network()) || b.contains(a.network())))
                c_.error(join(join("/networks", k), "subnet"),
                         b.to_string() + " overlaps " + a.to_string() + " of network \"" + nets[i].name + "\"");
        }
}

}  // namespace

ListenerLimits Services::limits_for(std::string_view listener) const {
    if (auto it = limits.find(listener); it != limits.end()) return it->second;
    return default_limits(listener);
}

void Site::set_data_dir(const std::filesystem::path& dir) {
    services.data_dir = std::filesystem::absolute(dir).lexically_normal();
    if (!services.block.key_file_given) services.block.key_file = services.data_dir / "block" / "keys";
    for (auto& u : unikernels)
        if (u.block && !u.block->device_given) u.block->device = services.data_dir / "block" / (u.name + ".img");
}

Site parse_site(std::string_view text, const std::filesystem::path& base_dir, std::string_view source_name) {
    Site site;
    site.source = std::string(source_name);
    site.digest = to_hex(sha256(text));
    site.text = std::make_shared<const std::string>(text);
    auto parsed = parse_json(text);
    Checker c;
    c.errors = std::move(parsed.errors);
    if (c.errors.size() == 1 && c.errors[0].message.rfind("invalid JSON", 0) == 0) throw SiteLoadError(site.source, std::move(c.errors));
    const json& doc = parsed.doc;
    if (!c.object(doc, "", {"site", "networks", "unikernels", "services"}, {"networks"}))
        throw SiteLoadError(site.source, std::move(c.errors));

    if (auto n = c.string(doc, "", "site")) {
        if (!is_dns_name(*n)) c.error("/site", "\"" + *n + "\" is not a valid DNS name");
        site.name = *n;
    }
    site.services.data_dir = kDefaultDataDir;
    SiteParser parser(c, base_dir, site);
    parser.services(doc);
    parser.networks(doc);
    parser.unikernels(doc);
    parser.cross_checks();
    if (!c.errors.empty()) throw SiteLoadError(site.source, std::move(c.errors));
    site.set_data_dir(site.services.data_dir);
    return site;
}

Site load_site(const std::filesystem::path& file, const std::filesystem::path& data_dir) {
    std::string text;
    if (auto err = read_file_limited(file, kMaxSiteFileBytes, text)) {
        // The error names the file; the SiteLoadError names it too, so once is enough ("site.json: cannot open: ...").
        if (const auto prefix = file.string() + ": "; err->starts_with(prefix)) err->erase(0, prefix.size());
        throw SiteLoadError(file.string(), {{"", *err}});
    }
    auto base = file.parent_path();
    if (base.empty()) base = ".";
    auto site = parse_site(text, std::filesystem::absolute(base), file.string());
    if (!data_dir.empty()) site.set_data_dir(data_dir);
    return site;
}

}  // namespace fleetconf::common
