// Smart HTTP (gitprotocol-http) over plain TCP or TLS: requests read by common::HttpRequestReader (nodejs
// http-parser), gzip request bodies by zlib, then the same upload-pack core as git://. Stateless: one request, one round.
#include "host.hpp"

#include "fleetconf/common/http.hpp"
#include "fleetconf/gitconf/pktline.hpp"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/ssl/stream.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include <zlib.h>

#include <map>

namespace fleetconf::gitconf {

namespace {
constexpr auto use_tuple = asio::experimental::as_tuple(asio::use_awaitable);
constexpr std::size_t kMaxUrl = 4096;
constexpr std::size_t kMaxHeaderBytes = 32768;

using common::HttpRequest;
using Request = common::HttpRequest;

// Inflates a gzip (or zlib) request body, at most `limit` bytes out; on failure `why` says which.
std::optional<std::string> inflate_body(const std::string& in, std::size_t limit, std::string& why) {
    z_stream zs{};
    why = "bad gzip body";
    if (inflateInit2(&zs, 15 + 32) != Z_OK) return std::nullopt;
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    zs.avail_in = static_cast<uInt>(in.size());
    std::string out;
    char buf[65536];
    int rc = Z_OK;
    while (rc != Z_STREAM_END) {
        zs.next_out = reinterpret_cast<Bytef*>(buf);
        zs.avail_out = sizeof buf;
        rc = inflate(&zs, Z_NO_FLUSH);
        if (rc != Z_OK && rc != Z_STREAM_END) break;
        out.append(buf, sizeof buf - zs.avail_out);
        if (out.size() > limit) {
            why = "gzip body over " + std::to_string(limit) + " bytes inflated";
            rc = Z_MEM_ERROR;
            break;
        }
        if (rc == Z_OK && zs.avail_in == 0 && zs.avail_out != 0) {
            rc = Z_DATA_ERROR;  // truncated stream
            break;
        }
    }
    inflateEnd(&zs);
    if (rc != Z_STREAM_END) return std::nullopt;
    return out;
}

struct Response {
    int status = 200;
    std::string content_type = "text/plain; charset=utf-8";
    std::string body;
    bool challenge = false;  // WWW-Authenticate
    bool close = false;
};

std::string serialize(const Response& r) {
    std::string extra = "Server: ";
    extra += kAgent;
    // git http-backend's no-cache headers: answers depend on the current refs.
    extra += "\r\nExpires: Fri, 01 Jan 1980 00:00:00 GMT\r\nPragma: no-cache\r\nCache-Control: no-cache, max-age=0, must-revalidate\r\n";
    if (r.challenge) extra += "WWW-Authenticate: Basic realm=\"fleetconf git\", charset=\"UTF-8\"\r\n";
    return common::http_response(r.status, r.content_type, r.body, extra, r.close);
}

Response text(int status, std::string body) {
    Response r;
    r.status = status;
    r.body = std::move(body) + "\n";
    return r;
}

std::vector<std::string_view> split_path(std::string_view p) {
    std::vector<std::string_view> parts;
    while (!p.empty()) {
        while (!p.empty() && p.front() == '/') p.remove_prefix(1);
        if (p.empty()) break;
        const auto end = std::min(p.find('/'), p.size());
        parts.push_back(p.substr(0, end));
        p.remove_prefix(end);
    }
    return parts;
}

std::string wants_text(const std::vector<Oid>& w) {
    std::string s;
    for (std::size_t i = 0; i < w.size() && i < 8; ++i) s += (i ? "," : "") + w[i].hex().substr(0, 12);
    if (w.size() > 8) s += ",+" + std::to_string(w.size() - 8);
    return s.empty() ? "-" : s;
}

}  // namespace

namespace {

// git-receive-pack over smart HTTP: the advertisement, or one stateless push.
asio::awaitable<Response> handle_push(Service::Impl& h, const Request& req, bool advertisement, const std::string& name,
                                      const std::string& peer, const std::string& who, bool tls) {
    if (advertisement ? req.method != "GET" : req.method != "POST") co_return text(405, advertisement ? "use GET" : "use POST");
    std::optional<Repository> repo;
    try {
        repo.emplace(Repository::open(repo_dir(h.site, name)));
    } catch (const std::exception& e) {
        h.log->error("http {}: {}", peer, e.what());
    }
    if (!repo) co_return text(503, "repository unavailable");
    Response r;
    if (advertisement) {
        r.content_type = "application/x-git-receive-pack-advertisement";
        pkt::write_line(r.body, "# service=git-receive-pack");
        pkt::write_flush(r.body);
        r.body += advertise_receive(repo->refs());
        co_return r;
    }
    repo.reset();
    if (!req.header("content-encoding").empty()) co_return text(415, "compressed push bodies are not supported");
    ReceivePack rp(h.push_limits());
    rp.feed(req.body);
    rp.end_of_input();
    r.content_type = "application/x-git-receive-pack-result";
    const std::string transport = tls ? "https" : "http";
    if (rp.state() == ReceivePack::State::failed) {
        PushResult pr;
        pr.unpack_error = rp.error();
        pr.commands = rp.commands();
        for (auto& c : pr.commands) c.error = "refused";
        h.audit_push(name, transport, peer, who, pr);
        r.body = report(pr, rp.side_band());
        co_return r;
    }
    if (rp.commands().empty()) co_return r;
    const auto result = co_await h.push(name, rp);
    h.audit_push(name, transport, peer, who, result);
    if (rp.report_status()) r.body = report(result, rp.side_band());
    co_return r;
}

// The per-request decision and work; shared by HTTP and HTTPS.
asio::awaitable<Response> handle(Service::Impl& h, const Request& req, const std::string& peer, bool tls) {
    const std::string_view url = req.url;
    const auto q = url.find('?');
    const std::string_view path = url.substr(0, q);
    const std::string_view query = q == std::string_view::npos ? std::string_view() : url.substr(q + 1);
    const auto parts = split_path(path);
    // A path with '%' or ".." names no repository; it is answered like any other unknown path, after the
    // credential check (docs/gitconf.md: 401 whatever the path names).
    const bool odd_path = path.find('%') != std::string_view::npos || path.find("..") != std::string_view::npos;

    enum class Route { none, info_refs, upload_pack, receive_pack } route = Route::none;
    std::string service;
    if (parts.size() == 3 && parts[1] == "info" && parts[2] == "refs") {
        route = Route::info_refs;
        std::string_view qs = query;
        while (!qs.empty()) {
            const auto amp = std::min(qs.find('&'), qs.size());
            const auto kv = qs.substr(0, amp);
            if (kv.substr(0, 8) == "service=") service = std::string(kv.substr(8, 64));
            qs.remove_prefix(std::min(amp + 1, qs.size()));
        }
    } else if (parts.size() == 2 && parts[1] == "git-upload-pack") {
        route = Route::upload_pack;
    } else if (parts.size() == 2 && parts[1] == "git-receive-pack") {
        route = Route::receive_pack;
    }
    if (odd_path) route = Route::none;
    const bool push = route == Route::receive_pack || service == "git-receive-pack";

    // Credentials before anything about the path or the repository is revealed.
    h.refresh_tokens();
    const auto name = route == Route::none ? std::nullopt : Service::Impl::repo_name(parts[0]);
    const auto acc = name ? h.access(*name) : RepoAccess{};
    const auto cred = parse_basic_auth(req.header("authorization"));
    const auto verdict = authorize_http(name ? *name : std::string_view(), acc, cred, h.tokens, push);
    const std::string who = cred ? cred->user.substr(0, 64) : "-";
    if (verdict == Verdict::unauthorized) {
        ++h.unauthorized;
        h.log->info("http {} {} {}: 401 ({})", peer, req.method, std::string(path.substr(0, 128)),
                    cred ? "wrong credentials for \"" + who + "\"" : "no credentials");
        auto r = text(401, "authentication required: user = unikernel name, password = its token (fleetconf git token NAME)");
        r.challenge = true;
        co_return r;
    }
    if (route == Route::none) co_return text(404, "not found");
    if (verdict == Verdict::not_found) {
        ++h.not_found;
        h.log->info("http {} {} {}: 404 for credential {}", peer, req.method, std::string(path.substr(0, 128)), who);
        co_return text(404, "repository not found");
    }
    if (verdict == Verdict::forbidden) {
        ++h.forbidden;
        h.log->info("http {} {} {}: 403 push refused for read-only credential {}", peer, req.method, std::string(path.substr(0, 128)), who);
        co_return text(403, "this credential is read-only");
    }
    if (push) co_return co_await handle_push(h, req, route == Route::info_refs, *name, peer, who, tls);
    if (route == Route::info_refs && service != "git-upload-pack")
        co_return text(403, "the dumb HTTP protocol is not supported; use a smart git client");
    if (route == Route::info_refs && req.method != "GET") co_return text(405, "use GET");
    if (route == Route::upload_pack && req.method != "POST") co_return text(405, "use POST");

    const std::string proto = req.header("git-protocol");
    const bool v2 = proto.find("version=2") != std::string::npos;
    const bool v1 = !v2 && proto.find("version=1") != std::string::npos;

    std::optional<Repository> repo;
    try {
        repo.emplace(Repository::open(repo_dir(h.site, *name)));
    } catch (const std::exception& e) {
        h.log->error("http {}: {}", peer, e.what());
    }
    if (!repo) co_return text(503, "repository unavailable");
    const auto refs = repo->refs();
    Response r;
    if (route == Route::info_refs) {
        ++h.advertisements;
        r.content_type = "application/x-git-upload-pack-advertisement";
        if (v2) {
            r.body = UploadPackV2::capabilities();
        } else {
            pkt::write_line(r.body, "# service=git-upload-pack");
            pkt::write_flush(r.body);
            r.body += advertise_refs(refs, v1, true);
        }
        h.log->debug("http {} {}: advertisement for {} (v{})", peer, *name, who, v2 ? 2 : v1 ? 1 : 0);
        co_return r;
    }

    // The Content-Type is not checked (git http-backend answers 415): clients that ignore status codes,
    // like git-kv, would read a 415 as an empty fetch. The body itself is parsed strictly.
    if (const auto ctype = req.header("content-type"); !ctype.empty() && ctype != "application/x-git-upload-pack-request")
        h.log->debug("http {} repo {}: unexpected content type \"{}\"", peer, *name, ctype.substr(0, 64));
    std::string body_storage;
    const std::string* body = &req.body;
    const auto enc = req.header("content-encoding");
    h.log->debug("http {} repo {}: upload-pack request of {} bytes{}", peer, *name, req.body.size(), enc.empty() ? "" : " (" + enc + ")");
    if (!enc.empty()) {
        if (enc != "gzip" && enc != "x-gzip") co_return text(415, "unsupported content encoding \"" + enc.substr(0, 32) + "\"");
        std::string why;
        auto inflated = inflate_body(req.body, h.opts.max_inflated_body, why);
        if (!inflated) co_return text(400, why);
        body_storage = std::move(*inflated);
        body = &body_storage;
    }
    r.content_type = "application/x-git-upload-pack-result";
    const auto t0 = std::chrono::steady_clock::now();
    auto log_fetch = [&](const PackJob& job, const PackResult& p, bool hit, int version) {
        (tls ? h.fetches_https : h.fetches_http)++;
        h.log->info("fetch {} {} credential {} repo {} v{} wants {} pack {} objects {} bytes ({}) in {} ms", tls ? "https" : "http", peer,
                    who, *name, version, wants_text(job.wants), p.objects, p.data.size(), hit ? "cached" : "built",
                    std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count());
    };
    if (v2) {
        UploadPackV2 up(*repo, refs);
        up.feed(*body, r.body);
        if (up.state() == UploadPackV2::State::send_pack) {
            bool hit = false;
            auto p = co_await h.pack(*repo, up.job(), hit);
            up.write_pack(*p, r.body);
            log_fetch(up.job(), *p, hit, 2);
        } else if (up.state() == UploadPackV2::State::failed) {
            ++h.protocol_errors;
            h.log->info("http {} repo {}: {}", peer, *name, up.error());
        } else if (up.last_command() == "ls-refs" || r.body.find("acknowledgments") == std::string::npos) {
            ++h.ls_refs;
        }
        co_return r;
    }
    UploadPack up(*repo, refs, {.stateless = true, .limits = {}});
    const auto used = up.feed(*body, r.body);
    if (used == body->size()) up.end_of_input(r.body);
    if (up.state() == UploadPack::State::send_pack) {
        bool hit = false;
        auto p = co_await h.pack(*repo, up.job(), hit);
        up.write_pack(*p, r.body);
        log_fetch(up.job(), *p, hit, v1 ? 1 : 0);
    } else if (up.state() == UploadPack::State::failed) {
        ++h.protocol_errors;
        h.log->info("http {} repo {}: {}", peer, *name, up.error());
    }
    co_return r;
}

template <typename Stream>
asio::awaitable<void> serve(Service::Impl& h, Stream& stream, Deadline& deadline, const std::string& peer, bool tls) {
    using State = common::HttpRequestReader::State;
    const std::size_t push_body = (std::size_t{h.site.services.git.max_pack_mb} << 20) + (1u << 20);
    const std::size_t max_body = h.opts.max_body;
    common::HttpRequestReader reader(common::HttpLimits{
        .max_url = kMaxUrl, .max_header_bytes = kMaxHeaderBytes, .max_body = max_body, .body_limit = [=](const HttpRequest& r) {
            return r.url.find("/git-receive-pack") != std::string::npos ? push_body : max_body;
        }});
    std::string in;  // bytes read but not parsed yet (a pipelined request waits here)
    std::array<char, 16384> buf;
    const auto min_rate = h.site.services.limits_for(tls ? "https" : "http").min_rate;
    while (true) {
        // Phases (docs/limits.md): idle_timeout until a request's first byte; read_timeout for its request
        // line and headers; then the body at min_rate at least. Each deadline is set once, when its phase
        // begins: a client sending one byte at a time is cut all the same.
        enum class Phase { idle, headers, body } phase = Phase::idle;
        deadline.arm(h.opts.idle_timeout);
        auto next_phase = [&] {
            if (phase == Phase::idle && reader.started()) {
                phase = Phase::headers;
                deadline.arm(h.opts.read_timeout);
            }
            if (phase == Phase::headers && reader.headers_complete()) {
                phase = Phase::body;
                deadline.arm(common::phase_deadline(h.opts.read_timeout, reader.expected_body(), min_rate));
            }
        };
        while (reader.state() == State::reading) {
            if (!in.empty()) {
                in.erase(0, reader.feed(in));
                if (reader.state() != State::reading) break;
            }
            next_phase();
            auto [ec, n] = co_await stream.async_read_some(asio::buffer(buf), use_tuple);
            if (ec) {
                if (deadline.expired() && reader.started()) {
                    ++h.timeouts;
                    h.log->info("http {}: request stalled; closed", peer);
                }
                co_return;
            }
            in.append(buf.data(), n);
        }
        if (reader.state() != State::complete) {
            Response r =
                reader.state() == State::too_large ? text(413, "request too large") : text(400, "bad HTTP request: " + reader.error());
            r.close = true;
            ++h.protocol_errors;
            h.log->info("http {}: {}", peer, r.body.substr(0, r.body.size() - 1));
            const auto out = serialize(r);
            co_await asio::async_write(stream, asio::buffer(out), use_tuple);
            co_return;
        }
        deadline.disarm();
        Response r = co_await handle(h, reader.request(), peer, tls);
        if (!reader.request().keep_alive || h.stopped) r.close = true;
        const auto out = serialize(r);
        deadline.arm(common::phase_deadline(h.opts.read_timeout, out.size(), min_rate));  // a client that does not read is cut
        auto [wec, wn] = co_await asio::async_write(stream, asio::buffer(out), use_tuple);
        h.bytes_sent += wn;
        if (wec || r.close) co_return;
        reader.next();
    }
}

}  // namespace

asio::awaitable<void> Service::Impl::http_session(std::shared_ptr<tcp::socket> sock, common::AdmissionTicket ticket, std::string peer,
                                                  bool use_tls) {
    (void)ticket;  // holds the connection's slot until the session ends
    auto self = shared_from_this();
    auto close = [sock] {
        std::error_code ec;
        sock->shutdown(tcp::socket::shutdown_both, ec);
        sock->close(ec);
    };
    Deadline deadline(io.get_executor(), close);
    deadline.arm(opts.read_timeout);
    deadline.start();
    if (!use_tls) {
        co_await serve(*this, *sock, deadline, peer, false);
        close();
        co_return;
    }
    asio::ssl::stream<tcp::socket&> stream(*sock, *tls);
    auto [ec] = co_await stream.async_handshake(asio::ssl::stream_base::server, use_tuple);
    if (ec) {
        log->info("https {}: TLS handshake failed: {}", peer, ec.message());
        close();
        co_return;
    }
    co_await serve(*this, stream, deadline, peer, true);
    deadline.arm(std::chrono::milliseconds(2000));
    co_await stream.async_shutdown(use_tuple);
    close();
}

}  // namespace fleetconf::gitconf
