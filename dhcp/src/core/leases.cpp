#include "fleetconf/dhcp/leases.hpp"

#include "fleetconf/common/crypto.hpp"
#include "fleetconf/common/files.hpp"
#include "fleetconf/common/text.hpp"

#include <nlohmann/json.hpp>
#include <zlib.h>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <ctime>
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
    auto it = by_addr_.find(a.value());
    return it == by_addr_.end() ? nullptr : &it->second;
}

const Lease* MemoryLeaseStore::by_client(const Bytes& client) const {
    if (client.empty()) return nullptr;
    auto it = by_client_.find(key(client));
    return it == by_client_.end() ? nullptr : by_address(it->second);
}

std::optional<Ipv4> MemoryLeaseStore::highest_in(Ipv4 first, Ipv4 last) const {
    auto it = order_.upper_bound(last.value());
    if (it == order_.begin()) return std::nullopt;
    --it;
    if (*it < first.value()) return std::nullopt;
    return Ipv4(*it);
}

void MemoryLeaseStore::apply_one(const LeaseChange& c) {
    const std::uint32_t a = c.lease.address.value();
    if (auto it = by_addr_.find(a); it != by_addr_.end() && !c.remove && it->second.client == c.lease.client) {
        it->second = c.lease;  // the same client's record again (an offer taken, a renewal): both indexes stay
        return;
    } else if (it != by_addr_.end()) {
        if (auto ci = by_client_.find(key(it->second.client)); ci != by_client_.end() && ci->second.value() == a) by_client_.erase(ci);
        by_addr_.erase(it);
        order_.erase(a);
    }
    if (c.remove) return;
    if (!c.lease.client.empty()) {
        // One address per client: a new binding replaces the client's previous record.
        if (auto ci = by_client_.find(key(c.lease.client)); ci != by_client_.end() && ci->second.value() != a) {
            by_addr_.erase(ci->second.value());
            order_.erase(ci->second.value());
            ci->second = c.lease.address;
        } else if (ci == by_client_.end()) {
            by_client_.emplace(std::string(key(c.lease.client)), c.lease.address);
        }
    }
    by_addr_.insert_or_assign(a, c.lease);
    order_.insert(a);
}

void MemoryLeaseStore::clear() {
    by_addr_.clear();
    order_.clear();
    by_client_.clear();
}

void MemoryLeaseStore::apply(const std::vector<LeaseChange>& changes) {
    for (const auto& c : changes) apply_one(c);
}

std::vector<Lease> MemoryLeaseStore::all() const {
    std::vector<Lease> v;
    v.reserve(by_addr_.size());
    for_each([&](const Lease& l) { v.push_back(l); });
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

namespace {

constexpr char kHex[] = "0123456789abcdef";

void append_number(std::string& out, std::uint64_t v) {
    char buf[20];
    const auto r = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, r.ptr);
}

void append_address(std::string& out, Ipv4 a) {
    const std::uint32_t v = a.value();
    for (int shift = 24; shift >= 0; shift -= 8) {
        append_number(out, (v >> shift) & 0xFF);
        if (shift) out += '.';
    }
}

void append_hex(std::string& out, std::span<const std::uint8_t> bytes, char separator) {
    for (std::size_t i = 0; i < bytes.size(); ++i) {
        if (separator && i) out += separator;
        out += kHex[bytes[i] >> 4];
        out += kHex[bytes[i] & 0xF];
    }
}

}  // namespace

// The same bytes nlohmann::ordered_json would write for these keys in this order, without building a
// document or a temporary string per record (this runs once per lease change on the packet path).
void JournalLeaseStore::append_record(std::string& out, const LeaseChange& c, std::uint64_t seq) {
    const std::size_t head = out.size();
    out.append("00000000 ");
    const std::size_t body = out.size();
    out += '{';
    if (seq != 0) {
        out += "\"q\":";
        append_number(out, seq);
        out += ',';
    }
    out += "\"a\":\"";
    append_address(out, c.lease.address);
    out += '"';
    if (c.remove) {
        out += ",\"remove\":true}";
    } else {
        out += ",\"c\":\"";
        append_hex(out, c.lease.client, 0);
        out += "\",\"m\":\"";
        append_hex(out, c.lease.mac.bytes(), ':');
        out += "\",\"h\":";
        append_json_string(out, c.lease.hostname);
        out += ",\"n\":";
        append_json_string(out, c.lease.network);
        out += ",\"s\":\"";
        out += to_string(c.lease.state);
        out += "\",\"e\":";
        append_number(out, c.lease.expires);
        if (!c.lease.fqdn.empty()) {
            out += ",\"f\":";
            append_json_string(out, c.lease.fqdn);
        }
        out += '}';
    }
    const auto crc = crc32(0L, reinterpret_cast<const Bytef*>(out.data() + body), static_cast<uInt>(out.size() - body));
    for (int i = 0; i < 8; ++i) out[head + static_cast<std::size_t>(i)] = kHex[(crc >> (28 - 4 * i)) & 0xF];
    out += '\n';
}

