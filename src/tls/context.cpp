// SSL_CTX construction with sigrelay's policy (TLS 1.2 and 1.3 only), file
// loading with errors that name the file, and the client session cache.
#include <sigrelay/tls.hpp>

#include "internal.hpp"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <memory>

#include <cerrno>
#include <cstdio>
#include <system_error>
#include <utility>

namespace sigrelay::tls {

std::string library_version() {
    return OpenSSL_version(OPENSSL_VERSION);
}

namespace detail {

namespace {

void free_ctx_data(void*, void* ptr, CRYPTO_EX_DATA*, int, long, void*) {
    delete static_cast<ctx_data*>(ptr);
}

void free_string(void*, void* ptr, CRYPTO_EX_DATA*, int, long, void*) {
    delete static_cast<std::string*>(ptr);
}

int ctx_data_index() {
    static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, free_ctx_data);
    return index;
}

int session_key_index() {
    static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, free_string);
    return index;
}

}  // namespace

ctx_data::~ctx_data() {
    for (auto& [key, session] : sessions) SSL_SESSION_free(session);
}

ctx_data* attach_ctx_data(SSL_CTX* ctx) {
    auto* data = new ctx_data;
    if (ctx_data_index() < 0 || !SSL_CTX_set_ex_data(ctx, ctx_data_index(), data)) {
        delete data;
        return nullptr;
    }
    return data;
}

ctx_data* get_ctx_data(const SSL_CTX* ctx) {
    if (ctx == nullptr || ctx_data_index() < 0) return nullptr;
    return static_cast<ctx_data*>(SSL_CTX_get_ex_data(ctx, ctx_data_index()));
}

bool set_session_key(SSL* ssl, std::string key) {
    auto* owned = new std::string(std::move(key));
    if (session_key_index() < 0 || !SSL_set_ex_data(ssl, session_key_index(), owned)) {
        delete owned;
        return false;
    }
    return true;
}

const std::string* get_session_key(const SSL* ssl) {
    if (session_key_index() < 0) return nullptr;
    return static_cast<const std::string*>(SSL_get_ex_data(ssl, session_key_index()));
}

int on_new_session(SSL* ssl, SSL_SESSION* session) {
    const std::string* key = get_session_key(ssl);
    ctx_data* data = get_ctx_data(SSL_get_SSL_CTX(ssl));
    if (key == nullptr || data == nullptr || !SSL_SESSION_is_resumable(session)) return 0;
    // TLS 1.3 servers send several tickets; the newest wins.
    if (auto it = data->sessions.find(*key); it != data->sessions.end()) {
        SSL_SESSION_free(it->second);
        it->second = session;
        return 1;  // we own the reference now
    }
    if (data->sessions.size() >= max_cached_sessions) {
        SSL_SESSION_free(data->sessions.begin()->second);
        data->sessions.erase(data->sessions.begin());
    }
    data->sessions.emplace(*key, session);
    return 1;
}

}  // namespace detail

namespace {

using detail::take_errors;

struct ctx_deleter {
    void operator()(SSL_CTX* ctx) const { SSL_CTX_free(ctx); }
};
using ctx_ptr = std::unique_ptr<SSL_CTX, ctx_deleter>;

result<void> check_readable(const std::string& path, const char* what) {
    if (path.empty()) return make_error(std::string("tls: no ") + what + " file given");
    std::FILE* f = std::fopen(path.c_str(), "r");
    if (f == nullptr) {
        int err = errno;
        return make_error(std::string("tls: cannot read ") + what + " file " + path + ": " +
                              std::generic_category().message(err),
                          err);
    }
    std::fclose(f);
    return ok();
}

result<ctx_ptr> new_ctx() {
    ERR_clear_error();
    ctx_ptr ctx(SSL_CTX_new(TLS_method()));
    if (!ctx) return make_error("tls: SSL_CTX_new: " + take_errors("out of memory"));
    // docs/behaviour.md (SMTP server rules, Outbound): TLS 1.2+ on both sides.
    if (!SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION) ||
        !SSL_CTX_set_max_proto_version(ctx.get(), TLS1_3_VERSION))
        return make_error("tls: cannot set protocol versions: " + take_errors("unknown error"));
    if (detail::attach_ctx_data(ctx.get()) == nullptr)
        return make_error("tls: cannot attach context data");
    return ctx;
}

