#include "fleetconf/common/http.hpp"

#include <catch2/catch.hpp>

using namespace fleetconf::common;
using State = HttpRequestReader::State;

TEST_CASE("the request reader gives one bounded request: method, target, headers, body", "[http]") {
    HttpRequestReader r(HttpLimits{.max_url = 64, .max_header_bytes = 256, .max_body = 16, .body_limit = {}});
    const std::string req =
        "POST /x?y=1 HTTP/1.1\r\nHost: a\r\nX-Many: 1\r\nx-many: 2\r\nAuthorization: Basic Zm9v\r\n"
        "Content-Length: 5\r\n\r\nhello";
    // Byte by byte: a request split anywhere reads the same.
    for (char c : req) CHECK(r.feed(std::string_view(&c, 1)) == 1);
    REQUIRE(r.state() == State::complete);
    const auto& q = r.request();
    CHECK(q.method == "POST");
    CHECK(q.url == "/x?y=1");
    CHECK(q.header("x-many") == "1, 2");  // repeated fields joined, names lower-cased
    CHECK(q.header("authorization") == "Basic Zm9v");
    CHECK(q.header("absent").empty());
    CHECK(q.body == "hello");
    CHECK(q.keep_alive);
}

TEST_CASE("pipelined requests are read one at a time", "[http]") {
    HttpRequestReader r;
    const std::string two = "GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
    const auto used = r.feed(two);
    REQUIRE(r.state() == State::complete);
    CHECK(r.request().url == "/a");
    CHECK(used < two.size());
    CHECK(r.feed("more") == 0);  // nothing more until next()
    r.next();
    CHECK_FALSE(r.started());
    r.feed(std::string_view(two).substr(used));
    REQUIRE(r.state() == State::complete);
    CHECK(r.request().url == "/b");
    CHECK_FALSE(r.request().keep_alive);
}

TEST_CASE("limits: target, headers and body; a large Content-Length is refused before the body", "[http]") {
    const HttpLimits small{.max_url = 8, .max_header_bytes = 32, .max_body = 4, .body_limit = {}};
    HttpRequestReader url(small);
    url.feed("GET /0123456789 HTTP/1.1\r\n\r\n");
    CHECK(url.state() == State::too_large);
    CHECK_THAT(url.error(), Catch::Contains("target"));

    HttpRequestReader headers(small);
    headers.feed("GET / HTTP/1.1\r\nX: " + std::string(40, 'a') + "\r\n\r\n");
    CHECK(headers.state() == State::too_large);

    HttpRequestReader length(small);
    length.feed("POST / HTTP/1.1\r\nContent-Length: 1000000\r\n\r\n");  // no body byte sent yet
    CHECK(length.state() == State::too_large);
    CHECK_THAT(length.error(), Catch::Contains("body"));

    HttpRequestReader chunked(small);
    chunked.feed("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n");
    CHECK(chunked.state() == State::too_large);

    // The body limit may depend on the request (git: pushes may be larger than fetches).
    HttpRequestReader chosen(HttpLimits{.max_url = 64, .max_header_bytes = 64, .max_body = 1, .body_limit = [](const HttpRequest& q) {
                                            return q.url == "/big" ? 10u : 1u;
                                        }});
    chosen.feed("POST /big HTTP/1.1\r\nContent-Length: 5\r\n\r\n12345");
    CHECK(chosen.state() == State::complete);
}

TEST_CASE("malformed requests say why", "[http]") {
    HttpRequestReader r;
    r.feed("NOT HTTP AT ALL\r\n\r\n");
    CHECK(r.state() == State::malformed);
    CHECK_FALSE(r.error().empty());
    r.next();  // a fresh parser: the connection would be closed, but the reader is reusable
    r.feed("GET / HTTP/1.0\r\n\r\n");
    CHECK(r.state() == State::complete);
    CHECK_FALSE(r.request().keep_alive);  // HTTP/1.0 without keep-alive
}

TEST_CASE("responses carry length, extra headers and Connection: close", "[http]") {
    CHECK(http_response(404, "text/plain", "no\n", "X-A: b\r\n") ==
          "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nX-A: b\r\nConnection: close\r\n\r\nno\n");
    CHECK(http_response(200, "a/b", "", {}, false) == "HTTP/1.1 200 OK\r\nContent-Type: a/b\r\nContent-Length: 0\r\n\r\n");
}

TEST_CASE("client side: responses read until close, and http:// URLs", "[http][client]") {
    using namespace fleetconf::common;
    auto r = parse_http_response("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello, and more", 1024);
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->body == "hello");
    CHECK(r->complete);
    auto until_close = parse_http_response("HTTP/1.0 404 Not Found\r\n\r\nno such thing", 1024);  // no length: the end of the stream
    REQUIRE(until_close);
    CHECK(until_close->status == 404);
    CHECK(until_close->body == "no such thing");
    CHECK(until_close->complete);
    auto chunked = parse_http_response("HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", 4);
    REQUIRE(chunked);
    CHECK(chunked->body == "abcd");  // capped at max_body
    CHECK(chunked->complete);
    auto cut = parse_http_response("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", 1024);
    REQUIRE(cut);
    CHECK_FALSE(cut->complete);
    CHECK_FALSE(parse_http_response("SSH-2.0-OpenSSH_9.2\r\n", 1024));
    CHECK_FALSE(parse_http_response("", 1024));

    auto u = parse_http_url("http://hooks.example:8080/a/b?x=1");
    REQUIRE(u);
    CHECK(u->host == "hooks.example");
    CHECK(u->port == "8080");
    CHECK(u->target == "/a/b?x=1");
    auto bare = parse_http_url("http://127.0.0.1");
    REQUIRE(bare);
    CHECK(bare->port == "80");
    CHECK(bare->target == "/");
    CHECK_FALSE(parse_http_url("https://hooks.example/"));  // plain http only
    CHECK_FALSE(parse_http_url("hooks.example/x"));
    CHECK_FALSE(parse_http_url(""));
}
