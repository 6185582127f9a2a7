#include "fleetconf/common/files.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <system_error>

namespace fleetconf::common {
namespace {

struct Fd {
    int fd = -1;
    ~Fd() {
        if (fd >= 0) ::close(fd);
    }
};

std::string errno_text(int e) { return std::strerror(e); }

}  // namespace

std::optional<std::string> read_file_limited(const std::filesystem::path& p, std::size_t limit, std::string& out) {
    Fd f{::open(p.c_str(), O_RDONLY | O_CLOEXEC)};
    if (f.fd < 0) return p.string() + ": cannot open: " + errno_text(errno);
    struct stat st {};
    if (::fstat(f.fd, &st) != 0) return p.string() + ": cannot stat: " + errno_text(errno);
    if (!S_ISREG(st.st_mode)) return p.string() + ": not a regular file";
    if (static_cast<std::uint64_t>(st.st_size) > limit)
        return p.string() + ": file is " + std::to_string(st.st_size) + " bytes, at most " + std::to_string(limit) + " allowed";
    out.clear();
    char buf[65536];
    while (true) {
        ssize_t n = ::read(f.fd, buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR) continue;
            return p.string() + ": read failed: " + errno_text(errno);
        }
        if (n == 0) break;
        if (out.size() + static_cast<std::size_t>(n) > limit) return p.string() + ": file grew past " + std::to_string(limit) + " bytes";
        out.append(buf, static_cast<std::size_t>(n));
    }
    return std::nullopt;
}

std::optional<FileStamp> file_stamp(const std::filesystem::path& p) {
    struct stat st {};
    if (::stat(p.c_str(), &st) != 0) return std::nullopt;
    return FileStamp{static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino), static_cast<std::uint64_t>(st.st_size),
                     std::int64_t{st.st_mtim.tv_sec} * 1'000'000'000 + st.st_mtim.tv_nsec,
                     std::int64_t{st.st_ctim.tv_sec} * 1'000'000'000 + st.st_ctim.tv_nsec};
}

void write_file_atomic(const std::filesystem::path& p, std::span<const std::uint8_t> data, unsigned mode) {
    auto dir = p.parent_path();
    if (dir.empty()) dir = ".";
    std::string tmp_name(".");
    tmp_name.append(p.filename().string()).append(".tmp");
    auto tmp = dir / tmp_name;
    auto fail = [&](const char* what) {
        int e = errno;
        ::unlink(tmp.c_str());
        throw std::system_error(e, std::generic_category(), p.string() + ": " + what);
    };
    {
        Fd f{::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)};
        if (f.fd < 0) fail("cannot create temporary file");
        ::fchmod(f.fd, mode);  // O_CREAT's mode is filtered by umask; secrets must get exactly `mode`
        std::size_t off = 0;
        while (off < data.size()) {
            ssize_t n = ::write(f.fd, data.data() + off, data.size() - off);
            if (n < 0) {
                if (errno == EINTR) continue;
                fail("write failed");
            }
            off += static_cast<std::size_t>(n);
        }
        if (::fsync(f.fd) != 0) fail("fsync failed");
    }
    if (::rename(tmp.c_str(), p.c_str()) != 0) fail("rename failed");
    Fd d{::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)};
    if (d.fd >= 0) ::fsync(d.fd);
}

std::optional<std::string> read_secret_file(const std::filesystem::path& p, std::size_t limit, std::string& out) {
    struct stat st {};
    if (::stat(p.c_str(), &st) != 0) return p.string() + ": cannot read: " + errno_text(errno);
    if (!S_ISREG(st.st_mode)) return p.string() + ": not a regular file";
    if ((st.st_mode & 077) != 0)
        return p.string() + ": secret file is accessible by group or others (mode " + std::to_string((st.st_mode >> 6) & 7) +
               std::to_string((st.st_mode >> 3) & 7) + std::to_string(st.st_mode & 7) + "); run chmod 600 " + p.string();
    return read_file_limited(p, limit, out);
}

std::optional<std::string> read_secret_line(const std::filesystem::path& p, std::string& out, Trim trim, std::size_t limit) {
    if (auto err = read_secret_file(p, limit, out)) return err;
    if (trim == Trim::one_newline) {
        if (!out.empty() && out.back() == '\n') out.pop_back();
    } else {
        while (!out.empty() && (out.back() == '\n' || out.back() == '\r' || out.back() == ' ')) out.pop_back();
    }
    if (out.empty()) return p.string() + ": empty secret";
    return std::nullopt;
}

int hold_pid_file(const std::filesystem::path& p, std::string& error) {
    const int fd = ::open(p.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        error = p.string() + ": cannot open: " + errno_text(errno);
        return -1;
    }
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
        const int e = errno;
        ::close(fd);
        if (e == EWOULDBLOCK) {
            const auto other = locked_pid(p);
            error = "another fleetconf server (pid " + (other ? std::to_string(*other) : std::string("?")) +
                    ") uses this data directory (" + p.string() + " is locked)";
        } else {
            error = p.string() + ": cannot lock: " + errno_text(e);
        }
        return -1;
    }
    const std::string text = std::to_string(::getpid()) + "\n";
    if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, text.data(), text.size(), 0) != static_cast<ssize_t>(text.size())) {
        error = p.string() + ": cannot write: " + errno_text(errno);
        ::close(fd);
        return -1;
    }
    return fd;
}

std::optional<long> locked_pid(const std::filesystem::path& p) {
    const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return std::nullopt;
    if (::flock(fd, LOCK_SH | LOCK_NB) == 0) {  // nobody holds it: nothing runs
        ::close(fd);
        return std::nullopt;
    }
    char buf[32] = {};
    const auto n = ::pread(fd, buf, sizeof buf - 1, 0);
    ::close(fd);
    if (n <= 0) return std::nullopt;
    char* end = nullptr;
    const long pid = std::strtol(buf, &end, 10);
    if (pid <= 0 || end == buf) return std::nullopt;
    return pid;
}

void ensure_directory(const std::filesystem::path& p, unsigned mode) {
    std::error_code ec;
    if (std::filesystem::is_directory(p, ec)) return;
    if (p.has_parent_path() && p.parent_path() != p) ensure_directory(p.parent_path(), mode);
    if (::mkdir(p.c_str(), mode) != 0 && errno != EEXIST)
        throw std::system_error(errno, std::generic_category(), p.string() + ": cannot create directory");
}

}  // namespace fleetconf::common
