// The shard runtime: one io_uring reactor per core, owning sockets, buffers,
// timers and shutdown. It moves bytes; it knows nothing of SMTP or TLS.
#pragma once

#include <sigrelay/result.hpp>

#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace sigrelay::runtime {

// ---- addresses --------------------------------------------------------------

struct socket_address {
    sockaddr_storage storage{};
    socklen_t length = 0;

    // "127.0.0.1:25", "[::1]:2525", "localhost:25", ":25" (any address).
    // Host names are resolved (blocking; start-up only).
    static result<socket_address> parse(std::string_view host_port);
    static socket_address from(const sockaddr* sa, socklen_t len);

    int family() const noexcept { return storage.ss_family; }
    const sockaddr* get() const noexcept { return reinterpret_cast<const sockaddr*>(&storage); }
    std::uint16_t port() const noexcept;
    std::string ip_string() const;  // "127.0.0.1", "::1" (IPv4-mapped IPv6 shown as IPv4)
    std::string to_string() const;  // "127.0.0.1:25", "[::1]:25"
};

// An address range for --allow-cidr: "10.0.0.0/8", "2a01:111:f400::/48",
// "127.0.0.1" (a host). IPv4 ranges also match IPv4-mapped IPv6 peers.
class cidr {
public:
    static result<cidr> parse(std::string_view text);
    bool contains(const socket_address& addr) const noexcept;
    std::string to_string() const;

private:
    int family_ = 0;
    unsigned prefix_ = 0;
    std::uint8_t bytes_[16]{};
};

// ---- logs -------------------------------------------------------------------

// One log line to standard error (the newline is added), through this
// thread's own buffer: no lock shared with other shards. Shard reactors flush
// before each wait for events; other threads call flush_log() themselves (it
// also runs when the thread ends).
void log_line(std::string_view line);
void flush_log();

// ---- kernel probe -----------------------------------------------------------

// Checks that the kernel's io_uring has everything the reactor uses
// (ring setup flags, multishot accept and recv, provided-buffer rings,
// timeouts, cancellation, connect). The error names exactly what is missing.
result<void> probe_kernel();

// Whether IORING_OP_SEND_ZC is available (optional: used only where it pays).
bool kernel_has_send_zc();

// ---- reactor ----------------------------------------------------------------

class reactor;
class connection;

// Events of one connection, delivered on its shard's thread.
class connection_handler {
public:
    virtual ~connection_handler() = default;
    // Outbound connections: the connect finished (0) or failed (-errno,
    // -ETIMEDOUT on timeout). After a failure on_closed follows.
    virtual void on_connected(connection&, int /*err*/) {}
    // Bytes from the peer; the span is valid only during the call.
    virtual void on_data(connection&, std::span<const char> bytes) = 0;
    // A timer armed with connection::set_timer fired.
    virtual void on_timer(connection&, std::uint64_t /*tag*/) {}
    // Everything queued with send() has been written to the socket.
    virtual void on_send_drained(connection&) {}
    // The shard is shutting down: finish what is in flight and close.
    // (Defined below connection: a member call needs the complete type.)
    virtual void on_shutdown(connection& c);
    // Last event: 0 = closed by us or EOF from the peer, else -errno. The
    // connection is destroyed after this returns; the handler may delete itself.
    virtual void on_closed(connection&, int err) = 0;
};

class connection {
public:
    connection(const connection&) = delete;
    connection& operator=(const connection&) = delete;

    // Queue bytes; sent in order.
    void send(std::string bytes);
    // Queue a view whose storage `keep` keeps alive until it has been sent
    // (slices of received buffers, rendered fragments: no copy).
    void send_view(std::span<const char> bytes, std::shared_ptr<const void> keep);
    std::size_t queued_bytes() const noexcept;

    // One-shot timer per tag; arming an armed tag re-arms it.
    void set_timer(std::uint64_t tag, std::chrono::milliseconds after);
    void cancel_timer(std::uint64_t tag);

