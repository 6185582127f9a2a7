#include "fleetconf/common/site.hpp"

#include "fleetconf/common/crypto.hpp"
#include "fleetconf/common/files.hpp"

#include <nlohmann/json.hpp>

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
                                            const std::set<std::uint64_t>& managed) {
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
            if (managed.contains(*n))
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
    o.custom = parse_option_list(c, j, ptr, "custom", 1, 254, {50, 51, 52, 53, 54, 55, 57, 58, 59, 61, 82});
    // Sub-options of option 125 for the MirageOS enterprise (49836); 0 is the monitoring sink.
    o.vivso = parse_option_list(c, j, ptr, "vivso", 1, 255, {});
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

Site parse_site(std::string_view text, const std::filesystem::path& base_dir, std::string_view source_name) {
    Site site;
    site.source = std::string(source_name);
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

    // ---- services first: data_dir is the default home of several paths below ----
    site.services.data_dir = "/var/lib/fleetconf";
    json services = doc.value("services", json::object());
    if (c.object(services, "/services", {"data_dir", "status", "dhcp", "git", "block"})) {
        if (auto d = c.string(services, "/services", "data_dir")) {
            if (d->empty()) c.error("/services/data_dir", "must not be empty");
            else site.services.data_dir = resolve(base_dir, *d);
        }
        if (auto m = c.string(services, "/services", "status")) {
            if (*m == "off") site.services.status.reset();
            else if (auto e = Endpoint::parse_listen(*m)) site.services.status = *e;
            else c.error("/services/status", "\"" + *m + "\" is not an address with :port, or \"off\"");
        }
        if (services.contains("dhcp") && services["dhcp"].is_object() && services["dhcp"].contains("metrics"))
            c.error("/services/dhcp/metrics", "moved to \"services.status\": one endpoint serves /health and /metrics for every service");
        if (services.contains("dhcp")) {
            const auto& j = services["dhcp"];
            auto& s = site.services.dhcp;
            if (c.object(j, "/services/dhcp",
                         {"enabled", "server_port", "client_port", "authoritative", "config_uri_option", "metrics", "control_http",
                          "control_key_file", "routes"})) {
                if (j.contains("routes")) {
                    const std::string rp = "/services/dhcp/routes";
                    const auto& r = j["routes"];
                    if (c.object(r, rp, {"target", "key_file", "key_id", "port", "fqdn", "remove_on_release"}, {"target"})) {
                        LeaseRoutes lr;
                        if (auto t = c.string(r, rp, "target")) {
                            auto after = [&](std::string_view scheme) { return t->substr(scheme.size()); };
                            if (t->rfind("blockcfg://", 0) == 0 || t->rfind("tlstunnel://", 0) == 0) {
                                const bool bc = t->rfind("blockcfg://", 0) == 0;
                                lr.kind = bc ? LeaseRoutes::Kind::blockcfg : LeaseRoutes::Kind::tlstunnel;
                                std::string rest = after(bc ? "blockcfg://" : "tlstunnel://");
                                if (auto slash = rest.find('/'); slash != std::string::npos) {
                                    lr.device = rest.substr(slash + 1);
                                    rest = rest.substr(0, slash);
                                    if (!bc || lr.device.empty())
                                        c.error(join(rp, "target"), "a path is only for blockcfg://HOST:PORT/DEVICE");
                                }
                                lr.endpoint = Endpoint::parse(rest, bc ? 7300 : 1234);
                                if (!lr.endpoint) c.error(join(rp, "target"), "\"" + rest + "\" is not HOST:PORT");
                                if (auto k = c.string(r, rp, "key_file")) {
                                    lr.key_file = resolve(base_dir, *k);
                                    check_file_exists(c, join(rp, "key_file"), lr.key_file, false);
                                } else {
                                    c.error(join(rp, "key_file"), "a remote target needs the key to authenticate with");
                                }
                            } else if (t->find("://") != std::string::npos) {
                                c.error(join(rp, "target"),
                                        "\"" + *t + "\" is not a unikernel name, blockcfg://HOST:PORT[/DEVICE] or tlstunnel://HOST:PORT");
                            } else {
                                lr.device = *t;  // checked against the unikernels below
                            }
                        }
                        lr.key_id = c.string(r, rp, "key_id").value_or("");
                        lr.port = static_cast<std::uint16_t>(c.integer(r, rp, "port", 1, 65535).value_or(80));
                        lr.fqdn = c.boolean(r, rp, "fqdn").value_or(false);
                        lr.remove_on_release = c.boolean(r, rp, "remove_on_release").value_or(true);
                        s.routes = lr;
                    }
                }
                if (auto m = c.string(j, "/services/dhcp", "control_http"); m && *m != "off") {
                    if (auto e = Endpoint::parse_listen(*m)) s.control_http = *e;
                    else c.error("/services/dhcp/control_http", "\"" + *m + "\" is not an address with :port, or \"off\"");
                }
                if (auto k = c.string(j, "/services/dhcp", "control_key_file")) {
                    s.control_key_file = resolve(base_dir, *k);
                    check_file_exists(c, "/services/dhcp/control_key_file", s.control_key_file, false);
                }
                if (s.control_http && s.control_key_file.empty())
                    c.error("/services/dhcp/control_http",
                            "needs \"control_key_file\": the HTTP control channel is never open without a password");
                s.config_uri_option =
                    static_cast<std::uint8_t>(c.integer(j, "/services/dhcp", "config_uri_option", 224, 254).value_or(224));
                s.enabled = c.boolean(j, "/services/dhcp", "enabled").value_or(true);
                s.server_port = static_cast<std::uint16_t>(c.integer(j, "/services/dhcp", "server_port", 1, 65535).value_or(67));
                s.client_port = static_cast<std::uint16_t>(c.integer(j, "/services/dhcp", "client_port", 1, 65535).value_or(68));
                s.authoritative = c.boolean(j, "/services/dhcp", "authoritative").value_or(true);
                if (s.server_port == s.client_port) c.error("/services/dhcp/client_port", "must differ from server_port");
            }
        }
        if (services.contains("git")) {
            const auto& j = services["git"];
            auto& s = site.services.git;
            if (c.object(
                    j, "/services/git",
                    {"enabled", "http", "https", "git", "public_host", "tls_cert", "tls_key", "template", "pack_cache_mb", "read_timeout",
                     "max_pack_mb", "max_object_mb", "max_repo_mb", "ssh", "operators", "webhook_key_file", "validator_timeout"})) {
                s.validator_timeout_s =
                    static_cast<std::uint32_t>(c.integer(j, "/services/git", "validator_timeout", 1, 3600).value_or(10));
                if (auto k = c.string(j, "/services/git", "webhook_key_file")) {
                    s.webhook_key_file = resolve(base_dir, *k);
                    check_file_exists(c, "/services/git/webhook_key_file", s.webhook_key_file, false);
                }
                s.enabled = c.boolean(j, "/services/git", "enabled").value_or(true);
                s.http = c.parsed(j, "/services/git", "http", parse_listen_endpoint, "an address with :port");
                s.https = c.parsed(j, "/services/git", "https", parse_listen_endpoint, "an address with :port");
                s.git = c.parsed(j, "/services/git", "git", parse_listen_endpoint, "an address with :port");
                s.ssh = c.parsed(j, "/services/git", "ssh", parse_listen_endpoint, "an address with :port");
                if (j.contains("operators")) {
                    const auto& ops = j["operators"];
                    if (!ops.is_array()) c.error("/services/git/operators", "expected an array of {name, key, access}");
                    else
                        for (std::size_t i = 0; i < ops.size(); ++i) {
                            const std::string op = "/services/git/operators/" + std::to_string(i);
                            if (!c.object(ops[i], op, {"name", "key", "access"})) continue;
                            GitService::Operator o;
                            o.name = c.string(ops[i], op, "name").value_or("");
                            o.key = c.string(ops[i], op, "key").value_or("");
                            const auto access = c.string(ops[i], op, "access").value_or("read-only");
                            o.writable = access == "read-write";
                            if (o.name.empty() || o.name.size() > 64) c.error(op + "/name", "an operator needs a name (1-64 characters)");
                            if (o.key.rfind("ssh-ed25519 ", 0) != 0 && o.key.rfind("ssh-rsa ", 0) != 0 &&
                                o.key.rfind("ecdsa-sha2-", 0) != 0)
                                c.error(op + "/key", "expected an OpenSSH public key line (ssh-ed25519 AAAA...)");
                            if (access != "read-only" && access != "read-write")
                                c.error(op + "/access", "\"" + access + "\" is not read-only or read-write");
                            s.operators.push_back(std::move(o));
                        }
                }
                s.pack_cache_mb = static_cast<std::uint32_t>(c.integer(j, "/services/git", "pack_cache_mb", 0, 65536).value_or(64));
                s.read_timeout_s = static_cast<std::uint32_t>(c.integer(j, "/services/git", "read_timeout", 1, 3600).value_or(30));
                s.max_pack_mb = static_cast<std::uint32_t>(c.integer(j, "/services/git", "max_pack_mb", 1, 4096).value_or(16));
                s.max_object_mb = static_cast<std::uint32_t>(c.integer(j, "/services/git", "max_object_mb", 1, 4096).value_or(8));
                s.max_repo_mb = static_cast<std::uint32_t>(c.integer(j, "/services/git", "max_repo_mb", 1, 65536).value_or(64));
                const auto cert = c.string(j, "/services/git", "tls_cert");
                const auto key = c.string(j, "/services/git", "tls_key");
                if (cert.has_value() != key.has_value())
                    c.error(cert ? "/services/git/tls_key" : "/services/git/tls_cert", "tls_cert and tls_key go together");
                if (cert && key) {
                    s.tls_cert = resolve(base_dir, *cert);
                    s.tls_key = resolve(base_dir, *key);
                    check_file_exists(c, "/services/git/tls_cert", s.tls_cert, false);
                    check_file_exists(c, "/services/git/tls_key", s.tls_key, false);
                }
                if (auto t = c.string(j, "/services/git", "template")) {
                    s.template_dir = resolve(base_dir, *t);
                    std::error_code ec;
                    if (!std::filesystem::is_directory(s.template_dir, ec))
                        c.error("/services/git/template", s.template_dir.string() + " is not a directory");
                }

                if (auto h = c.string(j, "/services/git", "public_host")) {
                    if (!is_dns_name(*h) && !parse_ip(*h))
                        c.error("/services/git/public_host", "\"" + *h + "\" is not a host name or IP address");
                    else s.public_host = *h;
                }
            }
        }
        if (services.contains("block")) {
            const auto& j = services["block"];
            auto& s = site.services.block;
            if (c.object(j, "/services/block", {"enabled", "listen", "key_file", "commit_mode"})) {
                if (auto m = c.string(j, "/services/block", "commit_mode")) {
                    if (*m == "checksummed") s.checksummed_commits = true;
                    else if (*m != "ordered") c.error("/services/block/commit_mode", "\"" + *m + "\" is not ordered or checksummed");
                }
                s.enabled = c.boolean(j, "/services/block", "enabled").value_or(true);
                if (auto e = c.parsed(j, "/services/block", "listen", parse_listen_endpoint, "an address with :port")) s.listen = *e;
                if (auto k = c.string(j, "/services/block", "key_file")) {
                    s.key_file = resolve(base_dir, *k);
                    s.key_file_given = true;
                    check_file_exists(c, "/services/block/key_file", s.key_file, false);
                }
            }
        }
    }
    if (auto& g = site.services.git; !g.http && !g.https && !g.git && !g.ssh) g.http = Endpoint{Ipv4{127, 0, 0, 1}, 8080};
    if (!site.services.block.key_file_given) site.services.block.key_file = site.services.data_dir / "block" / "keys";

    // ---- networks ----
    if (auto it = doc.find("networks"); it != doc.end()) {
        if (!it->is_array()) c.error("/networks", "expected an array, found " + type_name(*it));
        else if (it->empty()) c.error("/networks", "at least one network is required");
        else if (it->size() > kMaxNetworks) c.error("/networks", "at most " + std::to_string(kMaxNetworks) + " networks allowed");
        else
            for (std::size_t i = 0; i < it->size(); ++i) {
                const auto& j = (*it)[i];
                const auto p = join("/networks", i);
                if (!c.object(j, p,
                              {"name", "interface", "subnet", "gateway", "dns", "domain", "pools", "lease_time", "options",
                               "monitoring_option", "server_address", "ignore_client_id"},
                              {"name", "subnet"}))
                    continue;
                Network n;
                if (auto name = c.string(j, p, "name")) {
                    if (!valid_interface_name(*name))
                        c.error(join(p, "name"), "\"" + *name + "\" is not a valid bridge name (1-15 characters, no '/', ':' or spaces)");
                    else if (site.network(*name)) c.error(join(p, "name"), "network \"" + *name + "\" is defined twice");
                    n.name = *name;
                }
                n.interface = n.name;
                if (auto ifn = c.string(j, p, "interface")) {
                    if (!valid_interface_name(*ifn)) c.error(join(p, "interface"), "\"" + *ifn + "\" is not a valid interface name");
                    n.interface = *ifn;
                }
                auto subnet = c.parsed(
                    j, p, "subnet", [](std::string_view s) { return Prefix::parse(s); },
                    "an IPv4 prefix with no host bits set (like 10.0.0.0/24)");
                if (subnet) {
                    if (subnet->length() > 30) {
                        c.error(join(p, "subnet"), subnet->to_string() + " leaves no room for hosts (use /30 or larger)");
                        subnet.reset();
                    } else {
                        n.subnet = *subnet;
                    }
                }
                auto inside = [&](Ipv4 a, const std::string& ptr) {
                    if (subnet && !subnet->is_host(a))
                        c.error(ptr, a.to_string() + " is not a host address in subnet " + subnet->to_string());
                };
                if ((n.gateway = c.parsed(j, p, "gateway", parse_ipv4, "an IPv4 address"))) inside(*n.gateway, join(p, "gateway"));
                if ((n.server_address = c.parsed(j, p, "server_address", parse_ipv4, "an IPv4 address")))
                    inside(*n.server_address, join(p, "server_address"));
                n.ignore_client_id = c.boolean(j, p, "ignore_client_id").value_or(false);
                n.dns = c.parsed_list(j, p, "dns", parse_ipv4, "an IPv4 address", 16).value_or(std::vector<Ipv4>{});
                if (auto d = c.string(j, p, "domain")) {
                    if (!is_dns_name(*d)) c.error(join(p, "domain"), "\"" + *d + "\" is not a valid domain name");
                    n.domain = *d;
                }
                if (auto pools = j.find("pools"); pools != j.end()) {
                    const auto pp = join(p, "pools");
                    if (!pools->is_array()) c.error(pp, "expected an array of ranges like \"10.0.0.100-10.0.0.199\"");
                    else
                        for (std::size_t k = 0; k < pools->size(); ++k) {
                            const auto& e = (*pools)[k];
                            const auto ep = join(pp, k);
                            bool reversed = false;
                            auto r = e.is_string() ? Range::parse(e.get<std::string>(), &reversed) : std::nullopt;
                            if (!r) {
                                c.error(ep, reversed ? "range " + e.get<std::string>() + " is reversed"
                                                     : e.dump() + " is not a range like \"10.0.0.100-10.0.0.199\"");
                                continue;
                            }
                            if (subnet && (!subnet->is_host(r->first()) || !subnet->is_host(r->last()))) {
                                c.error(ep, "range " + r->to_string() + " is not inside subnet " + subnet->to_string() +
                                                " (network and broadcast addresses excluded)");
                                continue;
                            }
                            if (n.gateway && r->contains(*n.gateway)) {
                                c.error(ep, "range " + r->to_string() + " contains the gateway " + n.gateway->to_string());
                                continue;
                            }
                            for (std::size_t q = 0; q < n.pools.size(); ++q)
                                if (n.pools[q].overlaps(*r)) c.error(ep, "range " + r->to_string() + " overlaps " + n.pools[q].to_string());
                            n.pools.push_back(*r);
                        }
                }
                n.lease_time = static_cast<std::uint32_t>(c.integer(j, p, "lease_time", 60, 0x7FFFFFFF).value_or(kDefaultLeaseTime));
                if (j.contains("options")) n.options = parse_options(c, j["options"], join(p, "options"));
                if (j.contains("monitoring_option")) {
                    const auto mp = join(p, "monitoring_option");
                    const auto& m = j["monitoring_option"];
                    if (c.object(m, mp, {"code", "enterprise", "suboption"})) {
                        n.monitoring_option.code = static_cast<std::uint8_t>(c.integer(m, mp, "code", 1, 254).value_or(125));
                        n.monitoring_option.enterprise =
                            static_cast<std::uint32_t>(c.integer(m, mp, "enterprise", 0, 0xFFFFFFFF).value_or(49836));
                        n.monitoring_option.suboption = static_cast<std::uint8_t>(c.integer(m, mp, "suboption", 0, 255).value_or(0));
                    }
                }
                site.networks.push_back(std::move(n));
            }
    }

    // ---- unikernels ----
    std::map<Mac, std::string> macs;
    std::unordered_set<std::string> unikernel_names;  // a duplicate check per unikernel, not a scan (65,536 of them)
    std::map<Ipv4, std::string> addresses;
    std::map<std::string, std::string> public_hosts;  // host name -> unikernel
    if (auto it = doc.find("unikernels"); it != doc.end()) {
        if (!it->is_array()) c.error("/unikernels", "expected an array, found " + type_name(*it));
        else if (it->size() > kMaxUnikernels) c.error("/unikernels", "at most " + std::to_string(kMaxUnikernels) + " unikernels allowed");
        else
            for (std::size_t i = 0; i < it->size(); ++i) {
                const auto& j = (*it)[i];
                const auto p = join("/unikernels", i);
                if (!c.object(j, p,
                              {"name", "network", "mac", "address", "dhcp", "options", "git", "block", "boot_args", "client_id",
                               "config_uri", "public_hosts", "backend_port"},
                              {"name", "network"}))
                    continue;
                Unikernel u;
                if (auto name = c.string(j, p, "name")) {
                    if (!is_dns_label(*name))
                        c.error(
                            join(p, "name"),
                            "\"" + *name + "\" is not a valid DNS label (1-63 letters, digits and '-', not starting or ending with '-')");
                    else if (!unikernel_names.insert(*name).second)
                        c.error(join(p, "name"), "unikernel \"" + *name + "\" is defined twice");
                    u.name = *name;
                }
                const Network* net = nullptr;
                if (auto nn = c.string(j, p, "network")) {
                    net = site.network(*nn);
                    if (!net) {
                        std::string names;
                        for (const auto& x : site.networks) names += (names.empty() ? "" : ", ") + x.name;
                        c.error(join(p, "network"), "no network named \"" + *nn + "\" (defined: " + (names.empty() ? "none" : names) + ")");
                    }
                    u.network = *nn;
                }
                if (auto m = c.parsed(
                        j, p, "mac", [](std::string_view s) { return Mac::parse(s); }, "a MAC address like 00:80:41:12:34:56")) {
                    if (m->is_multicast() || m->is_zero()) c.error(join(p, "mac"), m->to_string() + " is not a unicast MAC address");
                    u.mac = *m;
                } else if (!j.contains("mac") && net && !u.name.empty()) {
                    u.mac = albatross_mac(net->name, u.name);
                    u.mac_derived = true;
                }
                if (!u.name.empty() && !u.mac.is_zero()) {
                    auto [m, fresh] = macs.emplace(u.mac, u.name);
                    if (!fresh)
                        c.error(join(p, u.mac_derived ? "name" : "mac"), "MAC " + u.mac.to_string() + (u.mac_derived ? " (derived)" : "") +
                                                                             " is also used by unikernel \"" + m->second + "\"");
                }
                u.dhcp = c.boolean(j, p, "dhcp").value_or(true);
                if (auto cid = c.string(j, p, "client_id")) {
                    auto b = from_hex(*cid);
                    if (!b || b->size() < 2 || b->size() > 255) c.error(join(p, "client_id"), "\"" + *cid + "\" is not 2-255 bytes of hex");
                    else u.client_id = *b;
                }
                if (auto ph = j.find("public_hosts"); ph != j.end()) {
                    const auto hp = join(p, "public_hosts");
                    if (!ph->is_array() || ph->size() > 64) c.error(hp, "expected an array of at most 64 host names");
                    else
                        for (std::size_t k = 0; k < ph->size(); ++k) {
                            const auto& h = (*ph)[k];
                            std::string name = h.is_string() ? h.get<std::string>() : std::string{};
                            for (auto& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
                            const bool wildcard = name.rfind("*.", 0) == 0;
                            if (!is_dns_name(wildcard ? name.substr(2) : name)) c.error(join(hp, k), h.dump() + " is not a host name");
                            else if (auto [at, fresh] = public_hosts.emplace(name, u.name); !fresh)
                                c.error(join(hp, k), "\"" + name + "\" is also a public host of unikernel \"" + at->second + "\"");
                            else u.public_hosts.push_back(name);
                        }
                }
                if (auto bp = c.integer(j, p, "backend_port", 1, 65535)) u.backend_port = static_cast<std::uint16_t>(*bp);
                if (auto uri = c.string(j, p, "config_uri")) {
                    if (uri->empty() || uri->size() > 255) c.error(join(p, "config_uri"), "must be 1-255 characters");
                    else u.config_uri = *uri;
                }
                if ((u.address = c.parsed(j, p, "address", parse_ipv4, "an IPv4 address"))) {
                    const auto ap = join(p, "address");
                    if (net) {
                        if (!net->subnet.is_host(*u.address))
                            c.error(ap, u.address->to_string() + " is not a host address in subnet " + net->subnet.to_string() +
                                            " of network \"" + net->name + "\"");
                        for (const auto& r : net->pools)
                            if (r.contains(*u.address))
                                c.error(ap, u.address->to_string() + " is inside dynamic pool " + r.to_string() +
                                                "; fixed addresses must be outside the pools");
                        if (net->gateway && *net->gateway == *u.address) c.error(ap, u.address->to_string() + " is the network's gateway");
                    }
                    auto [a, fresh] = addresses.emplace(*u.address, u.name);
                    if (!fresh) c.error(ap, u.address->to_string() + " is also assigned to unikernel \"" + a->second + "\"");
                }
                if (!u.dhcp && !u.address) c.error(join(p, "dhcp"), "a unikernel without DHCP needs a fixed \"address\"");
                if (j.contains("options")) u.options = parse_options(c, j["options"], join(p, "options"));
                if (j.contains("git")) {
                    const auto gp = join(p, "git");
                    const auto& g = j["git"];
                    if (c.object(g, gp,
                                 {"enabled", "access", "branch", "git_protocol", "allow_non_fast_forward", "allow_delete", "allow_symlinks",
                                  "hook_url", "webhook_url", "validator"})) {
                        u.git.enabled = c.boolean(g, gp, "enabled").value_or(true);
                        u.git.git_protocol = c.boolean(g, gp, "git_protocol").value_or(false);
                        u.git.allow_non_fast_forward = c.boolean(g, gp, "allow_non_fast_forward").value_or(false);
                        u.git.allow_delete = c.boolean(g, gp, "allow_delete").value_or(false);
                        u.git.allow_symlinks = c.boolean(g, gp, "allow_symlinks").value_or(false);
                        if (g.contains("validator")) {
                            const auto& v = g["validator"];
                            bool ok = v.is_array() && !v.empty() && v.size() <= 64;
                            if (ok)
                                for (const auto& x : v)
                                    ok = ok && x.is_string() && !x.get<std::string>().empty() && x.get<std::string>().size() <= 4096;
                            if (!ok)
                                c.error(join(gp, "validator"),
                                        "expected a command as an array of strings, e.g. [\"/usr/local/bin/check\", \"--strict\"]");
                            else {
                                for (const auto& x : v) u.git.validator.push_back(x.get<std::string>());
                                if (u.git.validator[0].front() != '/') u.git.validator[0] = resolve(base_dir, u.git.validator[0]).string();
                            }
                        }
                        for (const char* key : {"hook_url", "webhook_url"}) {
                            auto v = c.string(g, gp, key);
                            if (!v) continue;
                            if (v->rfind("http://", 0) != 0 || v->size() > 2048 || v->size() < 8 ||
                                v->find_first_of(" \r\n") != std::string::npos)
                                c.error(join(gp, key), "\"" + v->substr(0, 64) +
                                                           "\" is not an http:// URL (https is not supported for notifications yet)");
                            (std::string_view(key) == "hook_url" ? u.git.hook_url : u.git.webhook_url) = *v;
                        }
                        if (auto a = c.string(g, gp, "access")) {
                            if (*a == "read-write") u.git.writable = true;
                            else if (*a != "read-only") c.error(join(gp, "access"), "\"" + *a + "\" is not read-only or read-write");
                        }
                        if (auto b = c.string(g, gp, "branch")) {
                            const bool ok = !b->empty() && b->size() <= 200 && b->find("..") == std::string::npos && b->front() != '/' &&
                                            b->back() != '/' && b->find_first_of(" ~^:?*[\\") == std::string::npos;
                            if (!ok) c.error(join(gp, "branch"), "\"" + *b + "\" is not a valid branch name");
                            u.git.branch = *b;
                        }
                    }
                }
                if (j.contains("block")) {
                    const auto bp = join(p, "block");
                    const auto& b = j["block"];
                    if (c.object(b, bp, {"device", "sector_size", "size"})) {
                        BlockSettings bs;
                        if (auto d = c.string(b, bp, "device")) {
                            bs.device = resolve(base_dir, *d);
                            bs.device_given = true;
                            check_file_exists(c, join(bp, "device"), bs.device, false);
                        } else {
                            bs.device = site.services.data_dir / "block" / (u.name + ".img");
                        }
                        if (auto s = c.integer(b, bp, "sector_size", 512, 4096)) {
                            if (*s != 512 && *s != 4096) c.error(join(bp, "sector_size"), "must be 512 or 4096");
                            bs.sector_size = static_cast<std::uint32_t>(*s);
                        }
                        bs.size = c.integer(b, bp, "size", 16 * 1024, 1ull << 32).value_or(bs.size);
                        if (bs.size % bs.sector_size != 0)
                            c.error(join(bp, "size"), "must be a multiple of the sector size " + std::to_string(bs.sector_size));
                        u.block = bs;
                    }
                }
                if (auto args = j.find("boot_args"); args != j.end()) {
                    const auto ap = join(p, "boot_args");
                    if (!args->is_array()) c.error(ap, "expected an array of strings");
                    else
                        for (std::size_t k = 0; k < args->size(); ++k) {
                            const auto& a = (*args)[k];
                            if (!a.is_string() || a.get<std::string>().rfind("--", 0) != 0)
                                c.error(join(ap, k), a.dump() + " is not a boot argument of the form \"--key=value\"");
                            else u.boot_args.push_back(a.get<std::string>());
                        }
                }
                site.unikernels.push_back(std::move(u));
            }
    }
    // Lease-driven routes: a local target is a unikernel with a block device; public hosts need routes.
    if (const auto& r = site.services.dhcp.routes; r && r->kind == LeaseRoutes::Kind::local && !r->device.empty()) {
        const Unikernel* t = site.unikernel(r->device);
        if (!t || !t->block) c.error("/services/dhcp/routes/target", "\"" + r->device + "\" is not a unikernel with a \"block\" device");
    }
    if (!site.services.dhcp.routes)
        for (std::size_t i = 0; i < site.unikernels.size(); ++i)
            if (!site.unikernels[i].public_hosts.empty())
                c.error(join(join("/unikernels", i), "public_hosts"), "needs services.dhcp.routes (where the routes go)");

    // Subnets of different networks must not overlap: an address would belong to two networks.
    for (std::size_t i = 0; i < site.networks.size(); ++i)
        for (std::size_t k = 0; k < site.networks.size(); ++k)
            if (i < k && site.networks[i].subnet.length() > 0 && site.networks[k].subnet.length() > 0) {
                const auto& a = site.networks[i].subnet;
                const auto& b = site.networks[k].subnet;
                if (a.contains(b.network()) || b.contains(a.network()))
                    c.error(join(join("/networks", k), "subnet"),
                            b.to_string() + " overlaps " + a.to_string() + " of network \"" + site.networks[i].name + "\"");
            }

    if (!c.errors.empty()) throw SiteLoadError(site.source, std::move(c.errors));
    return site;
}

Site load_site(const std::filesystem::path& file) {
    std::string text;
    if (auto err = read_file_limited(file, kMaxSiteFileBytes, text)) throw SiteLoadError(file.string(), {{"", *err}});
    auto base = file.parent_path();
    if (base.empty()) base = ".";
    return parse_site(text, std::filesystem::absolute(base), file.string());
}

}  // namespace fleetconf::common
