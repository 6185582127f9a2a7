// The git conversation driver (conversation.hpp): the same phases, deadlines, logs and counters whatever
// the transport. Everything that touches libgit2 (open, refs, negotiation walks, pack builds, pushes)
// runs on the service's pool, so one client's long walk never delays another client or another service.
#include "conversation.hpp"

#include "fleetconf/gitconf/pktline.hpp"

#include <asio/experimental/awaitable_operators.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>

namespace fleetconf::gitconf {

namespace {

std::string wants_text(const std::vector<Oid>& w) {
    std::string s;
    for (std::size_t i = 0; i < w.size() && i < 8; ++i) {
        if (i) s += ',';
        s += w[i].hex().substr(0, 12);  // appended, not "," + string&&: GCC 12 warns (-Wrestrict) on that
    }
    if (w.size() > 8) s += ",+" + std::to_string(w.size() - 8);
    return s.empty() ? "-" : s;
}

std::int64_t ms_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
}

// Opens the repository and reads its references on the pool; nullopt (logged) when it cannot be opened.
asio::awaitable<std::optional<std::pair<Repository, RefList>>> open_repository(Service::Impl& h, const Conversation& c) {
    std::optional<std::pair<Repository, RefList>> r;
    co_await h.offload([&] {
        try {
            auto repo = Repository::open(repo_dir(*c.site, c.repo));
            auto refs = repo.refs();
            r.emplace(std::move(repo), std::move(refs));
        } catch (const std::exception& e) {
            h.log->error("{} {}: {}", c.transport, c.peer, e.what());
        }
    });
    co_return r;
}

}  // namespace

asio::awaitable<Ending> upload_pack(Service::Impl& h, Channel& ch, const Conversation& c) {
    using Mode = Conversation::Mode;
    auto opened = co_await open_repository(h, c);
    if (!opened) co_return Ending::unavailable;
    const Repository& repo = opened->first;
    const RefList& refs = opened->second;
    const auto t0 = std::chrono::steady_clock::now();
    std::string in = c.early_input, out;

    // Sends what the core wrote. A reply is a phase of its own: the client must take it at min_rate.
    auto send = [&]() -> asio::awaitable<bool> {
        if (out.empty()) co_return true;
        const bool ok = co_await ch.write(out);
        out.clear();
        co_return ok;
    };
    auto reply = [&]() -> asio::awaitable<bool> {
        if (!out.empty()) ch.phase(common::phase_deadline(h.opts.read_timeout, out.size(), c.min_rate), "reply too slowly read");
        co_return co_await send();
    };
    // Builds the pack on the pool while sending side-band keep-alives (an empty band-1 packet every 5 s,
    // as git's uploadpack.keepAlive) so that a slow build does not look like a dead server.
    auto build = [&](const PackJob& job, bool& hit) -> asio::awaitable<std::shared_ptr<const PackResult>> {
        using namespace asio::experimental::awaitable_operators;
        ch.phase(std::chrono::milliseconds(0), "pack build");
        if (!ch.streaming() || job.sideband == 0) co_return co_await h.pack(c.repo, repo, job, hit);
        auto keepalive = [&]() -> asio::awaitable<void> {
            asio::steady_timer t(co_await asio::this_coro::executor);
            while (true) {
                t.expires_after(std::chrono::seconds(5));
                co_await t.async_wait(asio::use_awaitable);
                ch.phase(h.opts.read_timeout, "keep-alive not taken");
                static constexpr char kKeepAlive[] = "0005\1";
                if (!co_await ch.write(std::string_view(kKeepAlive, 5))) co_return;
            }
        };
        auto result = co_await (h.pack(c.repo, repo, job, hit) || keepalive());
        if (result.index() != 0) throw std::runtime_error("client gone during the pack build");
        co_return std::get<0>(std::move(result));
    };
    auto fetched = [&](const PackJob& job, const PackResult& p, bool hit) {
        h.count_fetch(c.transport);
        h.record_fetch(c.repo, c.transport, c.peer, c.who.label());
        h.log->info("fetch {} {} credential {} repo {} v{} wants {} pack {} objects {} bytes ({}) in {} ms", c.transport, c.peer,
                    c.who.label(), c.repo, c.version, wants_text(job.wants), p.objects, p.data.size(), hit ? "cached" : "built",
                    ms_since(t0));
    };
    auto failed = [&](const std::string& why) {
        ++h.protocol_errors;
        h.log->info("{} {} repo {}: {}", c.transport, c.peer, c.repo, why);
        return Ending::failed;
    };
    auto stalled = [&] {
        ++h.timeouts;
        h.log->info("{} {} repo {}: request stalled; closed", c.transport, c.peer, c.repo);
        return Ending::stalled;
    };
    if (c.mode != Mode::request) ++h.advertisements;

    if (c.version == 2) {
        UploadPackV2 up(repo, refs);
        if (c.mode != Mode::request) {
            out = UploadPackV2::capabilities();
            if (!co_await reply() || c.mode == Mode::advertise) co_return Ending::done;
        }
        // Each command is a phase: idle_timeout until its first byte, then read_timeout for all of it.
        bool in_command = false;
        ch.phase(h.opts.idle_timeout, "idle");
        while (true) {
            in.erase(0, co_await h.offload([&] { return up.feed(in, out); }));
            if (up.state() == UploadPackV2::State::send_pack) {
                bool hit = false;
                auto p = co_await build(up.job(), hit);
                up.write_pack(*p, out);
                fetched(up.job(), *p, hit);
            } else if (!out.empty() && up.last_command() == "ls-refs") {
                ++h.ls_refs;
            }
            const bool answered = !out.empty();
            if (!co_await reply()) co_return Ending::done;
            if (up.state() == UploadPackV2::State::failed) co_return failed(up.error());
            if (up.state() == UploadPackV2::State::finished) co_return Ending::done;
            if (answered) {  // the next phase: idle, or a pipelined command already started
                in_command = !in.empty();
                ch.phase(in_command ? h.opts.read_timeout : h.opts.idle_timeout, in_command ? "request" : "idle");
            }
            if (!co_await ch.read(in)) co_return ch.timed_out() && in_command ? stalled() : Ending::done;
            if (!in_command) {  // the first byte of the next command starts its phase
                in_command = true;
                ch.phase(h.opts.read_timeout, "request");
            }
        }
    }

    UploadPack up(repo, refs, {.stateless = c.mode != Mode::session, .limits = {}});
    if (c.mode != Mode::request) {
        if (c.mode == Mode::advertise) {
            pkt::write_line(out, "# service=git-upload-pack");
            pkt::write_flush(out);
        }
        out += advertise_refs(refs, c.version == 1, c.mode == Mode::advertise);
        if (!co_await reply() || c.mode == Mode::advertise) co_return Ending::done;
    }
    // The whole negotiation (wants, haves, done) is one phase of read_timeout.
    ch.phase(h.opts.read_timeout, "negotiation");
    auto negotiating = [&] { return up.state() == UploadPack::State::wants || up.state() == UploadPack::State::negotiate; };
    while (negotiating()) {
        in.erase(0, co_await h.offload([&] { return up.feed(in, out); }));
        if (!co_await send()) co_return Ending::done;
        if (!negotiating()) break;
        if (!co_await ch.read(in)) {
            if (ch.timed_out()) co_return stalled();
            // A stateless request ends with its body; a session's client may close after its wants.
            if (c.mode == Mode::request ? in.empty() : !up.wants().empty()) up.end_of_input(out);
            break;
        }
    }
    if (up.state() == UploadPack::State::send_pack) {
        bool hit = false;
        auto p = co_await build(up.job(), hit);
        up.write_pack(*p, out);
        fetched(up.job(), *p, hit);
        co_await reply();
    } else if (up.state() == UploadPack::State::failed) {
        co_await send();
        co_return failed(up.error());
    } else {
        co_await send();
    }
    co_return Ending::done;
}

