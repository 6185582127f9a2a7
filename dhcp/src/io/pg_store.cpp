// Leases in PostgreSQL: the schema and its versions, the compare-and-set batch write, and the listener
// that keeps each server's in-memory copy current (docs/scale-out.md).
#include "fleetconf/dhcp/pg_store.hpp"

#include "fleetconf/common/crypto.hpp"
#include "fleetconf/common/files.hpp"

#include <libpq-fe.h>
#include <nlohmann/json.hpp>
#include <poll.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <random>
#include <stdexcept>

namespace fleetconf::dhcp::pg {

using common::Ipv4;

namespace {

std::string trimmed_error(const char* m) {
    std::string s = m ? m : "";
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    if (auto nl = s.find('\n'); nl != std::string::npos) s = s.substr(0, nl);
    return s.empty() ? "unknown libpq error" : s;
}

// Array literals for unnest($n::type[]) (PostgreSQL, "Array Value Input"): every element quoted, with
// backslash and double quote escaped; a bytea element in hex format (\x...).
void add_text(std::string& a, std::string_view s) {
    a += a.empty() ? "{\"" : ",\"";
    for (char c : s) {
        if (c == '"' || c == '\\') a += '\\';
        a += c;
    }
    a += '"';
}
void add_bytes(std::string& a, std::span<const std::uint8_t> b) {
    a += a.empty() ? "{\"\\\\x" : ",\"\\\\x";
    a += common::to_hex(b);
    a += '"';
}
void add_number(std::string& a, std::int64_t v) {
    a += a.empty() ? "{" : ",";
    a += std::to_string(v);
}
std::string close(std::string a) { return a.empty() ? "{}" : a + "}"; }

// The upsert columns of kWrite ($1-$10), one array literal each, filled a lease at a time.
struct Columns {
    std::string address, client, mac, hostname, network, state, expires, fqdn, version, expected;
    void add(const Lease& l, std::int64_t token, std::int64_t expect) {
        add_number(address, l.address.value());
        add_bytes(client, l.client);
        add_bytes(mac, l.mac.bytes());
        add_text(hostname, l.hostname);
        add_text(network, l.network);
        add_number(state, static_cast<int>(l.state));
        add_number(expires, static_cast<std::int64_t>(l.expires));
        add_text(fqdn, l.fqdn);
        add_number(version, token);
        add_number(expected, expect);
    }
    // kWrite's parameters: these columns, the writer ($11) and the deletions ($12, $13).
    std::vector<std::optional<std::string>> params(const std::string& writer, std::string del_address, std::string del_expected) {
        return {close(address),
                close(client),
                close(mac),
                close(hostname),
                close(network),
                close(state),
                close(expires),
                close(fqdn),
                close(version),
                close(expected),
                writer,
                close(std::move(del_address)),
                close(std::move(del_expected))};
    }
};

std::int64_t to_i64(const std::optional<std::string>& s) {
    if (!s) throw std::runtime_error("lease database: unexpected NULL");
    return std::stoll(*s);
}

const char* kSelect =
    "SELECT address, encode(client, 'hex'), encode(mac, 'hex'), hostname, network, state, expires, fqdn, version FROM fleetconf_lease4";

// One row of kSelect; throws on a value this build cannot represent.
std::pair<Lease, std::int64_t> row_lease(const Connection::Row& r) {
    if (r.size() != 9) throw std::runtime_error("lease database: unexpected row shape");
    Lease l;
    const auto addr = to_i64(r[0]);
    if (addr < 0 || addr > 0xffffffffLL) throw std::runtime_error("lease database: address out of range");
    l.address = Ipv4(static_cast<std::uint32_t>(addr));
    auto client = common::from_hex(r[1].value_or(""));
    auto mac = common::from_hex(r[2].value_or(""));
    if (!client || !mac || mac->size() != 6)
        throw std::runtime_error("lease database: malformed client or MAC of " + l.address.to_string());
    l.client = std::move(*client);
    std::array<std::uint8_t, 6> m{};
    std::copy(mac->begin(), mac->end(), m.begin());
    l.mac = common::Mac(m);
    l.hostname = r[3].value_or("");
    l.network = r[4].value_or("");
    const auto st = to_i64(r[5]);
    if (st < 0 || st > 3) throw std::runtime_error("lease database: unknown state of " + l.address.to_string());
    l.state = static_cast<LeaseState>(st);
    l.expires = static_cast<std::uint64_t>(std::max<std::int64_t>(0, to_i64(r[6])));
    l.fqdn = r[7].value_or("");
    return {std::move(l), to_i64(r[8])};
}

std::vector<std::pair<Lease, std::int64_t>> load_rows(Connection& c, const std::string& where = "",
                                                      const std::vector<std::optional<std::string>>& params = {}) {
    std::vector<std::pair<Lease, std::int64_t>> out;
    for (const auto& r : c.exec(std::string(kSelect) + where + " ORDER BY address", params)) out.push_back(row_lease(r));
    return out;
}

// Schema version 1 (docs/scale-out.md, "Schema"). Each later version adds a step; upgrade() runs the
// steps after the database's version, each in its own transaction with the version row.
const char* kSchemaV1 = R"sql(
CREATE TABLE fleetconf_schema_version (
    version integer NOT NULL,
    applied timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE fleetconf_lease4 (
    address bigint PRIMARY KEY CHECK (address >= 0 AND address <= 4294967295),
    client bytea NOT NULL,
    mac bytea NOT NULL CHECK (length(mac) = 6),
    hostname text NOT NULL DEFAULT '',
    network text NOT NULL,
    state smallint NOT NULL CHECK (state BETWEEN 0 AND 3),
    expires bigint NOT NULL,
    fqdn text NOT NULL DEFAULT '',
    version bigint NOT NULL,
    writer text NOT NULL DEFAULT '',
    updated timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX fleetconf_lease4_client ON fleetconf_lease4 (client);
CREATE FUNCTION fleetconf_lease4_notify() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    w text := coalesce(current_setting('fleetconf.writer', true), '');
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('fleetconf_lease4', json_build_object('op', 'delete', 'writer', w, 'address', OLD.address)::text);
        RETURN OLD;
    END IF;
    PERFORM pg_notify('fleetconf_lease4', json_build_object('op', 'upsert', 'writer', w, 'address', NEW.address,
        'client', encode(NEW.client, 'hex'), 'mac', encode(NEW.mac, 'hex'), 'hostname', NEW.hostname,
        'network', NEW.network, 'state', NEW.state, 'expires', NEW.expires, 'fqdn', NEW.fqdn,
        'version', NEW.version)::text);
    RETURN NEW;
END $$;
CREATE TRIGGER fleetconf_lease4_notify AFTER INSERT OR UPDATE OR DELETE ON fleetconf_lease4
    FOR EACH ROW EXECUTE FUNCTION fleetconf_lease4_notify();
)sql";

// One compare-and-set statement for a whole batch: updates where the row holds the expected token, inserts
// where there is no row (ON CONFLICT DO NOTHING: a concurrent insert wins), deletes where the row holds the
// expected token. It returns the addresses it changed; every other address of the batch lost a race.
const char* kWrite = R"sql(
WITH d AS (
    SELECT * FROM unnest($1::bigint[], $2::bytea[], $3::bytea[], $4::text[], $5::text[], $6::smallint[], $7::bigint[],
                         $8::text[], $9::bigint[], $10::bigint[])
        AS d(address, client, mac, hostname, network, state, expires, fqdn, version, expected)
), upd AS (
    UPDATE fleetconf_lease4 t SET client = d.client, mac = d.mac, hostname = d.hostname, network = d.network,
        state = d.state, expires = d.expires, fqdn = d.fqdn, version = d.version, writer = $11, updated = now()
    FROM d WHERE d.expected <> 0 AND t.address = d.address AND t.version = d.expected
    RETURNING t.address
), ins AS (
    INSERT INTO fleetconf_lease4 (address, client, mac, hostname, network, state, expires, fqdn, version, writer)
    SELECT address, client, mac, hostname, network, state, expires, fqdn, version, $11 FROM d WHERE d.expected = 0
    ON CONFLICT (address) DO NOTHING
    RETURNING address
), del AS (
    DELETE FROM fleetconf_lease4 t USING unnest($12::bigint[], $13::bigint[]) AS x(address, expected)
    WHERE t.address = x.address AND t.version = x.expected
    RETURNING t.address
)
SELECT address FROM upd UNION ALL SELECT address FROM ins UNION ALL SELECT address FROM del
)sql";

}  // namespace

// ---- Connection -------------------------------------------------------------------------------------

Connection::Connection(const common::LeaseDatabase& db, int connect_timeout_s) {
    std::string password;
    if (!db.password_file.empty())
        if (auto err = common::read_secret_line(db.password_file, password)) throw std::runtime_error("lease database: " + *err);
    const std::string timeout = std::to_string(connect_timeout_s);
    // Ours first, then the site's connection string (expanded from dbname), which may override them; the
    // password last, from its file.
    std::vector<const char*> keys{"application_name",    "connect_timeout",  "keepalives_idle",
                                  "keepalives_interval", "keepalives_count", "dbname"};
    std::vector<const char*> values{"fleetconf", timeout.c_str(), "10", "5", "3", db.conninfo.c_str()};
    if (!password.empty()) {
        keys.push_back("password");
        values.push_back(password.c_str());
    }
    keys.push_back(nullptr);
    values.push_back(nullptr);
    conn_ = PQconnectdbParams(keys.data(), values.data(), 1);
    if (!conn_) throw std::runtime_error("lease database: out of memory");
    if (PQstatus(conn_) != CONNECTION_OK) {
        std::string e = trimmed_error(PQerrorMessage(conn_));
        PQfinish(conn_);
        conn_ = nullptr;
        throw std::runtime_error("lease database: " + e);
    }
}

Connection::~Connection() {
    if (conn_) PQfinish(conn_);
}

bool Connection::ok() const { return conn_ && PQstatus(conn_) == CONNECTION_OK; }

std::string Connection::server() const {
    const char* host = PQhost(conn_);
    std::string s = host && *host ? host : "(default)";
    if (const char* port = PQport(conn_); port && *port) s += ":" + std::string(port);
    const int v = PQserverVersion(conn_);
    return s + ", PostgreSQL " + std::to_string(v / 10000) + "." + std::to_string(v % 10000);
}

std::vector<Connection::Row> Connection::exec(const std::string& sql, const std::vector<std::optional<std::string>>& params) {
    std::vector<const char*> values;
    values.reserve(params.size());
    for (const auto& p : params) values.push_back(p ? p->c_str() : nullptr);
    PGresult* r = params.empty()
                      ? PQexec(conn_, sql.c_str())
                      : PQexecParams(conn_, sql.c_str(), static_cast<int>(params.size()), nullptr, values.data(), nullptr, nullptr, 0);
    if (!r) throw std::runtime_error("lease database: " + trimmed_error(PQerrorMessage(conn_)));
    const auto st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        std::string e = trimmed_error(PQresultErrorMessage(r));
        PQclear(r);
        throw std::runtime_error("lease database: " + e);
    }
    std::vector<Row> rows;
    const int n = PQntuples(r), f = PQnfields(r);
    rows.reserve(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) {
        Row row;
        row.reserve(static_cast<std::size_t>(f));
        for (int j = 0; j < f; ++j)
            row.push_back(PQgetisnull(r, i, j) ? std::nullopt
                                               : std::optional<std::string>(
                                                     std::string(PQgetvalue(r, i, j), static_cast<std::size_t>(PQgetlength(r, i, j)))));
        rows.push_back(std::move(row));
    }
    PQclear(r);
    return rows;
}

