#include "fleetconf/console/console.hpp"

#include "assets.hpp"
#include "fleetconf/common/text.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace fleetconf::console {

namespace {

using nlohmann::json;

constexpr const char* kCookie = "fleetconf_console";

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

Reply json_reply(int status, const json& j) { return {status, "application/json", dump(j) + "\n", {}, false}; }
Reply error(int status, const std::string& message) { return json_reply(status, {{"error", message}}); }

int hex(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// application/x-www-form-urlencoded value: '+' is a space, %HH a byte; nullopt when malformed.
std::optional<std::string> url_decode(std::string_view s) {
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '+') out += ' ';
        else if (s[i] != '%') out += s[i];
        else {
            if (i + 2 >= s.size()) return std::nullopt;
            const int a = hex(s[i + 1]), b = hex(s[i + 2]);
            if (a < 0 || b < 0) return std::nullopt;
            out += static_cast<char>(a * 16 + b);
            i += 2;
        }
    }
    return out;
}

// The value of `name` in a query string, decoded ("" when absent).
std::optional<std::string> query_param(std::string_view query, std::string_view name) {
    while (!query.empty()) {
        const auto amp = query.find('&');
        const auto part = query.substr(0, amp);
        const auto eq = part.find('=');
        if (part.substr(0, eq) == name) return url_decode(eq == std::string_view::npos ? std::string_view() : part.substr(eq + 1));
        if (amp == std::string_view::npos) break;
        query.remove_prefix(amp + 1);
    }
    return std::string();
}

// The host part of a Host header ("127.0.0.1:9468", "[::1]:9468", "localhost").
std::string_view host_part(std::string_view host) {
    if (host.starts_with('[')) return host.substr(1, host.find(']') == std::string_view::npos ? 0 : host.find(']') - 1);
    return host.substr(0, host.find(':'));
}

bool loopback_name(std::string_view host) {
    const auto h = host_part(host);
    if (h == "localhost") return true;
    const auto ip = common::parse_ip(h);
    return ip && common::is_loopback(*ip);
}

std::string cookie(const std::string& token, bool tls, bool clear = false) {
    return std::string("Set-Cookie: ") + kCookie + "=" + (clear ? "" : token) + "; Path=/; HttpOnly; SameSite=Strict" +
           (tls ? "; Secure" : "") + (clear ? "; Max-Age=0" : "") + "\r\n";
}

// Arguments of an action: values that came from the operator, echoed in the audit log without secrets.
json redacted(const json& args) {
    json out = json::object();
    if (!args.is_object()) return out;
    for (const auto& [k, v] : args.items())
        if (k != "password" && k != "token" && k != "confirm") out[k] = v.is_string() ? json(common::printable(v.get<std::string>())) : v;
    return out;
}

std::string event(std::string_view name, const std::string& data) { return "event: " + std::string(name) + "\ndata: " + data + "\n\n"; }

}  // namespace

Console::Console(Options opts, Backend backend, std::shared_ptr<spdlog::logger> log)
    : opts_(std::move(opts)), backend_(std::move(backend)), log_(std::move(log)) {
    if (!opts_.password_file.empty()) passwords_ = PasswordFile::load(opts_.password_file);
}

Reply Console::handle(const common::HttpRequest& req, const std::string& peer, bool tls, Clock::time_point now) {
    ++counters_.requests;
    const std::string_view url = req.url;
    const auto q = url.find('?');
    const auto path = url.substr(0, q);
    const auto query = q == std::string_view::npos ? std::string_view() : url.substr(q + 1);
    Reply r;
    // Without a login the console trusts whoever reaches the loopback address; a page on another site
    // must not reach it by rebinding a name of its own to 127.0.0.1, so the Host must be a loopback name.
    if (!login_required() && !loopback_name(req.header("host")))
        r = error(421, "this console answers only to a loopback host name (127.0.0.1, [::1], localhost) without a login");
    else if (path == "/" || path.starts_with("/assets/")) {
        const auto* a = find_asset(path == "/" ? std::string_view("/index.html") : path.substr(7));
        if (req.method != "GET" && req.method != "HEAD") r = error(405, "GET only");
        else if (!a) r = error(404, "no such asset");
        else r = {200, std::string(a->content_type), std::string(a->data), "Cache-Control: no-cache\r\n", false};
    } else if (path.starts_with("/api/v1/")) {
        r = api(req, path, query, peer, tls, now);
        r.headers += "Cache-Control: no-store\r\n";
    } else {
        r = error(404, "not found: the console is at / and its API under /api/v1/ (docs/console.md)");
    }
    r.headers +=
        "Content-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'\r\n"
        "X-Content-Type-Options: nosniff\r\nX-Frame-Options: DENY\r\nReferrer-Policy: no-referrer\r\n";
    if (tls) r.headers += "Strict-Transport-Security: max-age=31536000\r\n";
    return r;
}

