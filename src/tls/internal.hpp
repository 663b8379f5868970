// Private helpers shared by the tls module's files: per-context data kept in
// the SSL_CTX's ex_data, certificate name extraction and error texts.
#pragma once

#include <openssl/ssl.h>

#include <openssl/bio.h>

#include <cstddef>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace sigrelay::tls::detail {

// The state behind the engine's BIO (io_bio.cpp): the ciphertext of the
// current feed (read in place), a partial record kept from an earlier one,
// and the records SSL wrote, waiting for take_output().
struct io_bio_data {
    const char* in = nullptr;
    std::size_t in_left = 0;
    std::string pending;
    std::size_t pending_off = 0;
    std::string out;
    // After a feed: bytes SSL did not read yet are copied into `pending`,
    // since the caller's buffer is gone by the next feed.
    void keep_unread();
};
BIO* new_io_bio();  // owns its io_bio_data; nullptr when out of memory
io_bio_data* io_of(BIO* b);


// Client contexts keep at most this many resumable sessions (one per smart
// host name); a shard talks to far fewer smart hosts than this.
inline constexpr std::size_t max_cached_sessions = 512;

// Owned by the SSL_CTX (freed with it through the ex_data free callback), so
// it stays put when the C++ context object moves and outlives no engine.
struct ctx_data {
    std::string required_client_name;  // server: name the client certificate must carry
    std::unordered_map<std::string, SSL_SESSION*> sessions;  // client: key -> last session
    ~ctx_data();
};

// Attaches a new ctx_data to `ctx` (nullptr on allocation failure).
ctx_data* attach_ctx_data(SSL_CTX* ctx);
ctx_data* get_ctx_data(const SSL_CTX* ctx);

// The session cache key of a client SSL (set by engine::client), or nullptr.
bool set_session_key(SSL* ssl, std::string key);
const std::string* get_session_key(const SSL* ssl);

// Client contexts: stores the newest resumable session under the SSL's key.
int on_new_session(SSL* ssl, SSL_SESSION* session);

// Server contexts with a required client name: chain verification callback
// that also checks the leaf's name.
int verify_client_name(int preverify_ok, X509_STORE_CTX* store);

struct cert_names {
    std::string cn;                // "" when absent
    std::vector<std::string> dns;  // dNSName SANs, printable ASCII only
};
cert_names names_of(X509* cert);
// A dNSName SAN equal to `wanted` (ASCII case-insensitive, one trailing dot
// ignored), or the CN when the certificate has no dNSName SAN. No wildcards.
bool name_matches(const cert_names& names, std::string_view wanted);

bool is_ip_literal(std::string_view s);

// Texts of the thread's pending BoringSSL errors (drains the queue), e.g.
// "wrong version number"; `fallback` when the queue is empty.
std::string take_errors(std::string_view fallback);
// "name mismatch, wanted X" / "unable to get local issuer certificate" ...
std::string verify_error_text(long code, std::string_view wanted);

}  // namespace sigrelay::tls::detail
