// The console's decision (console::Console) on any request: the bytes are read as the server reads them
// (common::HttpRequestReader, the console's limits) and answered by a console without a login and by one
// with a password file; the same bytes are also a password file and a Cookie header. No crash, and every
// answer is a real status with a JSON or asset body.
#include "fleetconf/common/http.hpp"
#include "fleetconf/common/log.hpp"
#include "fleetconf/console/auth.hpp"
#include "fleetconf/console/console.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <string_view>

using namespace fleetconf;

#define FUZZ_ASSERT(c)              \
    do {                            \
        if (!(c)) __builtin_trap(); \
    } while (0)

namespace {

console::Backend backend() {
    console::Backend b;
    b.fleet = [] { return nlohmann::json{{"unikernels", nlohmann::json::array()}}; };
    b.leases = [](const std::string& q, std::size_t limit) { return nlohmann::json{{"q", q}, {"limit", limit}}; };
    b.device_history = [](const std::string& name) -> nlohmann::json {
        if (name != "proxy") throw console::ActionError(404, "no such device");
        return {{"name", name}};
    };
    b.counters = [] { return std::map<std::string, double>{{"dhcp_acks", 1}}; };
    b.actions["route-add"] = [](const nlohmann::json& a, const std::string&) {
        if (!a.contains("host")) throw console::ActionError(400, "missing host");
        return nlohmann::json{{"message", "ok"}};
    };
    return b;
}

console::Console& open_console() {
    static console::Console c({}, backend(), common::log::get("fuzz"));
    return c;
}

console::Console& login_console() {
    static console::Console* c = [] {
        const std::string file = "/tmp/fleetconf-console-fuzz-" + std::to_string(::getpid());
        std::ofstream(file) << console::hash_password_line("admin", "correct horse battery", {10, 8, 1}, "0123456789abcdef") << "\n";
        ::chmod(file.c_str(), 0600);
        console::Options o;
        o.password_file = file;
        auto* made = new console::Console(o, backend(), common::log::get("fuzz"));
        ::unlink(file.c_str());
        return made;
    }();
    return *c;
}

void answer(console::Console& c, const common::HttpRequest& req) {
    const auto r = c.handle(req, "127.0.0.1:4000", false, console::Console::Clock::now());
    FUZZ_ASSERT(r.status >= 200 && r.status <= 599);
    if (!r.stream) FUZZ_ASSERT(!r.body.empty());
    FUZZ_ASSERT(r.headers.find("Content-Security-Policy") != std::string::npos);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view in(reinterpret_cast<const char*>(data), size);
    common::HttpRequestReader reader(common::HttpLimits{
        .max_url = 2048, .max_header_bytes = 16384, .max_body = 0, .body_limit = [](const common::HttpRequest& r) -> std::size_t {
            return r.method == "POST" ? 65536 : 0;
        }});
    reader.feed(in);
    if (reader.state() == common::HttpRequestReader::State::complete) {
        answer(open_console(), reader.request());
        answer(login_console(), reader.request());
    }
    try {
        (void)console::PasswordFile::parse(in);
    } catch (const std::runtime_error&) {}
    (void)console::cookie_value(in, "fleetconf_console");
    return 0;
}
