// Outbound leg of the transaction proxy (docs/behaviour.md, Delivery and Outbound): per-shard pools
// of SMTP client connections to tenants' smart hosts, over STARTTLS with the tenant's client
// certificate. An inbound transaction leases one connection from MAIL FROM on; every reply it
// relays is the smart host's own, and every failure of ours (connect, TLS, timeout, lost
// connection) is a 4yz, so a 250 is only ever the smart host's.
#pragma once

#include <sigrelay/runtime.hpp>
#include <sigrelay/smtp.hpp>
#include <sigrelay/smtp_client.hpp>
#include <sigrelay/tls.hpp>

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace sigrelay::outbound {

// One tenant's smart host.
struct destination {
    std::string key;                  // pool key (the tenant id)
    // Every address of the smart host, in the order to try: a connection that
    // cannot be made to one goes to the next (and that address is avoided for
    // a while). Updated as DNS answers change, without retiring connections.
    std::vector<runtime::socket_address> addresses;
    // The name the smart host's certificate must carry (`-TlsDomain`): a DNS
    // name, also sent as SNI, or an IP literal that must be an IP SAN (no SNI
    // then, RFC 6066 §3). Empty: the address's IP.
    std::string tls_domain;
    // Client context with the tenant's certificate and smart_host_ca; it caches
    // sessions, so new connections resume. Null: no STARTTLS (tests only).
    std::shared_ptr<const tls::context> tls;
};

struct pool_options {
    // Per destination and shard: connections open at once (in use, starting
    // or idle), and idle connections kept for reuse. Separate, so that slow
    // transactions do not make a tenant's other messages wait while the pool
    // keeps only a few connections open between bursts.
    unsigned max_connections = 50;
    unsigned max_idle = 8;
    unsigned max_messages = 100;                         // transactions per connection, then QUIT
    std::chrono::milliseconds idle_timeout{30'000};      // unused this long: QUIT
    std::chrono::milliseconds connect_timeout{10'000};   // TCP connect; again for greeting+EHLO+TLS
    std::chrono::milliseconds command_timeout{300'000};  // each MAIL/RCPT/RSET reply
    std::chrono::milliseconds data_timeout{600'000};     // from DATA/BDAT to its final reply
    // A waiter that got no connection this long (pool full, smart host slow)
    // gets 451 4.4.5.
    std::chrono::milliseconds acquire_timeout{60'000};
    // An idle connection unused for longer than this is checked with NOOP
    // before it is handed out (the server may have dropped it meanwhile).
    std::chrono::milliseconds probe_after{5'000};
    std::string helo_name = "localhost";
    bool use_chunking = true;  // BDAT when offered (else DATA with dot-stuffing)
};

struct pool_stats {
    std::uint64_t connects = 0;          // connections attempted
    std::uint64_t connect_failures = 0;  // TCP, TLS, greeting or EHLO failed
    std::uint64_t tls_resumed = 0;       // handshakes that resumed a session
    std::uint64_t leases = 0;            // connections handed out
    std::uint64_t reuses = 0;            // ... of which had carried a transaction before
    std::uint64_t transactions = 0;      // MAIL FROM sent
    std::uint64_t resets = 0;            // RSET between transactions
    std::uint64_t probes = 0;            // NOOP checks of idle connections
    std::uint64_t retired_max_messages = 0, retired_idle = 0;
    std::uint64_t dropped_idle = 0;  // idle connections the server closed
    std::uint64_t broken = 0;        // connections that failed while leased
    std::uint64_t timeouts = 0;      // per-command timeouts
    std::uint64_t queued = 0;        // acquires that had to wait for a slot
    std::uint64_t acquire_timeouts = 0;
    unsigned open = 0;  // now: connections counted against max_connections, all destinations
    unsigned idle = 0;  // now: idle connections, all destinations
};

// Replies to the commands of one lease, in the order they were issued.
class transaction_events {
public:
    virtual ~transaction_events() = default;
    // kind is mail, rcpt or data. The reply is the smart host's, or ours when
    // the connection failed (451 4.4.2), timed out (421 4.4.2) or was unusable.
    virtual void on_reply(smtp::command_kind kind, const smtp::reply& r) = 0;
    // The connection's backlog (lease::backlog()) has gone to zero.
    virtual void on_drained() {}
};

namespace detail {
class link;
}  // namespace detail

class pool;

// One checked-out connection, bound to one transaction at a time. Move-only;
// destroying it is release(true). Its calls and callbacks belong to the pool's
// shard thread.
class lease {
public:
    lease() = default;
    lease(lease&&) noexcept = default;
    lease& operator=(lease&& other) noexcept;
    lease(const lease&) = delete;
    lease& operator=(const lease&) = delete;
    ~lease();

    bool valid() const noexcept { return link_ != nullptr; }

    // Where replies go; set before the first command.
    void set_events(transaction_events* ev) noexcept;

    // Commands, pipelined when the smart host offers PIPELINING (RFC 2920).
    // On a connection that already failed, each gets 451 4.4.2 (delivered
    // later, never inside the call).
    void mail(std::string_view reverse_path, std::string_view params = {});
    void rcpt(std::string_view forward_path, std::string_view params = {});
    // The message (CRLF lines): BDAT LAST byte-exact with CHUNKING, else DATA,
    // dot-stuffed with bare CR/LF made CRLF. Kept until its reply.
    void data(std::string content);

    // A message streamed while it still arrives: begin, content as it comes
    // (a BDAT chunk per call with CHUNKING, else DATA dot-stuffed as it goes),
    // end; its one data reply follows end_message(), or comes earlier when the
    // smart host refuses a chunk (then later content is dropped). The pieces
    // need to stay valid only during the call.
    void begin_message();
    void message_content(std::span<const std::string_view> pieces);
    void end_message();
    // The message must never be completed (the client went away, the message
    // turned out bad): no data reply follows; release() then RSETs, or closes
    // the connection when the DATA stream can only be ended by its final dot.
    void abandon_message();
    // Bytes written to the smart host but not yet on the wire, including
    // content held until the 354: the writer pauses its source above a
    // watermark and goes on at transaction_events::on_drained().
    std::size_t backlog() const noexcept;

    // Back to the pool: reused only when reusable, the connection is healthy,
    // no reply is outstanding and max_messages is not reached; an unfinished
    // transaction is RSET first (RFC 5321 §4.1.1.5). Otherwise QUIT (or
    // closed at once when replies are outstanding). No callback follows.
    void release(bool reusable = true);

    // Commands issued whose replies have not arrived.
    std::size_t pending() const noexcept;
    // The connection failed or timed out; release() will discard it.
    bool broken() const noexcept;
    // This connection carried a transaction before this lease.
    bool reused() const noexcept;
    const smtp::server_capabilities* capabilities() const noexcept;
    const tls::peer_info* tls_info() const noexcept;  // null without TLS
    std::uint64_t connection_id() const noexcept;     // runtime connection id, for logs

private:
    friend class pool;  // only the pool binds a lease to a connection it made
    explicit lease(std::shared_ptr<detail::link> l) : link_(std::move(l)) {}
    std::shared_ptr<detail::link> link_;
};

// What an acquire() ends with: a lease, or the reply to give the client
// (ours: 451 4.4.1 connect/TLS, 451 4.4.5 pool busy, 451 4.3.2 shutting down;
// or the smart host's own reply when its greeting or EHLO was refused, so a
// 5yz stays a 5yz).
struct acquire_outcome {
    lease channel;
    smtp::reply failure;
    std::string detail;  // for the log: what went wrong, with the smart host's address
    bool ok() const noexcept { return channel.valid(); }
};

using acquire_callback = std::function<void(acquire_outcome)>;

// The pool of one shard: never shared across threads, no locks. Every
// callback runs on the reactor's thread, never inside acquire().
class pool {
public:
    pool(runtime::reactor& r, pool_options opts);
    ~pool();  // aborts what is still open; leases that outlive it fail with 451
    pool(const pool&) = delete;
    pool& operator=(const pool&) = delete;

    // A ready connection (greeting, EHLO, STARTTLS, EHLO done): an idle one
    // (NOOP-checked when idle for long), else a new one, else wait for one.
    // When the destination's address, TLS name or context changed (tenants
    // reload), older connections are retired. Returns a ticket for cancel().
    // `fresh`: a newly opened connection, never one that carried a
    // transaction before (the retry after a pooled one turned out dead).
    std::uint64_t acquire(const destination& dest, acquire_callback cb, bool fresh = false);
    // Forget a waiting acquire (the client went away); its callback never runs.
    void cancel(std::uint64_t ticket);

    // Stop: waiters get 451 4.3.2 (inside this call), idle connections QUIT,
    // leased ones QUIT when released. Also done when the reactor stops.
    void shutdown();

    const pool_stats& stats() const noexcept;
    // One destination's connections now (by destination::key; zeros when unknown).
    struct load {
        unsigned open = 0;     // counted against max_connections
        unsigned idle = 0;     // idle in the pool
        unsigned waiting = 0;  // acquires waiting for a connection
    };
    load load_of(std::string_view key) const;
    const pool_options& options() const noexcept;
    runtime::reactor& owner() const noexcept;

private:
    // Destinations, waiters and connections, in src/outbound/pool.cpp: it is also what each
    // connection reports to (detail::link_owner), which keeps that interface out of this header.
    class impl;
    std::unique_ptr<impl> impl_;
};

}  // namespace sigrelay::outbound
