// A connection as sessions see it: plaintext in and out, with TLS started on
// demand (STARTTLS) or from the first byte. Glue between the reactor, which
// moves ciphertext, and the TLS engine, which turns it into plaintext.
#pragma once

#include <sigrelay/result.hpp>
#include <sigrelay/runtime.hpp>
#include <sigrelay/tls.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace sigrelay::transport {

class stream;

class stream_events {
public:
    virtual ~stream_events() = default;
    // Outbound streams: connected (0) or not (-errno; on_closed follows).
    virtual void on_connected(stream&, int /*err*/) {}
    // Plaintext from the peer; valid only during the call.
    virtual void on_plain(stream&, std::span<const char> bytes) = 0;
    // The TLS handshake finished; stream::tls_info() is valid.
    virtual void on_tls_ready(stream&) {}
    virtual void on_timer(stream&, std::uint64_t /*tag*/) {}
    // Everything written so far is on the wire (the send queue is empty):
    // a writer paused for back-pressure may go on.
    virtual void on_drained(stream&) {}
    virtual void on_shutdown(stream& s);
    // Last event. err: 0 on a clean close, else -errno; tls_error set when the
    // stream ended because TLS failed (handshake or record error).
    virtual void on_closed(stream&, int err, const std::string& tls_error) = 0;
};

class stream final : public runtime::connection_handler {
public:
    stream(runtime::connection& conn, stream_events& events);
    ~stream() override;

    // Plaintext to the peer (encrypted when TLS is active).
    void write(std::string_view plain);
    // Between cork() and uncork(), writes are gathered and go out as full
    // TLS records (16 KiB) instead of one record per write: a BDAT line and
    // the slices of a chunk become one stream of records, not many small ones.
    void cork() noexcept { ++corked_; }
    void uncork();
    // Bytes written but not yet on the wire (queued in the reactor).
    std::size_t backlog() const noexcept { return conn_->queued_bytes() + staged_.size(); }
    // Server side of STARTTLS: from now on every byte from the socket is TLS.
    result<void> start_tls_server(const tls::context& ctx);
    // Client side: sends the ClientHello now.
    result<void> start_tls_client(const tls::context& ctx, std::string_view sni,
                                  std::string_view verify_name);

    bool tls_active() const noexcept { return tls_.has_value(); }
    bool tls_ready() const noexcept { return tls_ && tls_->current_state() == tls::state::open; }
    const tls::peer_info* tls_info() const noexcept { return tls_ready() ? &tls_->info() : nullptr; }

    void set_timer(std::uint64_t tag, std::chrono::milliseconds after) { conn_->set_timer(tag, after); }
    void cancel_timer(std::uint64_t tag) { conn_->cancel_timer(tag); }
    void pause_reading() { conn_->pause_reading(); }
    void resume_reading() { conn_->resume_reading(); }
    // Graceful close (close_notify first when TLS is up).
    void close();
    void abort() { conn_->abort(); }

    runtime::connection& conn() noexcept { return *conn_; }
    std::uint64_t bytes_in() const noexcept { return bytes_in_; }

    // runtime::connection_handler
    void on_connected(runtime::connection&, int err) override;
    void on_data(runtime::connection&, std::span<const char> bytes) override;
    void on_timer(runtime::connection&, std::uint64_t tag) override;
    void on_send_drained(runtime::connection&) override;
    void on_shutdown(runtime::connection&) override;
    void on_closed(runtime::connection&, int err) override;

private:
    void flush_tls();
    void fail_tls(std::string why);

    runtime::connection* conn_;
    stream_events* events_;
    std::optional<tls::engine> tls_;
    bool tls_announced_ = false;
    std::string plain_;  // decrypted bytes awaiting delivery
    std::string out_;    // ciphertext awaiting send
    void flush_staged();
    std::string staged_;  // plaintext gathered while corked
    unsigned corked_ = 0;
    void encrypt(std::string_view plain);
    std::string tls_error_;
    std::uint64_t bytes_in_ = 0;
};

}  // namespace sigrelay::transport
