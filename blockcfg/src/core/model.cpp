#include "fleetconf/blockcfg/model.hpp"

#include <algorithm>

namespace fleetconf::blockcfg {

using nlohmann::json;

std::string Backend::to_string() const { return common::Endpoint{address, port}.to_string(); }

std::variant<std::string, Failure> normalize_host(std::string_view host) {
    std::string h(host);
    std::transform(h.begin(), h.end(), h.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (h == kDefaultRoute) return h;
    std::string_view rest = h;
    if (rest.starts_with("*.")) rest.remove_prefix(2);
    if (!common::is_dns_name(rest)) {
        std::string m(1, '"');
        m.append(host.substr(0, 300)).append("\" is not a valid host name (DNS labels, an optional leading \"*.\" wildcard)");
        return Failure{errc::invalid, std::move(m)};
    }
    return h;
}

json to_json(const Backend& b) { return {{"address", common::to_string(b.address)}, {"port", b.port}}; }

json routes_json(const Config& c) {
    json arr = json::array();
    for (const auto& [h, b] : c.routes) {
        auto j = to_json(b);
        j["host"] = h;
        arr.push_back(std::move(j));
    }
    if (c.default_route) {
        auto j = to_json(*c.default_route);
        j["host"] = kDefaultRoute;
        arr.push_back(std::move(j));
    }
    return arr;
}

std::string to_payload(const Config& c) {
    json routes = json::array();
    for (const auto& [h, b] : c.routes) routes.push_back({{"host", h}, {"address", common::to_string(b.address)}, {"port", b.port}});
    json j = {{"schema", kSchemaVersion}, {"routes", routes}, {"default", c.default_route ? to_json(*c.default_route) : json()}};
    return j.dump();
}

std::string to_payload(const Config& c, const std::vector<ChangeNote>& change) {
    json j = json::parse(to_payload(c));
    json notes = json::array();
    for (const auto& n : change) notes.push_back({{"by", n.by}, {"what", n.what}});
    if (!change.empty()) j["change"] = notes;
    return j.dump();
}

std::vector<ChangeNote> change_of(std::string_view payload) {
    std::vector<ChangeNote> out;
    const json j = json::parse(payload, nullptr, false);
    if (!j.is_object() || !j.contains("change") || !j["change"].is_array()) return out;
    for (const auto& n : j["change"])
        if (n.is_object() && n.value("by", json()).is_string() && n.value("what", json()).is_string())
            out.push_back({n["by"].get<std::string>(), n["what"].get<std::string>()});
    return out;
}

std::string describe(const ChangeRequest& r) {
    if (r.rollback_to) return "rollback to generation " + std::to_string(*r.rollback_to);
    std::string out;
    for (const auto& op : r.ops) {
        std::string one;
        switch (op.kind) {
            case Op::Kind::add: one = "add " + op.host + " -> " + op.backend.to_string(); break;
            case Op::Kind::update: one = "update " + op.host + " -> " + op.backend.to_string(); break;
            case Op::Kind::upsert: one = "set " + op.host + " -> " + op.backend.to_string(); break;
            case Op::Kind::remove: one = "remove " + op.host; break;
            case Op::Kind::replace:
                one = "replace with " + std::to_string(op.replacement.routes.size()) + " route(s)" +
                      (op.replacement.default_route ? " and a default" : "");
                break;
        }
        out += (out.empty() ? "" : "; ") + one;
        if (out.size() > 400) {
            out += "; ...";
            break;
        }
    }
    return out.empty() ? r.name : out;
}

namespace {

// A JSON whole number >= 0 (nlohmann keeps small literals as signed integers).
std::optional<std::uint64_t> as_count(const json& j) {
    if (j.is_number_unsigned()) return j.get<std::uint64_t>();
    if (j.is_number_integer() && j.get<std::int64_t>() >= 0) return static_cast<std::uint64_t>(j.get<std::int64_t>());
    return std::nullopt;
}

std::variant<Backend, Failure> parse_backend(const json& j, const std::string& where) {
    auto bad = [&](const std::string& m) { return Failure{errc::invalid, where + m}; };
    if (!j.is_object()) return bad("expected an object with address and port");
    auto a = j.find("address");
    auto p = j.find("port");
    if (a == j.end() || !a->is_string()) return bad("\"address\" must be an IPv4 or IPv6 address string");
    auto ip = common::parse_ip(a->get<std::string>());
    if (!ip) return bad("\"" + a->get<std::string>().substr(0, 100) + "\" is not an IPv4 or IPv6 address");
    if (p == j.end() || !p->is_number_integer()) return bad("\"port\" must be a whole number from 1 to 65535");
    const auto port = p->get<std::int64_t>();
    if (port < 1 || port > 65535) return bad("port " + std::to_string(port) + " is outside 1-65535");
    return Backend{*ip, static_cast<std::uint16_t>(port)};
}

std::variant<Config, Failure> parse_routes(const json& routes, const json* def) {
    Config c;
    if (!routes.is_array()) return Failure{errc::invalid, "\"routes\" must be an array"};
    if (routes.size() > kMaxRoutes) return Failure{errc::too_large, "at most " + std::to_string(kMaxRoutes) + " routes"};
    for (std::size_t i = 0; i < routes.size(); ++i) {
        const auto& r = routes[i];
        const std::string where = "routes[" + std::to_string(i) + "]: ";
        if (!r.is_object() || !r.contains("host") || !r["host"].is_string())
            return Failure{errc::invalid, where + "\"host\" must be a string"};
        auto h = normalize_host(r["host"].get<std::string>());
        if (auto* f = std::get_if<Failure>(&h)) return Failure{f->code, where + f->message};
        auto b = parse_backend(r, where);
        if (auto* f = std::get_if<Failure>(&b)) return *f;
        const auto& host = std::get<std::string>(h);
        if (host == kDefaultRoute) {
            if (c.default_route) return Failure{errc::invalid, where + "the default route is given twice"};
            c.default_route = std::get<Backend>(b);
        } else if (!c.routes.emplace(host, std::get<Backend>(b)).second) {
            return Failure{errc::invalid, where + "host " + host + " is given twice"};
        }
    }
    if (def && !def->is_null()) {
        if (c.default_route) return Failure{errc::invalid, "the default route is given twice"};
        auto b = parse_backend(*def, "default: ");
        if (auto* f = std::get_if<Failure>(&b)) return *f;
        c.default_route = std::get<Backend>(b);
    }
    return c;
}

}  // namespace

std::variant<Config, Failure> from_payload(std::string_view payload) {
    json j = json::parse(payload, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return Failure{errc::damaged, "stored configuration is not a JSON object"};
    auto s = j.find("schema");
    if (s == j.end() || !s->is_number_integer()) return Failure{errc::damaged, "stored configuration has no schema version"};
    if (s->get<std::int64_t>() != kSchemaVersion)
        return Failure{errc::damaged, "stored configuration has schema " + s->dump() + "; this fleetconf reads schema 1"};
    if (!j.contains("routes")) return Failure{errc::damaged, "stored configuration has no routes"};
    const json* def = j.contains("default") ? &j["default"] : nullptr;
    auto c = parse_routes(j["routes"], def);
    if (auto* f = std::get_if<Failure>(&c)) return Failure{errc::damaged, "stored configuration: " + f->message};
    return c;
}

std::optional<Failure> apply(Config& c, const Op& op) {
    const bool is_default = op.host == kDefaultRoute;
    switch (op.kind) {
        case Op::Kind::replace: c = op.replacement; return std::nullopt;
        case Op::Kind::add:
            if (is_default ? c.default_route.has_value() : c.routes.contains(op.host))
                return Failure{errc::exists, "route " + op.host + " already exists (use update or upsert)"};
            break;
        case Op::Kind::update:
        case Op::Kind::remove:
            if (is_default ? !c.default_route.has_value() : !c.routes.contains(op.host))
                return Failure{errc::not_found, "no route for " + op.host};
            break;
        case Op::Kind::upsert: break;
    }
    if (op.kind == Op::Kind::remove) {
        if (is_default) c.default_route.reset();
        else c.routes.erase(op.host);
        return std::nullopt;
    }
    if (is_default) {
        c.default_route = op.backend;
    } else {
        if (!c.routes.contains(op.host) && c.routes.size() >= kMaxRoutes)
            return Failure{errc::too_large, "at most " + std::to_string(kMaxRoutes) + " routes"};
        c.routes[op.host] = op.backend;
    }
    return std::nullopt;
}

std::optional<Failure> apply_in_place(Config& c, const std::vector<Op>& ops) {
    for (std::size_t i = 0; i < ops.size(); ++i)
        if (auto f = apply(c, ops[i])) {
            if (ops.size() > 1) f->message = "operation " + std::to_string(i + 1) + ": " + f->message;
            return f;
        }
    return std::nullopt;
}

std::optional<Failure> apply_all(Config& c, const std::vector<Op>& ops) {
    Config work = c;
    if (auto f = apply_in_place(work, ops)) return f;
    c = std::move(work);
    return std::nullopt;
}

namespace {

std::variant<Op, Failure> parse_op(const json& j) {
    auto bad = [](std::string m) { return Failure{errc::bad_request, std::move(m)}; };
    if (!j.is_object() || !j.contains("op") || !j["op"].is_string()) return bad("missing \"op\"");
    const auto name = j["op"].get<std::string>();
    static const std::pair<std::string_view, Op::Kind> kinds[] = {{"add", Op::Kind::add},
                                                                  {"update", Op::Kind::update},
                                                                  {"upsert", Op::Kind::upsert},
                                                                  {"remove", Op::Kind::remove},
                                                                  {"replace", Op::Kind::replace}};
    Op op{};
    bool known = false;
    for (auto [n, k] : kinds)
        if (n == name) {
            op.kind = k;
            known = true;
        }
    if (!known) return bad("unknown operation \"" + name.substr(0, 40) + "\"");
    if (op.kind == Op::Kind::replace) {
        if (!j.contains("routes")) return Failure{errc::invalid, "replace needs \"routes\""};
        const json* def = j.contains("default") ? &j["default"] : nullptr;
        auto c = parse_routes(j["routes"], def);
        if (auto* f = std::get_if<Failure>(&c)) return *f;
        op.replacement = std::get<Config>(std::move(c));
        return op;
    }
    if (!j.contains("host") || !j["host"].is_string()) return Failure{errc::invalid, name + " needs \"host\""};
    auto h = normalize_host(j["host"].get<std::string>());
    if (auto* f = std::get_if<Failure>(&h)) return *f;
    op.host = std::get<std::string>(h);
    if (op.kind != Op::Kind::remove) {
        auto b = parse_backend(j, "");
        if (auto* f = std::get_if<Failure>(&b)) return *f;
        op.backend = std::get<Backend>(b);
    }
    return op;
}

}  // namespace

std::variant<Request, Failure> parse_request(const json& body) {
    if (!body.is_object()) return Failure{errc::bad_request, "request body must be a JSON object"};
    auto opit = body.find("op");
    if (opit == body.end() || !opit->is_string()) return Failure{errc::bad_request, "missing \"op\""};
    const auto name = opit->get<std::string>();
    std::optional<std::uint64_t> expect;
    if (auto e = body.find("expect_generation"); e != body.end()) {
        expect = as_count(*e);
        if (!expect) return Failure{errc::bad_request, "\"expect_generation\" must be a whole number"};
    }
    static const std::pair<std::string_view, ReadRequest::Kind> reads[] = {{"list", ReadRequest::Kind::list},
                                                                           {"get", ReadRequest::Kind::get},
                                                                           {"status", ReadRequest::Kind::status},
                                                                           {"history", ReadRequest::Kind::history}};
    for (auto [n, k] : reads)
        if (n == name) {
            ReadRequest r{k, {}};
            if (k == ReadRequest::Kind::get) {
                if (!body.contains("host") || !body["host"].is_string()) return Failure{errc::invalid, "get needs \"host\""};
                auto h = normalize_host(body["host"].get<std::string>());
                if (auto* f = std::get_if<Failure>(&h)) return *f;
                r.host = std::get<std::string>(h);
            }
            return Request{r};
        }
    ChangeRequest c;
    c.name = name;
    c.expect_generation = expect;
    if (name == "rollback") {
        auto g = body.find("generation");
        c.rollback_to = g == body.end() ? std::nullopt : as_count(*g);
        if (!c.rollback_to || *c.rollback_to == 0) return Failure{errc::invalid, "rollback needs \"generation\" (a whole number)"};
        return Request{c};
    }
    if (name == "transaction") {
        auto ops = body.find("ops");
        if (ops == body.end() || !ops->is_array() || ops->empty())
            return Failure{errc::invalid, "transaction needs a non-empty \"ops\" array"};
        if (ops->size() > 1000) return Failure{errc::too_large, "at most 1000 operations in a transaction"};
        for (std::size_t i = 0; i < ops->size(); ++i) {
            if ((*ops)[i].contains("expect_generation"))
                return Failure{errc::bad_request, "ops[" + std::to_string(i) + "]: put expect_generation on the transaction"};
            auto op = parse_op((*ops)[i]);
            if (auto* f = std::get_if<Failure>(&op)) return Failure{f->code, "ops[" + std::to_string(i) + "]: " + f->message};
            c.ops.push_back(std::get<Op>(std::move(op)));
        }
        return Request{c};
    }
    auto op = parse_op(body);
    if (auto* f = std::get_if<Failure>(&op)) return *f;
    c.ops.push_back(std::get<Op>(std::move(op)));
    return Request{c};
}

BatchResult apply_batch(Config current, std::uint64_t gen, const std::vector<const ChangeRequest*>& changes,
                        const std::function<std::optional<std::string>(std::uint64_t)>& read_generation) {
    BatchResult r{std::move(current), {}, false};
    r.refused.reserve(changes.size());
    for (const auto* req : changes) {
        auto refuse = [&](Failure f) { r.refused.push_back(std::move(f)); };
        if (req->expect_generation && (*req->expect_generation != gen || r.changed)) {
            refuse({errc::conflict, "expected generation " + std::to_string(*req->expect_generation) + ", the configuration is at " +
                                        std::to_string(r.changed ? gen + 1 : gen) + (r.changed ? " (being committed)" : "")});
            continue;
        }
        if (req->rollback_to && *req->rollback_to > gen) {
            refuse({errc::not_found, "generation " + std::to_string(*req->rollback_to) + " was never written (the configuration is at " +
                                         std::to_string(gen) + ")"});
            continue;
        }
        if (req->rollback_to) {
            const auto old = read_generation(*req->rollback_to);
            if (!old) {
                refuse({errc::not_found, "generation " + std::to_string(*req->rollback_to) + " is no longer on the device (see history)"});
                continue;
            }
            auto c = from_payload(*old);
            if (auto* f = std::get_if<Failure>(&c)) {
                refuse(std::move(*f));
                continue;
            }
            r.config = std::get<Config>(std::move(c));
        } else if (auto f = req->ops.size() == 1 ? apply(r.config, req->ops[0])  // one op is atomic by itself
                                                 : apply_all(r.config, req->ops)) {
            refuse(std::move(*f));
            continue;
        }
        r.changed = true;
        r.refused.push_back(std::nullopt);
    }
    return r;
}

}  // namespace fleetconf::blockcfg