asio::awaitable<Ending> receive_pack(Service::Impl& h, Channel& ch, const Conversation& c) {
    using Mode = Conversation::Mode;
    const PushLimits limits = push_limits_for(*c.site);
    std::string in, out;
    if (c.mode != Mode::request) {
        auto opened = co_await open_repository(h, c);
        if (!opened) co_return Ending::unavailable;
        if (c.mode == Mode::advertise) {
            pkt::write_line(out, "# service=git-receive-pack");
            pkt::write_flush(out);
        }
        out += advertise_receive(opened->second);
        opened.reset();
        ch.phase(common::phase_deadline(h.opts.read_timeout, out.size(), c.min_rate), "reply too slowly read");
        if (!co_await ch.write(out) || c.mode == Mode::advertise) co_return Ending::done;
        out.clear();
    }
    // The commands and the pack: one phase, at min_rate for the largest pack allowed.
    ch.phase(common::phase_deadline(h.opts.read_timeout, limits.max_pack, c.min_rate), "push too slow");
    ReceivePack rp(limits);
    auto receiving = [&] { return rp.state() == ReceivePack::State::commands || rp.state() == ReceivePack::State::pack; };
    while (receiving()) {
        in.erase(0, rp.feed(in));
        if (!receiving()) break;
        if (!co_await ch.read(in)) {
            if (ch.timed_out()) {
                ++h.timeouts;
                h.log->info("{} {} {}: push stalled or broke; closed", c.transport, c.peer, c.who.label());
                co_return Ending::stalled;
            }
            rp.end_of_input();
            break;
        }
    }
    PushResult result;
    if (rp.state() == ReceivePack::State::failed) {
        result.unpack_error = rp.error();
        result.commands = rp.commands();
        for (auto& cmd : result.commands) cmd.error = "refused";
    } else if (rp.commands().empty()) {
        co_return Ending::done;  // nothing to update
    } else {
        result = co_await h.push(*c.site, c.repo, rp);
    }
    co_await h.audit_push(*c.site, c.repo, c.transport, c.peer, c.who.label(), result);
    if (rp.report_status()) {
        out = report(result, rp.side_band());
        ch.phase(common::phase_deadline(h.opts.read_timeout, out.size(), c.min_rate), "reply too slowly read");
        co_await ch.write(out);
    }
    co_return Ending::done;
}

}  // namespace fleetconf::gitconf
