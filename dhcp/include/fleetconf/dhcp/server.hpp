// The DHCP server's decisions (RFC 2131 section 4.3): a pure function from a request, the time and the
// lease state to a reply and lease changes. No sockets, no clock, no globals.
#pragma once

#include "fleetconf/common/site.hpp"
#include "fleetconf/dhcp/leases.hpp"
#include "fleetconf/dhcp/wire.hpp"

#include <functional>
#include <string_view>
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
    bool known_only = false;      // clients that match no host are not served
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
    // false: the routine outcomes (OFFER, ACK) leave Decision::log empty, so that a server not logging at info
    // formats nothing per packet; refusals, NAKs and warnings are always explained.
    bool explain = true;
};

struct Decision {
    std::optional<Message> reply;
    std::vector<LeaseChange> changes;
    bool durable_before_reply = false;  // the reply promises a binding: sync the changes first
    std::string log;                    // one line: what happened and why
    std::size_t max_reply_size = kMinMessageSize;
    bool exhausted = false;       // a DISCOVER found no free address (counted: v4-allocation-fail)
    bool unknown_client = false;  // refused by known_only
    std::string network;          // the network the request was decided on ("" when none)
};

Decision decide(const Request& req, std::uint64_t now, const LeaseView& leases, const Config& cfg);

// The identity a lease is keyed by: client id (61) unless ignored, else htype + chaddr.
Bytes client_key(const Message& m, bool ignore_client_id);

// A binding made durable (bound: an ACK went out, or lease4-add) or given up (released: RELEASE, DECLINE,
// lease4-del). Reported after the lease journal is synced, on the service's thread: do not block in it.
struct LeaseEvent {
    enum class Kind { bound, released };
    Kind kind;
    Lease lease;
    std::string_view cause = "ack";  // "ack", "release", "decline", "lease4-add", "lease4-del"
};

// The events of one decision's changes. `binds` (the decision's durable_before_reply): each bound lease is a
// binding the reply promises, reported once the journal holds it. A lease RELEASEd or DECLINEd is released
// (reported at once: removing a route early is safe). Offers make none.
std::vector<LeaseEvent> lease_events(const std::vector<LeaseChange>& changes, bool binds);
// "release of", "decline of", "lease4-del of": for log lines such as "release of 10.0.0.5".
std::string why_released(const LeaseEvent& e);

// RFC 2131 4.1: where a server reply goes. To the relay (giaddr, server port) when relayed; a NAK is
// broadcast; to ciaddr when the client has an address (RENEWING, REBINDING, INFORM); broadcast when the
// client asks for it (flags), when there is no address yet to unicast to, or when the hardware address is
// not Ethernet's (htype 1, hlen 6); otherwise unicast to yiaddr, which needs the client's MAC in the ARP table
// first (it does not answer ARP yet).
struct ReplyDestination {
    common::Ipv4 address;  // 255.255.255.255 when broadcast
    std::uint16_t port = 0;
    bool unicast_to_new_address = false;  // to yiaddr: add an ARP entry first (or broadcast if that fails)
    bool operator==(const ReplyDestination&) const = default;
};
ReplyDestination reply_destination(const Message& reply, std::uint16_t server_port, std::uint16_t client_port);

}  // namespace fleetconf::dhcp
