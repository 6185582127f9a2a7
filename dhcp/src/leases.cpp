#include "fleetconf/dhcp/leases.hpp"

#include "fleetconf/common/crypto.hpp"
#include "fleetconf/common/files.hpp"

#include <nlohmann/json.hpp>
#include <zlib.h>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <stdexcept>
#include <system_error>

namespace fleetconf::dhcp {

using common::Ipv4;

std::string_view to_string(LeaseState s) {
    switch (s) {
        case LeaseState::offered: return "offered";
        case LeaseState::bound: return "bound";
        case LeaseState::released: return "released";
        case LeaseState::declined: return "declined";
    }
    return "?";
}

std::optional<LeaseState> lease_state_from(std::string_view s) {
    for (auto st : {LeaseState::offered, LeaseState::bound, LeaseState::released, LeaseState::declined})
        if (to_string(st) == s) return st;
    return std::nullopt;
}

const Lease* MemoryLeaseStore::by_address(Ipv4 a) const {
    auto it = by_addr_.find(a);
    return it == by_addr_.end() ? nullptr : &it->second;
}

const Lease* MemoryLeaseStore::by_client(const Bytes& client) const {
    if (client.empty()) return nullptr;
    auto it = by_client_.find(key(client));
    return it == by_client_.end() ? nullptr : by_address(it->second);
}

std::optional<Ipv4> MemoryLeaseStore::highest_in(Ipv4 first, Ipv4 last) const {
    auto it = by_addr_.upper_bound(last);
    if (it == by_addr_.begin()) return std::nullopt;
    --it;
    if (it->first < first) return std::nullopt;
    return it->first;
}

void MemoryLeaseStore::apply_one(const LeaseChange& c) {
    const Ipv4 a = c.lease.address;
    if (auto it = by_addr_.find(a); it != by_addr_.end()) {
        if (auto ci = by_client_.find(key(it->second.client)); ci != by_client_.end() && ci->second == a) by_client_.erase(ci);
        by_addr_.erase(it);
    }
    if (c.remove) return;
    if (!c.lease.client.empty()) {
        // One address per client: a new binding replaces the client's previous record.
        if (auto ci = by_client_.find(key(c.lease.client)); ci != by_client_.end() && ci->second != a) by_addr_.erase(ci->second);
        by_client_[key(c.lease.client)] = a;
    }
    by_addr_[a] = c.lease;
}

void MemoryLeaseStore::apply(const std::vector<LeaseChange>& changes) {
    for (const auto& c : changes) apply_one(c);
}

std::vector<Lease> MemoryLeaseStore::all() const {
    std::vector<Lease> v;
    v.reserve(by_addr_.size());
    for (const auto& [a, l] : by_addr_) v.push_back(l);
    return v;
}

// ---- journal ----

namespace {

// A JSON string literal (quotes, escapes; invalid UTF-8 replaced by U+FFFD as nlohmann's `replace` does).
void append_json_string(std::string& out, const std::string& s) {
    bool plain = true;
    for (unsigned char ch : s)
        if (ch < 0x20 || ch == '"' || ch == '\\' || ch >= 0x80) {
            plain = false;
            break;
        }
    if (plain) {
        out += '"';
        out += s;
        out += '"';
    } else {
        out += nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    }
}

}  // namespace

// The same bytes nlohmann::ordered_json would write for these keys in this order, without building a
// document per record (this runs once per lease change on the packet path).
std::string JournalLeaseStore::encode_record(const LeaseChange& c) {
    std::string body;
    body.reserve(160);
    body += "{\"a\":\"";
    body += c.lease.address.to_string();
    body += '"';
    if (c.remove) {
        body += ",\"remove\":true}";
    } else {
        body += ",\"c\":\"";
        body += common::to_hex(c.lease.client);
        body += "\",\"m\":\"";
        body += c.lease.mac.to_string();
        body += "\",\"h\":";
        append_json_string(body, c.lease.hostname);
        body += ",\"n\":";
        append_json_string(body, c.lease.network);
        body += ",\"s\":\"";
        body += to_string(c.lease.state);
        body += "\",\"e\":";
        body += std::to_string(c.lease.expires);
        if (!c.lease.fqdn.empty()) {
            body += ",\"f\":";
            append_json_string(body, c.lease.fqdn);
        }
        body += '}';
    }
    const auto crc = crc32(0L, reinterpret_cast<const Bytef*>(body.data()), static_cast<uInt>(body.size()));
    char head[10];
    std::snprintf(head, sizeof head, "%08lx ", static_cast<unsigned long>(crc));
    std::string line;
    line.reserve(body.size() + 10);
    line.append(head, 9);
    line += body;
    line += '\n';
    return line;
}

std::optional<LeaseChange> JournalLeaseStore::decode_record(std::string_view line) {
    if (line.size() < 11 || line[8] != ' ') return std::nullopt;
    auto crc = common::from_hex(line.substr(0, 8));
    if (!crc) return std::nullopt;
    const auto body = line.substr(9);
    const std::uint32_t want = std::uint32_t{(*crc)[0]} << 24 | std::uint32_t{(*crc)[1]} << 16 | std::uint32_t{(*crc)[2]} << 8 | (*crc)[3];
    if (crc32(0L, reinterpret_cast<const Bytef*>(body.data()), static_cast<uInt>(body.size())) != want) return std::nullopt;
    auto j = nlohmann::json::parse(body, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("a") || !j["a"].is_string()) return std::nullopt;
    LeaseChange c;
    auto a = Ipv4::parse(j["a"].get<std::string>());
    if (!a) return std::nullopt;
    c.lease.address = *a;
    if (j.value("remove", false)) {
        c.remove = true;
        return c;
    }
    try {
        auto client = common::from_hex(j.at("c").get<std::string>());
        auto mac = common::Mac::parse(j.at("m").get<std::string>());
        auto st = lease_state_from(j.at("s").get<std::string>());
        if (!client || !mac || !st) return std::nullopt;
        c.lease.client = *client;
        c.lease.mac = *mac;
        c.lease.hostname = j.at("h").get<std::string>();
        c.lease.network = j.at("n").get<std::string>();
        c.lease.state = *st;
        c.lease.expires = j.at("e").get<std::uint64_t>();
        if (auto f = j.find("f"); f != j.end()) c.lease.fqdn = f->get<std::string>();
    } catch (const nlohmann::json::exception&) {
        return std::nullopt;
    }
    return c;
}

JournalLeaseStore::JournalLeaseStore(std::filesystem::path file, std::vector<std::string>* warnings, std::uint64_t prealloc_bytes)
    : file_(std::move(file)), chunk_(prealloc_bytes) {
    common::ensure_directory(file_.parent_path(), 0750);
    std::string text;
    std::error_code ec;
    if (std::filesystem::exists(file_, ec)) {
        if (auto err = common::read_file_limited(file_, std::size_t{1} << 30, text)) throw std::runtime_error(*err);
    }
    // The records end at the first NUL: the rest is preallocated space (zeros).
    const auto used = std::min(text.find('\0'), text.size());
    if (text.find_first_not_of('\0', used) != std::string::npos && warnings)
        warnings->push_back(file_.string() + ": bytes after the end of the records (offset " + std::to_string(used) + ") ignored");
    std::size_t pos = 0, good_end = 0, line_no = 0;
    while (pos < used) {
        ++line_no;
        const auto nl = text.find('\n', pos);
        if (nl == std::string::npos || nl >= used) {  // no newline: the last write was torn
            if (warnings) warnings->push_back(file_.string() + ": torn last record (line " + std::to_string(line_no) + ") dropped");
            break;
        }
        auto rec = decode_record(std::string_view(text).substr(pos, nl - pos));
        if (!rec) {
            if (nl + 1 == used) {
                if (warnings) warnings->push_back(file_.string() + ": damaged last record (line " + std::to_string(line_no) + ") dropped");
                break;
            }
            if (warnings) warnings->push_back(file_.string() + ": damaged record on line " + std::to_string(line_no) + " skipped");
        } else {
            apply_one(*rec);
            ++records_;
        }
        pos = nl + 1;
        good_end = pos;
    }
    fd_ = ::open(file_.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0640);
    if (fd_ < 0) throw std::system_error(errno, std::generic_category(), file_.string() + ": cannot open lease journal");
    // Cut a torn tail and the old preallocation, so new records start on a clean line.
    if (good_end != text.size() && ::ftruncate(fd_, static_cast<off_t>(good_end)) != 0)
        throw std::system_error(errno, std::generic_category(), file_.string() + ": cannot truncate torn record");
    end_ = allocated_ = good_end;
    preallocate(good_end + chunk_);
    if (::fsync(fd_) != 0) throw std::system_error(errno, std::generic_category(), file_.string() + ": fsync failed");
}

JournalLeaseStore::~JournalLeaseStore() {
    if (fd_ >= 0) {
        try {
            sync();
        } catch (...) {
        }
        ::close(fd_);
    }
}

void JournalLeaseStore::write_at(std::uint64_t offset, const char* data, std::size_t n) {
    std::size_t off = 0;
    while (off < n) {
        const ssize_t w = ::pwrite(fd_, data + off, n - off, static_cast<off_t>(offset + off));
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) throw std::system_error(errno, std::generic_category(), file_.string() + ": journal write failed");
        off += static_cast<std::size_t>(w);
    }
}

