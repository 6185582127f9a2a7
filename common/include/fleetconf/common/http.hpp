// The HTTP pieces shared by the services' endpoints: a bounded request reader (the parsing itself is
// nodejs http-parser's job), Basic credentials, responses.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace fleetconf::common {

struct BasicCredentials {
    std::string user;
    std::string password;
};
// Parses an `Authorization: Basic ...` header value (RFC 7617); empty when absent or malformed.
std::optional<BasicCredentials> parse_basic_auth(std::string_view header);

// The reason phrase for the status codes the services send ("OK", "Not Found", ...; "Error" otherwise).
const char* http_reason(int status);

// One HTTP/1.1 request as the services see it.
struct HttpRequest {
    std::string method;                                       // "GET", "POST", ...
    std::string url;                                          // the request target as sent (path and query)
    std::map<std::string, std::string, std::less<>> headers;  // lower-case names; repeated fields joined with ", "
    std::string body;
    bool keep_alive = true;  // HTTP/1.1 without "Connection: close" (or 1.0 with keep-alive)

    [[nodiscard]] std::string header(std::string_view lower_case_name) const;
};

struct HttpLimits {
    std::size_t max_url = 4096;
    std::size_t max_header_bytes = 32768;  // names and values together
    std::size_t max_body = 0;              // a larger Content-Length is refused before any body byte is read
    // When set, chooses the body limit once the request line and headers are known (instead of max_body).
    std::function<std::size_t(const HttpRequest&)> body_limit;
};

// Sans-I/O request reader around nodejs http-parser: bytes in, one bounded request out. It stops after
// each complete request, so pipelined bytes stay with the caller for the next one (call next()).
class HttpRequestReader {
public:
    enum class State { reading, complete, too_large, malformed };

    explicit HttpRequestReader(HttpLimits limits = {});
    ~HttpRequestReader();
    HttpRequestReader(const HttpRequestReader&) = delete;
    HttpRequestReader& operator=(const HttpRequestReader&) = delete;

    // Consumes bytes until the request is complete or an error is found; returns how many were used.
    std::size_t feed(std::string_view data);
    [[nodiscard]] State state() const { return state_; }
    [[nodiscard]] bool started() const { return started_; }  // some byte of this request has arrived
    [[nodiscard]] bool headers_complete() const { return headers_done_; }
    // After the headers: the body's Content-Length, or its limit when the body is chunked.
    [[nodiscard]] std::size_t expected_body() const { return expected_body_; }
    [[nodiscard]] const HttpRequest& request() const { return req_; }
    // Why the request is malformed (http-parser's description) or too large.
    [[nodiscard]] std::string error() const;
    // Ready for the next request on the same connection.
    void next();

private:
    struct Parser;
    friend struct Parser;
    std::unique_ptr<Parser> p_;
    HttpLimits limits_;
    HttpRequest req_;
    State state_ = State::reading;
    bool started_ = false, in_value_ = false, headers_done_ = false;
    std::size_t expected_body_ = 0;
    std::string field_, value_, too_large_what_;
    std::size_t header_bytes_ = 0, max_body_ = 0;
    void end_header();
};

// A whole response: status line, Content-Type, Content-Length, the extra header lines (each ending
// "\r\n"), "Connection: close" when asked, then the body.
std::string http_response(int status, std::string_view content_type, std::string_view body, std::string_view extra_headers = {},
                          bool close = true);

// The client side, for answers read until the server closes (Connection: close): the webhook and hook
// notifications, and `fleetconf dhcp ctl` over HTTP.
struct HttpResponse {
    int status = 0;
    std::string body;       // at most max_body bytes of it
    bool complete = false;  // the whole message arrived (by its length, chunks, or the end of the stream)
};
// nullopt when `raw` does not start with an HTTP status line.
std::optional<HttpResponse> parse_http_response(std::string_view raw, std::size_t max_body);

// An http:// URL, for outgoing requests: nullopt for any other scheme or a URL without a host.
struct HttpUrl {
    std::string host;
    std::string port = "80";
    std::string target = "/";  // path and query
};
std::optional<HttpUrl> parse_http_url(std::string_view text);

}  // namespace fleetconf::common
