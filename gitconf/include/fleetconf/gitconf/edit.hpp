// One write path for configuration: an operator's edit (`fleetconf git put` / `git rm`) goes through what a
// push goes through (the site's policy and limits, the validator, a compare-and-swap of the branch, the
// audit log, the hook and the webhook), and notifications can be delivered outside a running server
// (`fleetconf git notify`). docs/gitconf.md, "Operator edits".
#pragma once

#include "fleetconf/common/site.hpp"
#include "fleetconf/gitconf/receive_pack.hpp"
#include "fleetconf/gitconf/repo.hpp"

#include <spdlog/logger.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace fleetconf::gitconf {

// The hook (GET) and the signed webhook (POST) after an accepted change of a configuration branch.
struct Notification {
    std::string kind;  // "hook" or "webhook"
    std::string url;
    std::string request;  // the whole HTTP/1.1 request
};
std::vector<Notification> notifications(const common::Site& site, const std::string& repo, const RefCommand& change, const std::string& who,
                                        spdlog::logger& log);
// The webhook signing key (services.git.webhook_key_file, or <root>/webhook.key made on first use).
std::vector<std::uint8_t> webhook_key(const common::Site& site, spdlog::logger& log);
// Records one delivery attempt in notify_state_file (what `fleetconf git status` shows).
void record_delivery(const std::filesystem::path& file, const std::string& kind, const std::string& url, const std::string& oid,
                     const std::string& state, int attempt, int http_status, const std::string& detail, spdlog::logger& log);
struct Delivered {
    std::string kind, url;
    bool ok = false;
    std::string detail;  // the answer's first line, or the error
};
// Delivers the notifications of `change` now, blocking: up to `attempts` each (1 s, 2 s... between).
std::vector<Delivered> deliver_now(const common::Site& site, const std::string& repo, const RefCommand& change, const std::string& who,
                                   int attempts, spdlog::logger& log);

// One line of <root>/audit/NAME.jsonl (docs/gitconf.md) and its synced append (throws on failure).
std::string audit_line(const std::string& repo, const std::string& transport, const std::string& peer, const std::string& who,
                       const PushResult& r);
void append_audit(const common::Site& site, const std::string& repo, const std::string& line);
// A credential event in the same file: {"time", "repository", "event": "token issued|rotated|revoked",
// "by": WHO, "detail"}.
std::string credential_event_line(const std::string& repo, const std::string& event, const std::string& by, const std::string& detail);
// Revokes (and audits) the tokens of names that have no repository in `site` (a removed unikernel, or one
// whose git entry went): a name that comes back needs a new token. Returns the names revoked.
std::vector<std::string> revoke_orphan_tokens(const common::Site& site, const std::string& by, spdlog::logger& log);

struct EditResult {
    PushResult push;    // as for a push of the one command below: accepted when push.all_ok()
    RefCommand change;  // the configuration branch, old -> new commit
};
// Commits `content` at `path` (nullptr: removes it) on top of the configuration branch and submits that
// commit to the push pipeline (apply_push: policy, validator, limits, compare-and-swap), then appends the
// audit line (transport "cli", credential `who`). Notifications are the caller's (deliver_now). Throws
// GitError when the commit cannot be made (a path not in the tree for a removal, ...).
EditResult edit_file(const common::Site& site, const std::string& repo, const std::string& path, const std::string* content,
                     const Author& author, const std::string& message, const std::string& who);

}  // namespace fleetconf::gitconf