// ---- schema -----------------------------------------------------------------------------------------

Status status(Connection& c) {
    Status s;
    s.server = c.server();
    s.synchronous_commit = c.exec("SHOW synchronous_commit").at(0).at(0).value_or("");
    const auto exists = c.exec("SELECT to_regclass('fleetconf_schema_version') IS NOT NULL").at(0).at(0);
    if (exists != std::optional<std::string>("t")) return s;
    s.version = static_cast<int>(to_i64(c.exec("SELECT coalesce(max(version), 0) FROM fleetconf_schema_version").at(0).at(0)));
    if (s.version > 0) s.leases = static_cast<std::uint64_t>(to_i64(c.exec("SELECT count(*) FROM fleetconf_lease4").at(0).at(0)));
    return s;
}

void init(Connection& c) {
    const auto s = status(c);
    if (s.version != 0)
        throw std::runtime_error("the database holds fleetconf's schema version " + std::to_string(s.version) +
                                 " already: `fleetconf dhcp db status` shows it, `db upgrade` moves it to version " +
                                 std::to_string(kSchemaVersion));
    c.exec("BEGIN");
    try {
        c.exec(kSchemaV1);
        c.exec("INSERT INTO fleetconf_schema_version (version) VALUES (1)");
        c.exec("COMMIT");
    } catch (...) {
        if (c.ok()) c.exec("ROLLBACK");
        throw;
    }
}

