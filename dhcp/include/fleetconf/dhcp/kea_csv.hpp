// Kea's lease file (memfile, `kea-leases4.csv`) read into fleetconf leases, for `fleetconf dhcp import
// --from kea-memfile`: an operator moving from Kea keeps every client's address. Pure: text in, values out.
#pragma once

#include "fleetconf/dhcp/leases.hpp"

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace fleetconf::dhcp {

struct KeaImport {
    std::vector<Lease> leases;          // one per address: the file's last record for it wins, as in Kea
    std::vector<std::string> warnings;  // one line per record left out, with its line number and why
    std::size_t records = 0;            // data lines read
};

// Kea 2.2's lease4 CSV (header `address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,
// hostname,state,user_context`; later versions' extra columns are ignored): columns are found by the header's
// names. `network_of` names the site network an address belongs to (nullopt: none, the record is left out).
// State 0 (default) becomes bound, 1 declined, 2 (expired-reclaimed) released; a record with valid_lifetime 0
// deletes the address (Kea's deletion record). Throws std::runtime_error when the header is not Kea's.
KeaImport parse_kea_lease4_csv(std::string_view text, const std::function<std::optional<std::string>(common::Ipv4)>& network_of);

}  // namespace fleetconf::dhcp
