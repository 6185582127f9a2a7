// The DHCP server's decisions (RFC 2131 section 4.3): a pure function from a request, the time and the
// lease state to a reply and lease changes. No sockets, no clock, no globals.
#pragma once

#include "fleetconf/common/site.hpp"
#include "fleetconf/dhcp/leases.hpp"
#include "fleetconf/dhcp/wire.hpp"

#include <functional>
#include <set>
#include <string>
#include <vector>

namespace fleetconf::dhcp {

// What the server knows about one unikernel of the site.
struct Host {
    std::string name;
    common::Mac mac;
    bool mac_derived = false;
    Bytes client_id;                    // reserve by option 61 too, when set
    std::optional<common::Ipv4> fixed;  // reserved address
    std::vector<Option> options;        // its effective site options, encoded
    std::set<std::uint8_t> always_send;
};

struct NetworkConfig {
    std::string name;       // bridge
    std::string interface;  // where requests arrive
    common::Prefix subnet;
    common::Ipv4 server_id;
    std::vector<common::Range> pools;
    std::uint32_t lease_time = common::kDefaultLeaseTime;
    bool ignore_client_id = false;
    std::string domain;           // completes partial client FQDNs (option 81)
    std::vector<Option> options;  // network-wide options for clients that are not site unikernels
    std::set<std::uint8_t> always_send;
    std::vector<Host> hosts;
};

struct Config {
    std::vector<NetworkConfig> networks;
    bool authoritative = true;
    std::uint32_t offer_hold = 30;   // seconds an offered address stays reserved for its client
    std::uint32_t probation = 3600;  // seconds a declined address stays out of use
    double t1 = 0.5, t2 = 0.875;     // renewal and rebinding times as fractions of the lease time
};

// Builds the server configuration from the site. `interface_address` supplies a server identifier for a
// network with neither server_address nor gateway (nullopt: the network is refused with an error).
Config make_config(const common::Site& site, const std::function<std::optional<common::Ipv4>(const std::string&)>& interface_address);

struct Request {
    Message message;
    std::string interface;  // the interface it arrived on
};

struct Decision {
    std::optional<Message> reply;
    std::vector<LeaseChange> changes;
    bool durable_before_reply = false;  // the reply promises a binding: sync the changes first
    std::string log;                    // one line: what happened and why
    std::size_t max_reply_size = kMinMessageSize;
};

Decision decide(const Request& req, std::uint64_t now, const LeaseView& leases, const Config& cfg);

// The identity a lease is keyed by: client id (61) unless ignored, else htype + chaddr.
Bytes client_key(const Message& m, bool ignore_client_id);

}  // namespace fleetconf::dhcp