    // Back-pressure: stop/restart delivering on_data.
    void pause_reading();
    void resume_reading();

    // Graceful close: stop reading, flush queued sends, shutdown, close; then
    // on_closed(0). Idempotent.
    void close();
    // Immediate close, queued bytes dropped; then on_closed(-ECONNABORTED).
    void abort();

    void set_handler(connection_handler* h) noexcept { handler_ = h; }
    connection_handler* handler() const noexcept { return handler_; }
    const socket_address& peer() const noexcept { return peer_; }
    const socket_address& local() const noexcept { return local_; }
    int fd() const noexcept { return fd_; }
    std::uint64_t id() const noexcept { return id_; }  // unique per shard, for logs
    reactor& owner() const noexcept { return *reactor_; }
    bool closing() const noexcept;

private:
    friend class reactor;
    connection(reactor& r, int fd, std::uint64_t id);
    ~connection();  // only the reactor frees a connection, once no op of it is in flight
    struct impl;    // ops in flight, send queue, timers (defined in src/runtime)

    reactor* reactor_;
    int fd_;
    std::uint64_t id_;
    connection_handler* handler_ = nullptr;
    socket_address peer_;
    socket_address local_;
    std::unique_ptr<impl> impl_;
};

inline void connection_handler::on_shutdown(connection& c) {
    c.close();
}

struct reactor_options {
    unsigned shard = 0;
    int cpu = -1;                  // pin the shard's thread to this CPU (-1: no)
    unsigned ring_entries = 1024;  // submission queue entries
    unsigned buffer_count = 1024;  // provided receive buffers (power of two)
    unsigned buffer_size = 16 * 1024;
    // Bound on each send op (linked timeout): when the peer stops reading and
    // a send cannot complete within it, the connection ends with -ETIMEDOUT.
    std::chrono::milliseconds send_timeout{5 * 60 * 1000};
};

// Decides what to do with a freshly accepted connection: return its handler,
// or nullptr after queueing a reply and calling close() (limits, allow-list).
using accept_fn = std::function<connection_handler*(connection&)>;

class reactor {
public:
    // The ring starts disabled and binds to the thread that calls run(). Best
    // created on that thread too: when a ring is destroyed, the kernel sends
    // every thread that set it up a task-work signal, which makes blocking
    // calls with SO_RCVTIMEO/SO_SNDTIMEO on that thread fail with EINTR.
    static result<std::unique_ptr<reactor>> create(const reactor_options& opts);
    ~reactor();

    // SO_REUSEPORT listener with multishot accept. Every shard listens on the
    // same address; the kernel spreads connections over them.
    result<void> listen(const socket_address& addr, accept_fn on_accept, int backlog = 4096);
    // The address actually bound (for port 0 in tests), per listen() call order.
    std::vector<socket_address> listening_addresses() const;

    // Non-blocking connect with a linked timeout; on_connected follows.
    result<connection*> connect(const socket_address& to, connection_handler* h,
                                std::chrono::milliseconds timeout);

    // Timers that belong to no connection (drain deadline, delayed replies).
    std::uint64_t after(std::chrono::milliseconds delay, std::function<void()> fn);
    void cancel(std::uint64_t timer_id);

    // Any thread: run fn on this reactor's thread (lock-free MPSC queue plus an
    // eventfd the ring watches).
    void post(std::function<void()> fn);

    // Runs the loop on the calling thread until stop() completes. Before
    // run(), listen/connect/after may be called from the creating thread;
    // afterwards every member except post() and stop() belongs to the run()
    // thread (call them from callbacks or post()ed functions).
    void run();
    // Any thread: stop accepting, call on_shutdown on every connection, exit
    // run() when none is left or `drain` has passed (the rest are aborted).
    void stop(std::chrono::milliseconds drain);

    std::size_t connection_count() const noexcept;
    // sendmsg operations submitted so far: what the queue cork saves shows
    // here (every send() of one turn to one connection is one sendmsg).
    std::uint64_t sends_submitted() const noexcept;
    unsigned shard() const noexcept;

