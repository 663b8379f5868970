// Plaintext streams over reactor connections, with optional TLS.
#include <sigrelay/transport.hpp>

#include <utility>

namespace sigrelay::transport {

void stream_events::on_shutdown(stream& s) { s.close(); }

stream::stream(runtime::connection& conn, stream_events& events) : conn_(&conn), events_(&events) {
    conn.set_handler(this);
}

stream::~stream() = default;

// A TLS record holds at most 16 KiB of plaintext (RFC 8446 §5.1).
constexpr std::size_t record_size = 16 * 1024;

void stream::write(std::string_view plain) {
    if (corked_ == 0) return encrypt(plain);
    // Corked: small writes are gathered into one record; the bulk of a large
    // write is encrypted straight from the caller's bytes, in whole records,
    // and only its tail waits for what comes next (staged_ stays under a record).
    if (!staged_.empty()) {
        const std::size_t need = record_size - staged_.size();
        if (plain.size() < need) {
            staged_.append(plain);
            return;
        }
        staged_.append(plain.substr(0, need));
        plain.remove_prefix(need);
        encrypt(staged_);
        staged_.clear();
    }
    const std::size_t whole = plain.size() / record_size * record_size;
    encrypt(plain.substr(0, whole));
    staged_.append(plain.substr(whole));
}

void stream::uncork() {
    if (corked_ == 0 || --corked_ > 0) return;
    flush_staged();
}

void stream::encrypt(std::string_view plain) {
    if (plain.empty()) return;
    if (!tls_) {
        conn_->send(std::string(plain));
        return;
    }
    if (auto r = tls_->write(plain); !r) {
        fail_tls(r.err().message);
        return;
    }
    flush_tls();
}

// What was written before TLS starts goes out in the clear (the 220 to
// STARTTLS), even while corked.
void stream::flush_staged() {
    if (staged_.empty()) return;
    std::string s = std::move(staged_);
    staged_ = std::string();
    encrypt(s);
}

result<void> stream::start_tls_server(const tls::context& ctx) {
    flush_staged();
    auto e = tls::engine::server(ctx);
    if (!e) return e.err();
    tls_.emplace(std::move(e).value());
    return tls_->start();
}

result<void> stream::start_tls_client(const tls::context& ctx, std::string_view sni,
                                      std::string_view verify_name) {
    flush_staged();
    auto e = tls::engine::client(ctx, sni, verify_name);
    if (!e) return e.err();
    tls_.emplace(std::move(e).value());
    SIGRELAY_TRY(tls_->start());
    flush_tls();
    return {};
}

void stream::flush_tls() {
    if (!tls_ || !tls_->has_output()) return;
    out_.clear();
    tls_->take_output(out_);
    conn_->send(std::move(out_));
    out_ = std::string();
}

void stream::fail_tls(std::string why) {
    if (tls_error_.empty()) tls_error_ = std::move(why);
    flush_tls();  // the alert, if any
    conn_->close();
}

void stream::close() {
    flush_staged();
    if (tls_ && tls_->current_state() == tls::state::open) {
        tls_->shutdown();
        flush_tls();
    }
    conn_->close();
}

void stream::on_connected(runtime::connection&, int err) { events_->on_connected(*this, err); }

void stream::on_data(runtime::connection&, std::span<const char> bytes) {
    bytes_in_ += bytes.size();
    if (!tls_) {
        events_->on_plain(*this, bytes);
        return;
    }
    plain_.clear();
    auto r = tls_->feed(bytes, plain_);
    flush_tls();
    if (!r) {
        fail_tls(r.err().message);
        return;
    }
    if (!tls_announced_ && tls_->handshake_done()) {
        tls_announced_ = true;
        events_->on_tls_ready(*this);
        // The handler may have closed the connection, or replaced the engine.
        if (conn_->closing() || !tls_) return;
    }
    if (!plain_.empty()) {
        // Move out first: the handler may write, which never touches plain_,
        // but may also trigger nested feeds in future designs.
        std::string chunk = std::move(plain_);
        plain_ = std::string();
        events_->on_plain(*this, chunk);
    }
    if (tls_ && tls_->current_state() == tls::state::closed) {
        // The peer's close_notify: answer with ours (RFC 8446 §6.1), then
        // close; engine::shutdown() sends it only once.
        tls_->shutdown();
        flush_tls();
        conn_->close();
    }
}

void stream::on_timer(runtime::connection&, std::uint64_t tag) { events_->on_timer(*this, tag); }

void stream::on_send_drained(runtime::connection&) {
    if (staged_.empty()) events_->on_drained(*this);
}

void stream::on_shutdown(runtime::connection&) { events_->on_shutdown(*this); }

void stream::on_closed(runtime::connection&, int err) {
    events_->on_closed(*this, err, tls_error_);
}

}  // namespace sigrelay::transport
