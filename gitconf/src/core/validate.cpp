#include "fleetconf/gitconf/validate.hpp"

#include "fleetconf/common/text.hpp"
#include "fleetconf/gitconf/receive_pack.hpp"

#include <git2.h>

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

namespace fleetconf::gitconf {

namespace {

// The unprivileged user a validator runs as when fleetconf runs as root: "nobody" (65534 if unknown).
struct Unprivileged {
    uid_t uid = 65534;
    gid_t gid = 65534;
};
Unprivileged unprivileged() {
    Unprivileged u;
    passwd pw{};
    passwd* found = nullptr;
    char buf[1024];
    if (::getpwnam_r("nobody", &pw, buf, sizeof buf, &found) == 0 && found) {
        u.uid = found->pw_uid;
        u.gid = found->pw_gid;
    }
    return u;
}

struct Checkout {
    git_repository* repo;
    bool chown_to = false;
    Unprivileged owner;
    std::size_t files = 0;
    std::string error;
};

// Writes `tree` into the directory `dirfd` with openat/mkdirat only: regular files and directories, never a
// link, never outside. A symbolic link (accepted only with allow_symlinks) becomes a regular file holding
// its target, as git writes it where links are not supported; gitlinks are skipped.
bool write_tree(Checkout& c, const git_tree* tree, int dirfd, int depth) {
    if (depth > 64) return (c.error = "validator: trees nested too deeply"), false;
    const auto n = git_tree_entrycount(tree);
    for (std::size_t i = 0; i < n; ++i) {
        const git_tree_entry* e = git_tree_entry_byindex(tree, i);
        const char* name = git_tree_entry_name(e);
        if (!tree_entry_name_ok(name)) return (c.error = "validator: unacceptable file name in the tree"), false;
        if (++c.files > 100000) return (c.error = "validator: too many files to check out"), false;
        const auto mode = git_tree_entry_filemode(e);
        if (mode == GIT_FILEMODE_COMMIT) continue;
        if (mode == GIT_FILEMODE_TREE) {
            if (::mkdirat(dirfd, name, 0755) != 0)
                return (c.error = std::string("validator: mkdir ") + name + ": " + std::strerror(errno)), false;
            const int sub = ::openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub < 0) return (c.error = std::string("validator: open ") + name + ": " + std::strerror(errno)), false;
            if (c.chown_to && ::fchown(sub, c.owner.uid, c.owner.gid) != 0) {
                ::close(sub);
                return (c.error = "validator: chown failed"), false;
            }
            git_tree* child = nullptr;
            bool ok = git_tree_lookup(&child, c.repo, git_tree_entry_id(e)) == 0;
            if (!ok) c.error = "validator: missing tree";
            else ok = write_tree(c, child, sub, depth + 1);
            git_tree_free(child);
            ::close(sub);
            if (!ok) return false;
            continue;
        }
        git_blob* blob = nullptr;
        if (git_blob_lookup(&blob, c.repo, git_tree_entry_id(e)) < 0)
            return (c.error = std::string("validator: missing blob ") + name), false;
        const mode_t perm = mode == GIT_FILEMODE_BLOB_EXECUTABLE ? 0755 : 0644;
        const int fd = ::openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, perm);
        bool ok = fd >= 0;
        if (!ok) c.error = std::string("validator: create ") + name + ": " + std::strerror(errno);
        const auto* data = static_cast<const char*>(git_blob_rawcontent(blob));
        std::size_t left = static_cast<std::size_t>(git_blob_rawsize(blob)), off = 0;
        while (ok && left > 0) {
            const auto w = ::write(fd, data + off, left);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) {
                c.error = std::string("validator: write ") + name + " failed";
                ok = false;
                break;
            }
            off += static_cast<std::size_t>(w);
            left -= static_cast<std::size_t>(w);
        }
        if (ok && c.chown_to && ::fchown(fd, c.owner.uid, c.owner.gid) != 0) {
            c.error = "validator: chown failed";
            ok = false;
        }
        if (fd >= 0) ::close(fd);
        git_blob_free(blob);
        if (!ok) return false;
    }
    return true;
}

}  // namespace

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
    const std::string target = dir.string();

    // The checkout, written by hand (see write_tree): libgit2's checkout would create the links a push holds.
    const bool drop = ::geteuid() == 0;
    Checkout co{repo.raw(), drop, unprivileged(), 0, {}};
    {
        git_oid id;
        std::memcpy(id.id, commit.bytes.data(), 20);
        git_commit* c = nullptr;
        if (git_commit_lookup(&c, repo.raw(), &id) < 0) return "validator: commit " + commit.hex() + " is missing";
        git_tree* tree = nullptr;
        const int rc = git_commit_tree(&tree, c);
        git_commit_free(c);
        if (rc < 0) return "validator: the tree of " + commit.hex() + " is missing";
        const int dfd = ::open(target.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        bool ok = dfd >= 0 && (!drop || ::fchown(dfd, co.owner.uid, co.owner.gid) == 0);
        if (ok) ok = write_tree(co, tree, dfd, 0);
        else co.error = "validator: cannot prepare the temporary folder";
        if (dfd >= 0) ::close(dfd);
        git_tree_free(tree);
        if (!ok) return co.error;
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
        // Its own process group (killed whole on timeout), only descriptors 0-2, in the checkout, without
        // privileges: as "nobody" when fleetconf runs as root, and never gaining any (no setuid programs).
        ::setpgid(0, 0);
        const int devnull = ::open("/dev/null", O_RDONLY);
        ::dup2(devnull, 0);
        ::dup2(out[1], 1);
        ::dup2(out[1], 2);
        ::close_range(3, ~0U, 0);
        if (::chdir(target.c_str()) != 0) ::_exit(126);
        if (drop && (::setgroups(0, nullptr) != 0 || ::setgid(co.owner.gid) != 0 || ::setuid(co.owner.uid) != 0)) ::_exit(126);
        ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
        ::execve(argv[0], argv.data(), envp.data());
        // The first line of the output is the reason the pusher sees.
        const int err = errno;
        const char* who = drop ? " (as the unprivileged user nobody)" : "";
        ::dprintf(1, "cannot run %s%s: %s\n", argv[0], who, std::strerror(err));
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
    ::kill(-pid, SIGKILL);  // whatever it left running in its group
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return {};
    // At most 200 bytes of the first line it printed, escaped (common/text.hpp) for the pusher's terminal.
    std::string line = output.substr(0, output.find('\n'));
    if (line.size() > 200) line.resize(200);
    line = common::printable(line);
    if (!line.empty()) return "validator: " + line;
    if (WIFEXITED(status)) return "validator exited with status " + std::to_string(WEXITSTATUS(status));
    return "validator killed by signal " + std::to_string(WTERMSIG(status));
}

}  // namespace fleetconf::gitconf
