// The server side of `git fetch` (gitprotocol-pack, gitprotocol-v2), sans I/O.
//
// Bytes from the client go in with feed(); response bytes come out in the string passed along.
// When a session has decided what to send it stops in State::send_pack with a PackJob; the caller
// builds the pack (or takes it from the cache: the job's key names the pack exactly), hands it to
// write_pack(), and sends the framed result. The repository is read through gitconf::Repository.
//
// v0/v1 (one session per connection on git://, one per POST on smart HTTP with `stateless`) and v2
// (ls-refs, fetch) share one negotiation core: wants, haves with ACK common/ready as
// multi_ack_detailed defines them, and shallow boundaries for deepen, deepen-relative, deepen-since
// and deepen-not computed the way git's upload-pack computes them.
#pragma once

#include "fleetconf/gitconf/repo.hpp"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace fleetconf::gitconf {

inline constexpr const char* kAgent = "fleetconf/0.1";

// Limits on what one request may carry (a request over a limit is refused with an ERR packet).
struct UploadLimits {
    std::size_t max_wants = 1000;
    std::size_t max_haves = 100000;  // over all rounds
    std::size_t max_shallows = 10000;
    std::size_t max_walk = 2'000'000;  // commits visited by one negotiation or shallow computation
};

// Everything that determines a pack's bytes. Two requests with equal keys get identical packs.
struct PackJob {
    std::string key;  // canonical text of `plan` and the pack options
    PackPlan plan;
    std::size_t sideband = 0;  // 0: raw pack; otherwise the largest packet (1000 or 65520)
    bool progress = true;      // progress messages on band 2
    std::vector<Oid> wants;    // for logging
};

// Frames a built pack: progress lines (band 2) and the pack on band 1 when side-band is on, else raw.
void frame_pack(const PackJob& job, const PackResult& pack, std::string& out);

// v0/v1 ref advertisement. `v1` adds the "version 1" line. The empty-repository form advertises the
// capabilities on a zero id named "capabilities^{}".
std::string advertise_refs(const RefList& refs, bool v1, bool stateless_http);

class Negotiation;

class UploadPack {
public:
    enum class State { wants, negotiate, send_pack, finished, failed };
    struct Options {
        bool stateless = false;  // smart HTTP: the whole request arrives at once, one round per request
        UploadLimits limits;
    };
    UploadPack(const Repository& repo, RefList refs, Options opt);
    ~UploadPack();
    UploadPack(const UploadPack&) = delete;
    UploadPack& operator=(const UploadPack&) = delete;

    // Consumes complete packets from `in`, appending responses to `out`; returns the bytes consumed.
    // Stops consuming when the state leaves wants/negotiate.
    std::size_t feed(std::string_view in, std::string& out);
    // The client closed its side (end of the HTTP body or EOF). In stateless mode a request that ended
    // after its wants (and shallow section) is complete; otherwise the session fails.
    void end_of_input(std::string& out);
    void write_pack(const PackResult& pack, std::string& out);

    [[nodiscard]] State state() const { return state_; }
    [[nodiscard]] const PackJob& job() const { return job_; }
    [[nodiscard]] const std::string& error() const { return error_; }
    [[nodiscard]] const std::vector<Oid>& wants() const;

private:
    void on_packet_wants(std::string_view line, std::string& out);
    void end_of_wants(std::string& out);
    void on_packet_negotiate(std::string_view line, bool flush, std::string& out);
    void fail(std::string msg, std::string& out);
    void ready_to_pack();

    const Repository& repo_;
    Options opt_;
    RefList refs_;
    std::unique_ptr<Negotiation> n_;
    State state_ = State::wants;
    PackJob job_;
    std::string error_;
    // requested capabilities
    int multi_ack_ = 0;  // 0 none, 1 multi_ack, 2 multi_ack_detailed
    bool no_done_ = false;
    std::size_t sideband_ = 0;
    bool no_progress_ = false;
    bool include_tag_ = false;
    bool saw_want_ = false;
    // negotiation
    bool got_common_ = false, got_other_ = false, sent_ready_ = false;
    std::string last_hex_;
};

// Protocol v2 over one connection (git://) or one request (HTTP).
class UploadPackV2 {
public:
    enum class State { idle, send_pack, finished, failed };
    UploadPackV2(const Repository& repo, RefList refs, UploadLimits limits = {});
    ~UploadPackV2();
    UploadPackV2(const UploadPackV2&) = delete;
    UploadPackV2& operator=(const UploadPackV2&) = delete;

    static std::string capabilities();

    std::size_t feed(std::string_view in, std::string& out);
    void write_pack(const PackResult& pack, std::string& out);
    [[nodiscard]] State state() const { return state_; }
    [[nodiscard]] const PackJob& job() const { return job_; }
    [[nodiscard]] const std::string& error() const { return error_; }
    [[nodiscard]] const std::string& last_command() const { return command_; }

private:
    void run(std::string& out);
    void ls_refs(std::string& out);
    void fetch(std::string& out);
    void fail(std::string msg, std::string& out);

    const Repository& repo_;
    RefList refs_;
    UploadLimits limits_;
    State state_ = State::idle;
    PackJob job_;
    std::string error_;
    // the command being read
    int section_ = 0;  // 0 command/capabilities, 1 arguments
    std::string command_;
    std::vector<std::string> args_;
};

}  // namespace fleetconf::gitconf
