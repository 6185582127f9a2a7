#include "fleetconf/common/http.hpp"

#include "fleetconf/common/crypto.hpp"

#include <http_parser.h>

#include <cctype>
#include <climits>

namespace fleetconf::common {

std::optional<BasicCredentials> parse_basic_auth(std::string_view header) {
    while (!header.empty() && header.front() == ' ') header.remove_prefix(1);
    if (header.size() < 6) return std::nullopt;
    std::string scheme(header.substr(0, 6));
    for (auto& c : scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (scheme != "basic ") return std::nullopt;
    header.remove_prefix(6);
    while (!header.empty() && header.front() == ' ') header.remove_prefix(1);
    while (!header.empty() && header.back() == ' ') header.remove_suffix(1);
    if (header.size() > 1024) return std::nullopt;
    auto raw = base64_decode(header);
    if (!raw) return std::nullopt;
    const std::string text(raw->begin(), raw->end());
    const auto colon = text.find(':');
    if (colon == std::string::npos) return std::nullopt;
    return BasicCredentials{text.substr(0, colon), text.substr(colon + 1)};
}

const char* http_reason(int status) {
    switch (status) {
        case 200: return "OK";
        case 204: return "No Content";
        case 400: return "Bad Request";
        case 401: return "Unauthorized";
        case 403: return "Forbidden";
        case 404: return "Not Found";
        case 405: return "Method Not Allowed";
        case 408: return "Request Timeout";
        case 411: return "Length Required";
        case 413: return "Content Too Large";
        case 415: return "Unsupported Media Type";
        case 500: return "Internal Server Error";
        case 503: return "Service Unavailable";
    }
    return "Error";
}

std::string HttpRequest::header(std::string_view lower_case_name) const {
    auto it = headers.find(lower_case_name);
    return it == headers.end() ? std::string() : it->second;
}

// The callbacks see the reader through parser.data; each returns non-zero to stop http-parser at a limit.
struct HttpRequestReader::Parser {
    http_parser parser{};

    static HttpRequestReader& r(http_parser* p) { return *static_cast<HttpRequestReader*>(p->data); }
    static int limit(HttpRequestReader& rd, const char* what) {
        rd.too_large_what_ = what;
        return 1;
    }
    static const http_parser_settings& settings() {
        static const http_parser_settings s = [] {
            http_parser_settings st{};
            st.on_url = [](http_parser* p, const char* at, std::size_t len) {
                auto& rd = r(p);
                if (rd.req_.url.size() + len > rd.limits_.max_url) return limit(rd, "request target");
                rd.req_.url.append(at, len);
                return 0;
            };
            st.on_header_field = [](http_parser* p, const char* at, std::size_t len) {
                auto& rd = r(p);
                if (rd.in_value_) rd.end_header();
                if ((rd.header_bytes_ += len) > rd.limits_.max_header_bytes) return limit(rd, "headers");
                rd.field_.append(at, len);
                return 0;
            };
            st.on_header_value = [](http_parser* p, const char* at, std::size_t len) {
                auto& rd = r(p);
                rd.in_value_ = true;
                if ((rd.header_bytes_ += len) > rd.limits_.max_header_bytes) return limit(rd, "headers");
                rd.value_.append(at, len);
                return 0;
            };
            st.on_headers_complete = [](http_parser* p) {
                auto& rd = r(p);
                if (rd.in_value_ || !rd.field_.empty()) rd.end_header();
                rd.req_.method = http_method_str(static_cast<http_method>(p->method));
                rd.max_body_ = rd.limits_.body_limit ? rd.limits_.body_limit(rd.req_) : rd.limits_.max_body;
                // Refused before any body byte is read (and before a client waiting for 100-continue sends it).
                if (p->content_length != ULLONG_MAX && p->content_length > rd.max_body_) {
                    limit(rd, "body");
                    return -1;
                }
                rd.headers_done_ = true;
                rd.expected_body_ = p->content_length != ULLONG_MAX ? static_cast<std::size_t>(p->content_length) : rd.max_body_;
                return 0;
            };
            st.on_body = [](http_parser* p, const char* at, std::size_t len) {
                auto& rd = r(p);
                if (rd.req_.body.size() + len > rd.max_body_) return limit(rd, "body");
                rd.req_.body.append(at, len);
                return 0;
            };
            st.on_message_complete = [](http_parser* p) {
                auto& rd = r(p);
                rd.req_.keep_alive = http_should_keep_alive(p) != 0;
                rd.state_ = State::complete;
                http_parser_pause(p, 1);  // one request at a time: pipelined bytes wait for next()
                return 0;
            };
            return st;
        }();
        return s;
    }
};

HttpRequestReader::HttpRequestReader(HttpLimits limits) : p_(std::make_unique<Parser>()), limits_(std::move(limits)) {
    http_parser_init(&p_->parser, HTTP_REQUEST);
    p_->parser.data = this;
}

HttpRequestReader::~HttpRequestReader() = default;

void HttpRequestReader::end_header() {
    if (!field_.empty()) {
        for (auto& c : field_) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        auto& slot = req_.headers[field_];
        slot = slot.empty() ? value_ : slot + ", " + value_;
    }
    field_.clear();
    value_.clear();
    in_value_ = false;
}

std::size_t HttpRequestReader::feed(std::string_view data) {
    if (state_ != State::reading || data.empty()) return 0;
    started_ = true;
    const auto used = http_parser_execute(&p_->parser, &Parser::settings(), data.data(), data.size());
    const auto err = HTTP_PARSER_ERRNO(&p_->parser);
    if (err == HPE_PAUSED) {
        http_parser_pause(&p_->parser, 0);
    } else if (err != HPE_OK) {
        state_ = too_large_what_.empty() ? State::malformed : State::too_large;
    }
    return used;
}

std::string HttpRequestReader::error() const {
    if (state_ == State::too_large) return "request " + too_large_what_ + " over the limit";
    if (state_ == State::malformed) return http_errno_description(HTTP_PARSER_ERRNO(&p_->parser));
    return {};
}

void HttpRequestReader::next() {
    if (state_ != State::complete && state_ != State::reading) {
        http_parser_init(&p_->parser, HTTP_REQUEST);
        p_->parser.data = this;
    }
    req_ = HttpRequest{};
    state_ = State::reading;
    started_ = in_value_ = headers_done_ = false;
    expected_body_ = 0;
    field_.clear();
    value_.clear();
    too_large_what_.clear();
    header_bytes_ = max_body_ = 0;
}

std::string http_response(int status, std::string_view content_type, std::string_view body, std::string_view extra_headers, bool close) {
    std::string out = "HTTP/1.1 " + std::to_string(status) + " " + http_reason(status) + "\r\nContent-Type: ";
    out += content_type;
    out += "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
    out += extra_headers;
    if (close) out += "Connection: close\r\n";
    out += "\r\n";
    out += body;
    return out;
}

std::optional<HttpResponse> parse_http_response(std::string_view raw, std::size_t max_body) {
    struct State {
        HttpResponse r;
        std::size_t max;
    } st{{}, max_body};
    http_parser_settings s{};
    s.on_body = [](http_parser* p, const char* at, std::size_t len) {
        auto* x = static_cast<State*>(p->data);
        if (x->r.body.size() < x->max) x->r.body.append(at, std::min(len, x->max - x->r.body.size()));
        return 0;
    };
    s.on_message_complete = [](http_parser* p) {
        static_cast<State*>(p->data)->r.complete = true;
        return 1;  // one message: stop here
    };
    http_parser parser;
    http_parser_init(&parser, HTTP_RESPONSE);
    parser.data = &st;
    http_parser_execute(&parser, &s, raw.data(), raw.size());
    if (!st.r.complete && HTTP_PARSER_ERRNO(&parser) == HPE_OK)
        http_parser_execute(&parser, &s, nullptr, 0);  // EOF ends a body without a length
    if (parser.status_code == 0) return std::nullopt;
    st.r.status = static_cast<int>(parser.status_code);
    return st.r;
}

std::optional<HttpUrl> parse_http_url(std::string_view text) {
    http_parser_url u;
    http_parser_url_init(&u);
    if (text.empty() || http_parser_parse_url(text.data(), text.size(), 0, &u) != 0) return std::nullopt;
    auto field = [&](int f) {
        return (u.field_set & (1 << f)) ? std::string(text.substr(u.field_data[f].off, u.field_data[f].len)) : std::string();
    };
    if (field(UF_SCHEMA) != "http" || field(UF_HOST).empty()) return std::nullopt;
    HttpUrl out;
    out.host = field(UF_HOST);
    if (!field(UF_PORT).empty()) out.port = field(UF_PORT);
    if (!field(UF_PATH).empty()) out.target = field(UF_PATH);
    if (!field(UF_QUERY).empty()) out.target.append("?").append(field(UF_QUERY));
    return out;
}

}  // namespace fleetconf::common
