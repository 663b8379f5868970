// TLS through memory BIOs (BoringSSL): the reactor moves ciphertext, the
// engine turns it into plaintext and back. No sockets here.
#pragma once

#include <sigrelay/result.hpp>

#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;

namespace sigrelay::tls {

// The name of the linked TLS library, e.g. "BoringSSL" (OpenSSL_version()).
std::string library_version();

// Whether the first certificate of a PEM chain carries `name` (a dNSName
// SAN, or the CN when it has none; the rule client certificates are held to).
result<bool> certificate_has_name(std::string_view cert_pem, std::string_view name);

struct server_options {
    std::string cert_file;  // PEM chain, leaf first
    std::string key_file;   // PEM private key (empty: in cert_file)
    // Client certificates: when client_ca_file is set, a client certificate is
    // requested and must chain to this CA; when required_client_name is also
    // set, the certificate must carry that name (a dNSName SAN, or the CN when
    // it has no SAN), like Exchange's -TlsSenderCertificateName. Without a
    // required name a client may also send no certificate (peer_verified false).
    std::string client_ca_file;
    std::string required_client_name;
};

struct client_options {
    std::string ca_file;    // trust anchors; empty: the system's CAs
    std::string cert_file;  // optional client certificate (PEM chain)
    std::string key_file;   // empty: in cert_file
    // The same, already read (the tenants snapshot reads its files on the
    // main thread, so no shard does file I/O): used when not empty, and the
    // *_file names then only label errors.
    std::string ca_pem, cert_pem, key_pem;
    bool verify_peer = true;  // false only for load tools (smtp-blaster without --ca)
};

// An SSL_CTX with our policy: TLS 1.2 and 1.3 only. Shared by every engine of
// one shard (contexts are created per shard: no cross-thread sharing). Client
// contexts remember the newest resumable session per (verify name, SNI) and
// offer it on the next engine::client() for that pair (docs/behaviour.md, Outbound).
class context {
public:
    static result<context> server(const server_options& opts);
    static result<context> client(const client_options& opts);

    context(context&&) noexcept;
    context& operator=(context&&) noexcept;
    ~context();

    SSL_CTX* native() const noexcept { return ctx_; }
    bool is_server() const noexcept { return server_; }
    const std::string& required_client_name() const noexcept { return required_client_name_; }

private:
    context(SSL_CTX* ctx, bool server) : ctx_(ctx), server_(server) {}
    SSL_CTX* ctx_ = nullptr;
    bool server_ = false;
    std::string required_client_name_;
};

// What the session may want to know about an established TLS connection.
struct peer_info {
    std::string version;      // "TLSv1.3"
    std::string cipher;       // "TLS_AES_128_GCM_SHA256"
    std::string sni;          // server side: the name the client asked for ("" if none)
    std::string peer_subject_cn;            // peer certificate's CN, if any
    std::vector<std::string> peer_dns_names;  // peer certificate's dNSName SANs
    bool peer_verified = false;             // peer certificate chained and name matched
    bool resumed = false;
};

enum class state { handshaking, open, closed, failed };

// One TLS connection. Feed ciphertext from the socket with feed(); decrypted
// bytes are appended to the caller's buffer. Encrypt with write(); ciphertext
// accumulates and is taken with take_output() for the reactor to send.
class engine {
public:
    static result<engine> server(const context& ctx);
    // sni: the server name sent (none for an IP literal); verify_name: the name
    // the server certificate must carry (a DNS name, or an IP literal that must
    // appear as an IP SAN; empty: sni). Unused when the context has verify_peer=false.
    static result<engine> client(const context& ctx, std::string_view sni,
                                 std::string_view verify_name);

    engine(engine&&) noexcept;
    engine& operator=(engine&&) noexcept;
    ~engine();

    // Starts the handshake (client: produces the ClientHello in the output).
    result<void> start();
    // Ciphertext in; plaintext appended to `plain`. An error is final: the
    // connection must be closed after take_output() is sent (it may hold an alert).
    result<void> feed(std::span<const char> cipher, std::string& plain);
    // Plaintext out; valid once state() is open.
    result<void> write(std::string_view plain);
    // Sends close_notify (also in reply to the peer's); state becomes closed.
    // During the handshake nothing is sent and the state becomes failed.
    void shutdown();

    bool has_output() const noexcept;
    // Moves pending ciphertext out (appends to `out`).
    void take_output(std::string& out);

    state current_state() const noexcept { return state_; }
    bool handshake_done() const noexcept { return state_ == state::open || state_ == state::closed; }
    // Valid after the handshake.
    const peer_info& info() const noexcept { return info_; }

private:
    engine() = default;
    result<void> after_handshake();
    result<void> drive_handshake();
    result<void> pump(std::string& plain);
    error fail(std::string message);
    std::string describe(int ssl_error);
    void drain_output();
    SSL* ssl_ = nullptr;
    state state_ = state::handshaking;
    peer_info info_;
    std::string required_name_;  // server: required client name; client: verify name
    std::string out_;            // ciphertext drained from the write BIO, for take_output()
    bool client_ = false;
};

}  // namespace sigrelay::tls
