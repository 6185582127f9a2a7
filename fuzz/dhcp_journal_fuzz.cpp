// Untrusted lease-journal bytes (a damaged disk or file system): the recovery scan must never crash, and
// what it reports must describe the input: regions inside it, in order, not overlapping, the records before
// `end`, and a torn tail only after the last intact record.
#include "fleetconf/dhcp/leases.hpp"

#include <cstdint>
#include <string_view>

using namespace fleetconf::dhcp;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    const auto scan = scan_journal(text);
    if (scan.end > size) __builtin_trap();
    std::uint64_t prev_end = 0;
    for (const auto& r : scan.damaged) {
        if (r.length == 0 || r.offset < prev_end || r.offset + r.length > size) __builtin_trap();
        prev_end = r.offset + r.length;
    }
    if (scan.torn_tail) {
        if (scan.torn_tail->offset != scan.end || scan.torn_tail->offset + scan.torn_tail->length > size) __builtin_trap();
        if (text.substr(scan.torn_tail->offset, scan.torn_tail->length).find('\n') != std::string_view::npos) __builtin_trap();
    }
    // Every intact record re-encodes to a line the decoder accepts.
    for (const auto& c : scan.records) {
        const auto line = JournalLeaseStore::encode_record(c, 1);
        if (!JournalLeaseStore::decode_record(std::string_view(line).substr(0, line.size() - 1))) __builtin_trap();
    }
    return 0;
}
