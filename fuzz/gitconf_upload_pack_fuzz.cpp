// The upload-pack request parsers (v0/v1 stateful and stateless, v2) fed untrusted bytes against a
// small real repository: any input ends in a clean state, an ERR packet, or a pack plan whose
// commits exist. The repository is built once per process in a temporary folder.
#include "fleetconf/gitconf/repo.hpp"
#include "fleetconf/gitconf/upload_pack.hpp"

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

using namespace fleetconf::gitconf;

namespace {
struct World {
    std::filesystem::path dir;
    std::unique_ptr<Repository> repo;
    RefList refs;
    World() {
        char tmpl[] = "/tmp/fleetconf-fuzz-git-XXXXXX";
        dir = ::mkdtemp(tmpl);
        // Fixed times: the same object ids in every run, so the seed corpus can name real commits.
        repo = std::make_unique<Repository>(Repository::create(dir / "r.git", "main", true, {}, Author{"f", "f@f", 1700000000}));
        for (int i = 0; i < 4; ++i)
            repo->put_file("main", "f" + std::to_string(i), std::string(i * 10, 'x'), Author{"f", "f@f", 1700000100 + i * 100}, "c\n");
        refs = repo->refs();
    }
    ~World() { std::filesystem::remove_all(dir); }
};
World& world() {
    static World w;
    return w;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    auto& w = world();
    if (size == 0) return 0;
    const int mode = data[0] % 3;
    const std::string in(reinterpret_cast<const char*>(data) + 1, size - 1);
    std::string out;
    const UploadLimits limits{.max_wants = 16, .max_haves = 64, .max_shallows = 16, .max_walk = 10000};
    if (mode < 2) {
        UploadPack up(*w.repo, w.refs, {.stateless = mode == 1, .limits = limits});
        const auto used = up.feed(in, out);
        if (used > in.size()) std::abort();
        if (mode == 1) up.end_of_input(out);
        if (up.state() == UploadPack::State::send_pack)
            for (const auto& c : up.job().plan.commits)
                if (!w.repo->commit(c)) std::abort();
    } else {
        UploadPackV2 up(*w.repo, w.refs, limits);
        const auto used = up.feed(in, out);
        if (used > in.size()) std::abort();
        if (up.state() == UploadPackV2::State::send_pack)
            for (const auto& c : up.job().plan.commits)
                if (!w.repo->commit(c)) std::abort();
    }
    return 0;
}