// Zeros written (not fallocate: unwritten extents would need a metadata update on first write) up to
// `size`: appends inside that space change no metadata, so fdatasync writes the records and nothing else.
void JournalLeaseStore::preallocate(std::uint64_t size) {
    static const std::string zeros(1 << 16, '\0');
    for (std::uint64_t at = allocated_; at < size;) {
        const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(zeros.size(), size - at));
        write_at(at, zeros.data(), n);
        at += n;
    }
    allocated_ = std::max(allocated_, size);
}

void JournalLeaseStore::apply(const std::vector<LeaseChange>& changes) {
    for (const auto& c : changes) {
        apply_one(c);
        pending_ += encode_record(c);
        ++records_;
    }
    unsynced_ = unsynced_ || !changes.empty();
}

void JournalLeaseStore::flush() {
    if (pending_.empty()) return;
    if (end_ + pending_.size() > allocated_) preallocate(end_ + pending_.size() + chunk_);  // the next sync carries the new size
    write_at(end_, pending_.data(), pending_.size());
    end_ += pending_.size();
    pending_.clear();
}

void JournalLeaseStore::sync() {
    if (pending_.empty() && !unsynced_) return;
    flush();
    if (::fdatasync(fd_) != 0) throw std::system_error(errno, std::generic_category(), file_.string() + ": fdatasync failed");
    unsynced_ = false;
    ++syncs_;
}

void JournalLeaseStore::compact() {
    sync();
    std::string text;
    for (const auto& [a, l] : by_addr_) text += encode_record({l, false});
    common::write_file_atomic(file_, common::as_bytes(text), 0640);
    ::close(fd_);
    fd_ = ::open(file_.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd_ < 0) throw std::system_error(errno, std::generic_category(), file_.string() + ": reopen after compaction failed");
    end_ = allocated_ = text.size();
    preallocate(end_ + chunk_);
    if (::fsync(fd_) != 0) throw std::system_error(errno, std::generic_category(), file_.string() + ": fsync failed");
    records_ = by_addr_.size();
}

}  // namespace fleetconf::dhcp
