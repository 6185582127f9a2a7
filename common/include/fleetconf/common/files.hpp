// File helpers with the durability and permission rules the daemons rely on.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>

namespace fleetconf::common {

// Reads a whole file if it is at most `limit` bytes. Returns an error message on failure.
std::optional<std::string> read_file_limited(const std::filesystem::path& p, std::size_t limit, std::string& out);

// Writes via a temporary file in the same directory, fsync, rename, fsync of the directory:
// after a crash the file holds either the old or the new content. `mode` applies to the new file.
// What tells one version of a file from another without reading it: device, inode (a rename over it, as
// write_file_atomic does, makes a new one), size, and modification and change times in nanoseconds. Two
// writes within one timestamp tick still differ by inode. nullopt when the file cannot be stat'ed.
struct FileStamp {
    std::uint64_t dev = 0, ino = 0, size = 0;
    std::int64_t mtime_ns = 0, ctime_ns = 0;
    bool operator==(const FileStamp&) const = default;
};
std::optional<FileStamp> file_stamp(const std::filesystem::path& p);

void write_file_atomic(const std::filesystem::path& p, std::span<const std::uint8_t> data, unsigned mode = 0644);

// Reads a secret file: must be a regular file not readable or writable by group or others.
// Returns an error message (naming the file and the fix) on failure.
std::optional<std::string> read_secret_file(const std::filesystem::path& p, std::size_t limit, std::string& out);

// A one-line secret (a password, a token, a raw key) from a secret file as read_secret_file reads it,
// without its line end: Trim::whitespace drops trailing "\n", "\r" and spaces; Trim::one_newline drops a
// single trailing "\n" only (the secret is raw bytes). An empty secret is an error too.
enum class Trim { whitespace, one_newline };
std::optional<std::string> read_secret_line(const std::filesystem::path& p, std::string& out, Trim trim = Trim::whitespace,
                                            std::size_t limit = 4096);

// The pid file of a running daemon, so that one data directory has one server and `fleetconf reload` can
// find it: hold_pid_file creates it (mode 0644), takes an exclusive flock for the life of the returned
// descriptor (keep it open; the lock goes with the process) and writes the pid. It fails with a message
// naming the other process when one holds the lock. locked_pid reads the pid while its owner holds the lock,
// nullopt when nothing runs (a stale file from a crash does not count).
int hold_pid_file(const std::filesystem::path& p, std::string& error);
std::optional<long> locked_pid(const std::filesystem::path& p);

// Creates the directory (and parents) with the given mode if missing.
void ensure_directory(const std::filesystem::path& p, unsigned mode = 0750);

}  // namespace fleetconf::common