int upgrade(Connection& c) {
    const int found = status(c).version;
    if (found == 0) throw std::runtime_error("no fleetconf schema in this database: `fleetconf dhcp db init` creates it");
    if (found > kSchemaVersion)
        throw std::runtime_error("the database's schema version " + std::to_string(found) + " is newer than this build's (" +
                                 std::to_string(kSchemaVersion) + "): use a newer fleetconf");
    // Version 1 is the first: no step yet. A step N is: BEGIN; <DDL>; INSERT version N; COMMIT.
    return found;
}

void require_schema(Connection& c) {
    const int v = status(c).version;
    if (v == kSchemaVersion) return;
    if (v == 0) throw std::runtime_error("lease database: no fleetconf schema: run `fleetconf dhcp db init --site SITE` once");
    if (v < kSchemaVersion)
        throw std::runtime_error("lease database: schema version " + std::to_string(v) + ", this build needs " +
                                 std::to_string(kSchemaVersion) +
                                 ": run `fleetconf dhcp db upgrade --site SITE` (the server never changes the schema itself)");
    throw std::runtime_error("lease database: schema version " + std::to_string(v) + " is newer than this build's (" +
                             std::to_string(kSchemaVersion) + ")");
}

std::vector<Lease> load(Connection& c) {
    std::vector<Lease> out;
    for (auto& [l, token] : load_rows(c)) out.push_back(std::move(l));
    return out;
}

