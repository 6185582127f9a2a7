// Provisioning: where each repository lives, creating the missing ones and archiving those of removed
// unikernels, and the HTTPS key pair (generated once, self-signed).
#include "host.hpp"

#include "fleetconf/common/crypto.hpp"
#include "fleetconf/common/files.hpp"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <sys/stat.h>

#include <ctime>
#include <set>

namespace fleetconf::gitconf {

namespace {
bool path_is_symlink(const std::filesystem::path& p) {
    struct stat st {};
    return ::lstat(p.c_str(), &st) == 0 && S_ISLNK(st.st_mode);
}
}  // namespace

// ---- locations ----------------------------------------------------------------------------------

std::filesystem::path git_root(const common::Site& site) { return site.services.data_dir / "git"; }
std::filesystem::path repo_dir(const common::Site& site, std::string_view name) {
    return git_root(site) / "repos" / (std::string(name) + ".git");
}
std::filesystem::path token_file(const common::Site& site) { return git_root(site) / "tokens.json"; }
std::filesystem::path tls_cert_file(const common::Site& site) {
    return site.services.git.tls_cert.empty() ? git_root(site) / "tls" / "cert.pem" : site.services.git.tls_cert;
}
std::filesystem::path tls_key_file(const common::Site& site) {
    return site.services.git.tls_key.empty() ? git_root(site) / "tls" / "key.pem" : site.services.git.tls_key;
}

std::vector<const common::Unikernel*> repo_unikernels(const common::Site& site) {
    std::vector<const common::Unikernel*> out;
    for (const auto& u : site.unikernels)
        if (u.git.enabled) out.push_back(&u);
    return out;
}

std::vector<std::string> ensure_repositories(const common::Site& site, spdlog::logger* log) {
    std::vector<std::string> created;
    const auto repos = git_root(site) / "repos";
    common::ensure_directory(git_root(site));
    if (path_is_symlink(repos)) throw std::runtime_error(repos.string() + " is a symbolic link; refusing to serve through it");
    common::ensure_directory(repos);
    for (const auto* u : repo_unikernels(site)) {
        const auto dir = repo_dir(site, u->name);
        std::error_code ec;
        if (path_is_symlink(dir)) throw std::runtime_error(dir.string() + " is a symbolic link; refusing to serve through it");
        if (std::filesystem::exists(dir, ec)) {
            if (!std::filesystem::is_directory(dir, ec)) throw std::runtime_error(dir.string() + " exists and is not a directory");
            continue;
        }
        Repository::create(dir, u->git.branch, true, site.services.git.template_dir);
        created.push_back(u->name);
        if (log) log->info("created repository {} (branch {})", dir.string(), u->git.branch);
    }
    return created;
}

std::vector<std::string> archive_removed_repositories(const common::Site& site, spdlog::logger* log,
                                                      std::chrono::system_clock::time_point now) {
    std::vector<std::string> archived;
    const auto repos = git_root(site) / "repos";
    std::error_code ec;
    if (!std::filesystem::is_directory(repos, ec)) return archived;
    std::set<std::string> wanted;
    for (const auto* u : repo_unikernels(site)) wanted.insert(u->name + ".git");
    const std::time_t t = std::chrono::system_clock::to_time_t(now);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char stamp[32];
    std::strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
    for (const auto& e : std::filesystem::directory_iterator(repos, ec)) {
        const std::string name = e.path().filename().string();
        if (wanted.contains(name) || name.size() <= 4 || name.substr(name.size() - 4) != ".git" || path_is_symlink(e.path()) ||
            !e.is_directory(ec))
            continue;
        const auto archive = git_root(site) / "archive";
        common::ensure_directory(archive, 0750);
        auto dest = archive / (name.substr(0, name.size() - 4) + "-" + stamp + ".git");
        for (int n = 2; std::filesystem::exists(dest, ec); ++n)
            dest = archive / (name.substr(0, name.size() - 4) + "-" + stamp + "-" + std::to_string(n) + ".git");
        std::filesystem::rename(e.path(), dest, ec);
        if (ec) {
            if (log) log->error("cannot archive {}: {}", e.path().string(), ec.message());
            continue;
        }
        archived.push_back(name.substr(0, name.size() - 4));
        if (log) log->info("repository {} archived to {} (its unikernel left the site)", e.path().string(), dest.string());
    }
    return archived;
}

// ---- TLS ------------------------------------------------------------------------------------------

namespace {
template <typename T, void (*F)(T*)>
struct Free {
    void operator()(T* p) const { F(p); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, Free<EVP_PKEY, EVP_PKEY_free>>;
using X509Ptr = std::unique_ptr<X509, Free<X509, X509_free>>;
using BioPtr = std::unique_ptr<BIO, Free<BIO, BIO_free_all>>;

std::string bio_string(BIO* b) {
    char* data = nullptr;
    const long n = BIO_get_mem_data(b, &data);
    return std::string(data, static_cast<std::size_t>(n));
}
[[noreturn]] void ssl_fail(const std::string& what) { throw std::runtime_error(what + ": OpenSSL error"); }
}  // namespace

void ensure_tls_pair(const common::Site& site, spdlog::logger* log) {
    if (!site.services.git.tls_cert.empty()) return;  // the operator's own pair
    const auto cert = tls_cert_file(site), key = tls_key_file(site);
    std::error_code ec;
    if (std::filesystem::exists(cert, ec) && std::filesystem::exists(key, ec)) return;
    common::ensure_directory(cert.parent_path(), 0700);
    PkeyPtr pkey(EVP_EC_gen("P-256"));
    if (!pkey) ssl_fail("generate key");
    X509Ptr x(X509_new());
    X509_set_version(x.get(), 2);
    std::unique_ptr<BIGNUM, Free<BIGNUM, BN_free>> serial(BN_new());
    BN_rand(serial.get(), 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY);
    BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(x.get()));
    X509_gmtime_adj(X509_getm_notBefore(x.get()), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x.get()), 60L * 60 * 24 * 3650);
    X509_set_pubkey(x.get(), pkey.get());
    const std::string host = site.services.git.public_host.empty() ? "localhost" : site.services.git.public_host;
    X509_NAME* name = X509_get_subject_name(x.get());
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(host.c_str()), -1, -1, 0);
    X509_set_issuer_name(x.get(), name);
    const std::string san = (common::parse_ip(host) ? "IP:" : "DNS:") + host;
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, x.get(), x.get(), nullptr, nullptr, 0);
    if (X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, NID_subject_alt_name, san.c_str())) {
        X509_add_ext(x.get(), ext, -1);
        X509_EXTENSION_free(ext);
    }
    if (!X509_sign(x.get(), pkey.get(), EVP_sha256())) ssl_fail("sign certificate");
    BioPtr kb(BIO_new(BIO_s_mem())), cb(BIO_new(BIO_s_mem()));
    if (!PEM_write_bio_PrivateKey(kb.get(), pkey.get(), nullptr, nullptr, 0, nullptr, nullptr)) ssl_fail("write key");
    if (!PEM_write_bio_X509(cb.get(), x.get())) ssl_fail("write certificate");
    const auto k = bio_string(kb.get()), c = bio_string(cb.get());
    common::write_file_atomic(key, common::as_bytes(k), 0600);
    common::write_file_atomic(cert, common::as_bytes(c), 0644);
    if (log) log->info("generated a self-signed TLS certificate for {} in {}", host, cert.string());
}

std::string tls_key_fingerprint(const std::filesystem::path& cert_pem) {
    std::string text;
    if (auto err = common::read_file_limited(cert_pem, 1 << 20, text)) throw std::runtime_error(*err);
    BioPtr b(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
    X509Ptr x(PEM_read_bio_X509(b.get(), nullptr, nullptr, nullptr));
    if (!x) throw std::runtime_error(cert_pem.string() + ": not a PEM certificate");
    unsigned char* der = nullptr;
    const int n = i2d_PUBKEY(X509_get0_pubkey(x.get()), &der);
    if (n <= 0) throw std::runtime_error(cert_pem.string() + ": cannot encode its public key");
    const auto digest = common::sha256(std::span<const std::uint8_t>(der, static_cast<std::size_t>(n)));
    OPENSSL_free(der);
    return "key-fp:SHA256:" + common::base64_encode(digest);
}

}  // namespace fleetconf::gitconf