Reply Console::api(const common::HttpRequest& req, std::string_view path, std::string_view query, const std::string& peer, bool tls,
                   Clock::time_point now) {
    const auto token = cookie_value(req.header("cookie"), kCookie);
    const Session* s = sessions_.find(token, now);
    const bool post = req.method == "POST";
    const auto address = peer.substr(0, peer.rfind(':'));
    // A state-changing request: JSON (a cross-site form cannot send it), from this origin when the browser
    // says where it comes from, with the session's CSRF token.
    auto refused_post = [&](bool need_csrf) -> std::optional<Reply> {
        if (!req.header("content-type").starts_with("application/json"))
            return error(415, "POST a JSON body (Content-Type: application/json)");
        const auto origin = req.header("origin");
        if (!origin.empty() && origin != (tls ? "https://" : "http://") + req.header("host")) {
            ++counters_.csrf_refused;
            return error(403, "cross-origin request refused");
        }
        if (req.header("sec-fetch-site") == "cross-site") {
            ++counters_.csrf_refused;
            return error(403, "cross-site request refused");
        }
        if (need_csrf && (!s || !same_secret(req.header("x-csrf-token"), s->csrf))) {
            ++counters_.csrf_refused;
            return error(403, "missing or wrong X-CSRF-Token (GET /api/v1/session gives it)");
        }
        return std::nullopt;
    };
    auto body_json = [&]() -> std::optional<json> {
        auto j = json::parse(req.body, nullptr, false);
        if (j.is_discarded() || !j.is_object()) return std::nullopt;
        return j;
    };

    if (path == "/api/v1/session") {
        if (req.method != "GET") return error(405, "GET only");
        Reply r;
        if (!s && !login_required()) {
            const auto t = sessions_.open("", now);
            s = sessions_.find(t, now);
            r.headers = cookie(t, tls);
        }
        r.body = dump({{"login_required", login_required()},
                       {"authenticated", s != nullptr},
                       {"user", s ? json(s->user) : json(nullptr)},
                       {"csrf", s ? json(s->csrf) : json(nullptr)}}) +
                 "\n";
        return r;
    }
    if (path == "/api/v1/login") {
        if (!post) return error(405, "POST only");
        if (auto refused = refused_post(false)) return *refused;
        if (!login_required()) return error(400, "this console has no login (loopback without a password file)");
        if (auto wait = limiter_.blocked(address, now)) {
            ++counters_.login_throttled;
            auto r = error(429, "too many failed logins from " + address + "; try again in " + std::to_string(wait->count()) + " s");
            r.headers = "Retry-After: " + std::to_string(wait->count()) + "\r\n";
            return r;
        }
        const auto j = body_json();
        const auto user = j ? text_field(*j, "user") : std::string();  // (fuzz_console: no const operator[])
        const auto password = j ? text_field(*j, "password") : std::string();
        if (user.empty() || password.empty() || user.size() > 64 || password.size() > 1024)
            return error(400, "expected {\"user\": NAME, \"password\": PASSWORD}");
        if (!passwords_->verify(user, password)) {
            limiter_.failed(address, now);
            ++counters_.login_failures;
            log_->warn("console: failed login for {} from {}", common::log_safe(user), peer);
            return error(401, "wrong user or password");
        }
        limiter_.succeeded(address);
        ++counters_.logins;
        const auto t = sessions_.open(user, now);
        const auto* ns = sessions_.find(t, now);
        log_->info("console: {} logged in from {}", user, peer);
        auto r = json_reply(200, {{"user", user}, {"csrf", ns->csrf}});
        r.headers = cookie(t, tls);
        return r;
    }
    if (path == "/api/v1/logout") {
        if (!post) return error(405, "POST only");
        if (auto refused = refused_post(true)) return *refused;
        sessions_.close(token);
        auto r = json_reply(200, {{"ok", true}});
        r.headers = cookie("", tls, true);
        return r;
    }
    if (login_required() && !s) {
        ++counters_.unauthorized;
        return error(401, "login required (POST /api/v1/login)");
    }
    if (post && path.starts_with("/api/v1/actions/")) {
        if (auto refused = refused_post(true)) return *refused;
        return action(std::string(path.substr(16)), req, *s, peer);
    }
    if (req.method != "GET" && req.method != "HEAD") return error(405, "GET only (actions are POST /api/v1/actions/NAME)");
    try {
        auto view = [&](const std::function<json()>& f) { return f ? json_reply(200, f()) : error(404, "not served by this process"); };
        if (path == "/api/v1/fleet") return view(backend_.fleet);
        if (path == "/api/v1/networks") return view(backend_.networks);
        if (path == "/api/v1/repositories") return view(backend_.repositories);
        if (path == "/api/v1/devices") return view(backend_.devices);
        if (path == "/api/v1/activity") return json_reply(200, activity_json());
        if (path == "/api/v1/audit") return json_reply(200, json(audit_));
        if (path == "/api/v1/events") return {200, "text/event-stream", {}, {}, true};
        if (path == "/api/v1/leases") {
            const auto q = query_param(query, "q");
            const auto l = query_param(query, "limit");
            if (!q || !l || q->size() > 256) return error(400, "q: at most 256 characters; limit: 1-1000");
            std::size_t limit = 200;
            if (!l->empty()) {
                if (l->size() > 4 || !std::all_of(l->begin(), l->end(), [](char c) { return c >= '0' && c <= '9'; }))
                    return error(400, "limit: 1-1000");
                limit = std::stoul(*l);
                if (limit < 1 || limit > 1000) return error(400, "limit: 1-1000");
            }
            if (!backend_.leases) return error(404, "the DHCP service does not run in this process");
            return json_reply(200, backend_.leases(*q, limit));
        }
        if (path.starts_with("/api/v1/devices/") && path.ends_with("/history")) {
            const auto name = std::string(path.substr(16, path.size() - 16 - 8));
            if (!backend_.device_history) return error(404, "the block service does not run in this process");
            return json_reply(200, backend_.device_history(name));
        }
    } catch (const ActionError& e) {
        return error(e.status, e.what());
    } catch (const std::exception& e) {
        log_->warn("console: {} failed: {}", path, e.what());
        return error(503, std::string("not available now: ") + e.what());
    }
    return error(404, "no such endpoint (docs/console.md lists them)");
}