void replace_all(Connection& c, const std::vector<Lease>& leases) {
    require_schema(c);
    c.exec("BEGIN");
    try {
        c.exec("DELETE FROM fleetconf_lease4");
        std::mt19937_64 rng{std::random_device{}()};
        constexpr std::size_t kChunk = 5000;
        for (std::size_t i = 0; i < leases.size(); i += kChunk) {
            Columns cols;
            for (std::size_t k = i; k < std::min(leases.size(), i + kChunk); ++k)
                cols.add(leases[k], static_cast<std::int64_t>(rng() >> 1) | 1, 0);
            c.exec(kWrite, cols.params("migration", "", ""));
        }
        c.exec("COMMIT");
    } catch (...) {
        if (c.ok()) c.exec("ROLLBACK");
        throw;
    }
}

// ---- the store --------------------------------------------------------------------------------------

PgLeaseStore::PgLeaseStore(common::LeaseDatabase db, std::string name, Post post, std::shared_ptr<spdlog::logger> log)
    : db_(std::move(db)), name_(std::move(name)), post_(std::move(post)), log_(std::move(log)) {
    std::random_device rd;
    nonce_ = static_cast<std::int64_t>((static_cast<std::uint64_t>(rd()) << 1 | 1) & 0x7fffffffu);
    writer_ = name_ + "#" + std::to_string(nonce_);
    try {
        Connection c(db_);
        require_schema(c);
        auto rows = load_rows(c);
        for (auto& [l, token] : rows) {
            tokens_[l.address.value()] = token;
            apply_one({std::move(l)});
        }
        log_->info("lease database: {} ({} leases loaded)", c.server(), size());
    } catch (const std::exception& e) {
        // A schema that does not match is the operator's to fix: refuse to start. A database that cannot be
        // reached is expected during a failover: start unavailable and keep trying.
        if (std::string_view(e.what()).find("schema") != std::string_view::npos) throw;
        down_ = e.what();
        log_->error("{}: no lease is offered or promised until it is reachable", e.what());
    }
    listener_ = std::thread([this] { listen_loop(); });
}

PgLeaseStore::~PgLeaseStore() {
    *alive_ = false;
    {
        std::lock_guard lock(wake_mutex_);
        stop_ = true;
    }
    wake_.notify_all();
    if (listener_.joinable()) listener_.join();
}

std::int64_t PgLeaseStore::next_token() { return (nonce_ << 32) | static_cast<std::int64_t>(++counter_); }

std::int64_t PgLeaseStore::token(Ipv4 a) const {
    auto it = tokens_.find(a.value());
    return it == tokens_.end() ? 0 : it->second;
}