result<void> load_cert_and_key(SSL_CTX* ctx, const std::string& cert_file,
                               const std::string& key_file_opt) {
    const std::string& key_file = key_file_opt.empty() ? cert_file : key_file_opt;
    SIGRELAY_TRY(check_readable(cert_file, "certificate"));
    SIGRELAY_TRY(check_readable(key_file, "private key"));
    ERR_clear_error();
    if (!SSL_CTX_use_certificate_chain_file(ctx, cert_file.c_str()))
        return make_error("tls: bad certificate file " + cert_file + ": " +
                          take_errors("no certificate found"));
    if (!SSL_CTX_use_PrivateKey_file(ctx, key_file.c_str(), SSL_FILETYPE_PEM))
        return make_error("tls: bad private key file " + key_file + ": " +
                          take_errors("no private key found"));
    if (!SSL_CTX_check_private_key(ctx))
        return make_error("tls: private key " + key_file + " does not match certificate " +
                          cert_file + ": " + take_errors("mismatch"));
    return ok();
}

result<void> load_ca(SSL_CTX* ctx, const std::string& ca_file) {
    SIGRELAY_TRY(check_readable(ca_file, "CA"));
    ERR_clear_error();
    if (!SSL_CTX_load_verify_locations(ctx, ca_file.c_str(), nullptr))
        return make_error("tls: bad CA file " + ca_file + ": " +
                          take_errors("no certificate found"));
    return ok();
}

struct bio_deleter {
    void operator()(BIO* b) const { BIO_free(b); }
};
using bio_ptr = std::unique_ptr<BIO, bio_deleter>;

bio_ptr memory_bio(std::string_view pem) {
    return bio_ptr(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
}

result<void> load_ca_pem(SSL_CTX* ctx, std::string_view pem, const std::string& label) {
    ERR_clear_error();
    bio_ptr bio = memory_bio(pem);
    X509_STORE* store = SSL_CTX_get_cert_store(ctx);
    int n = 0;
    while (X509* x = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
        X509_STORE_add_cert(store, x);
        X509_free(x);
        ++n;
    }
    ERR_clear_error();  // the end of the PEM data reads as an error
    if (n == 0) return make_error("tls: bad CA file " + label + ": no certificate found");
    return ok();
}

result<void> load_cert_and_key_pem(SSL_CTX* ctx, std::string_view cert_pem, std::string_view key_pem,
                                   const std::string& cert_label, const std::string& key_label) {
    ERR_clear_error();
    bio_ptr cb = memory_bio(cert_pem);
    X509* leaf = PEM_read_bio_X509(cb.get(), nullptr, nullptr, nullptr);
    if (leaf == nullptr || !SSL_CTX_use_certificate(ctx, leaf)) {
        X509_free(leaf);
        return make_error("tls: bad certificate file " + cert_label + ": " +
                          take_errors("no certificate found"));
    }
    X509_free(leaf);
    while (X509* x = PEM_read_bio_X509(cb.get(), nullptr, nullptr, nullptr)) {
        if (!SSL_CTX_add0_chain_cert(ctx, x)) X509_free(x);  // add0 owns x on success
    }
    ERR_clear_error();
    bio_ptr kb = memory_bio(key_pem.empty() ? cert_pem : key_pem);
    EVP_PKEY* key = PEM_read_bio_PrivateKey(kb.get(), nullptr, nullptr, nullptr);
    const bool used = key != nullptr && SSL_CTX_use_PrivateKey(ctx, key);
    EVP_PKEY_free(key);
    if (!used)
        return make_error("tls: bad private key file " + key_label + ": " +
                          take_errors("no private key found"));
    if (!SSL_CTX_check_private_key(ctx))
        return make_error("tls: private key " + key_label + " does not match certificate " + cert_label +
                          ": " + take_errors("mismatch"));
    return ok();
}

}  // namespace

