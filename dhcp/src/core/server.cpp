#include "fleetconf/dhcp/server.hpp"

#include "fleetconf/common/bootargs.hpp"
#include "fleetconf/common/text.hpp"

#include <algorithm>
#include <bitset>
#include <stdexcept>

namespace fleetconf::dhcp {

using common::Ipv4;

namespace {

using common::dhcp_options::kMirageEnterprise;

void add_site_options(std::vector<Option>& out, std::set<std::uint8_t>& always, const common::SiteOptions& o,
                      const common::MonitoringOption& mon) {
    auto put = [&](std::uint8_t code, Bytes data, bool send_always) {
        out.push_back({code, std::move(data)});
        if (send_always) always.insert(code);
    };
    if (o.syslog) {
        if (auto* v4 = std::get_if<Ipv4>(&o.syslog->host)) put(opt::log_server, addr_bytes(*v4), o.always_send.contains("syslog"));
    }
    if (o.ntp && !o.ntp->empty()) put(opt::ntp, addrs_bytes(*o.ntp), o.always_send.contains("ntp"));
    // Option 125 (RFC 3925): the monitoring sink (MirageOS: enterprise 49836, sub-option 0) and the site's
    // sub-options of enterprise 49836, one block per enterprise.
    std::vector<std::pair<std::uint32_t, std::vector<std::pair<std::uint8_t, Bytes>>>> blocks;
    auto block_of = [&](std::uint32_t enterprise) -> std::vector<std::pair<std::uint8_t, Bytes>>& {
        for (auto& [e, subs] : blocks)
            if (e == enterprise) return subs;
        return blocks.emplace_back(enterprise, std::vector<std::pair<std::uint8_t, Bytes>>{}).second;
    };
    bool vivso_always = false;
    if (o.monitoring) {
        const auto text = o.monitoring->to_string();
        Bytes value(text.begin(), text.end());
        if (mon.code == opt::vivso) {
            block_of(mon.enterprise).emplace_back(mon.suboption, std::move(value));
            vivso_always = o.always_send.contains("monitoring");
        } else {
            put(mon.code, value, o.always_send.contains("monitoring"));
        }
    }
    for (const auto& v : o.vivso) {
        block_of(kMirageEnterprise).emplace_back(v.code, v.data);
        vivso_always = vivso_always || v.always_send;
    }
    if (!blocks.empty()) {
        Bytes value;
        for (const auto& [e, subs] : blocks) {
            std::size_t size = 0;
            for (const auto& [code, data] : subs) size += 2 + data.size();
            if (size > 255)
                throw std::runtime_error("option 125: the sub-options of enterprise " + std::to_string(e) + " take " +
                                         std::to_string(size) + " bytes, more than the 255 of one block");
            auto b = vivso_bytes(e, subs);
            value.insert(value.end(), b.begin(), b.end());
        }
        put(opt::vivso, std::move(value), vivso_always);
    }
    for (const auto& c : o.custom) put(c.code, c.data, c.always_send);
}

std::vector<Option> network_base_options(const common::Network& n) {
    std::vector<Option> v;
    v.push_back({opt::subnet_mask, addr_bytes(n.subnet.netmask())});
    if (n.gateway) v.push_back({opt::router, addr_bytes(*n.gateway)});
    if (!n.dns.empty()) v.push_back({opt::dns, addrs_bytes(n.dns)});
    if (!n.domain.empty()) v.push_back({opt::domain, Bytes(n.domain.begin(), n.domain.end())});
    v.push_back({opt::broadcast, addr_bytes(n.subnet.broadcast())});
    return v;
}

const Option* find_in(const std::vector<Option>& v, std::uint8_t code) {
    for (const auto& o : v)
        if (o.code == code) return &o;
    return nullptr;
}

struct Context {
    const Config& cfg;
    const NetworkConfig& net;
    const Host* host;  // nullptr: not a site unikernel
    Bytes key;
    std::uint64_t now;
    const LeaseView& leases;
    bool explain = true;  // build Decision::log for routine outcomes too
};

bool in_pools(const NetworkConfig& n, Ipv4 a) {
    return std::any_of(n.pools.begin(), n.pools.end(), [&](const common::Range& r) { return r.contains(a); });
}

bool reserved_for_other(const NetworkConfig& n, Ipv4 a, const Host* me) {
    return std::any_of(n.hosts.begin(), n.hosts.end(), [&](const Host& h) { return h.fixed && *h.fixed == a && &h != me; });
}

// May `a` be given to this client now?
bool available(const Context& c, Ipv4 a) {
    if (!c.net.subnet.is_host(a) || a == c.net.server_id || reserved_for_other(c.net, a, c.host)) return false;
    const Lease* l = c.leases.by_address(a);
    if (!l || l->client == c.key) return !(l && l->state == LeaseState::declined && l->expires > c.now);
    if (l->expires <= c.now) return true;     // expired: anyone's
    return l->state == LeaseState::released;  // released addresses are free (their owner is preferred elsewhere)
}

// With a shared lease database: the first never-used address at or after a place in the pools that depends
// on the client only (FNV-1a of its identity), looking at most kSpreadSteps addresses; nullopt sends the
// search on to the in-order paths. Two servers allocating for two new clients at once then start at
// unrelated places instead of both at the same "next free" address.
std::optional<Ipv4> spread_choice(const Context& c) {
    constexpr std::uint64_t kSpreadSteps = 4096;
    std::uint64_t total = 0;
    for (const auto& r : c.net.pools) total += std::uint64_t{r.last().value()} - r.first().value() + 1;
    if (total == 0) return std::nullopt;
    const std::uint64_t start = client_hash({reinterpret_cast<const char*>(c.key.data()), c.key.size()}) % total;
    for (std::uint64_t step = 0; step < std::min(total, kSpreadSteps); ++step) {
        std::uint64_t i = (start + step) % total;
        for (const auto& r : c.net.pools) {
            const std::uint64_t size = std::uint64_t{r.last().value()} - r.first().value() + 1;
            if (i >= size) {
                i -= size;
                continue;
            }
            const Ipv4 a{static_cast<std::uint32_t>(r.first().value() + i)};
            if (!c.leases.by_address(a) && available(c, a)) return a;
            break;
        }
    }
    return std::nullopt;
}

// RFC 2131 4.3.1: the address to offer, in order of preference.
std::optional<Ipv4> choose(const Context& c, std::optional<Ipv4> requested) {
    if (c.host && c.host->fixed) return c.host->fixed;
    // RFC 2131 4.3.1: the client's current or previous binding (a lapsed offer is not a binding), ...
    if (const Lease* l = c.leases.by_client(c.key); l && l->network == c.net.name && l->state != LeaseState::declined &&
                                                    !(l->state == LeaseState::offered && l->expires <= c.now) &&
                                                    in_pools(c.net, l->address) && available(c, l->address))
        return l->address;
    // ... else the requested address if valid and free, else a new one.
    if (requested && in_pools(c.net, *requested) && available(c, *requested) && !c.leases.by_address(*requested)) return requested;
    if (c.leases.shared())
        if (auto a = spread_choice(c)) return a;
    // Fast path: the part of each pool after its highest leased address has never been used.
    for (const auto& r : c.net.pools) {
        const auto h = c.leases.highest_in(r.first(), r.last());
        for (std::uint64_t v = h ? std::uint64_t{h->value()} + 1 : r.first().value(); v <= r.last().value(); ++v) {
            const Ipv4 a{static_cast<std::uint32_t>(v)};
            if (available(c, a)) return a;  // skips reserved and server addresses; at most a few steps
        }
    }
    std::optional<Ipv4> reusable;  // an expired or released address, if nothing never used is left
    for (const auto& r : c.net.pools)
        for (std::uint64_t v = r.first().value(); v <= r.last().value(); ++v) {
            const Ipv4 a{static_cast<std::uint32_t>(v)};
            if (!available(c, a)) continue;
            if (!c.leases.by_address(a)) return a;
            if (!reusable) reusable = a;
        }
    if (requested && in_pools(c.net, *requested) && available(c, *requested)) return requested;
    return reusable;
}

// Is `a` this client's to confirm (REQUEST)?
bool owns(const Context& c, Ipv4 a) {
    if (c.host && c.host->fixed) return *c.host->fixed == a;
    const Lease* l = c.leases.by_address(a);
    return l && l->client == c.key && l->state != LeaseState::declined;
}

Message reply_base(const Message& req, MessageType t, const NetworkConfig& net) {
    Message r;
    r.op = 2;
    r.htype = req.htype;
    r.hlen = req.hlen;
    r.xid = req.xid;
    r.flags = req.flags;
    r.giaddr = req.giaddr;
    r.chaddr = req.chaddr;
    r.options.reserve(16);  // a typical reply's options, without regrowing on the packet path
    r.options.push_back({opt::message_type, {static_cast<std::uint8_t>(t)}});
    r.options.push_back({opt::server_id, addr_bytes(net.server_id)});
    return r;
}

// RFC 4702: the answer to a client's FQDN option. fleetconf performs no DNS updates, so the answer says so:
// N set, S clear, O set when the client had asked the server to update (S); E as the client sent it; the
// deprecated RCODE fields 255. A partial name is completed with the network's domain.
// A partial name (no trailing dot / root label) completed with the network's domain.
ClientFqdn completed(const ClientFqdn& f, const NetworkConfig& net) {
    ClientFqdn out = f;
    if (!f.fully_qualified && !f.name.empty() && !net.domain.empty()) {
        out.name += "." + net.domain;
        out.fully_qualified = true;
    }
    return out;
}

std::optional<Option> fqdn_reply(const Message& req, const Context& c) {
    const Option* o = req.find(opt::client_fqdn);
    if (!o) return std::nullopt;
    auto f = parse_fqdn(o->data);
    if (!f) return std::nullopt;  // malformed: not answered (the rest of the reply is unaffected)
    ClientFqdn out = completed(*f, c.net);
    out.flags = static_cast<std::uint8_t>(fqdn_flag::N | (f->flags & fqdn_flag::E) | ((f->flags & fqdn_flag::S) ? fqdn_flag::O : 0));
    return Option{opt::client_fqdn, fqdn_bytes(out)};
}

// The name a client asks the server to update (option 81 with S): completed, lower case, a valid host name.
std::string fqdn_to_update(const Message& m, const NetworkConfig& net) {
    const Option* o = m.find(opt::client_fqdn);
    if (!o) return {};
    auto f = parse_fqdn(o->data);
    if (!f || !(f->flags & fqdn_flag::S) || (f->flags & fqdn_flag::N)) return {};
    std::string name = completed(*f, net).name;
    for (auto& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    return common::is_dns_name(name) ? name : std::string{};
}

// Options in the order the client's parameter request list asks, then those marked always-send, then
// the echoes (RFC 6842 client id; RFC 3046 relay agent information, which must come last).
void add_options(Message& r, const Message& req, const Context& c, bool with_lease_options) {
    const std::vector<Option>& base = c.host ? c.host->options : c.net.options;
    const std::set<std::uint8_t>& always = c.host ? c.host->always_send : c.net.always_send;
    std::bitset<256> done;
    done.set(opt::message_type).set(opt::server_id);
    auto emit = [&](std::uint8_t code) {
        if (done.test(code)) return;
        if (const Option* o = find_in(base, code)) {
            r.options.push_back(*o);
            done.set(code);
        }
    };
    if (with_lease_options) {
        for (std::uint8_t code : {opt::lease_time, opt::renewal_t1, opt::rebinding_t2}) done.set(code);
    }
    // The mask and router first when asked: they are what a client cannot work without.
    if (const Option* prl = req.find(opt::parameter_list)) {
        for (std::uint8_t code : prl->data) emit(code);
    } else {
        for (std::uint8_t code : {opt::subnet_mask, opt::router, opt::dns, opt::domain}) emit(code);
    }
    for (std::uint8_t code : always) emit(code);
    if (with_lease_options)
        if (auto f = fqdn_reply(req, c)) r.options.push_back(std::move(*f));
    if (const Option* cid = req.find(opt::client_id)) r.options.push_back(*cid);
    if (const Option* ra = req.find(opt::relay_agent)) r.options.push_back(*ra);
}

void add_lease_times(Message& r, const Context& c) {
    const std::uint32_t lt = c.net.lease_time;
    r.options.push_back({opt::lease_time, u32_bytes(lt)});
    r.options.push_back({opt::renewal_t1, u32_bytes(static_cast<std::uint32_t>(lt * c.cfg.t1))});
    r.options.push_back({opt::rebinding_t2, u32_bytes(static_cast<std::uint32_t>(lt * c.cfg.t2))});
}

std::size_t max_reply(const Message& req) {
    std::size_t max = 576;
    if (const Option* o = req.find(opt::max_size); o && o->data.size() == 2) max = std::max<std::size_t>(576, o->data[0] << 8 | o->data[1]);
    return max - 28;  // the option counts the IP and UDP headers too
}

Lease make_lease(const Context& c, const Message& m, Ipv4 a, LeaseState s, std::uint64_t expires) {
    Lease l;
    l.address = a;
    l.client = c.key;
    l.mac = m.mac();
    // Names from the network are stored escaped (common/text.hpp): every output can show them as they are.
    std::string host = m.string_option(opt::hostname).value_or("");
    if (host.empty() && c.host) {
        l.hostname = c.host->name;
    } else {
        if (host.empty())
            if (const Option* o = m.find(opt::client_fqdn))
                if (auto f = parse_fqdn(o->data)) host = f->name.substr(0, f->name.find('.'));
        if (host.size() > 63) host.resize(63);
        l.hostname = common::printable(host);
    }
    l.network = c.net.name;
    l.state = s;
    l.expires = expires;
    l.fqdn = fqdn_to_update(m, c.net);
    return l;
}

std::string who(const Context& c, const Message& m) {
    std::string s = m.mac().to_string();
    if (c.host) s += " (" + c.host->name + ")";
    else if (auto h = m.string_option(opt::hostname)) s += " (host name \"" + common::printable(h->substr(0, 63)) + "\")";
    if (const Option* o = m.find(opt::client_fqdn)) {
        if (auto f = parse_fqdn(o->data))
            s += " (FQDN \"" + common::printable(f->name.substr(0, 255)) + "\"" +
                 ((f->flags & fqdn_flag::S) ? ", asks the server to update DNS: not done" : "") + ")";
        else s += " (malformed FQDN option ignored)";
    }
    return s;
}

Decision nak(const Message& req, const Context& c, const std::string& why) {
    Decision d;
    Message r = reply_base(req, MessageType::nak, c.net);
    r.options.push_back({opt::message, Bytes(why.begin(), why.end())});
    if (const Option* cid = req.find(opt::client_id)) r.options.push_back(*cid);
    if (const Option* ra = req.find(opt::relay_agent)) r.options.push_back(*ra);
    r.flags |= 0x8000;  // RFC 2131 4.3.2: a NAK is broadcast (or sent to the relay with the broadcast bit)
    d.reply = std::move(r);
    d.log = "NAK " + who(c, req) + ": " + why;
    return d;
}

Decision ack(const Message& req, const Context& c, Ipv4 a, std::string_view what) {
    Decision d;
    Message r = reply_base(req, MessageType::ack, c.net);
    r.yiaddr = a;
    r.ciaddr = req.ciaddr;
    add_lease_times(r, c);
    add_options(r, req, c, true);
    d.changes.push_back({make_lease(c, req, a, LeaseState::bound, c.now + c.net.lease_time)});
    d.durable_before_reply = true;
    d.reply = std::move(r);
    d.max_reply_size = max_reply(req);
    if (c.explain) d.log = "ACK " + a.to_string() + " to " + who(c, req) + " (" + std::string(what) + ")";
    return d;
}

const Host* match_host(const NetworkConfig& net, const Message& m, std::string& note) {
    const Option* cid = m.find(opt::client_id);
    if (cid && !net.ignore_client_id)
        for (const auto& h : net.hosts)
            if (!h.client_id.empty() && h.client_id == cid->data) return &h;
    const auto mac = m.mac();
    if (m.htype == 1 && m.hlen == 6)
        for (const auto& h : net.hosts)
            if (h.mac == mac) return &h;
    // A MirageOS unikernel names itself in option 12; without a matching MAC it stays unknown.
    if (auto name = m.string_option(opt::hostname))
        for (const auto& h : net.hosts)
            if (h.name == *name) {
                note = "host name \"" + common::printable(*name) + "\" is a site unikernel but the MAC " + mac.to_string() +
                       " is not its " + (h.mac_derived ? "Albatross-derived " : "") + "MAC " + h.mac.to_string() + "; treated as unknown";
                break;
            }
    return nullptr;
}

const NetworkConfig* select_network(const Config& cfg, const Request& req) {
    if (!req.message.giaddr.is_unspecified()) {  // relayed: the relay's address names the network
        for (const auto& n : cfg.networks)
            if (n.subnet.contains(req.message.giaddr)) return &n;
        return nullptr;
    }
    for (const auto& n : cfg.networks)
        if (n.interface == req.interface) return &n;
    return nullptr;
}

}  // namespace

Bytes client_key(const Message& m, bool ignore_client_id) {
    if (!ignore_client_id)
        if (const Option* cid = m.find(opt::client_id); cid && !cid->data.empty()) {
            Bytes k{0xFF};  // tag: keeps a client id from colliding with a hardware key
            k.insert(k.end(), cid->data.begin(), cid->data.end());
            return k;
        }
    Bytes k{m.htype};
    k.insert(k.end(), m.chaddr.begin(), m.chaddr.begin() + std::min<std::size_t>(m.hlen, 16));
    return k;
}

Decision decide(const Request& req, std::uint64_t now, const LeaseView& leases, const Config& cfg) {
    const Message& m = req.message;
    Decision none;
    if (m.op != 1) return none.log = "ignored: not a BOOTREQUEST", none;
    const auto type = m.type();
    if (!type) return none.log = "ignored: no valid message type (option 53)", none;
    const NetworkConfig* net = select_network(cfg, req);
    if (!net) {
        none.log = "ignored " + std::string(to_string(*type)) + " from " + m.mac().to_string() + ": no network for " +
                   (m.giaddr.is_unspecified() ? "interface " + req.interface : "relay " + m.giaddr.to_string());
        return none;
    }
    std::string note;
    const Host* host = match_host(*net, m, note);
    Context c{cfg, *net, host, client_key(m, net->ignore_client_id), now, leases, req.explain};
    none.network = net->name;
    auto with_note = [&](Decision&& d) -> Decision {
        if (!note.empty() && (!d.log.empty() || c.explain)) d.log += "; " + note;
        d.network = net->name;
        return std::move(d);
    };
    // known_only (Kea's KNOWN class, dnsmasq's dhcp-ignore=tag:!known): a client that matches no host of the
    // network gets no address; its DISCOVER is ignored, its REQUEST refused (an authoritative NAK).
    if (net->known_only && !host && (*type == MessageType::discover || *type == MessageType::request)) {
        if (*type == MessageType::request && cfg.authoritative &&
            !(m.address_option(opt::server_id) && *m.address_option(opt::server_id) != net->server_id)) {
            auto d = nak(m, c, "network " + net->name + " serves known clients only (known_only)");
            d.unknown_client = true;
            d.network = net->name;
            return d;
        }
        none.unknown_client = true;
        none.log = "ignored " + std::string(to_string(*type)) + " from " + who(c, m) + ": network " + net->name +
                   " serves known clients only (known_only)";
        return none;
    }
    const auto server_id = m.address_option(opt::server_id);
    const auto requested = m.address_option(opt::requested_address);

    switch (*type) {
        case MessageType::discover: {
            auto a = choose(c, requested);
            if (!a) {
                none.log = "no address for " + who(c, m) + ": network " + net->name + " has no free address (pool exhausted)";
                none.exhausted = true;
                return with_note(std::move(none));
            }
            Decision d;
            Message r = reply_base(m, MessageType::offer, *net);
            r.yiaddr = *a;
            add_lease_times(r, c);
            add_options(r, m, c, true);
            d.changes.push_back({make_lease(c, m, *a, LeaseState::offered, now + cfg.offer_hold)});
            // An offer holds the address only briefly; keep an existing binding's state instead.
            if (const Lease* l = leases.by_address(*a); l && l->client == c.key && l->state == LeaseState::bound && l->expires > now)
                d.changes.clear();
            d.reply = std::move(r);
            d.max_reply_size = max_reply(m);
            if (c.explain) d.log = "OFFER " + a->to_string() + " to " + who(c, m);
            return with_note(std::move(d));
        }
        case MessageType::request: {
            if (server_id) {  // SELECTING (RFC 2131 4.3.2)
                if (*server_id != net->server_id) {
                    Decision d;
                    if (const Lease* l = leases.by_client(c.key); l && l->state == LeaseState::offered) d.changes.push_back({*l, true});
                    d.log = who(c, m) + " chose server " + server_id->to_string() + "; our offer withdrawn";
                    return d;
                }
                if (!requested) return with_note(nak(m, c, "REQUEST in SELECTING without a requested address"));
                if (!owns(c, *requested)) return with_note(nak(m, c, requested->to_string() + " was not offered to this client"));
                return with_note(ack(m, c, *requested, "selecting"));
            }
            if (requested && m.ciaddr.is_unspecified()) {  // INIT-REBOOT (RFC 2131 4.3.2; docs/site-file.md, dhcp.authoritative)
                // Never an ACK without a record of this client (a lease it holds, or its reservation): without
                // one, an authoritative server NAKs (the client restarts with DISCOVER, as Kea and ISC dhcpd
                // do) and a non-authoritative one stays silent, so that it never contradicts another server.
                auto silent = [&](const std::string& why) {
                    none.log =
                        "INIT-REBOOT for " + requested->to_string() + " from " + who(c, m) + ": " + why + ", not authoritative: silent";
                    return with_note(std::move(none));
                };
                if (!net->subnet.is_host(*requested)) {
                    const std::string why = requested->to_string() + " is not on network " + net->subnet.to_string();
                    return cfg.authoritative ? with_note(nak(m, c, why)) : silent(why);
                }
                if (owns(c, *requested)) return with_note(ack(m, c, *requested, "init-reboot"));
                if (c.host && c.host->fixed) return with_note(nak(m, c, "this client's address is " + c.host->fixed->to_string()));
                const Lease* mine = leases.by_client(c.key);
                if (mine && mine->network == net->name && mine->state != LeaseState::declined)
                    return with_note(
                        nak(m, c, "this client's address is " + mine->address.to_string() + ", not " + requested->to_string()));
                if (!cfg.authoritative) return silent("no record of this client");
                return with_note(nak(m, c, "no record of this client for " + requested->to_string() + " (start again with DISCOVER)"));
            }
            if (!m.ciaddr.is_unspecified()) {  // RENEWING (unicast) or REBINDING (broadcast)
                if (owns(c, m.ciaddr)) return with_note(ack(m, c, m.ciaddr, "renew"));
                if (cfg.authoritative && net->subnet.contains(m.ciaddr))
                    return with_note(nak(m, c, m.ciaddr.to_string() + " is not leased to this client"));
                none.log = "renewal of " + m.ciaddr.to_string() + " from " + who(c, m) + " not ours: silent";
                return with_note(std::move(none));
            }
            return with_note(nak(m, c, "REQUEST without server identifier, requested address or ciaddr"));
        }
        case MessageType::decline: {
            Decision d;
            if (server_id && *server_id != net->server_id) return d.log = "DECLINE for another server ignored", d;
            if (!requested) return d.log = "DECLINE without a requested address ignored", d;
            if (!owns(c, *requested))
                return d.log = "DECLINE of " + requested->to_string() + " by a client that does not hold it ignored", d;
            Lease l = make_lease(c, m, *requested, LeaseState::declined, now + cfg.probation);
            l.client.clear();  // the address is nobody's while on probation
            d.changes.push_back({l});
            d.log = "DECLINE: " + requested->to_string() + " in use by another host (says " + who(c, m) + "); on probation for " +
                    std::to_string(cfg.probation) + " s";
            return d;
        }
        case MessageType::release: {
            Decision d;
            const Lease* held = leases.by_address(m.ciaddr);
            if (!owns(c, m.ciaddr) || !held || held->client != c.key) {
                d.log = "RELEASE of " + m.ciaddr.to_string() + " from " + who(c, m) + ": not its lease, ignored";
                return d;
            }
            // A reserved address is released like any other: the lease ends (and its routes go); the
            // reservation stays, so the next DISCOVER of this client gets the same address.
            Lease l = *held;
            l.state = LeaseState::released;
            l.expires = now;
            d.changes.push_back({l});  // the binding is remembered: the same client gets it back
            d.log = "RELEASE " + m.ciaddr.to_string() + " by " + who(c, m);
            return d;
        }
        case MessageType::inform: {  // RFC 2131 4.3.5: options, no lease, no yiaddr
            Decision d;
            Message r = reply_base(m, MessageType::ack, *net);
            r.ciaddr = m.ciaddr;
            add_options(r, m, c, false);
            d.reply = std::move(r);
            d.max_reply_size = max_reply(m);
            d.log = "INFORM from " + who(c, m) + " at " + m.ciaddr.to_string();
            return with_note(std::move(d));
        }
        default: none.log = "ignored " + std::string(to_string(*type)) + " (a server message)"; return none;
    }
}

Config make_config(const common::Site& site, const std::function<std::optional<Ipv4>(const std::string&)>& interface_address) {
    Config cfg;
    cfg.authoritative = site.services.dhcp.authoritative;
    for (const auto& n : site.networks) {
        NetworkConfig nc;
        nc.name = n.name;
        nc.interface = n.interface;
        nc.subnet = n.subnet;
        nc.pools = n.pools;
        nc.lease_time = n.lease_time;
        nc.ignore_client_id = n.ignore_client_id;
        nc.known_only = n.known_only;
        nc.domain = n.domain;
        auto sid = n.server_address ? n.server_address : n.gateway ? n.gateway : interface_address(n.interface);
        if (!sid)
            throw std::runtime_error("network " + n.name + ": no server_address, no gateway, and interface " + n.interface +
                                     " has no IPv4 address");
        nc.server_id = *sid;
        nc.options = network_base_options(n);
        add_site_options(nc.options, nc.always_send, n.options, n.monitoring_option);
        for (const auto& u : site.unikernels) {
            if (u.network != n.name || !u.dhcp) continue;
            Host h{u.name, u.mac, u.mac_derived, {}, {}, {}, {}};
            h.client_id = u.client_id;
            h.fixed = u.address;
            h.options = network_base_options(n);
            add_site_options(h.options, h.always_send, site.effective_options(u), n.monitoring_option);
            // The configuration URI: the site's config_uri (always sent), else the repository's URI without its
            // secret (sent when asked for: a unikernel built to read it lists the code in option 55).
            if (const auto uri = common::dhcp_config_uri(site, u); !uri.empty() && uri.size() <= 255) {
                h.options.push_back({site.services.dhcp.config_uri_option, Bytes(uri.begin(), uri.end())});
                if (!u.config_uri.empty()) h.always_send.insert(site.services.dhcp.config_uri_option);
            }
            nc.hosts.push_back(std::move(h));
        }
        cfg.networks.push_back(std::move(nc));
    }
    return cfg;
}

std::vector<LeaseEvent> lease_events(const std::vector<LeaseChange>& changes, bool binds) {
    std::vector<LeaseEvent> events;
    for (const auto& ch : changes) {
        if (ch.remove) continue;
        if (binds && ch.lease.state == LeaseState::bound) events.push_back({LeaseEvent::Kind::bound, ch.lease, "ack"});
        else if (ch.lease.state == LeaseState::released) events.push_back({LeaseEvent::Kind::released, ch.lease, "release"});
        else if (ch.lease.state == LeaseState::declined) events.push_back({LeaseEvent::Kind::released, ch.lease, "decline"});
    }
    return events;
}

std::string why_released(const LeaseEvent& e) { return std::string(e.cause) + " of"; }

ReplyDestination reply_destination(const Message& reply, std::uint16_t server_port, std::uint16_t client_port) {
    const common::Ipv4 broadcast(255, 255, 255, 255);
    if (!reply.giaddr.is_unspecified()) return {reply.giaddr, server_port, false};
    if (reply.type() == MessageType::nak) return {broadcast, client_port, false};
    if (!reply.ciaddr.is_unspecified()) return {reply.ciaddr, client_port, false};
    if (reply.broadcast_flag() || reply.yiaddr.is_unspecified() || reply.htype != 1 || reply.hlen != 6)
        return {broadcast, client_port, false};
    return {reply.yiaddr, client_port, true};
}

}  // namespace fleetconf::dhcp