std::string JournalLeaseStore::encode_record(const LeaseChange& c, std::uint64_t seq) {
    std::string line;
    line.reserve(192);
    append_record(line, c, seq);
    return line;
}

std::optional<LeaseChange> JournalLeaseStore::decode_record(std::string_view line, std::uint64_t* seq) {
    if (seq) *seq = 0;
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
    if (auto q = j.find("q"); q != j.end()) {
        if (!q->is_number_unsigned() || q->get<std::uint64_t>() == 0) return std::nullopt;
        if (seq) *seq = q->get<std::uint64_t>();
    }
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
        // Names were escaped when they came from the network (common/text.hpp); a journal of an older
        // version may hold control characters: escape those too (a no-op on escaped text).
        c.lease.hostname = common::log_safe(j.at("h").get<std::string>());
        c.lease.network = j.at("n").get<std::string>();
        c.lease.state = *st;
        c.lease.expires = j.at("e").get<std::uint64_t>();
        if (auto f = j.find("f"); f != j.end()) c.lease.fqdn = common::log_safe(f->get<std::string>());
    } catch (const nlohmann::json::exception&) {
        return std::nullopt;
    }
    return c;
}

// Recovery (docs/dhcp-leases.md): a record never holds a NUL or a LF, so every LF and every run of NULs is
// a place where the next record may start. Everything between intact records is damage; after the last
// one, a single incomplete line followed by nothing but zeros is the torn tail of an interrupted write.
JournalScan scan_journal(std::string_view text) {
    JournalScan scan;
    std::size_t pos = 0;
    if (text.starts_with(JournalLeaseStore::kHeader)) pos = JournalLeaseStore::kHeader.size();
    else scan.version = 1;  // until a record with a sequence number says otherwise
    scan.end = pos;
    std::vector<JournalRegion> bad;
    auto mark = [&](std::size_t from, std::size_t to) {
        if (!bad.empty() && bad.back().offset + bad.back().length == from) bad.back().length += to - from;
        else bad.push_back({from, to - from});
    };
    std::uint64_t prev_seq = 0;
    bool any_seq = false;
    const std::size_t n = text.size();
    while (pos < n) {
        if (text[pos] == '\0') {
            const auto next = text.find_first_not_of('\0', pos);
            if (next == std::string_view::npos) break;  // the free space at the end
            mark(pos, next);
            pos = next;
            continue;
        }
        const auto stop = text.find_first_of(std::string_view("\n\0", 2), pos);
        if (stop == std::string_view::npos || text[stop] == '\0') {  // no LF: not a whole record
            const auto to = stop == std::string_view::npos ? n : stop;
            mark(pos, to);
            pos = to;
            continue;
        }
        const auto line = text.substr(pos, stop - pos);
        std::uint64_t seq = 0;
        auto rec = JournalLeaseStore::decode_record(line, &seq);
        std::size_t start = 0;
        if (!rec) {
            // Garbage in front of a record on the same line (a stray write that ended without a LF): a
            // format-2 record starts with 8 hex digits, a space and {"q":, so try each such start in the line.
            constexpr std::string_view kStart = " {\"q\":";
            for (auto k = line.find(kStart, 9); k != std::string_view::npos && !rec; k = line.find(kStart, k + 1)) {
                rec = JournalLeaseStore::decode_record(line.substr(k - 8), &seq);
                if (rec) start = k - 8;
            }
        }
        if (rec) {
            if (start) mark(pos, pos + start);
            scan.records.push_back(std::move(*rec));
            if (seq != 0) {
                any_seq = true;
                if (prev_seq != 0 && seq > prev_seq + 1) scan.missing_records += seq - prev_seq - 1;
                prev_seq = seq;
                scan.last_seq = std::max(scan.last_seq, seq);
            }
            scan.end = stop + 1;
        } else {
            mark(pos, stop + 1);
        }
        pos = stop + 1;
    }
    if (any_seq) scan.version = 2;
    // After the last intact record: one incomplete line (no LF: a write cut short) followed only by zeros
    // is a torn tail. A whole line with a bad checksum is not what an interrupted append leaves: damage.
    if (!bad.empty() && bad.back().offset == scan.end) {
        const auto tail = bad.back();
        const auto line_end = text.find_first_of(std::string_view("\n\0", 2), tail.offset);
        const bool no_lf = line_end == std::string_view::npos || text[line_end] == '\0';
        const std::size_t torn_to = line_end == std::string_view::npos ? n : line_end;
        if (no_lf && torn_to == tail.offset + tail.length) {
            scan.torn_tail = tail;
            bad.pop_back();
        }
    }
    scan.damaged = std::move(bad);
    return scan;
}