result<bool> certificate_has_name(std::string_view cert_pem, std::string_view name) {
    ERR_clear_error();
    bio_ptr bio = memory_bio(cert_pem);
    X509* leaf = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr);
    if (leaf == nullptr) return make_error("no certificate found: " + take_errors("bad PEM"));
    const bool match = detail::name_matches(detail::names_of(leaf), name);
    X509_free(leaf);
    return match;
}

result<context> context::server(const server_options& opts) {
    auto made = new_ctx();
    if (!made) return std::move(made).err();
    ctx_ptr ctx = std::move(made).value();
    SIGRELAY_TRY(load_cert_and_key(ctx.get(), opts.cert_file, opts.key_file));
    // Needed for resumption of sessions that carry a client certificate.
    static constexpr unsigned char sid_ctx[] = "sigrelay";
    SSL_CTX_set_session_id_context(ctx.get(), sid_ctx, sizeof sid_ctx - 1);

    if (!opts.client_ca_file.empty()) {
        SIGRELAY_TRY(load_ca(ctx.get(), opts.client_ca_file));
        // The CertificateRequest names the acceptable CAs (RFC 8446 §4.2.4).
        if (STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(opts.client_ca_file.c_str()))
            SSL_CTX_set_client_CA_list(ctx.get(), names);
        ERR_clear_error();
        int mode = SSL_VERIFY_PEER;
        if (!opts.required_client_name.empty()) {
            mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
            detail::get_ctx_data(ctx.get())->required_client_name = opts.required_client_name;
        }
        SSL_CTX_set_verify(ctx.get(), mode, detail::verify_client_name);
    } else if (!opts.required_client_name.empty()) {
        return make_error("tls: a required client certificate name needs a client CA file");
    }
    context c(ctx.release(), true);
    c.required_client_name_ = opts.required_client_name;
    return c;
}

result<context> context::client(const client_options& opts) {
    auto made = new_ctx();
    if (!made) return std::move(made).err();
    ctx_ptr ctx = std::move(made).value();
    if (!opts.ca_pem.empty()) {
        SIGRELAY_TRY(load_ca_pem(ctx.get(), opts.ca_pem, opts.ca_file));
    } else if (!opts.ca_file.empty()) {
        SIGRELAY_TRY(load_ca(ctx.get(), opts.ca_file));
    } else if (opts.verify_peer) {
        ERR_clear_error();
        // Debian: /etc/ssl/certs (hashed names) and /etc/ssl/cert.pem.
        if (!SSL_CTX_set_default_verify_paths(ctx.get()))
            return make_error("tls: cannot load the system CAs: " + take_errors("unknown error"));
    }
    SSL_CTX_set_verify(ctx.get(), opts.verify_peer ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, nullptr);
    if (!opts.cert_pem.empty()) {
        SIGRELAY_TRY(load_cert_and_key_pem(ctx.get(), opts.cert_pem, opts.key_pem, opts.cert_file,
                                           opts.key_file.empty() ? opts.cert_file : opts.key_file));
    } else if (!opts.cert_file.empty()) {
        SIGRELAY_TRY(load_cert_and_key(ctx.get(), opts.cert_file, opts.key_file));
    } else if (!opts.key_file.empty()) {
        return make_error("tls: client key file " + opts.key_file + " given without a certificate");
    }
    // Resumption for new outbound connections (docs/behaviour.md, Outbound): our own cache,
    // keyed by server name, filled from the new-session callback.
    SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL);
    SSL_CTX_sess_set_new_cb(ctx.get(), detail::on_new_session);
    return context(ctx.release(), false);
}

context::context(context&& other) noexcept
    : ctx_(std::exchange(other.ctx_, nullptr)),
      server_(other.server_),
      required_client_name_(std::move(other.required_client_name_)) {}

context& context::operator=(context&& other) noexcept {
    if (this != &other) {
        SSL_CTX_free(ctx_);
        ctx_ = std::exchange(other.ctx_, nullptr);
        server_ = other.server_;
        required_client_name_ = std::move(other.required_client_name_);
    }
    return *this;
}

context::~context() {
    SSL_CTX_free(ctx_);
}

}  // namespace sigrelay::tls
