// After an accepted push: the unikernel's hook (unipi answers "pulled <oid>") and a signed webhook,
// each retried with backoff, each attempt logged, the last state kept per repository for
// `fleetconf git status`.
#include "host.hpp"

#include "fleetconf/gitconf/edit.hpp"

#include "fleetconf/common/http.hpp"

#include "fleetconf/common/crypto.hpp"
#include "fleetconf/common/files.hpp"

#include <asio/co_spawn.hpp>
#include <asio/connect.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include <nlohmann/json.hpp>

#include <thread>

namespace fleetconf::gitconf {

namespace {
constexpr auto use_tuple = asio::experimental::as_tuple(asio::use_awaitable);
constexpr int kAttempts = 6;  // 1 s, 2 s, 4 s, 8 s, 16 s between them

using Url = common::HttpUrl;

using Answer = common::HttpResponse;

// One HTTP/1.1 exchange (Connection: close) with a deadline; the response read by common::parse_http_response.
asio::awaitable<std::optional<Answer>> http_call(asio::any_io_executor ex, Url url, std::string request, std::chrono::seconds timeout,
                                                 asio::steady_timer& timer, std::string& error) {
    using namespace asio::experimental::awaitable_operators;
    asio::ip::tcp::resolver resolver(ex);
    asio::ip::tcp::socket sock(ex);
    timer.expires_after(timeout);
    auto exchange = [&]() -> asio::awaitable<std::optional<Answer>> {
        auto [rec, endpoints] = co_await resolver.async_resolve(url.host, url.port, use_tuple);
        if (rec) {
            error = "resolve " + url.host + ": " + rec.message();
            co_return std::nullopt;
        }
        auto [cec, ep] = co_await asio::async_connect(sock, endpoints, use_tuple);
        if (cec) {
            error = "connect: " + cec.message();
            co_return std::nullopt;
        }
        auto [wec, wn] = co_await asio::async_write(sock, asio::buffer(request), use_tuple);
        if (wec) {
            error = "write: " + wec.message();
            co_return std::nullopt;
        }
        std::string raw;
        char buf[8192];
        while (raw.size() < (1u << 20)) {
            auto [ec, n] = co_await sock.async_read_some(asio::buffer(buf), use_tuple);
            raw.append(buf, n);
            if (ec) break;
        }
        auto answer = common::parse_http_response(raw, 4096);
        if (!answer) {
            error = "no HTTP answer";
            co_return std::nullopt;
        }
        co_return answer;
    };
    auto r = co_await (exchange() || timer.async_wait(use_tuple));
    if (r.index() == 1) {
        error = "timed out after " + std::to_string(timeout.count()) + " s";
        co_return std::nullopt;
    }
    co_return std::get<0>(std::move(r));
}

std::string state_file_name(const std::string& repo) { return repo + ".json"; }

}  // namespace

std::filesystem::path notify_state_file(const common::Site& site, std::string_view repo) {
    return git_root(site) / "notify" / state_file_name(std::string(repo));
}

std::vector<std::uint8_t> webhook_key(const common::Site& site, spdlog::logger& log) {
    const auto& g = site.services.git;
    const auto file = g.webhook_key_file.empty() ? git_root(site) / "webhook.key" : g.webhook_key_file;
    std::string text;
    std::error_code ec;
    if (g.webhook_key_file.empty() && !std::filesystem::exists(file, ec)) {
        const auto key = common::to_hex(common::random_bytes(32)) + "\n";
        common::ensure_directory(file.parent_path());
        common::write_file_atomic(file, common::as_bytes(key), 0600);
        log.info("generated the webhook signing key {}", file.string());
    }
    if (auto err = common::read_secret_line(file, text)) throw std::runtime_error(*err);
    return std::vector<std::uint8_t>(text.begin(), text.end());
}

std::vector<Notification> notifications(const common::Site& site, const std::string& repo, const RefCommand& change, const std::string& who,
                                        spdlog::logger& log_ref) {
    auto* log = &log_ref;
    std::vector<Notification> targets;
    const auto* u = site.unikernel(repo);
    if (!u || (u->git.hook_url.empty() && u->git.webhook_url.empty())) return targets;
    const auto now = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    if (!u->git.hook_url.empty()) {
        if (auto url = common::parse_http_url(u->git.hook_url))
            targets.push_back(
                {"hook", u->git.hook_url,
                 "GET " + url->target + " HTTP/1.1\r\nHost: " + url->host + "\r\nUser-Agent: " + kAgent + "\r\nConnection: close\r\n\r\n"});
        else log->error("notify {}: hook_url {} is not a valid http:// URL", repo, u->git.hook_url);
    }
    if (!u->git.webhook_url.empty()) {
        auto url = common::parse_http_url(u->git.webhook_url);
        std::vector<std::uint8_t> key;
        try {
            key = webhook_key(site, *log);
        } catch (const std::exception& e) {
            log->error("notify {}: webhook key: {}", repo, e.what());
        }
        if (url && !key.empty()) {
            const std::string body = nlohmann::json{{"repository", repo},         {"ref", change.name}, {"old", change.old_id.hex()},
                                                    {"new", change.new_id.hex()}, {"pusher", who},      {"time", now}}
                                         .dump();
            const auto sig = common::to_hex(common::hmac_sha256(key, common::as_bytes(body)));
            targets.push_back({"webhook", u->git.webhook_url,
                               "POST " + url->target + " HTTP/1.1\r\nHost: " + url->host + "\r\nUser-Agent: " + kAgent +
                                   "\r\nContent-Type: application/json\r\nX-Fleetconf-Event: push\r\nX-Fleetconf-Signature: sha256=" + sig +
                                   "\r\nContent-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body});
        } else if (!url) {
            log->error("notify {}: webhook_url {} is not a valid http:// URL", repo, u->git.webhook_url);
        }
    }
    return targets;
}

void Service::Impl::notify(const std::string& repo, const RefCommand& change, const std::string& who) {
    const auto state_file = notify_state_file(site, repo);
    for (auto& t : notifications(site, repo, change, who, *log))
        asio::co_spawn(io, deliver(shared_from_this(), repo, t.kind, t.url, t.request, state_file, change.new_id.hex()),
                       common::log_exception(log, "notify " + repo));
}

// A coroutine with by-value parameters, not a capturing lambda: GCC 12 destroys the captures of a
// coroutine lambda handed to co_spawn twice.
asio::awaitable<void> Service::Impl::deliver(std::shared_ptr<Impl> self, std::string repo, std::string kind, std::string url_text,
                                             std::string request, std::filesystem::path state_file, std::string oid) {
    // One timer for the call's deadline and the backoff, cancelled by Service::stop().
    auto wait = std::make_shared<asio::steady_timer>(self->io);
    self->notify_timers.remove_if([](const auto& w) { return w.expired(); });
    self->notify_timers.push_back(wait);
    const auto url = common::parse_http_url(url_text);
    if (!url) co_return;
    for (int attempt = 1; attempt <= kAttempts && !self->stopped; ++attempt) {
        std::string error;
        auto answer = co_await http_call(self->io.get_executor(), *url, request, std::chrono::seconds(5), *wait, error);
        if (self->stopped) co_return;
        const bool ok = answer && answer->status >= 200 && answer->status < 300;
        std::string text = answer ? answer->body.substr(0, 200) : std::string();
        while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
        (ok ? self->notify_delivered : attempt == kAttempts ? self->notify_failed : self->notify_retried)++;
        record_delivery(state_file, kind, url_text, oid,
                        ok                     ? "delivered"
                        : attempt == kAttempts ? "failed"
                                               : "retrying",
                        attempt, answer ? answer->status : 0,
                        ok ? text : (answer ? "HTTP " + std::to_string(answer->status) + " " + text : error), *self->log);
        if (ok) {
            self->log->info("notify {} {} {}: delivered (attempt {}): {}", repo, kind, url_text, attempt, text.empty() ? "-" : text);
            co_return;
        }
        self->log->warn("notify {} {} {}: attempt {}/{} failed: {}", repo, kind, url_text, attempt, kAttempts,
                        answer ? "HTTP " + std::to_string(answer->status) : error);
        if (attempt == kAttempts) break;
        wait->expires_after(std::chrono::seconds(1 << (attempt - 1)));
        co_await wait->async_wait(use_tuple);
    }
}

void record_delivery(const std::filesystem::path& file, const std::string& kind, const std::string& url, const std::string& oid,
                     const std::string& state, int attempt, int http_status, const std::string& detail, spdlog::logger& log) {
    nlohmann::json j = nlohmann::json::object();
    std::string text;
    if (!common::read_file_limited(file, 1 << 20, text)) {
        auto parsed = nlohmann::json::parse(text, nullptr, false);
        if (parsed.is_object()) j = std::move(parsed);
    }
    const auto now = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    j[kind] = {{"url", url},       {"commit", oid}, {"state", state}, {"attempts", attempt}, {"http_status", http_status},
               {"detail", detail}, {"time", now}};
    try {
        common::ensure_directory(file.parent_path());
        const auto out = j.dump(2) + "\n";
        common::write_file_atomic(file, common::as_bytes(out), 0640);
    } catch (const std::exception& e) {
        log.error("notify state {}: {}", file.string(), e.what());
    }
}

std::vector<Delivered> deliver_now(const common::Site& site, const std::string& repo, const RefCommand& change, const std::string& who,
                                   int attempts, spdlog::logger& log) {
    std::vector<Delivered> out;
    asio::io_context io;
    asio::steady_timer timer(io);
    const auto state_file = notify_state_file(site, repo);
    for (const auto& t : notifications(site, repo, change, who, log)) {
        Delivered d{t.kind, t.url, false, ""};
        const auto url = common::parse_http_url(t.url);
        for (int attempt = 1; url && attempt <= attempts; ++attempt) {
            std::string error;
            std::optional<common::HttpResponse> answer;
            asio::co_spawn(
                io,
                [&]() -> asio::awaitable<void> {
                    answer = co_await http_call(io.get_executor(), *url, t.request, std::chrono::seconds(5), timer, error);
                },
                asio::detached);
            io.restart();
            io.run();
            d.ok = answer && answer->status >= 200 && answer->status < 300;
            std::string text = answer ? answer->body.substr(0, 200) : std::string();
            while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
            d.detail = d.ok ? text : (answer ? "HTTP " + std::to_string(answer->status) + " " + text : error);
            record_delivery(state_file, t.kind, t.url, change.new_id.hex(),
                            d.ok                  ? "delivered"
                            : attempt == attempts ? "failed"
                                                  : "retrying",
                            attempt, answer ? answer->status : 0, d.detail, log);
            if (d.ok) break;
            if (attempt < attempts) std::this_thread::sleep_for(std::chrono::seconds(1 << (attempt - 1)));
        }
        out.push_back(std::move(d));
    }
    return out;
}

}  // namespace fleetconf::gitconf
