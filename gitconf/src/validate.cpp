#include "fleetconf/gitconf/validate.hpp"

#include <git2.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

namespace fleetconf::gitconf {

std::string run_validator(Repository& repo, const Oid& commit, const ValidatorRun& run) {
    if (run.argv.empty()) return {};
    const auto base = run.scratch.empty() ? std::filesystem::temp_directory_path() : run.scratch;
    std::error_code ec;
    std::filesystem::create_directories(base, ec);
    std::string tmpl = (base / "fleetconf-validate-XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) return "validator: cannot create a temporary folder";
    const std::filesystem::path dir = tmpl;
    struct Remove {
        std::filesystem::path p;
        ~Remove() {
            std::error_code e;
            std::filesystem::remove_all(p, e);
        }
    } remove{dir};

    // check the tree out (libgit2 writes into target_directory even for a bare repository)
    git_oid id;
    std::memcpy(id.id, commit.bytes.data(), 20);
    git_commit* c = nullptr;
    if (git_commit_lookup(&c, repo.raw(), &id) < 0) return "validator: commit " + commit.hex() + " is missing";
    git_checkout_options opts;
    git_checkout_options_init(&opts, GIT_CHECKOUT_OPTIONS_VERSION);
    opts.checkout_strategy = GIT_CHECKOUT_FORCE | GIT_CHECKOUT_DONT_UPDATE_INDEX;
    const std::string target = dir.string();
    opts.target_directory = target.c_str();
    const int rc = git_checkout_tree(repo.raw(), reinterpret_cast<git_object*>(c), &opts);
    git_commit_free(c);
    if (rc < 0) {
        const git_error* e = git_error_last();
        return std::string("validator: checkout failed: ") + (e ? e->message : "?");
    }

    int out[2];
    if (::pipe2(out, O_CLOEXEC) < 0) return "validator: pipe failed";
    std::vector<std::string> env_strings = {"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/nonexistent", "LANG=C.UTF-8"};
    for (const auto& [k, v] : run.env) env_strings.push_back(k + "=" + v);
    std::vector<char*> envp, argv;
    for (auto& s : env_strings) envp.push_back(s.data());
    envp.push_back(nullptr);
    auto args = run.argv;
    for (auto& s : args) argv.push_back(s.data());
    argv.push_back(nullptr);
    const pid_t pid = ::fork();
    if (pid < 0) {
        ::close(out[0]);
        ::close(out[1]);
        return "validator: fork failed";
    }
    if (pid == 0) {
        ::setpgid(0, 0);
        const int devnull = ::open("/dev/null", O_RDONLY);
        ::dup2(devnull, 0);
        ::dup2(out[1], 1);
        ::dup2(out[1], 2);
        if (::chdir(target.c_str()) != 0) ::_exit(126);
        ::execve(argv[0], argv.data(), envp.data());
        ::_exit(127);
    }
    ::close(out[1]);
    std::string output;
    const auto deadline = std::chrono::steady_clock::now() + run.timeout;
    bool timed_out = false;
    while (true) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
        if (left <= 0) {
            timed_out = true;
            break;
        }
        pollfd p{out[0], POLLIN, 0};
        const int n = ::poll(&p, 1, static_cast<int>(std::min<long long>(left, 1000)));
        if (n < 0 && errno != EINTR) break;
        if (n > 0) {
            char buf[4096];
            const auto r = ::read(out[0], buf, sizeof buf);
            if (r <= 0) break;  // EOF: the validator (and its children) closed the pipe
            if (output.size() < 4096) output.append(buf, static_cast<std::size_t>(r));
        }
    }
    ::close(out[0]);
    int status = 0;
    if (timed_out) {
        ::kill(-pid, SIGKILL);
        ::waitpid(pid, &status, 0);
        return "validator timed out after " + std::to_string(run.timeout.count() / 1000) + " s";
    }
    // EOF came; give the process the rest of the deadline to exit
    while (::waitpid(pid, &status, WNOHANG) == 0) {
        if (std::chrono::steady_clock::now() >= deadline) {
            ::kill(-pid, SIGKILL);
            ::waitpid(pid, &status, 0);
            return "validator timed out after " + std::to_string(run.timeout.count() / 1000) + " s";
        }
        ::usleep(2000);
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return {};
    std::string line = output.substr(0, output.find('\n'));
    if (line.size() > 200) line.resize(200);
    for (auto& ch : line)
        if (static_cast<unsigned char>(ch) < 0x20) ch = ' ';
    if (!line.empty()) return "validator: " + line;
    if (WIFEXITED(status)) return "validator exited with status " + std::to_string(WEXITSTATUS(status));
    return "validator killed by signal " + std::to_string(WTERMSIG(status));
}

}  // namespace fleetconf::gitconf