void PgLeaseStore::queue(Ipv4 a, std::optional<Lease> l) {
    auto it = pending_.find(a);
    if (it == pending_.end()) it = pending_.emplace(a, Pending{std::nullopt, token(a), 0}).first;
    it->second.lease = std::move(l);
    if (it->second.lease) {
        it->second.token = next_token();
        tokens_[a.value()] = it->second.token;
    } else {
        it->second.token = 0;
        tokens_.erase(a.value());
    }
}

void PgLeaseStore::apply(const std::vector<LeaseChange>& changes) {
    for (const auto& c : changes) {
        const Ipv4 a = c.lease.address;
        // One address per client: a client's new address releases its previous row (as in memory).
        if (!c.remove && !c.lease.client.empty())
            if (const Lease* old = by_client(c.lease.client); old && old->address != a) queue(old->address, std::nullopt);
        queue(a, c.remove ? std::nullopt : std::optional<Lease>(c.lease));
        apply_one(c);
    }
}

void PgLeaseStore::write(const std::map<Ipv4, Pending>& batch, Outcome& out) {
    Columns cols;
    std::string da, de;
    std::vector<std::int64_t> sent;
    for (const auto& [addr, p] : batch) {
        if (!p.lease) {
            if (p.expected == 0) continue;  // never written: nothing to delete
            add_number(da, addr.value());
            add_number(de, p.expected);
        } else {
            cols.add(*p.lease, p.token, p.expected);
        }
        sent.push_back(addr.value());
    }
    if (sent.empty()) return;
    std::lock_guard lock(write_mutex_);
    const auto params = cols.params(writer_, std::move(da), std::move(de));
    std::vector<Connection::Row> rows;
    // A connection the database closed (a restart, a failover) is only found out by using it: then one new
    // connection and one more try. Should the first try have committed after all, its rows hold this
    // server's tokens, which the check below recognises as written.
    for (int attempt = 0;; ++attempt) {
        const bool fresh = !sync_conn_ || !sync_conn_->ok();
        try {
            if (fresh) {
                sync_conn_.reset();
                auto c = std::make_unique<Connection>(db_);
                c->exec("SELECT set_config('fleetconf.writer', $1, false), set_config('statement_timeout', '10s', false)", {writer_});
                sync_conn_ = std::move(c);
            }
            rows = sync_conn_->exec(kWrite, params);
            break;
        } catch (...) {
            sync_conn_.reset();
            if (attempt == 0 && !fresh) continue;  // an old connection: perhaps closed by the server meanwhile
            throw;
        }
    }
    if (rows.size() == sent.size()) return;
    std::vector<std::int64_t> done;
    for (const auto& r : rows) done.push_back(to_i64(r.at(0)));
    std::sort(done.begin(), done.end());
    std::string missing;
    std::vector<Ipv4> candidates;
    for (auto x : sent)
        if (!std::binary_search(done.begin(), done.end(), x)) {
            candidates.emplace_back(static_cast<std::uint32_t>(x));
            add_number(missing, x);
        }
    // The rows as they are now: the winners', so that the next decision about these addresses is made on
    // what is stored (or this server's own, written by a first try whose reply was lost).
    std::vector<std::pair<Lease, std::int64_t>> now;
    try {
        now = load_rows(*sync_conn_, " WHERE address = ANY($1::bigint[])", {close(missing)});
    } catch (...) {
        sync_conn_.reset();
        throw;
    }
    for (const auto c : candidates) {
        const auto& p = batch.at(c);
        auto it = std::find_if(now.begin(), now.end(), [&](const auto& r) { return r.first.address == c; });
        const std::int64_t stored = it == now.end() ? 0 : it->second;
        if (stored == p.token) continue;  // written after all (0 == 0: a delete that took place)
        out.conflicts.push_back(c);
        if (it == now.end()) out.rows.emplace_back(c, std::nullopt);
        else out.rows.emplace_back(c, it->first);
        out.tokens.push_back(stored);
    }
}

void PgLeaseStore::forget(Ipv4 a) {
    Lease gone;
    gone.address = a;
    apply_one({gone, true});
    tokens_.erase(a.value());
}