    struct impl;

private:
    explicit reactor(std::unique_ptr<impl> i);
    std::unique_ptr<impl> impl_;
    friend class connection;
};

// ---- shards -----------------------------------------------------------------

struct shard_options {
    unsigned threads = 0;  // 0: one per online CPU
    bool pin = true;       // pin shard i to the i-th CPU of the affinity mask
    reactor_options reactor;
    std::chrono::milliseconds drain_timeout{30000};
};

// Called on each shard's own thread before its loop starts: listeners,
// per-shard state. An error stops the whole group.
using shard_init = std::function<result<void>(reactor&, unsigned shard)>;

class shard_group {
public:
    explicit shard_group(shard_options opts);
    ~shard_group();

    // Spawns the shard threads; returns once every init has run (the first
    // error, if any, after stopping the others).
    result<void> start(shard_init init);
    // Any thread: graceful stop of every shard (drain bounded by drain_timeout).
    void request_stop();
    // Joins the shard threads.
    void wait();
    // Blocks SIGTERM, SIGINT and SIGHUP, then waits for them: TERM/INT →
    // on_stop(), then request_stop() and wait(); HUP → on_hup(). Returns 0
    // after a clean stop. With a periodic function and a positive interval,
    // periodic() also runs every `interval` between signals (its schedule is
    // kept while signals arrive; none runs once the drain has begun). Every
    // callback runs on the calling thread.
    // Call block_signals() before start() so shard threads inherit the mask.
    int run_until_signal(std::function<void()> on_hup = {}, std::function<void()> on_stop = {},
                         std::function<void()> periodic = {},
                         std::chrono::milliseconds interval = std::chrono::milliseconds(0));
    static void block_signals();

    unsigned size() const noexcept;
    reactor& shard(unsigned i);

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

// ---- lock-free queue ----------------------------------------------------------

// Multi-producer single-consumer queue (Vyukov's intrusive MPSC design, with a
// stub node): push from any thread, pop only from the owning shard.
template <class T>
class mpsc_queue {
    struct node {
        std::atomic<node*> next{nullptr};
        T value{};
    };

public:
    mpsc_queue() : head_(&stub_), tail_(&stub_) {}
    ~mpsc_queue() {
        T ignored;
        while (pop(ignored)) {
        }
    }
    mpsc_queue(const mpsc_queue&) = delete;
    mpsc_queue& operator=(const mpsc_queue&) = delete;

    void push(T value) {
        node* n = new node;
        n->value = std::move(value);
        push_node(n);
    }

    // Returns false when empty (or when a producer is mid-push; retry later).
    bool pop(T& out) {
        node* tail = tail_;
        node* next = tail->next.load(std::memory_order_acquire);
        if (tail == &stub_) {
            if (next == nullptr) return false;
            tail_ = next;
            tail = next;
            next = next->next.load(std::memory_order_acquire);
        }
        if (next != nullptr) {
            tail_ = next;
            out = std::move(tail->value);
            delete tail;
            return true;
        }
        if (tail != head_.load(std::memory_order_acquire)) return false;
        push_node(&stub_);
        next = tail->next.load(std::memory_order_acquire);
        if (next != nullptr) {
            tail_ = next;
            out = std::move(tail->value);
            delete tail;
            return true;
        }
        return false;
    }

private:
    void push_node(node* n) {
        n->next.store(nullptr, std::memory_order_relaxed);
        node* prev = head_.exchange(n, std::memory_order_acq_rel);
        prev->next.store(n, std::memory_order_release);
    }

    // Producers hammer head_, the consumer owns tail_: separate cache lines
    // so a push never invalidates the line the shard pops from.
    alignas(64) node stub_;
    alignas(64) std::atomic<node*> head_;
    alignas(64) node* tail_;
};

}  // namespace sigrelay::runtime
