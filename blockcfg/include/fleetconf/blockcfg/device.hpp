// Block devices for the store: a file or block device, an in-memory device, and a fault-injecting
// wrapper that simulates power loss. I/O failures throw std::system_error.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <vector>

namespace fleetconf::blockcfg {

class Device {
public:
    virtual ~Device() = default;
    [[nodiscard]] virtual std::uint32_t sector_size() const = 0;
    [[nodiscard]] virtual std::uint64_t sectors() const = 0;
    // Reads/writes whole sectors starting at `sector`; sizes must be multiples of sector_size().
    virtual void read(std::uint64_t sector, std::span<std::uint8_t> out) = 0;
    virtual void write(std::uint64_t sector, std::span<const std::uint8_t> data) = 0;
    // Makes every completed write durable (fdatasync).
    virtual void sync() = 0;
};

class FileDevice final : public Device {
public:
    // Opens an image file or block device for reading and writing and takes an exclusive lock on it
    // (one editor per device). sector_size 0 means: BLKSSZGET for block devices; for files, the size
    // recorded in an existing fleetconf header, else 512. read_only takes a shared lock; when an editor
    // holds the device (a running server) it reads without one (`shared_with_editor()`): the slots'
    // checksums tell a generation that was being overwritten meanwhile, so what it returns is intact.
    static std::unique_ptr<FileDevice> open(const std::filesystem::path& p, std::uint32_t sector_size = 0, bool read_only = false);
    // Creates a zero-filled image file of `bytes` bytes (refuses to overwrite an existing file).
    static void create_image(const std::filesystem::path& p, std::uint64_t bytes);
    ~FileDevice() override;

    std::uint32_t sector_size() const override { return sector_size_; }
    std::uint64_t sectors() const override { return sectors_; }
    void read(std::uint64_t sector, std::span<std::uint8_t> out) override;
    void write(std::uint64_t sector, std::span<const std::uint8_t> data) override;
    void sync() override;
    [[nodiscard]] const std::filesystem::path& path() const { return path_; }
    // Read-only, opened while another process edits the device.
    [[nodiscard]] bool shared_with_editor() const { return unlocked_; }

private:
    FileDevice(int fd, std::filesystem::path p, std::uint32_t ss, std::uint64_t sectors)
        : fd_(fd), path_(std::move(p)), sector_size_(ss), sectors_(sectors) {}
    int fd_;
    std::filesystem::path path_;
    std::uint32_t sector_size_;
    std::uint64_t sectors_;
    bool unlocked_ = false;
};

class MemoryDevice : public Device {
public:
    MemoryDevice(std::uint32_t sector_size, std::uint64_t sectors) : sector_size_(sector_size), data_(sector_size * sectors, 0) {}
    std::uint32_t sector_size() const override { return sector_size_; }
    std::uint64_t sectors() const override { return data_.size() / sector_size_; }
    void read(std::uint64_t sector, std::span<std::uint8_t> out) override;
    void write(std::uint64_t sector, std::span<const std::uint8_t> data) override;
    void sync() override { ++syncs_; }
    std::vector<std::uint8_t>& bytes() { return data_; }
    [[nodiscard]] std::uint64_t syncs() const { return syncs_; }

private:
    std::uint32_t sector_size_;
    std::vector<std::uint8_t> data_;
    std::uint64_t syncs_ = 0;
};

// Simulates power loss: after `byte_budget` bytes (or `write_budget` write calls) have been written,
// nothing more reaches the underlying device: the write that crosses the byte budget is cut at that
// byte, later writes are dropped. Writes still "succeed", as they would into a volatile cache.
class PowerLossDevice final : public Device {
public:
    PowerLossDevice(Device& inner, std::optional<std::uint64_t> byte_budget, std::optional<std::uint64_t> write_budget)
        : inner_(inner), bytes_left_(byte_budget), writes_left_(write_budget) {}
    std::uint32_t sector_size() const override { return inner_.sector_size(); }
    std::uint64_t sectors() const override { return inner_.sectors(); }
    void read(std::uint64_t sector, std::span<std::uint8_t> out) override { inner_.read(sector, out); }
    void write(std::uint64_t sector, std::span<const std::uint8_t> data) override;
    void sync() override { inner_.sync(); }
    [[nodiscard]] bool power_lost() const { return lost_; }

private:
    Device& inner_;
    std::optional<std::uint64_t> bytes_left_;
    std::optional<std::uint64_t> writes_left_;
    bool lost_ = false;
};

// Simulates a crash with a volatile write cache that may reorder: writes are held until sync().
// When the `crash_at`-th operation (write or sync, counting from 0) is reached, everything from then on
// is dropped; the test then chooses which of the pending (unsynced) writes reached the medium.
class CrashDevice final : public Device {
public:
    CrashDevice(Device& inner, std::optional<std::uint64_t> crash_at) : inner_(inner), crash_at_(crash_at) {}
    std::uint32_t sector_size() const override { return inner_.sector_size(); }
    std::uint64_t sectors() const override { return inner_.sectors(); }
    void read(std::uint64_t sector, std::span<std::uint8_t> out) override;
    void write(std::uint64_t sector, std::span<const std::uint8_t> data) override;
    void sync() override;
    [[nodiscard]] std::uint64_t operations() const { return ops_; }
    [[nodiscard]] std::size_t pending() const { return pending_.size(); }
    // Applies the pending writes selected by the bits of `mask` (bit i = i-th pending write).
    void persist(std::uint64_t mask);

private:
    bool tick();
    Device& inner_;
    std::optional<std::uint64_t> crash_at_;
    std::uint64_t ops_ = 0;
    bool crashed_ = false;
    std::vector<std::pair<std::uint64_t, std::vector<std::uint8_t>>> pending_;
};

// Fails (throws EIO) on the n-th write call or sync call, counting from 1; 0 disables.
class FailingDevice final : public Device {
public:
    FailingDevice(Device& inner, std::uint64_t fail_write, std::uint64_t fail_sync)
        : inner_(inner), fail_write_(fail_write), fail_sync_(fail_sync) {}
    std::uint32_t sector_size() const override { return inner_.sector_size(); }
    std::uint64_t sectors() const override { return inner_.sectors(); }
    void read(std::uint64_t sector, std::span<std::uint8_t> out) override { inner_.read(sector, out); }
    void write(std::uint64_t sector, std::span<const std::uint8_t> data) override;
    void sync() override;

private:
    Device& inner_;
    std::uint64_t fail_write_, fail_sync_;
    std::uint64_t writes_ = 0, syncs_ = 0;
};

}  // namespace fleetconf::blockcfg
