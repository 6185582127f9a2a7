// The proxy configuration: routes from TLS SNI host names to backends, an optional default route, and
// the operations that change it. Everything here is pure: no I/O, no clock.
#pragma once

#include "fleetconf/blockcfg/error.hpp"
#include "fleetconf/common/net.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace fleetconf::blockcfg {

inline constexpr std::size_t kMaxRoutes = 10000;
inline constexpr int kSchemaVersion = 1;
// The reserved host name that denotes the default route (clients without SNI, or an unknown name).
inline constexpr std::string_view kDefaultRoute = "default";

struct Backend {
    common::IpAddress address;
    std::uint16_t port = 0;
    bool operator==(const Backend&) const = default;
    [[nodiscard]] std::string to_string() const;
};

struct Config {
    std::map<std::string, Backend> routes;  // normalized host name -> backend
    std::optional<Backend> default_route;
    bool operator==(const Config&) const = default;
};

struct Failure {
    errc code;
    std::string message;
};

// Lower-cases and validates a host name: DNS labels, at most 253 characters, an optional leftmost "*."
// wildcard; "default" names the default route. Returns the normalized name or a Failure (INVALID).
std::variant<std::string, Failure> normalize_host(std::string_view host);

// The payload stored on the device: {"schema":1,"routes":[{"host","address","port"}...],"default":{...}|null}
// with routes sorted by host, so equal configurations have equal bytes.
std::string to_payload(const Config& c);
// The same with a record of the changes that made it: "change": [{"by": WHO, "what": DESCRIPTION}, ...]
// (docs/blockcfg-format.md; readers ignore it). `change_of` reads it back ([] when absent).
struct ChangeNote {
    std::string by;
    std::string what;
};
std::string to_payload(const Config& c, const std::vector<ChangeNote>& change);
std::vector<ChangeNote> change_of(std::string_view payload);
std::variant<Config, Failure> from_payload(std::string_view payload);

nlohmann::json to_json(const Backend& b);
nlohmann::json routes_json(const Config& c);  // [{"host","address","port"}...] including "default" if set

// One change. `host` is normalized; "default" targets the default route.
struct Op {
    enum class Kind { add, update, upsert, remove, replace };
    Kind kind;
    std::string host;
    Backend backend;
    Config replacement;  // for replace
};

// Applies one operation; on failure `c` is unchanged.
std::optional<Failure> apply(Config& c, const Op& op);
// Applies all or nothing.
std::optional<Failure> apply_all(Config& c, const std::vector<Op>& ops);
// Applies in order and stops at the first failure, leaving `c` partly changed: for callers that work on
// a scratch copy anyway (the writer), to avoid a second copy.
std::optional<Failure> apply_in_place(Config& c, const std::vector<Op>& ops);

// A decoded request body (see docs/blockcfg-protocol.md).
struct ReadRequest {
    enum class Kind { list, get, status, history };
    Kind kind;
    std::string host;  // for get
};
struct ChangeRequest {
    std::string name;  // the op name as sent ("add", "transaction", ...) for logs
    std::vector<Op> ops;
    std::optional<std::uint64_t> rollback_to;  // rollback: restore this generation's configuration
    std::optional<std::uint64_t> expect_generation;
};
using Request = std::variant<ReadRequest, ChangeRequest>;

std::variant<Request, Failure> parse_request(const nlohmann::json& body);
// One line for history: "add www.example.org -> 10.0.0.5:443", "remove a, b", "rollback to generation 3".
std::string describe(const ChangeRequest& r);

// The writer's decision for one batch of queued changes (the group commit), without the device: each change
// in order against the configuration at generation `gen`. A change that expects a generation fails once an
// earlier change of the batch was accepted (the state is no longer `gen`: no lost update); a rollback reads
// the configuration of its generation through `read_generation` (nullopt: no longer on the device).
struct BatchResult {
    Config config;                                // after every accepted change
    std::vector<std::optional<Failure>> refused;  // per change: nullopt when accepted
    bool changed = false;                         // some change was accepted: commit `config`
};
BatchResult apply_batch(Config current, std::uint64_t gen, const std::vector<const ChangeRequest*>& changes,
                        const std::function<std::optional<std::string>(std::uint64_t)>& read_generation);

}  // namespace fleetconf::blockcfg
