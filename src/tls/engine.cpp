// The TLS engine: ciphertext in through the engine's BIO (read in place from
// the caller's bytes, io_bio.cpp), plaintext out of SSL_read; SSL_write's
// records land in the BIO's output, taken by take_output().
#include <sigrelay/tls.hpp>

#include "internal.hpp"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/x509.h>

#include <algorithm>
#include <climits>
#include <utility>

namespace sigrelay::tls {

namespace {

// Ciphertext is handed to BoringSSL, and plaintext to SSL_write, in slices of
// one maximal TLS record: the memory BIOs then never hold more than about one
// record however large a feed() or write() is, and reading from them stays
// cheap (a memory BIO moves its remaining bytes down on every read).
constexpr std::size_t io_chunk = 16 * 1024;

result<SSL*> new_ssl(const context& ctx) {
    ERR_clear_error();
    SSL* ssl = SSL_new(ctx.native());
    if (ssl == nullptr) return make_error("tls: SSL_new: " + detail::take_errors("out of memory"));
    BIO* bio = detail::new_io_bio();
    if (bio == nullptr) {
        SSL_free(ssl);
        return make_error("tls: out of memory");
    }
    SSL_set_bio(ssl, bio, bio);  // the SSL owns it now (one reference for both sides)
    return ssl;
}

std::string_view strip_brackets(std::string_view s) {
    if (s.size() >= 2 && s.front() == '[' && s.back() == ']') return s.substr(1, s.size() - 2);
    return s;
}

}  // namespace

result<engine> engine::server(const context& ctx) {
    if (ctx.native() == nullptr || !ctx.is_server())
        return make_error("tls: engine::server needs a server context");
    auto ssl = new_ssl(ctx);
    if (!ssl) return std::move(ssl).err();
    SSL_set_accept_state(*ssl);
    engine e;
    e.ssl_ = *ssl;
    e.required_name_ = ctx.required_client_name();
    return e;
}

result<engine> engine::client(const context& ctx, std::string_view sni,
                              std::string_view verify_name) {
    if (ctx.native() == nullptr || ctx.is_server())
        return make_error("tls: engine::client needs a client context");
    if (sni.find('\0') != std::string_view::npos ||
        verify_name.find('\0') != std::string_view::npos)
        return make_error("tls: server name contains NUL");
    auto made = new_ssl(ctx);
    if (!made) return std::move(made).err();
    engine e;
    e.ssl_ = *made;  // freed by ~engine from here on
    e.client_ = true;
    SSL_set_connect_state(e.ssl_);

    // RFC 6066 §3: SNI carries a DNS name without the trailing dot, never an
    // address literal.
    std::string host(sni);
    if (!host.empty() && host.back() == '.') host.pop_back();
    if (!host.empty() && !detail::is_ip_literal(host) &&
        !SSL_set_tlsext_host_name(e.ssl_, host.c_str()))
        return make_error("tls: bad server name " + host + ": " + detail::take_errors("rejected"));

    std::string name(strip_brackets(verify_name.empty() ? sni : verify_name));
    if (SSL_CTX_get_verify_mode(ctx.native()) & SSL_VERIFY_PEER) {
        if (name.empty())
            return make_error("tls: no server name to verify the certificate against");
        X509_VERIFY_PARAM* param = SSL_get0_param(e.ssl_);
        // Checked inside chain verification, so a mismatch fails the
        // handshake with X509_V_ERR_HOSTNAME_MISMATCH / IP_ADDRESS_MISMATCH.
        int set = detail::is_ip_literal(name)
                      ? X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str())
                      : X509_VERIFY_PARAM_set1_host(param, name.data(), name.size());
        if (!set) return make_error("tls: bad name to verify " + name);
    }
    e.required_name_ = name;

