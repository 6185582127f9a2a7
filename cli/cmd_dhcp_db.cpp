// fleetconf dhcp db init|upgrade|status, dhcp migrate, dhcp import: the lease store's administration
// (docs/scale-out.md). The server never changes the database schema itself.
#include "commands.hpp"

#include "fleetconf/common/files.hpp"
#include "fleetconf/common/text.hpp"
#include "fleetconf/dhcp/kea_csv.hpp"
#include "fleetconf/dhcp/pg_store.hpp"
#include "fleetconf/dhcp/service.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <iostream>
#include <memory>

namespace fleetconf::cli {
namespace {

struct DbArgs {
    std::string site = "site.json";
    std::string data_dir;
    std::string to, from, file;
    bool replace = false;
    bool json = false;
};

// The site's PostgreSQL lease database, or an error when the site keeps its leases in the journal.
std::optional<common::LeaseDatabase> database(const common::Site& site) {
    const auto& db = site.services.dhcp.leases;
    if (db.type != common::LeaseDatabase::Type::postgresql) {
        print_error(site.source + ": services.dhcp.leases is not {\"type\": \"postgresql\", ...}: the leases are in the journal " +
                    dhcp::lease_file(site).string());
        return std::nullopt;
    }
    return db;
}

int db_command(const DbArgs& a, const std::string& what) {
    auto site = load_site_or_report(a.site, a.data_dir);
    if (!site) return kExitInvalid;
    auto db = database(*site);
    if (!db) return kExitInvalid;
    try {
        dhcp::pg::Connection c(*db);
        if (what == "init") {
            dhcp::pg::init(c);
            std::cout << "created fleetconf's lease schema version " << dhcp::pg::kSchemaVersion << " (" << c.server() << ")\n";
        } else if (what == "upgrade") {
            const int was = dhcp::pg::upgrade(c);
            if (was == dhcp::pg::kSchemaVersion) std::cout << "schema version " << was << ": up to date\n";
            else std::cout << "schema upgraded from version " << was << " to " << dhcp::pg::kSchemaVersion << "\n";
        } else {
            const auto s = dhcp::pg::status(c);
            if (a.json) {
                std::cout << nlohmann::json{{"server", s.server},
                                            {"schema_version", s.version},
                                            {"schema_version_needed", dhcp::pg::kSchemaVersion},
                                            {"leases", s.leases},
                                            {"synchronous_commit", s.synchronous_commit}}
                                 .dump(2)
                          << "\n";
            } else {
                std::cout << "server:             " << s.server << "\n"
                          << "schema version:     " << (s.version ? std::to_string(s.version) : std::string("none (run `dhcp db init`)"))
                          << " (this build needs " << dhcp::pg::kSchemaVersion << ")\n"
                          << "leases:             " << s.leases << "\n"
                          << "synchronous_commit: " << s.synchronous_commit << "\n";
            }
            return s.version == dhcp::pg::kSchemaVersion ? kExitOk : kExitFailure;
        }
    } catch (const std::exception& e) {
        print_error(e.what());
        return kExitFailure;
    }
    return kExitOk;
}

// Every lease of the local journal (the server must be stopped: the journal has one writer).
std::vector<dhcp::Lease> journal_leases(const std::filesystem::path& file) {
    if (!std::filesystem::exists(file)) return {};
    dhcp::JournalLeaseStore j(file);
    return j.all();
}

bool journal_empty(const std::filesystem::path& file) { return journal_leases(file).empty(); }

void write_journal(const std::filesystem::path& file, const std::vector<dhcp::Lease>& leases) {
    std::filesystem::create_directories(file.parent_path());
    const auto tmp = file.string() + ".migrating";
    std::filesystem::remove(tmp);
    {
        dhcp::JournalLeaseStore j(tmp);
        std::vector<dhcp::LeaseChange> changes;
        for (const auto& l : leases) changes.push_back({l});
        j.apply(changes);
        j.sync();
    }
    std::filesystem::rename(tmp, file);
    const int dir = ::open(file.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0 || ::fsync(dir) != 0) {
        if (dir >= 0) ::close(dir);
        throw std::system_error(errno, std::generic_category(), file.parent_path().string() + ": fsync");
    }
    ::close(dir);
}

// Writes `leases` to the site's configured store: the journal (refused when it holds leases, unless
// --replace) or PostgreSQL (the same rule).
int store_leases(const common::Site& site, const std::vector<dhcp::Lease>& leases, bool replace, const std::string& what) {
    const auto& dbc = site.services.dhcp.leases;
    if (dbc.type == common::LeaseDatabase::Type::postgresql) {
        dhcp::pg::Connection c(dbc);
        dhcp::pg::require_schema(c);
        if (!replace && dhcp::pg::status(c).leases) {
            print_error("the lease database holds leases already: --replace replaces them all");
            return kExitFailure;
        }
        dhcp::pg::replace_all(c, leases);
        std::cout << what << ": " << leases.size() << " leases written to PostgreSQL (" << c.server() << ")\n";
        return kExitOk;
    }
    const auto file = dhcp::lease_file(site);
    if (!replace && !journal_empty(file)) {
        print_error(file.string() + " holds leases already: --replace replaces them all");
        return kExitFailure;
    }
    write_journal(file, leases);
    std::cout << what << ": " << leases.size() << " leases written to " << file.string() << "\n";
    return kExitOk;
}

int migrate(const DbArgs& a) {
    auto site = load_site_or_report(a.site, a.data_dir);
    if (!site) return kExitInvalid;
    const DataDirLock lock(*site);  // no server of this data directory runs meanwhile
    if (!lock.ok()) return kExitFailure;
    auto db = database(*site);
    if (!db) return kExitInvalid;
    const auto file = dhcp::lease_file(*site);
    try {
        dhcp::pg::Connection c(*db);
        dhcp::pg::require_schema(c);
        if (a.to == "postgresql") {
            const auto leases = journal_leases(file);
            if (!a.replace && dhcp::pg::status(c).leases) {
                print_error("the lease database holds leases already: --replace replaces them all");
                return kExitFailure;
            }
            dhcp::pg::replace_all(c, leases);
            std::cout << "migrated " << leases.size() << " leases from " << file.string() << " to PostgreSQL (" << c.server() << ")\n";
        } else {
            const auto leases = dhcp::pg::load(c);
            if (!a.replace && !journal_empty(file)) {
                print_error(file.string() + " holds leases already: --replace replaces them all");
                return kExitFailure;
            }
            write_journal(file, leases);
            std::cout << "migrated " << leases.size() << " leases from PostgreSQL to " << file.string() << "\n";
        }
    } catch (const std::exception& e) {
        print_error(e.what());
        return kExitFailure;
    }
    return kExitOk;
}

int import(const DbArgs& a) {
    auto site = load_site_or_report(a.site, a.data_dir);
    if (!site) return kExitInvalid;
    const DataDirLock lock(*site);
    if (!lock.ok()) return kExitFailure;
    std::string text;
    if (auto err = common::read_file_limited(a.file, std::size_t{1} << 30, text)) {
        print_error(*err);
        return kExitFailure;
    }
    try {
        const auto r = dhcp::parse_kea_lease4_csv(text, [&](common::Ipv4 addr) -> std::optional<std::string> {
            for (const auto& n : site->networks)
                if (n.subnet.contains(addr)) return n.name;
            return std::nullopt;
        });
        for (const auto& w : r.warnings) std::cerr << "fleetconf: " << a.file << ": " << w << "\n";
        return store_leases(*site, r.leases, a.replace,
                            "imported " + std::to_string(r.leases.size()) + " of " + std::to_string(r.records) + " records from " + a.file);
    } catch (const std::exception& e) {
        print_error(a.file + ": " + e.what());
        return kExitFailure;
    }
}

}  // namespace

void add_dhcp_db_commands(CLI::App* d, Action& action) {
    auto* db = d->add_subcommand("db", "The PostgreSQL lease database (services.dhcp.leases): its schema, created and upgraded only here");
    db->require_subcommand(1);
    for (const auto& [name, help] : std::vector<std::pair<std::string, std::string>>{
             {"init", "Create fleetconf's lease schema in the site's database (refused when one exists)"},
             {"upgrade", "Move the schema to this build's version (servers refuse to start on another version)"},
             {"status",
              "The database's server, schema version, lease count and synchronous_commit; exit 1 unless the schema is this build's"}}) {
        auto a = std::make_shared<DbArgs>();
        auto* s = db->add_subcommand(name, help);
        s->add_option("--site", a->site, "Site file (default site.json)");
        add_data_dir_option(s, a->data_dir);
        if (name == "status") s->add_flag("--json", a->json, "JSON output");
        s->callback([&action, a, name = name] { action = [a, name] { return db_command(*a, name); }; });
    }
    auto m = std::make_shared<DbArgs>();
    auto* mg = d->add_subcommand("migrate",
                                 "Copy every lease between the local journal (DATA_DIR/dhcp/leases.journal) and the site's PostgreSQL "
                                 "database, losslessly; stop the servers first");
    mg->add_option("--to", m->to, "postgresql (journal -> database) or journal (database -> journal)")
        ->required()
        ->check(CLI::IsMember({"postgresql", "journal"}));
    mg->add_flag("--replace", m->replace, "Replace the leases the destination holds (else a destination with leases is refused)");
    mg->add_option("--site", m->site, "Site file (default site.json)");
    add_data_dir_option(mg, m->data_dir);
    mg->callback([&action, m] { action = [m] { return migrate(*m); }; });
    auto i = std::make_shared<DbArgs>();
    auto* im = d->add_subcommand(
        "import", "Import another server's leases into the site's lease store (journal or PostgreSQL); stop the servers first");
    im->add_option("--from", i->from, "The file's format: kea-memfile (Kea 2.2's kea-leases4.csv)")
        ->required()
        ->check(CLI::IsMember({"kea-memfile"}));
    im->add_option("FILE", i->file, "The lease file")->required()->check(CLI::ExistingFile);
    im->add_flag("--replace", i->replace, "Replace the leases the store holds (else a store with leases is refused)");
    im->add_option("--site", i->site, "Site file (default site.json)");
    add_data_dir_option(im, i->data_dir);
    im->callback([&action, i] { action = [i] { return import(*i); }; });
}

}  // namespace fleetconf::cli
