// fleetconf git list|create|put|rm|log|show|token: the configuration repositories on this host,
// edited through libgit2 so an operator needs no git client.
#include "commands.hpp"

#include "fleetconf/common/bootargs.hpp"
#include "fleetconf/common/files.hpp"
#include "fleetconf/common/log.hpp"
#include "fleetconf/gitconf/edit.hpp"
#include "fleetconf/gitconf/auth.hpp"
#include "fleetconf/gitconf/repo.hpp"
#include "fleetconf/gitconf/service.hpp"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <ctime>
#include <pwd.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>

namespace fleetconf::cli {
namespace {

constexpr std::size_t kMaxFile = 16 << 20;

struct GitArgs {
    std::string site = "site.json";
    std::string data_dir;
    std::string name, path, message, author = "fleetconf operator <operator@fleetconf>", rev, file;
    std::size_t max = 20;
    bool json = false, revoke = false;
    int attempts = 3;
    unsigned overlap_s = 3600;  // token rotation: how long the previous token stays valid
};

// The operator's name for the audit log: the login of the user who ran the command (SUDO_USER first).
std::string operator_name() {
    if (const char* s = std::getenv("SUDO_USER"); s && *s) return s;
    if (const auto* pw = ::getpwuid(::getuid())) return pw->pw_name;
    return "uid " + std::to_string(::getuid());
}

std::optional<common::Site> load(const GitArgs& a) { return load_site_or_report(a.site, a.data_dir); }
// Read-only commands keep working from the running configuration while the file on disk is invalid.
std::optional<common::Site> inspect(const GitArgs& a) { return load_site_or_running(a.site, a.data_dir); }

// The unikernel named on the command line, if it has a repository; reports otherwise.
const common::Unikernel* repo_unikernel(const common::Site& site, const GitArgs& a) {
    const auto* u = site.unikernel(a.name);
    if (!u) print_error(a.site + ": no unikernel named \"" + a.name + "\"");
    else if (!u->git.enabled)
        print_error(a.site + ": unikernel \"" + a.name + "\" has no repository (/unikernels/" + std::to_string(u - site.unikernels.data()) +
                    "/git: no \"git\" object, or \"enabled\": false)");
    else return u;
    return nullptr;
}

std::optional<gitconf::Repository> open_repo(const common::Site& site, const std::string& name) {
    const auto dir = gitconf::repo_dir(site, name);
    std::error_code ec;
    if (!std::filesystem::exists(dir, ec)) {
        print_error("repository " + dir.string() + " does not exist yet (fleetconf git create " + name + ", or start the service)");
        return std::nullopt;
    }
    try {
        return gitconf::Repository::open(dir);
    } catch (const std::exception& e) {
        print_error(e.what());
        return std::nullopt;
    }
}

std::optional<gitconf::Author> parse_author(const std::string& s) {
    const auto lt = s.find('<'), gt = s.rfind('>');
    if (lt == std::string::npos || gt == std::string::npos || gt < lt || lt == 0) return std::nullopt;
    std::string name = s.substr(0, lt);
    while (!name.empty() && name.back() == ' ') name.pop_back();
    if (name.empty()) return std::nullopt;
    return gitconf::Author{name, s.substr(lt + 1, gt - lt - 1)};
}

std::string iso_time(std::int64_t t) {
    const std::time_t tt = static_cast<std::time_t>(t);
    std::tm tm{};
    gmtime_r(&tt, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

int cmd_list(const GitArgs& a) {
    auto site = inspect(a);
    if (!site) return kExitInvalid;
    gitconf::TokenStore tokens;
    try {
        tokens = gitconf::TokenStore::load(gitconf::token_file(*site));
    } catch (const std::exception& e) {
        print_error(e.what());
        return kExitFailure;
    }
    nlohmann::json out = nlohmann::json::array();
    for (const auto* u : gitconf::repo_unikernels(*site)) {
        nlohmann::json r{{"name", u->name},
                         {"access", u->git.writable ? "read-write" : "read-only"},
                         {"branch", u->git.branch},
                         {"git_protocol", u->git.git_protocol},
                         {"token", tokens.has(u->name)},
                         {"path", gitconf::repo_dir(*site, u->name).string()}};
        std::error_code ec;
        if (std::filesystem::exists(gitconf::repo_dir(*site, u->name), ec)) {
            try {
                auto repo = gitconf::Repository::open(gitconf::repo_dir(*site, u->name));
                const auto refs = repo.refs();
                r["exists"] = true;
                r["head"] = refs.head ? refs.head->hex() : "";
                r["refs"] = refs.refs.size();
                r["size"] = repo.disk_size();
            } catch (const std::exception& e) {
                r["exists"] = true;
                r["error"] = e.what();
            }
        } else {
            r["exists"] = false;
        }
        out.push_back(std::move(r));
    }
    if (a.json) {
        std::cout << out.dump(2) << "\n";
        return kExitOk;
    }
    std::printf("%-20s %-10s %-12s %-8s %-6s %s\n", "NAME", "ACCESS", "BRANCH", "HEAD", "TOKEN", "SIZE");
    for (const auto& r : out) {
        const std::string head = r.value("head", std::string());
        std::printf("%-20s %-10s %-12s %-8s %-6s %s\n", r["name"].get<std::string>().c_str(), r["access"].get<std::string>().c_str(),
                    r["branch"].get<std::string>().c_str(), head.empty() ? "-" : head.substr(0, 8).c_str(),
                    r["token"].get<bool>() ? "yes" : "no",
                    r.contains("error")       ? r["error"].get<std::string>().c_str()
                    : r["exists"].get<bool>() ? (std::to_string(r["size"].get<std::uint64_t>()) + " bytes").c_str()
                                              : "not created");
    }
    return kExitOk;
}

int cmd_create(const GitArgs& a) {
    auto site = load(a);
    if (!site) return kExitInvalid;
    if (!writes_as_owner(site->services.data_dir)) return kExitFailure;
    if (!a.name.empty() && !repo_unikernel(*site, a)) return kExitInvalid;
    try {
        auto created = gitconf::ensure_repositories(*site);
        for (const auto& n : created)
            if (a.name.empty() || n == a.name) std::cout << "created " << gitconf::repo_dir(*site, n).string() << "\n";
        if (created.empty()) std::cout << "every repository exists already\n";
    } catch (const std::exception& e) {
        print_error(e.what());
        return kExitFailure;
    }
    return kExitOk;
}

int cmd_put(const GitArgs& a, bool remove) {
    auto site = load(a);
    if (!site) return kExitInvalid;
    const auto* u = repo_unikernel(*site, a);
    if (!u) return kExitInvalid;
    if (auto err = gitconf::check_repo_path(a.path); !err.empty()) {
        print_error(a.path + ": " + err);
        return kExitInvalid;
    }
    const auto author = parse_author(a.author);
    if (!author) {
        print_error("--author \"" + a.author + "\" is not of the form \"Name <email>\"");
        return kExitInvalid;
    }
    if (!writes_as_owner(site->services.data_dir)) return kExitFailure;
    if (!open_repo(*site, u->name)) return kExitFailure;
    std::string content;
    if (!remove) {
        std::istream* in = &std::cin;
        std::ifstream f;
        if (!a.file.empty() && a.file != "-") {
            f.open(a.file, std::ios::binary);
            if (!f) {
                print_error(a.file + ": cannot open");
                return kExitInvalid;
            }
            in = &f;
        }
        char buf[65536];
        while (*in) {
            in->read(buf, sizeof buf);
            content.append(buf, static_cast<std::size_t>(in->gcount()));
            if (content.size() > kMaxFile) {
                print_error("the file is larger than 16 MiB; unikernels hold the whole repository in memory");
                return kExitInvalid;
            }
        }
        if (a.path.size() > 5 && a.path.substr(a.path.size() - 5) == ".json" &&
            nlohmann::json::parse(content, nullptr, false).is_discarded()) {
            print_error(a.path + ": not valid JSON; not committed");
            return kExitInvalid;
        }
    }
    const std::string msg = !a.message.empty() ? a.message : (remove ? "Remove " : "Update ") + a.path;
    // The same path as a push (docs/gitconf.md, "Operator edits"): policy, validator, limits, audit, then
    // the hook and the webhook.
    const std::string who = "operator " + operator_name();
    gitconf::EditResult r;
    try {
        r = gitconf::edit_file(*site, u->name, a.path, remove ? nullptr : &content, *author, msg + "\n", who);
    } catch (const std::exception& e) {
        print_error(e.what());
        return kExitFailure;
    }
    if (!r.push.all_ok()) {
        print_error(u->name + ": refused, as a push would be: " + (r.change.error.empty() ? r.push.unpack_error : r.change.error) +
                    " (recorded in the audit log)");
        return kExitFailure;
    }
    std::cout << r.change.new_id.hex() << "\n";
    auto log = common::log::get("git");
    for (const auto& d : gitconf::deliver_now(*site, u->name, r.change, who, 1, *log))
        if (!d.ok)
            std::cerr << "fleetconf: warning: " << d.kind << " " << d.url << ": " << d.detail << "; `fleetconf git notify " << u->name
                      << "` delivers it again\n";
    return kExitOk;
}

// fleetconf git notify NAME: the hook and webhook of the branch's head, delivered again (after a failure).
int cmd_notify(const GitArgs& a) {
    auto site = load(a);
    if (!site) return kExitInvalid;
    const auto* u = repo_unikernel(*site, a);
    if (!u) return kExitInvalid;
    if (!writes_as_owner(site->services.data_dir)) return kExitFailure;
    if (u->git.hook_url.empty() && u->git.webhook_url.empty()) {
        print_error(u->name + " has neither hook_url nor webhook_url in the site file: nothing to deliver");
        return kExitInvalid;
    }
    auto repo = open_repo(*site, u->name);
    if (!repo) return kExitFailure;
    gitconf::RefCommand change;
    change.name = "refs/heads/" + u->git.branch;
    try {
        const auto entries = repo->log(change.name, 2);
        if (entries.empty()) throw std::runtime_error("branch " + u->git.branch + " has no commit");
        change.new_id = entries[0].id;
        if (entries.size() > 1) change.old_id = entries[1].id;
    } catch (const std::exception& e) {
        print_error(u->name + ": " + e.what());
        return kExitFailure;
    }
    auto log = common::log::get("git");
    int failed = 0;
    for (const auto& d : gitconf::deliver_now(*site, u->name, change, "operator " + operator_name(), a.attempts, *log)) {
        std::cout << d.kind << " " << d.url << ": " << (d.ok ? "delivered" : "FAILED") << (d.detail.empty() ? "" : " (" + d.detail + ")")
                  << "\n";
        failed += !d.ok;
    }
    return failed ? kExitFailure : kExitOk;
}

int cmd_log(const GitArgs& a) {
    auto site = inspect(a);
    if (!site) return kExitInvalid;
    const auto* u = repo_unikernel(*site, a);
    if (!u) return kExitInvalid;
    auto repo = open_repo(*site, u->name);
    if (!repo) return kExitFailure;
    try {
        const auto entries = repo->log(a.rev.empty() ? "refs/heads/" + u->git.branch : a.rev, a.max);
        nlohmann::json out = nlohmann::json::array();
        for (const auto& e : entries) {
            if (a.json) out.push_back({{"id", e.id.hex()}, {"time", e.time}, {"author", e.author}, {"summary", e.summary}});
            else std::cout << e.id.hex().substr(0, 12) << " " << iso_time(e.time) << " " << e.author << "  " << e.summary << "\n";
        }
        if (a.json) std::cout << out.dump(2) << "\n";
    } catch (const std::exception& e) {
        print_error(e.what());
        return kExitFailure;
    }
    return kExitOk;
}

int cmd_show(const GitArgs& a) {
    auto site = inspect(a);
    if (!site) return kExitInvalid;
    const auto* u = repo_unikernel(*site, a);
    if (!u) return kExitInvalid;
    auto repo = open_repo(*site, u->name);
    if (!repo) return kExitFailure;
    try {
        const auto shown = repo->show(a.rev.empty() ? "refs/heads/" + u->git.branch : a.rev, a.path);
        std::cout << shown.content;
    } catch (const std::exception& e) {
        print_error(e.what());
        return kExitFailure;
    }
    return kExitOk;
}

int cmd_token(const GitArgs& a) {
    auto site = load(a);
    if (!site) return kExitInvalid;
    const auto* u = repo_unikernel(*site, a);
    if (!u) return kExitInvalid;
    if (!writes_as_owner(site->services.data_dir)) return kExitFailure;
    const std::string who = "operator " + operator_name();
    try {
        auto tokens = gitconf::TokenStore::load(gitconf::token_file(*site));
        if (a.revoke) {
            const bool had = tokens.revoke(u->name);
            if (had)
                gitconf::append_audit(*site, u->name, gitconf::credential_event_line(u->name, "token revoked", who, "git token --revoke"));
            std::cout << (had ? "revoked the token of " : "no token to revoke for ") << u->name
                      << (had ? " (and any previous one still in its overlap)" : "") << "\n";
            return kExitOk;
        }
        const bool rotated = tokens.has(u->name);
        const auto token = tokens.issue(u->name, static_cast<std::int64_t>(a.overlap_s));
        gitconf::append_audit(*site, u->name,
                              gitconf::credential_event_line(
                                  u->name, rotated ? "token rotated" : "token issued", who,
                                  rotated ? "the previous token stays valid " + std::to_string(a.overlap_s) + " s" : std::string()));
        std::cout << token << "\n";
        std::cerr << "fleetconf: " << (rotated ? "rotated" : "issued") << " the token of " << u->name << " (only its SHA-256 is kept in "
                  << gitconf::token_file(*site).string() << "; a running server picks it up at the next request)";
        if (rotated)
            std::cerr << "; the previous token "
                      << (a.overlap_s ? "stays valid " + std::to_string(a.overlap_s) + " s (--overlap)"
                                      : std::string("no longer works (--overlap 0)"));
        std::cerr << "\n";
        if (const auto remote = common::git_remote(*site, *u, token); !remote.empty() && remote.rfind("git://", 0) != 0)
            std::cerr << "fleetconf: boot argument: --remote=" << remote << "\n";
    } catch (const std::exception& e) {
        print_error(e.what());
        return kExitFailure;
    }
    return kExitOk;
}

int cmd_status(const GitArgs& a) {
    auto site = inspect(a);
    if (!site) return kExitInvalid;
    const auto* u = repo_unikernel(*site, a);
    if (!u) return kExitInvalid;
    nlohmann::json out{{"name", u->name}, {"hook_url", u->git.hook_url}, {"webhook_url", u->git.webhook_url}};
    std::string text;
    if (!common::read_file_limited(gitconf::notify_state_file(*site, u->name), 1 << 20, text)) {
        auto j = nlohmann::json::parse(text, nullptr, false);
        if (j.is_object()) out["notifications"] = j;
    }
    std::ifstream audit(gitconf::git_root(*site) / "audit" / (u->name + ".jsonl"));
    std::string line, last;
    while (std::getline(audit, line))
        if (!line.empty()) last = line;
    if (!last.empty()) out["last_push"] = nlohmann::json::parse(last, nullptr, false);
    if (a.json) {
        std::cout << out.dump(2) << "\n";
        return kExitOk;
    }
    std::cout << u->name << ": hook " << (u->git.hook_url.empty() ? "-" : u->git.hook_url) << ", webhook "
              << (u->git.webhook_url.empty() ? "-" : u->git.webhook_url) << "\n";
    if (out.contains("notifications"))
        for (const auto& [kind, st] : out["notifications"].items())
            std::cout << "  " << kind << ": " << st.value("state", "?") << " after " << st.value("attempts", 0) << " attempt(s), commit "
                      << st.value("commit", std::string("?")).substr(0, 12) << ", " << iso_time(st.value("time", std::int64_t{0})) << ": "
                      << st.value("detail", std::string()) << "\n";
    else std::cout << "  no notification sent yet\n";
    if (out.contains("last_push") && out["last_push"].is_object()) {
        const auto& p = out["last_push"];
        std::cout << "  last push: " << p.value("result", std::string("?")) << " from " << p.value("credential", std::string("?"))
                  << " over " << p.value("transport", std::string("?")) << ", " << iso_time(p.value("time", std::int64_t{0})) << "\n";
        for (const auto& r : p.value("refs", nlohmann::json::array()))
            std::cout << "    " << r.value("status", std::string()) << " " << r.value("ref", std::string()) << " "
                      << r.value("new", std::string()).substr(0, 12)
                      << (r.value("reason", std::string()).empty() ? "" : " (" + r.value("reason", std::string()) + ")") << "\n";
    }
    return kExitOk;
}

int cmd_keygen(const GitArgs& a) {
    auto site = load(a);
    if (!site) return kExitInvalid;
    const auto* u = repo_unikernel(*site, a);
    if (!u) return kExitInvalid;
    try {
        std::error_code ec;
        const bool rotated = std::filesystem::exists(gitconf::ssh_user_key_file(*site, u->name), ec);
        const auto pair = gitconf::ssh_keygen(*site, u->name);
        std::cout << "--ssh-key=ed25519:" << pair.seed_base64 << "\n";
        std::cerr << "fleetconf: " << (rotated ? "replaced" : "created") << " the SSH key of " << u->name << "; public half in "
                  << gitconf::ssh_user_key_file(*site, u->name).string() << " (the private seed above is not kept)\n";
        if (site->services.git.ssh) std::cerr << "fleetconf: boot argument: --remote=" << common::git_remote(*site, *u, "", true) << "\n";
        else std::cerr << "fleetconf: services.git.ssh is not set: no SSH listener serves this key yet\n";
    } catch (const std::exception& e) {
        print_error(e.what());
        return kExitFailure;
    }
    return kExitOk;
}

}  // namespace

void add_git_commands(CLI::App& app, Action& action) {
    auto* git = app.add_subcommand("git", "Configuration repositories (one per unikernel): list, create, put/rm files, log, show, tokens");
    git->require_subcommand(1);
    auto a = std::make_shared<GitArgs>();
    auto common_opts = [&](CLI::App* c) {
        c->add_option("--site", a->site, "Site file")->capture_default_str();
        add_data_dir_option(c, a->data_dir);
    };
    auto* list = git->add_subcommand("list", "List the repositories of the site: access, branch, head, token, size");
    common_opts(list);
    list->add_flag("--json", a->json, "Machine-readable output");
    list->callback([&action, a] { action = [a] { return cmd_list(*a); }; });

    auto* create = git->add_subcommand("create", "Create missing repositories (all, or NAME): bare, with a first commit");
    create->add_option("NAME", a->name, "Unikernel name (default: every unikernel with git enabled)");
    common_opts(create);
    create->callback([&action, a] { action = [a] { return cmd_create(*a); }; });

    auto* put =
        git->add_subcommand("put", "Commit a file (read from standard input or --file) to a unikernel's branch; prints the commit id");
    put->add_option("NAME", a->name, "Unikernel name")->required();
    put->add_option("PATH", a->path, "Path in the repository, e.g. config.json or htdocs/index.html")->required();
    put->add_option("--file", a->file, "Read the content from this file instead of standard input");
    put->add_option("-m,--message", a->message, "Commit message (default: \"Update PATH\")");
    put->add_option("--author", a->author, "Author as \"Name <email>\"")->capture_default_str();
    common_opts(put);
    put->callback([&action, a] { action = [a] { return cmd_put(*a, false); }; });

    auto* notify = git->add_subcommand("notify",
                                       "Deliver the hook and webhook of a unikernel's branch head again (after a failed "
                                       "notification); exit 1 when one still fails");
    notify->add_option("NAME", a->name, "Unikernel name")->required();
    notify->add_option("--attempts", a->attempts, "Attempts per target (1 s, 2 s, ... between them)")
        ->default_val(3)
        ->check(CLI::Range(1, 10));
    common_opts(notify);
    notify->callback([&action, a] { action = [a] { return cmd_notify(*a); }; });

    auto* rm = git->add_subcommand("rm", "Commit the removal of a file; prints the commit id");
    rm->add_option("NAME", a->name, "Unikernel name")->required();
    rm->add_option("PATH", a->path, "Path in the repository")->required();
    rm->add_option("-m,--message", a->message, "Commit message (default: \"Remove PATH\")");
    rm->add_option("--author", a->author, "Author as \"Name <email>\"")->capture_default_str();
    common_opts(rm);
    rm->callback([&action, a] { action = [a] { return cmd_put(*a, true); }; });

    auto* log = git->add_subcommand("log", "Show the history of a unikernel's branch");
    log->add_option("NAME", a->name, "Unikernel name")->required();
    log->add_option("--rev", a->rev, "Revision to start from (default: the unikernel's branch)");
    log->add_option("-n,--max-count", a->max, "At most this many commits")->capture_default_str()->check(CLI::Range(1, 100000));
    log->add_flag("--json", a->json, "Machine-readable output");
    common_opts(log);
    log->callback([&action, a] { action = [a] { return cmd_log(*a); }; });

    auto* show = git->add_subcommand("show", "Print a file, or list a folder (the root without PATH)");
    show->add_option("NAME", a->name, "Unikernel name")->required();
    show->add_option("PATH", a->path, "Path in the repository (default: list the root)");
    show->add_option("--rev", a->rev, "Revision (default: the unikernel's branch)");
    common_opts(show);
    show->callback([&action, a] { action = [a] { return cmd_show(*a); }; });

    auto* status = git->add_subcommand("status", "Notification delivery state (hook, webhook) and the last push of a repository");
    status->add_option("NAME", a->name, "Unikernel name")->required();
    status->add_flag("--json", a->json, "Machine-readable output");
    common_opts(status);
    status->callback([&action, a] { action = [a] { return cmd_status(*a); }; });

    auto* keygen = git->add_subcommand("keygen",
                                       "Create (or replace) a unikernel's ed25519 SSH key: keeps the public half, prints "
                                       "--ssh-key=ed25519:<seed> once");
    keygen->add_option("NAME", a->name, "Unikernel name")->required();
    common_opts(keygen);
    keygen->callback([&action, a] { action = [a] { return cmd_keygen(*a); }; });

    auto* token = git->add_subcommand("token", "Issue or rotate a unikernel's HTTP credential; prints the token (user = NAME)");
    token->add_option("NAME", a->name, "Unikernel name")->required();
    token->add_flag("--revoke", a->revoke, "Remove the credential (and a previous one still in its overlap) instead");
    token
        ->add_option("--overlap", a->overlap_s,
                     "On rotation, seconds the previous token stays valid, so that the running unikernel keeps fetching until "
                     "it is restarted with the new one (0: at once, e.g. after a leak)")
        ->default_val(3600)
        ->check(CLI::Range(0u, 30u * 86400u));
    common_opts(token);
    token->callback([&action, a] { action = [a] { return cmd_token(*a); }; });
}

}  // namespace fleetconf::cli
