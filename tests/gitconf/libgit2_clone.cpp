// A libgit2 client for the integration test: clones URL into DIR over smart HTTP with
// user/password credentials from the environment (GIT_USER, GIT_TOKEN), then prints HEAD's id.
#include <git2.h>

#include <cstdio>
#include <cstdlib>

namespace {
int credentials(git_credential** out, const char*, const char*, unsigned int allowed, void*) {
    const char* user = std::getenv("GIT_USER");
    const char* token = std::getenv("GIT_TOKEN");
    if (!(allowed & GIT_CREDENTIAL_USERPASS_PLAINTEXT) || !user || !token) return GIT_PASSTHROUGH;
    return git_credential_userpass_plaintext_new(out, user, token);
}
}  // namespace

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: libgit2_clone URL DIR\n");
        return 2;
    }
    git_libgit2_init();
    git_clone_options opts = GIT_CLONE_OPTIONS_INIT;
    opts.fetch_opts.callbacks.credentials = credentials;
    git_repository* repo = nullptr;
    if (git_clone(&repo, argv[1], argv[2], &opts) != 0) {
        const git_error* e = git_error_last();
        std::fprintf(stderr, "libgit2_clone: %s\n", e ? e->message : "clone failed");
        return 1;
    }
    git_oid head;
    if (git_reference_name_to_id(&head, repo, "HEAD") != 0) return 1;
    char hex[GIT_OID_HEXSZ + 1];
    git_oid_tostr(hex, sizeof hex, &head);
    std::printf("%s\n", hex);
    git_repository_free(repo);
    git_libgit2_shutdown();
    return 0;
}
