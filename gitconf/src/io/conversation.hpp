// One git conversation driver for every transport. git://, smart HTTP and SSH differ only in how bytes
// arrive and leave and in how a phase's deadline is kept: each gives the driver a Channel; the driver
// runs the sans-I/O cores (UploadPack, UploadPackV2, ReceivePack), sends what they write, builds packs
// and applies pushes on the pool, and logs and counts the result the same way for all of them.
#pragma once

#include "host.hpp"

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

namespace fleetconf::gitconf {

class Channel {
public:
    virtual ~Channel() = default;
    // Appends the client's next bytes to `in`; false at the end of its input (EOF, error, or deadline).
    virtual asio::awaitable<bool> read(std::string& in) = 0;
    // Sends all of `out`; false when the client is gone.
    virtual asio::awaitable<bool> write(std::string_view out) = 0;
    // A phase begins that must end, all of it, within `limit` (docs/limits.md); zero: no deadline while
    // the server works (a pack build, which sends keep-alives instead). `what` names it in logs.
    virtual void phase(std::chrono::milliseconds limit, const char* what) = 0;
    // Whether the last failed read ended on the phase's deadline (or a broken connection) rather than EOF.
    [[nodiscard]] virtual bool timed_out() const = 0;
    // Whether written bytes reach the client at once: keep-alives during a pack build need it (a smart
    // HTTP reply is buffered until it is complete).
    [[nodiscard]] virtual bool streaming() const = 0;
};

struct Conversation {
    enum class Mode {
        session,    // git:// and SSH: the advertisement, then the whole conversation on one stream
        advertise,  // smart HTTP GET .../info/refs: the advertisement only
        request,    // smart HTTP POST: one request (the channel's input ends after the body), one reply
    } mode = Mode::session;
    const char* transport = "git";  // "git", "http", "https" or "ssh": counters, logs, the audit log
    std::string peer;
    Credential who;                      // authorized already (authorize() in auth.hpp)
    std::string repo;                    // the repository's name
    int version = 0;                     // the protocol the client asked for (git-protocol "version=N"): 0, 1 or 2
    std::size_t min_rate = 0;            // bytes/s at which the client must take a reply (the listener's)
    const common::Site* site = nullptr;  // paths, push policy and limits (SSH: the session's snapshot)
    std::string early_input;             // bytes that came with the git:// request line, read before the channel's
};

enum class Ending {
    done,         // the conversation ran to its end (or the client left)
    unavailable,  // the repository could not be opened; nothing was sent
    failed,       // a protocol error, told to the client (ERR) and logged
    stalled,      // a phase's deadline passed
};

// git-upload-pack (fetch, ls-refs) and git-receive-pack (push) over `ch`.
asio::awaitable<Ending> upload_pack(Service::Impl& h, Channel& ch, const Conversation& c);
asio::awaitable<Ending> receive_pack(Service::Impl& h, Channel& ch, const Conversation& c);

}  // namespace fleetconf::gitconf
