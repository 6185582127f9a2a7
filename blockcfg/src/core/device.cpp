#include "fleetconf/blockcfg/device.hpp"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <system_error>

namespace fleetconf::blockcfg {
namespace {

[[noreturn]] void throw_errno(const std::filesystem::path& p, const char* what) {
    throw std::system_error(errno, std::generic_category(), p.string() + ": " + what);
}

void check_span(std::uint32_t ss, std::uint64_t sectors, std::uint64_t sector, std::size_t len) {
    if (len % ss != 0) throw std::invalid_argument("device i/o size is not a multiple of the sector size");
    if (sector > sectors || len / ss > sectors - sector) throw std::out_of_range("device i/o past the end");
}

}  // namespace

std::unique_ptr<FileDevice> FileDevice::open(const std::filesystem::path& p, std::uint32_t sector_size, bool read_only) {
    int fd = ::open(p.c_str(), (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
    if (fd < 0) throw_errno(p, "cannot open device");
    auto fail = [&](const char* what) {
        int e = errno;
        ::close(fd);
        errno = e;
        throw_errno(p, what);
    };
    bool unlocked = false;
    if (::flock(fd, (read_only ? LOCK_SH : LOCK_EX) | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK && read_only) {
            unlocked = true;  // a reader next to the editor (see device.hpp)
        } else if (errno == EWOULDBLOCK) {
            ::close(fd);
            throw std::system_error(EBUSY, std::generic_category(), p.string() + ": device is in use by another fleetconf process");
        } else {
            fail("cannot lock device");
        }
    }
    struct stat st {};
    if (::fstat(fd, &st) != 0) fail("cannot stat device");
    std::uint64_t bytes = 0;
    if (S_ISBLK(st.st_mode)) {
        int ss = 0;
        if (::ioctl(fd, BLKSSZGET, &ss) != 0) fail("BLKSSZGET failed");
        if (sector_size == 0) sector_size = static_cast<std::uint32_t>(ss);
        if (::ioctl(fd, BLKGETSIZE64, &bytes) != 0) fail("BLKGETSIZE64 failed");
    } else if (S_ISREG(st.st_mode)) {
        bytes = static_cast<std::uint64_t>(st.st_size);
        if (sector_size == 0) {
            // A fleetconf header records its sector size at offset 12 (see docs/blockcfg-format.md).
            std::uint8_t head[16] = {};
            sector_size = 512;
            if (::pread(fd, head, sizeof head, 0) == static_cast<ssize_t>(sizeof head) && std::memcmp(head, "FLEETCFG", 8) == 0) {
                const std::uint32_t s =
                    std::uint32_t{head[12]} << 24 | std::uint32_t{head[13]} << 16 | std::uint32_t{head[14]} << 8 | head[15];
                if (s == 512 || s == 4096) sector_size = s;
            }
        }
    } else {
        ::close(fd);
        throw std::runtime_error(p.string() + ": not a regular file or block device");
    }
    if (sector_size != 512 && sector_size != 4096) {
        ::close(fd);
        throw std::runtime_error(p.string() + ": unsupported sector size " + std::to_string(sector_size) + " (512 or 4096)");
    }
    if (bytes % sector_size != 0) {
        ::close(fd);
        throw std::runtime_error(p.string() + ": size " + std::to_string(bytes) + " is not a multiple of the sector size " +
                                 std::to_string(sector_size));
    }
    auto dev = std::unique_ptr<FileDevice>(new FileDevice(fd, p, sector_size, bytes / sector_size));
    dev->unlocked_ = unlocked;
    return dev;
}

void FileDevice::create_image(const std::filesystem::path& p, std::uint64_t bytes) {
    int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) throw_errno(p, "cannot create image");
    if (::ftruncate(fd, static_cast<off_t>(bytes)) != 0 || ::fsync(fd) != 0) {
        int e = errno;
        ::close(fd);
        ::unlink(p.c_str());
        errno = e;
        throw_errno(p, "cannot size image");
    }
    ::close(fd);
}

FileDevice::~FileDevice() { ::close(fd_); }

void FileDevice::read(std::uint64_t sector, std::span<std::uint8_t> out) {
    check_span(sector_size_, sectors_, sector, out.size());
    std::size_t done = 0;
    while (done < out.size()) {
        ssize_t n = ::pread(fd_, out.data() + done, out.size() - done, static_cast<off_t>(sector * sector_size_ + done));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw_errno(path_, "read failed");
        if (n == 0) throw std::system_error(EIO, std::generic_category(), path_.string() + ": short read");
        done += static_cast<std::size_t>(n);
    }
}

void FileDevice::write(std::uint64_t sector, std::span<const std::uint8_t> data) {
    check_span(sector_size_, sectors_, sector, data.size());
    std::size_t done = 0;
    while (done < data.size()) {
        ssize_t n = ::pwrite(fd_, data.data() + done, data.size() - done, static_cast<off_t>(sector * sector_size_ + done));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw_errno(path_, "write failed");
        done += static_cast<std::size_t>(n);
    }
}

void FileDevice::sync() {
    if (::fdatasync(fd_) != 0) throw_errno(path_, "fdatasync failed");
}

void MemoryDevice::read(std::uint64_t sector, std::span<std::uint8_t> out) {
    check_span(sector_size_, sectors(), sector, out.size());
    std::copy_n(data_.begin() + static_cast<std::ptrdiff_t>(sector * sector_size_), out.size(), out.begin());
}

void MemoryDevice::write(std::uint64_t sector, std::span<const std::uint8_t> data) {
    check_span(sector_size_, sectors(), sector, data.size());
    std::copy(data.begin(), data.end(), data_.begin() + static_cast<std::ptrdiff_t>(sector * sector_size_));
}

void PowerLossDevice::write(std::uint64_t sector, std::span<const std::uint8_t> data) {
    if (lost_) return;
    if (writes_left_) {
        if (*writes_left_ == 0) {
            lost_ = true;
            return;
        }
        --*writes_left_;
    }
    if (bytes_left_ && *bytes_left_ < data.size()) {
        // Persist the prefix that made it, rounded into the sectors it touches (the rest of a torn
        // sector keeps its old content).
        const std::size_t keep = static_cast<std::size_t>(*bytes_left_);
        const std::uint32_t ss = inner_.sector_size();
        const std::size_t span_len = (keep + ss - 1) / ss * ss;
        if (span_len > 0) {
            std::vector<std::uint8_t> buf(span_len);
            inner_.read(sector, buf);
            std::copy_n(data.begin(), keep, buf.begin());
            inner_.write(sector, buf);
        }
        bytes_left_ = 0;
        lost_ = true;
        return;
    }
    if (bytes_left_) *bytes_left_ -= data.size();
    inner_.write(sector, data);
}

bool CrashDevice::tick() {
    if (crashed_) return false;
    if (crash_at_ && ops_ == *crash_at_) {
        crashed_ = true;
        return false;
    }
    ++ops_;
    return true;
}

void CrashDevice::read(std::uint64_t sector, std::span<std::uint8_t> out) {
    inner_.read(sector, out);
    const std::uint32_t ss = inner_.sector_size();
    for (const auto& [s, data] : pending_) {  // read your own (cached) writes
        const std::uint64_t a = std::max(s, sector), b = std::min(s + data.size() / ss, sector + out.size() / ss);
        for (std::uint64_t x = a; x < b; ++x)
            std::copy_n(data.begin() + static_cast<std::ptrdiff_t>((x - s) * ss), ss,
                        out.begin() + static_cast<std::ptrdiff_t>((x - sector) * ss));
    }
}

void CrashDevice::write(std::uint64_t sector, std::span<const std::uint8_t> data) {
    if (!tick()) return;
    pending_.emplace_back(sector, std::vector<std::uint8_t>(data.begin(), data.end()));
}

void CrashDevice::sync() {
    if (!tick()) return;
    persist(~std::uint64_t{0});
    inner_.sync();
}

void CrashDevice::persist(std::uint64_t mask) {
    for (std::size_t i = 0; i < pending_.size(); ++i)
        if (i < 64 && (mask >> i & 1)) inner_.write(pending_[i].first, pending_[i].second);
    pending_.clear();
}

void FailingDevice::write(std::uint64_t sector, std::span<const std::uint8_t> data) {
    if (++writes_ == fail_write_) throw std::system_error(EIO, std::generic_category(), "injected write failure");
    inner_.write(sector, data);
}

void FailingDevice::sync() {
    if (++syncs_ == fail_sync_) throw std::system_error(EIO, std::generic_category(), "injected sync failure");
    inner_.sync();
}

}  // namespace fleetconf::blockcfg
