// Inbound SMTP connections: admission (allow-list, connection limits), the
// session's timers (command and data timeouts, minimum data rate), STARTTLS,
// and the hand-off of each transaction to whoever owns it (the relay's proxy,
// or smarthost-sink). Shared by every SMTP server binary of the project.
#pragma once

#include <sigrelay/cli.hpp>
#include <sigrelay/result.hpp>
#include <sigrelay/runtime.hpp>
#include <sigrelay/smtp.hpp>
#include <sigrelay/tls.hpp>
#include <sigrelay/transport.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace sigrelay::inbound {

struct server_options {
    smtp::server_config smtp;
    std::vector<runtime::cidr> allow;     // empty: every peer
    unsigned max_connections = 0;         // per shard; 0: no limit
    unsigned max_connections_per_ip = 0;  // across shards; 0: no limit
    std::chrono::milliseconds command_timeout{300'000};
    std::chrono::milliseconds data_timeout{600'000};
    std::uint64_t min_data_rate = 0;  // bytes/s while reading content; 0: off
    std::chrono::milliseconds rate_window{10'000};  // how often the rate is checked
    // A PROXY v1/v2 header precedes the SMTP stream, from a balancer in
    // `proxy_trusted` only; any other peer is refused before it can claim an
    // address (docs/behaviour.md, Several hosts).
    bool proxy_protocol = false;
    std::vector<runtime::cidr> proxy_trusted;
    std::string log_prefix = "sigrelay";
    bool quiet = false;
};

// The SMTP server flags that sigrelay and smarthost-sink share, with their
// defaults set by the caller before add_to().
struct server_flags {
    std::vector<std::string> allow_cidr;  // empty: `default_allow`
    std::vector<std::string> default_allow;
    unsigned max_connections = 0, max_connections_per_ip = 0;
    unsigned command_timeout = 300, data_timeout = 600;  // seconds
    std::uint64_t min_data_rate = 0;
    std::uint64_t max_message_size = 150ull << 20;
    unsigned max_recipients = 1000;
    std::string bare_newline = "reject";
    bool chunking = true;

    void add_to(cli::parser& p);
    // Validates and copies into `opts` (allow-list, limits, timeouts, SMTP).
    result<void> apply(server_options& opts) const;
};

// The STARTTLS flags of an SMTP server, shared by sigrelay and the sink:
// the server's certificate, and optionally the client certificate demanded
// (Exchange's -TlsSenderCertificateName on our side of the connector).
struct tls_flags {
    std::string cert, key;                  // --tls-cert, --tls-key
    std::string require_client_cert;        // --require-client-cert NAME
    std::string client_ca;                  // --client-ca FILE

    void add_to(cli::parser& p, std::string_view cert_help);
    bool enabled() const noexcept { return !cert.empty(); }
    // Checks the combination; the error names the flags.
    result<void> validate() const;
    // One server context (each shard makes its own: no context is shared
    // between threads).
    result<tls::context> make_context() const;
};

// The per-IP connection counts, shared by every shard without a lock: a fixed
// table of atomic counters indexed by a hash of the address. Two addresses
// that share a slot share a limit, which only ever makes it stricter.
class ip_table {
public:
    bool try_acquire(const runtime::socket_address& peer, unsigned limit) noexcept;
    void release(const runtime::socket_address& peer) noexcept;
    unsigned count(const runtime::socket_address& peer) const noexcept;

private:
    static constexpr std::size_t slots = 1 << 14;
    static std::size_t slot(const runtime::socket_address& peer) noexcept;
    std::atomic<std::uint32_t> counts_[slots]{};
};

// Counters of one shard, read after the shard stopped (or from its thread).
struct counters {
    std::uint64_t connections = 0, refused_allowlist = 0, refused_limits = 0;
    std::uint64_t tls_handshakes = 0, tls_failures = 0, timeouts = 0;
    std::uint64_t tls_resumed = 0;  // ... of the handshakes, those that resumed a session
    std::uint64_t messages = 0, content_bytes = 0;
    std::uint64_t proxy_errors = 0;     // bad or missing PROXY headers
    std::uint64_t proxy_untrusted = 0;  // refused: not a --proxy-trusted balancer
};

class session;

// The owner of one connection's transactions. Every decision is answered with
// session::answer(), at once or later.
class transaction_handler {
public:
    virtual ~transaction_handler() = default;
    virtual void on_helo(session&, std::string_view /*domain*/) {}
    virtual void on_mail(session&, const smtp::mail_command&) = 0;
    virtual void on_rcpt(session&, const smtp::rcpt_command&) = 0;
    virtual void on_content(session&, std::span<const char> bytes) = 0;
    virtual void on_message(session&) = 0;
    virtual void on_reset(session&) {}
    // The connection is gone; no callback follows.
    virtual void on_end(session&) {}
};

class listener;

// One inbound connection: stream + SMTP session + timers.
class session final : public transport::stream_events, public smtp::session_events {
public:
    // `peer`: the client (the PROXY header's source when there is one).
    session(listener& l, runtime::connection& c, const runtime::socket_address& peer);
    ~session() override;

    void answer(const smtp::reply& r);

    // Back-pressure: stop reading from the client while any reason holds
    // (the smart host is behind, the shard's memory budget is spent, commands
    // are piling up behind a pending decision). Time spent held is not the
    // client's: its timeouts and --min-data-rate window pause meanwhile.
    enum hold_reason : unsigned { hold_outbound = 1, hold_budget = 2, hold_input = 4 };
    void hold(hold_reason why);
    void release(hold_reason why);
    bool held() const noexcept { return holds_ != 0; }
    void set_handler(std::unique_ptr<transaction_handler> h) { handler_ = std::move(h); }
    transaction_handler* handler() const noexcept { return handler_.get(); }

    transport::stream& stream() noexcept { return stream_; }
    const runtime::socket_address& peer() const noexcept { return peer_; }
    const std::string& helo() const noexcept { return helo_; }
    const tls::peer_info* tls() const noexcept { return stream_.tls_info(); }
    runtime::reactor& reactor() noexcept { return stream_.conn().owner(); }
    std::uint64_t id() const noexcept { return id_; }
    // Logs a line tagged with the shard, connection id and peer.
    void log(std::string_view line) const;
    // Holds while the session exists: for answers that arrive later.
    std::weak_ptr<void> alive() const { return alive_; }

private:
    friend class listener;
    void start();
    // transport::stream_events
    void on_plain(transport::stream&, std::span<const char> bytes) override;
    void on_tls_ready(transport::stream&) override;
    void on_timer(transport::stream&, std::uint64_t tag) override;
    void on_shutdown(transport::stream&) override;
    void on_closed(transport::stream&, int err, const std::string& tls_error) override;
    // smtp::session_events
    void send(std::string_view bytes) override;
    void start_tls() override;
    void on_helo(std::string_view domain, bool esmtp) override;
    void on_mail(const smtp::mail_command& cmd) override;
    void on_rcpt(const smtp::rcpt_command& cmd) override;
    void on_content(std::span<const char> bytes) override;
    void on_message() override;
    void on_reset() override;
    void on_close() override;
    void on_log(std::string_view line) override;

    void arm_timers();

    listener& listener_;
    runtime::socket_address peer_;
    std::uint64_t id_;
    unsigned shard_;
    transport::stream stream_;
    smtp::server_session smtp_;
    std::unique_ptr<transaction_handler> handler_;
    std::shared_ptr<int> alive_;
    std::string helo_;
    void check_input_bound();

    unsigned holds_ = 0;
    bool in_content_ = false;
    std::chrono::steady_clock::time_point window_start_{};
    std::uint64_t window_bytes_ = 0;
};

// Makes the transaction handler of a new session.
using handler_factory = std::function<std::unique_ptr<transaction_handler>(session&)>;

// One shard's SMTP listener: admission and session creation. Give its
// accept() to reactor::listen().
class listener {
public:
    // tls: this shard's server context (nullptr: no STARTTLS offered).
    listener(const server_options& opts, ip_table& ips, const tls::context* tls,
             handler_factory make_handler);

    runtime::accept_fn accept();

    const server_options& options() const noexcept { return opts_; }
    const counters& stats() const noexcept { return stats_; }
    unsigned active() const noexcept { return active_; }

private:
    friend class session;
    class proxy_reader;
    runtime::connection_handler* admit(runtime::connection& c);
    // Admission with the client's address known (from the socket, or from
    // the PROXY header).
    runtime::connection_handler* admit_as(runtime::connection& c, const runtime::socket_address& peer);
    // Counts, logs and answers a refused connection (then closes it).
    runtime::connection_handler* refuse_with(runtime::connection& c, const runtime::socket_address& peer,
                                             std::uint64_t& counter, std::string_view why, const smtp::reply& r);
    void log_refusal(runtime::connection& c, const runtime::socket_address& peer, std::string_view what) const;

    const server_options& opts_;
    ip_table& ips_;
    const tls::context* tls_;
    handler_factory make_handler_;
    smtp::server_config smtp_;  // opts_.smtp with STARTTLS offered when tls_ is set
    counters stats_;
    unsigned active_ = 0;
};

}  // namespace sigrelay::inbound