Reply Console::action(const std::string& name, const common::HttpRequest& req, const Session& s, const std::string& peer) {
    const auto it = backend_.actions.find(name);
    if (it == backend_.actions.end() || !it->second) return error(404, "no such action: " + common::printable(name));
    auto args = json::parse(req.body, nullptr, false);
    if (args.is_discarded() || !args.is_object()) return error(400, "the body is not a JSON object");
    // Each action is confirmed by the operator (the page asks); a script says so explicitly.
    if (args.value("confirm", false) != true) return error(400, "an action needs \"confirm\": true");
    const std::string who = s.user.empty() ? "console@" + peer.substr(0, peer.rfind(':')) : s.user;
    json entry{{"time", std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count()},
               {"user", who},
               {"peer", peer},
               {"action", name},
               {"args", redacted(args)}};
    Reply r;
    try {
        auto result = it->second(args, who);
        entry["result"] = "ok";
        entry["message"] = result.value("message", "");
        r = json_reply(200, result);
        ++counters_.actions;
        last_slow_ = 0;  // the next tick rebuilds every view, the slow ones included
    } catch (const ActionError& e) {
        entry["result"] = "refused";
        entry["message"] = e.what();
        r = error(e.status, e.what());
        ++counters_.actions_failed;
    } catch (const std::exception& e) {
        entry["result"] = "failed";
        entry["message"] = e.what();
        r = error(500, e.what());
        ++counters_.actions_failed;
    }
    log_->info("console: {} {} {}: {} {}", who, name, dump(entry["args"]), entry["result"].get<std::string>(),
               common::log_safe(entry["message"].get<std::string>()));
    audit(std::move(entry));
    return r;
}