    // The cache key includes the verified name: a session is only offered to
    // a server that proved that same name when the session was made.
    std::string key = name + '\n' + host;
    if (const detail::ctx_data* data = detail::get_ctx_data(ctx.native())) {
        if (auto it = data->sessions.find(key); it != data->sessions.end())
            SSL_set_session(e.ssl_, it->second);  // takes its own reference
    }
    if (!detail::set_session_key(e.ssl_, std::move(key)))
        return make_error("tls: cannot attach session key");
    return e;
}

engine::engine(engine&& other) noexcept
    : ssl_(std::exchange(other.ssl_, nullptr)),
      state_(other.state_),
      info_(std::move(other.info_)),
      required_name_(std::move(other.required_name_)),
      out_(std::move(other.out_)),
      client_(other.client_) {
    other.state_ = state::failed;
}

engine& engine::operator=(engine&& other) noexcept {
    if (this != &other) {
        SSL_free(ssl_);
        ssl_ = std::exchange(other.ssl_, nullptr);
        state_ = std::exchange(other.state_, state::failed);
        info_ = std::move(other.info_);
        required_name_ = std::move(other.required_name_);
        out_ = std::move(other.out_);
        client_ = other.client_;
    }
    return *this;
}

engine::~engine() {
    SSL_free(ssl_);
}

void engine::drain_output() {
    if (ssl_ == nullptr) return;
    std::string& written = detail::io_of(SSL_get_wbio(ssl_))->out;
    if (written.empty()) return;
    if (out_.empty()) {
        out_.swap(written);  // no copy in the usual case
    } else {
        out_.append(written);
        written.clear();
    }
}

error engine::fail(std::string message) {
    state_ = state::failed;
    drain_output();  // an alert, if BoringSSL wrote one
    ERR_clear_error();
    return make_error(std::move(message));
}

std::string engine::describe(int ssl_error) {
    switch (ssl_error) {
        case SSL_ERROR_SSL: {
            uint32_t e = ERR_peek_error();
            long verify = SSL_get_verify_result(ssl_);
            if (ERR_GET_LIB(e) == ERR_LIB_SSL &&
                ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED && verify != X509_V_OK) {
                ERR_clear_error();
                return "certificate verify failed: " +
                       detail::verify_error_text(verify, required_name_);
            }
            return detail::take_errors("protocol error");
        }
        case SSL_ERROR_ZERO_RETURN:
            return "peer closed the connection";
        case SSL_ERROR_SYSCALL:
            return detail::take_errors("unexpected end of data");
        default:
            return "unexpected SSL_get_error " + std::to_string(ssl_error);
    }
}

result<void> engine::start() {
    if (ssl_ == nullptr) return make_error("tls: engine not initialised");
    if (state_ != state::handshaking) return ok();
    return drive_handshake();
}

result<void> engine::drive_handshake() {
    ERR_clear_error();
    int rc = SSL_do_handshake(ssl_);
    drain_output();
    if (rc == 1) {
        SIGRELAY_TRY(after_handshake());
        state_ = state::open;
        return ok();
    }
    int e = SSL_get_error(ssl_, rc);
    if (e == SSL_ERROR_WANT_READ) return ok();
    return fail("tls handshake: " + describe(e));
}

result<void> engine::after_handshake() {
    info_ = peer_info{};
    info_.version = SSL_get_version(ssl_);
    if (const SSL_CIPHER* cipher = SSL_get_current_cipher(ssl_))
        info_.cipher = SSL_CIPHER_standard_name(cipher);
    if (!client_) {
        // Compared with a tenant's require.sni and logged: printable only.
        if (const char* sni = SSL_get_servername(ssl_, TLSEXT_NAMETYPE_host_name)) {
            std::string_view s(sni);
            if (s.size() <= 255 &&
                std::all_of(s.begin(), s.end(), [](char c) { return c > 0x20 && c < 0x7f; }))
                info_.sni = s;
        }
    }
    info_.resumed = SSL_session_reused(ssl_) != 0;
    X509* cert = SSL_get_peer_certificate(ssl_);  // a new reference
    detail::cert_names names = detail::names_of(cert);
    info_.peer_subject_cn = std::move(names.cn);
    info_.peer_dns_names = names.dns;
    bool verifying = (SSL_get_verify_mode(ssl_) & SSL_VERIFY_PEER) != 0;
    info_.peer_verified = cert != nullptr && verifying && SSL_get_verify_result(ssl_) == X509_V_OK;
    X509_free(cert);
    // Checked during verification already; again here because a resumed
    // session skips verification (it carries the original certificate).
    if (!client_ && !required_name_.empty()) {
        names.cn = info_.peer_subject_cn;
        if (!info_.peer_verified || !detail::name_matches(names, required_name_))
            return fail("tls handshake: client certificate name mismatch, wanted " +
                        required_name_);
    }
    return ok();
}