std::vector<Ipv4> PgLeaseStore::settle(const Outcome& out) {
    for (std::size_t i = 0; i < out.rows.size(); ++i) {
        const auto& [a, row] = out.rows[i];
        if (pending_.count(a)) continue;  // changed again meanwhile: that write settles it
        if (row) {
            apply_one({*row});
            tokens_[a.value()] = out.tokens[i];
        } else {
            forget(a);
        }
        log_->info("{}: changed by another server first: this server's reply is withheld and the lease reloaded", a.to_string());
    }
    conflicts_ += out.conflicts.size();
    return out.conflicts;
}

void PgLeaseStore::sync() {
    if (pending_.empty()) return;
    if (down_) throw std::runtime_error(*down_);
    auto batch = std::move(pending_);
    pending_.clear();
    Outcome out;
    try {
        write(batch, out);
    } catch (const std::exception& e) {
        ++failures_;
        down_ = e.what();
        reload_ = true;
        wake_.notify_all();
        throw;
    }
    ++writes_;
    const auto lost = settle(out);
    if (!lost.empty())
        throw std::runtime_error("lease database: " + lost.front().to_string() + (lost.size() > 1 ? " and others were" : " was") +
                                 " changed by another server first");
}

std::function<void()> PgLeaseStore::begin_sync() {
    if (pending_.empty()) return {};
    if (down_) {
        pending_.clear();  // the reload that ends the outage replaces the copy these were applied to
        throw std::runtime_error(*down_);
    }
    auto batch = std::make_shared<std::map<Ipv4, Pending>>(std::move(pending_));
    pending_.clear();
    in_flight_ = std::make_shared<Outcome>();
    return [this, batch, out = in_flight_] { write(*batch, *out); };
}

std::vector<Ipv4> PgLeaseStore::end_sync(bool ok) {
    auto out = std::move(in_flight_);
    if (!ok) {
        ++failures_;
        if (!down_) down_ = "a lease write failed; reloading the leases from the database";
        reload_ = true;
        wake_.notify_all();
        return {};
    }
    ++writes_;
    return out ? settle(*out) : std::vector<Ipv4>{};
}

std::optional<std::string> PgLeaseStore::unavailable() const { return down_; }

std::vector<std::pair<std::string, std::uint64_t>> PgLeaseStore::counters() const {
    return {{"db_writes", writes_},         {"db_conflicts", conflicts_},           {"db_failures", failures_},
            {"db_reconnects", reconnects_}, {"db_remote_updates", remote_updates_}, {"db_reloads", reloads_}};
}

void PgLeaseStore::replace(std::vector<Lease> rows, std::vector<std::int64_t> tokens) {
    clear();
    tokens_.clear();
    for (std::size_t i = 0; i < rows.size(); ++i) {
        tokens_[rows[i].address.value()] = tokens[i];
        apply_one({std::move(rows[i])});
    }
    // What this server decided since is not in the table yet: it stays in the copy, and its write follows.
    for (const auto& [a, p] : pending_) {
        if (p.lease) {
            apply_one({*p.lease});
            tokens_[a.value()] = p.token;
        } else {
            forget(a);
        }
    }
    ++reloads_;
    if (down_) log_->info("lease database reachable again: {} leases loaded; offering and acknowledging again", size());
    down_.reset();
}

void PgLeaseStore::remote(const std::string& payload) {
    auto j = nlohmann::json::parse(payload, nullptr, false);
    if (!j.is_object() || j.value("writer", std::string()) == writer_) return;  // malformed, or this server's own write
    const auto addr = j.value("address", std::int64_t{-1});
    if (addr < 0 || addr > 0xffffffffLL) return;
    const Ipv4 a(static_cast<std::uint32_t>(addr));
    ++remote_updates_;
    if (j.value("op", std::string()) == "delete") {
        forget(a);
        return;
    }
    Lease l;
    l.address = a;
    auto client = common::from_hex(j.value("client", std::string()));
    auto mac = common::from_hex(j.value("mac", std::string()));
    const auto st = j.value("state", -1);
    if (!client || !mac || mac->size() != 6 || st < 0 || st > 3) return;
    l.client = std::move(*client);
    std::array<std::uint8_t, 6> m{};
    std::copy(mac->begin(), mac->end(), m.begin());
    l.mac = common::Mac(m);
    l.hostname = j.value("hostname", std::string());
    l.network = j.value("network", std::string());
    l.state = static_cast<LeaseState>(st);
    l.expires = static_cast<std::uint64_t>(std::max<std::int64_t>(0, j.value("expires", std::int64_t{0})));
    l.fqdn = j.value("fqdn", std::string());
    apply_one({std::move(l)});
    tokens_[a.value()] = j.value("version", std::int64_t{0});
}