void Console::audit(json entry) {
    if (!opts_.audit_file.empty()) {
        const auto line = dump(entry) + "\n";
        const int fd = ::open(opts_.audit_file.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
        bool ok = fd >= 0 && ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size()) && ::fdatasync(fd) == 0;
        const int err = errno;
        if (fd >= 0) ::close(fd);
        if (!ok) log_->error("console: audit log {}: {}", opts_.audit_file.string(), std::strerror(err));
    }
    audit_.push_back(std::move(entry));
    while (audit_.size() > kAuditKept) audit_.pop_front();
    views_["audit"] = dump(json(audit_));
    pending_.push_back(event("audit", views_["audit"]));
}

json Console::activity_json() const {
    json series = json::object();
    for (const auto& [name, v] : series_) series[name] = json(std::vector<double>(v.begin(), v.end()));
    return {{"interval_s", 1}, {"end", series_end_}, {"series", series}};
}

std::vector<std::string> Console::tick(std::int64_t unix_now) {
    std::vector<std::string> out = std::move(pending_);
    pending_.clear();
    if (backend_.counters) {
        try {
            json sample = json::object();
            for (const auto& [name, total] : backend_.counters()) {
                auto last = last_totals_.find(name);
                const double d = last == last_totals_.end() ? 0.0 : std::max(0.0, total - last->second);
                last_totals_[name] = total;
                auto& v = series_[name];
                v.push_back(d);
                while (v.size() > kHistory) v.pop_front();
                sample[name] = d;
            }
            series_end_ = unix_now;
            out.push_back(event("activity", dump({{"t", unix_now}, {"values", sample}})));
        } catch (const std::exception& e) {
            log_->debug("console: counters: {}", e.what());
        }
    }
    // A push or a route change shows at once in the slow views too.
    for (const auto* name : {"git_pushes", "route_changes"})
        if (auto it = series_.find(name); it != series_.end() && !it->second.empty() && it->second.back() > 0) last_slow_ = 0;
    const bool slow = unix_now - last_slow_ >= 10;
    if (slow) last_slow_ = unix_now;
    auto refresh = [&](const char* name, const std::function<json()>& f) {
        if (!f) return;
        try {
            auto text = dump(f());
            auto& old = views_[name];
            if (text != old) {
                old = std::move(text);
                out.push_back(event(name, old));
            }
        } catch (const std::exception& e) {
            log_->debug("console: view {}: {}", name, e.what());
        }
    };
    refresh("fleet", backend_.fleet);
    refresh("networks", backend_.networks);
    if (slow) {
        refresh("repositories", backend_.repositories);
        refresh("devices", backend_.devices);
    }
    return out;
}

std::vector<std::string> Console::initial_events() const {
    std::vector<std::string> out;
    for (const auto& [name, text] : views_) out.push_back(event(name, text));
    return out;
}

bool Console::session_alive(std::string_view token, Clock::time_point now) const {
    return !login_required() || sessions_.valid(token, now);
}

std::string text_field(const json& j, const char* key) {
    const auto it = j.find(key);
    return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::int64_t number_field(const json& j, const char* key) {
    const auto it = j.find(key);
    return it != j.end() && it->is_number_integer() ? it->get<std::int64_t>() : 0;
}

}  // namespace fleetconf::console
