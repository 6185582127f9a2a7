// Smart HTTP (gitprotocol-http) over plain TCP or TLS: requests read by common::HttpRequestReader (nodejs
// http-parser), gzip request bodies by zlib, then the same upload-pack core as git://. Stateless: one request, one round.
#include "conversation.hpp"
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

}  // namespace

namespace {

// The conversation's channel for one smart HTTP request: its body in, the reply's body out. Deadlines
// are the HTTP layer's (serve() below), so phase() has nothing to do.
class RequestChannel final : public Channel {
public:
    RequestChannel(const std::string& body, std::string& reply) : body_(body), reply_(reply) {}
    asio::awaitable<bool> read(std::string& in) override {
        if (done_) co_return false;
        done_ = true;
        in += body_;
        co_return true;
    }
    asio::awaitable<bool> write(std::string_view out) override {
        reply_ += out;
        co_return true;
    }
    void phase(std::chrono::milliseconds, const char*) override {}
    [[nodiscard]] bool timed_out() const override { return false; }
    [[nodiscard]] bool streaming() const override { return false; }

private:
    const std::string& body_;
    std::string& reply_;
    bool done_ = false;
};

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
    const auto basic = parse_basic_auth(req.header("authorization"));
    const auto who = authenticate(basic, h.tokens);
    const auto verdict =
        authorize(who, name ? *name : std::string_view(), name ? h.access(*name) : RepoAccess{}, push ? Operation::push : Operation::fetch);
    const std::string label = basic ? basic->user.substr(0, 64) : "-";
    if (verdict == Verdict::unauthorized) {
        ++h.unauthorized;
        h.log->info("http {} {} {}: 401 ({})", peer, req.method, std::string(path.substr(0, 128)),
                    basic ? "wrong credentials for \"" + label + "\"" : "no credentials");
        auto r = text(401, "authentication required: user = unikernel name, password = its token (fleetconf git token NAME)");
        r.challenge = true;
        co_return r;
    }
    if (route == Route::none) co_return text(404, "not found");
    if (verdict == Verdict::not_found) {
        ++h.not_found;
        h.log->info("http {} {} {}: 404 for credential {}", peer, req.method, std::string(path.substr(0, 128)), label);
        co_return text(404, "repository not found");
    }
    if (verdict == Verdict::forbidden) {
        ++h.forbidden;
        h.log->info("http {} {} {}: 403 push refused for read-only credential {}", peer, req.method, std::string(path.substr(0, 128)),
                    label);
        co_return text(403, "this credential is read-only");
    }
    const bool advertise = route == Route::info_refs;
    if (advertise && !push && service != "git-upload-pack")
        co_return text(403, "the dumb HTTP protocol is not supported; use a smart git client");
    if (advertise ? req.method != "GET" : req.method != "POST") co_return text(405, advertise ? "use GET" : "use POST");

    const std::string proto = req.header("git-protocol");
    Conversation c{.mode = advertise ? Conversation::Mode::advertise : Conversation::Mode::request,
                   .transport = tls ? "https" : "http",
                   .peer = peer,
                   .who = who,
                   .repo = *name,
                   .version = proto.find("version=2") != std::string::npos   ? 2
                              : proto.find("version=1") != std::string::npos ? 1
                                                                             : 0,
                   .min_rate = 0,
                   .site = &h.site,
                   .early_input = {}};
    const std::string kind = push ? "receive" : "upload";
    Response r;
    r.content_type = "application/x-git-" + kind + "-pack-" + (advertise ? "advertisement" : "result");

    // The Content-Type is not checked (git http-backend answers 415): clients that ignore status codes,
    // like git-kv, would read a 415 as an empty fetch. The body itself is parsed strictly.
    std::string inflated;
    const std::string* body = &req.body;
    if (!advertise) {
        if (const auto ctype = req.header("content-type"); !ctype.empty() && ctype != "application/x-git-" + kind + "-pack-request")
            h.log->debug("http {} repo {}: unexpected content type \"{}\"", peer, *name, ctype.substr(0, 64));
        const auto enc = req.header("content-encoding");
        h.log->debug("http {} repo {}: {}-pack request of {} bytes{}", peer, *name, kind, req.body.size(),
                     enc.empty() ? "" : " (" + enc + ")");
        if (!enc.empty()) {
            if (push) co_return text(415, "compressed push bodies are not supported");
            if (enc != "gzip" && enc != "x-gzip") co_return text(415, "unsupported content encoding \"" + enc.substr(0, 32) + "\"");
            std::string why;
            auto out = inflate_body(req.body, h.opts.max_inflated_body, why);
            if (!out) co_return text(400, why);
            inflated = std::move(*out);
            body = &inflated;
        }
    }
    RequestChannel ch(*body, r.body);
    // (Not one co_await of a conditional expression: GCC 12 destroys the chosen awaitable twice.)
    Ending ending = Ending::done;
    if (push) ending = co_await receive_pack(h, ch, c);
    else ending = co_await upload_pack(h, ch, c);
    if (ending == Ending::unavailable) co_return text(503, "repository unavailable");
    if (advertise) h.log->debug("http {} {}: {} advertisement for {} (v{})", peer, *name, kind, label, c.version);
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
    const auto close = common::socket_closer(sock);
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
