// One SMTP client connection to a smart host (transport stream + client session) and its phase
// machine; it tells its owner, the pool, what happens only through link_owner.
#pragma once

#include <sigrelay/outbound.hpp>
#include <sigrelay/transport.hpp>

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

namespace sigrelay::outbound::detail {

enum class link_phase {
    connecting,  // TCP connect in flight
    setup,       // greeting, EHLO, STARTTLS, EHLO
    probing,     // NOOP before reuse of a long-idle connection
    idle,        // in the pool, ready
    leased,      // bound to a transaction
    resetting,   // RSET after an unfinished transaction
    quitting,    // QUIT sent, no longer counted against max_connections
    closing,     // closed or failed; waiting for on_closed
};

class link;

// What a link tells the pool that owns it. Every call comes from inside one of the link's own
// commands or events, on the shard thread; none is made after link::detach().
class link_owner {
public:
    // Every phase change, in order, from the first (closing → connecting, in start()) to the last:
    // the owner's per-destination counts follow these and nothing else.
    virtual void on_link_phase(link& l, link_phase from, link_phase to) = 0;
    // Asked when a transaction or set-up is over: may the link stay open for another? No once the
    // owner is shutting down or the destination changed since the link was made; it QUITs then.
    virtual bool keeps(const link& l) const = 0;
    // How long this link may stay idle before it QUITs: the pool's idle
    // timeout while it keeps fewer idle connections than --pool-size, a short
    // grace beyond (a burst's connections are reused, not closed at once).
    virtual std::chrono::milliseconds idle_time(const link& l) const = 0;
    // Set-up (connect, greeting, EHLO, STARTTLS) failed; the link is closing already. `r` is what a
    // waiter should get, `detail` names the smart host and the cause.
    virtual void on_link_setup_failed(link& l, const smtp::reply& r, const std::string& detail) = 0;
    // The connection is gone: the link's last call. The owner may drop its reference; the link
    // holds itself until the call returns.
    virtual void on_link_closed(link& l) = 0;
    // The reactor is stopping (it reaches the owner through each link's stream).
    virtual void on_reactor_stopping(link& l) = 0;

protected:
    ~link_owner() = default;  // never deleted through this interface
};

class link final : public transport::stream_events,
                   public smtp::client_events,
                   public std::enable_shared_from_this<link> {
public:
    // `stats` is where the link counts what it does (probes, resets, retirements, failures); the
    // pool keeps the open/idle gauges itself. Both stay the owner's until detach().
    link(link_owner& owner, pool_stats& stats, runtime::reactor& r, const destination& dest,
         const runtime::socket_address& address, const pool_options& o);

    // TCP connect; phase connecting on success, nothing reported on failure.
    result<void> start();

    // ---- state, for the owner and the lease ---------------------------------------
    link_phase phase() const noexcept { return phase_; }
    // Idle for longer than probe_after without a NOOP since: check before handing out.
    bool needs_probe() const;
    bool reused() const noexcept { return reused_; }  // carried a transaction before this lease
    bool fresh() const noexcept { return messages_ == 0; }  // never carried a transaction
    bool broken() const noexcept { return broken_; }  // failed or timed out while leased
    // Commands issued whose replies have not arrived, including failures not yet delivered.
    std::size_t pending() const noexcept { return pending_.size() + deferred_; }
    const smtp::server_capabilities& capabilities() const noexcept {
        return session_.capabilities();
    }
    const tls::peer_info* tls_info() const noexcept;  // null without TLS or once closed
    std::uint64_t connection_id() const noexcept { return conn_id_; }
    const runtime::socket_address& address() const noexcept { return address_; }
    // The TCP connection was made (a set-up failure after this is not the address's fault).
    bool connected() const noexcept { return connected_; }

    // ---- commands from the owner ----------------------------------------------------
    void probe();      // idle → probing: NOOP, then idle again (or QUIT)
    void lease_out();  // idle → leased
    // Graceful retirement: QUIT, then close on its reply (or after a bound).
    void quit();
    void close_now();  // abort the connection
    // The owner is going away: abort without any further call to it.
    void detach();

    // ---- commands from the lease ----------------------------------------------------
    void set_events(transaction_events* ev) noexcept { events_ = ev; }
    void mail(std::string_view reverse_path, std::string_view params) {
        issue(smtp::command_kind::mail, reverse_path, params);
    }
    void rcpt(std::string_view forward_path, std::string_view params) {
        issue(smtp::command_kind::rcpt, forward_path, params);
    }
    void data(std::string content) { issue(smtp::command_kind::data, {}, {}, std::move(content)); }
    void begin_message();
    void message_content(std::span<const std::string_view> pieces);
    void end_message();
    void abandon_message();
    std::size_t backlog() const noexcept;
    // The lease ends: RSET and idle, idle, QUIT or abort (see lease::release).
    void release(bool reusable);

    // ---- transport::stream_events ---------------------------------------------------
    void on_connected(transport::stream& s, int err) override;
    void on_plain(transport::stream&, std::span<const char> bytes) override;
    void on_tls_ready(transport::stream& s) override;
    void on_timer(transport::stream&, std::uint64_t tag) override;
    void on_drained(transport::stream&) override;
    void on_shutdown(transport::stream&) override;
    void on_closed(transport::stream&, int err, const std::string& tls_error) override;

    // ---- smtp::client_events --------------------------------------------------------
    void send(std::string_view bytes) override;
    void start_tls() override;
    void on_ready(const smtp::server_capabilities&) override;
    void on_reply(smtp::command_kind kind, const smtp::reply& r) override;
    void on_failure(const smtp::reply& r) override;

private:
    void set_phase(link_phase p);
    void count(std::uint64_t pool_stats::*counter) noexcept {
        if (stats_ != nullptr) ++(stats_->*counter);
    }
    void become_idle();
    void issue(smtp::command_kind kind, std::string_view a, std::string_view params,
               std::string content = {});
    void break_lease(const smtp::reply& r);
    void defer_failure(smtp::command_kind kind);
    void arm_command_timer();
    void fail_setup(const smtp::reply& r, std::string detail);

    link_owner* owner_;  // null once detached
    pool_stats* stats_;  // likewise
    runtime::reactor* reactor_;
    pool_options opts_;  // a copy: a lease may outlive its pool
    runtime::socket_address address_;
    std::shared_ptr<const tls::context> tls_;
    std::string verify_name_;
    std::string peer_;
    std::unique_ptr<transport::stream> stream_;
    smtp::client_session session_;
    link_phase phase_ = link_phase::closing;  // until start() succeeds: counted nowhere
    transaction_events* events_ = nullptr;
    std::deque<smtp::command_kind> pending_;
    std::deque<std::string> contents_;
    std::size_t deferred_ = 0;
    unsigned messages_ = 0;
    bool dirty_ = false;  // MAIL sent, transaction not ended by a data reply or RSET
    bool streaming_ = false;       // begin_message() .. end or abandon
    bool unfinishable_ = false;    // a DATA stream abandoned: only closing ends it
    bool broken_ = false;
    bool reused_ = false;
    bool probed_ = false;  // NOOP answered since the last lease
    bool closed_ = false;  // on_closed seen: the stream's connection is gone
    bool connected_ = false;
    std::uint64_t conn_id_ = 0;
    std::chrono::steady_clock::time_point idle_since_{};
};

}  // namespace sigrelay::outbound::detail