result<void> engine::pump(std::string& plain) {
    if (state_ == state::handshaking) {
        SIGRELAY_TRY(drive_handshake());
        if (state_ != state::open) return ok();
    }
    if (state_ != state::open) return ok();
    // Whatever followed the end of the handshake in this feed (a TLS 1.3
    // client may send data right after its Finished) is read here too.
    char buf[io_chunk];
    for (;;) {
        ERR_clear_error();
        int n = SSL_read(ssl_, buf, sizeof buf);
        if (n > 0) {
            plain.append(buf, static_cast<std::size_t>(n));
            continue;
        }
        int e = SSL_get_error(ssl_, n);
        if (e == SSL_ERROR_WANT_READ) break;
        if (e == SSL_ERROR_ZERO_RETURN) {  // close_notify (RFC 8446 §6.1)
            state_ = state::closed;
            break;
        }
        return fail("tls: " + describe(e));
    }
    drain_output();  // e.g. a KeyUpdate reply
    return ok();
}

result<void> engine::feed(std::span<const char> cipher, std::string& plain) {
    if (ssl_ == nullptr) return make_error("tls: engine not initialised");
    if (state_ == state::failed) return make_error("tls: connection already failed");
    if (state_ == state::closed) return ok();  // nothing counts after close_notify
    detail::io_bio_data* io = detail::io_of(SSL_get_rbio(ssl_));
    io->in = cipher.data();
    io->in_left = cipher.size();
    auto r = pump(plain);
    if (r && state_ != state::closed) io->keep_unread();
    io->in = nullptr;
    io->in_left = 0;
    return r;
}

result<void> engine::write(std::string_view plain) {
    if (ssl_ == nullptr) return make_error("tls: engine not initialised");
    if (state_ != state::open) return make_error("tls: write on a connection that is not open");
    std::size_t off = 0;
    while (off < plain.size()) {
        std::size_t n = std::min(io_chunk, plain.size() - off);
        ERR_clear_error();
        int rc = SSL_write(ssl_, plain.data() + off, static_cast<int>(n));
        if (rc <= 0) return fail("tls write: " + describe(SSL_get_error(ssl_, rc)));
        off += static_cast<std::size_t>(rc);
        drain_output();
    }
    return ok();
}

void engine::shutdown() {
    if (ssl_ == nullptr) return;
    if (state_ == state::handshaking) {
        state_ = state::failed;
        return;
    }
    if (state_ == state::failed) return;
    if ((SSL_get_shutdown(ssl_) & SSL_SENT_SHUTDOWN) == 0) {
        ERR_clear_error();
        SSL_shutdown(ssl_);
        ERR_clear_error();
        drain_output();
    }
    state_ = state::closed;
}

bool engine::has_output() const noexcept {
    return !out_.empty() || (ssl_ != nullptr && !detail::io_of(SSL_get_wbio(ssl_))->out.empty());
}

void engine::take_output(std::string& out) {
    drain_output();
    if (out.empty()) {
        out.swap(out_);
    } else {
        out.append(out_);
    }
    out_.clear();
}

}  // namespace sigrelay::tls