namespace {

std::string utc_stamp() {
    const std::time_t t = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
    return buf;
}

}  // namespace

JournalLeaseStore::JournalLeaseStore(std::filesystem::path file, std::vector<std::string>* warnings, std::uint64_t prealloc_bytes)
    : file_(std::move(file)), chunk_(prealloc_bytes) {
    common::ensure_directory(file_.parent_path(), 0750);
    std::string text;
    std::error_code ec;
    if (std::filesystem::exists(file_, ec)) {
        if (auto err = common::read_file_limited(file_, std::size_t{1} << 30, text)) throw std::runtime_error(*err);
    }
    const bool fresh = text.find_first_not_of('\0') == std::string::npos;
    auto scan = scan_journal(text);
    for (const auto& r : scan.records) apply_one(r);
    records_ = scan.records.size();
    next_seq_ = scan.last_seq + 1;
    recovery_.damaged = scan.damaged;
    recovery_.missing_records = scan.missing_records;
    recovery_.version_read = fresh ? 2 : scan.version;
    if (scan.torn_tail && warnings)
        warnings->push_back(file_.string() + ": torn last record (" + std::to_string(scan.torn_tail->length) + " bytes at offset " +
                            std::to_string(scan.torn_tail->offset) + ", an interrupted write) dropped");
    if (!scan.damaged.empty()) {
        // The damaged bytes are kept (the whole file, so offsets in the log match) before anything is rewritten.
        auto copy = file_;
        copy += ".damaged-" + utc_stamp();
        for (int i = 1; std::filesystem::exists(copy, ec); ++i) {
            copy = file_;
            copy += ".damaged-" + utc_stamp() + "-" + std::to_string(i);
        }
        common::write_file_atomic(copy, common::as_bytes(text), 0640);
        recovery_.damaged_copy = copy;
    }
    fd_ = ::open(file_.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0640);
    if (fd_ < 0) throw std::system_error(errno, std::generic_category(), file_.string() + ": cannot open lease journal");
    if (!scan.damaged.empty() || (scan.version == 1 && !fresh)) {
        if (scan.version == 1 && !fresh && warnings)
            warnings->push_back(file_.string() + ": journal format 1 rewritten as format 2 (" + std::to_string(size()) + " leases)");
        compact();  // every intact record kept; damage and the old format gone
        return;
    }
    if (fresh) {  // a new journal: the header, then zeros
        if (::ftruncate(fd_, 0) != 0) throw std::system_error(errno, std::generic_category(), file_.string() + ": cannot truncate");
        end_ = allocated_ = 0;
        write_at(0, kHeader.data(), kHeader.size());
        end_ = allocated_ = kHeader.size();
    } else {
        // Cut a torn tail and the old preallocation, so new records start on a clean line.
        const auto good_end = scan.end;
        if (good_end != text.size() && ::ftruncate(fd_, static_cast<off_t>(good_end)) != 0)
            throw std::system_error(errno, std::generic_category(), file_.string() + ": cannot truncate torn record");
        end_ = allocated_ = good_end;
    }
    preallocate(end_ + chunk_);
    if (::fsync(fd_) != 0) throw std::system_error(errno, std::generic_category(), file_.string() + ": fsync failed");
}

JournalLeaseStore::~JournalLeaseStore() {
    if (fd_ >= 0) {
        try {
            sync();
        } catch (...) {}
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
        append_record(pending_, c, next_seq_++);
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

std::function<void()> JournalLeaseStore::begin_sync() {
    if (pending_.empty() && !unsynced_) return {};
    flush();
    unsynced_ = false;  // until end_sync(false) says the sync failed, or apply() writes more
    return [fd = fd_, file = file_.string()] {
        if (::fdatasync(fd) != 0) throw std::system_error(errno, std::generic_category(), file + ": fdatasync failed");
    };
}

std::vector<Ipv4> JournalLeaseStore::end_sync(bool ok) {
    if (ok) ++syncs_;
    else unsynced_ = true;
    return {};
}

void JournalLeaseStore::compact() {
    sync();
    std::string text(kHeader);
    next_seq_ = 1;
    for_each([&](const Lease& l) { append_record(text, {l, false}, next_seq_++); });
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