// The listener thread: its own connection, LISTEN, then a full load (after LISTEN, so no change falls between
// the two); notifications are handed to the io thread in the order the database committed them. A lost
// connection makes the store unavailable until it is back (retried with backoff from 0.25 s to 10 s), then
// everything is loaded again.
void PgLeaseStore::listen_loop() {
    using namespace std::chrono;
    auto backoff = milliseconds(250);
    std::unique_ptr<Connection> c;
    auto last_ping = steady_clock::now();
    auto last_try = steady_clock::time_point{};
    bool holding = false;
    bool first = true;
    auto post = [this](std::function<void(PgLeaseStore&)> f) {
        post_([this, alive = alive_, f = std::move(f)] {
            if (*alive) f(*this);
        });
    };
    while (!stop_) {
        try {
            if (!c) {
                auto fresh = std::make_unique<Connection>(db_);
                require_schema(*fresh);
                fresh->exec(std::string("LISTEN ") + kChannel);
                c = std::move(fresh);
                if (!first) post([](PgLeaseStore& s) { ++s.reconnects_; });
                // Loaded again after every LISTEN, the first included: a change committed between the
                // constructor's load and this LISTEN would otherwise never reach this server's copy.
                reload_ = true;
                first = false;
                backoff = milliseconds(250);
            }
            if (reload_.exchange(false)) {
                auto rows = load_rows(*c);
                std::vector<Lease> leases;
                std::vector<std::int64_t> tokens;
                for (auto& [l, t] : rows) {
                    leases.push_back(std::move(l));
                    tokens.push_back(t);
                }
                post([leases = std::move(leases), tokens = std::move(tokens)](PgLeaseStore& s) mutable {
                    s.replace(std::move(leases), std::move(tokens));
                });
            }
            // The duties (routes, expiry) go to whoever holds the lock; it is held by this session, so a server
            // that dies or loses its connection frees it, and another takes it within a second.
            if (!holding && steady_clock::now() - last_try > seconds(1)) {
                last_try = steady_clock::now();
                holding = c->exec("SELECT pg_try_advisory_lock(" + std::to_string(kDutyLock) + ")").at(0).at(0) ==
                          std::optional<std::string>("t");
                if (holding)
                    post([](PgLeaseStore& s) {
                        s.duty_ = true;
                        s.log_->info("lease database: this server now holds the site-wide duties (lease-driven routes, expiry)");
                    });
            }
            pollfd p{PQsocket(c->native()), POLLIN, 0};
            if (::poll(&p, 1, 250) < 0 && errno != EINTR) throw std::runtime_error("lease database: poll failed");
            if (!PQconsumeInput(c->native())) throw std::runtime_error("lease database: " + trimmed_error(PQerrorMessage(c->native())));
            if (steady_clock::now() - last_ping > seconds(5)) {  // a silent peer (a host gone) is found within seconds
                c->exec("SELECT 1");
                last_ping = steady_clock::now();
            }
            std::vector<std::string> payloads;
            while (PGnotify* n = PQnotifies(c->native())) {
                payloads.emplace_back(n->extra ? n->extra : "");
                PQfreemem(n);
            }
            if (!payloads.empty())
                post([payloads = std::move(payloads)](PgLeaseStore& s) {
                    for (const auto& x : payloads) s.remote(x);
                });
        } catch (const std::exception& e) {
            const bool had = c != nullptr;
            c.reset();
            first = false;
            std::string why = e.what();
            if (had) log_->error("{}: lost the lease database; no lease is offered or promised until it is back", why);
            const bool dropped_duty = holding;
            holding = false;
            post([why, dropped_duty](PgLeaseStore& s) {
                if (!s.down_) s.down_ = why;
                if (dropped_duty) {
                    s.duty_ = false;
                    s.log_->warn("lease database: the site-wide duties are no longer this server's (its session is gone)");
                }
            });
            std::unique_lock lock(wake_mutex_);
            wake_.wait_for(lock, backoff, [this] { return stop_.load(); });
            backoff = std::min(backoff * 2, milliseconds(10000));
        }
    }
}

}  // namespace fleetconf::dhcp::pg
