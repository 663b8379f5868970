// Private to src/runtime: the reactor's and connection's internals, the tags
// packed into io_uring user_data, ring setup shared with the kernel probe.
#pragma once

#include <sigrelay/runtime.hpp>

#include <liburing.h>
#include <sys/uio.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <thread>
#include <vector>

namespace sigrelay::runtime::detail {

using clock = std::chrono::steady_clock;  // CLOCK_MONOTONIC, like io_uring timeouts

// What a completion belongs to. The low 3 bits of user_data hold the kind, the
// rest a pointer to the owning object (all of them are 8-byte aligned). Kind
// `ignore` (user_data 0) marks completions nobody waits for: linked timeouts,
// cancels, timeout updates and removals.
enum class op_kind : std::uint64_t {
    ignore = 0,
    accept = 1,         // listener*
    recv = 2,           // connection*   (multishot)
    send = 3,           // connection*
    connect = 4,        // connection*
    conn_timer = 5,     // conn_timer_op*
    reactor_timer = 6,  // reactor_timer*
    wakeup = 7,         // reactor::impl* (eventfd read)
};
inline constexpr std::uint64_t kind_mask = 7;

template <class T>
std::uint64_t pack(T* p, op_kind k) noexcept {
    static_assert(alignof(T) >= 8, "user_data packing needs 3 free low bits");
    return reinterpret_cast<std::uintptr_t>(p) | static_cast<std::uint64_t>(k);
}
inline op_kind kind_of(std::uint64_t ud) noexcept {
    return static_cast<op_kind>(ud & kind_mask);
}
template <class T>
T* object_of(std::uint64_t ud) noexcept {
    return reinterpret_cast<T*>(static_cast<std::uintptr_t>(ud & ~kind_mask));
}

__kernel_timespec relative_timespec(std::chrono::nanoseconds d) noexcept;
__kernel_timespec absolute_timespec(clock::time_point t) noexcept;

// ---- ring.cpp ----------------------------------------------------------------

// Creates a ring with the reactor's setup flags (each explained in ring.cpp).
// `disabled`: the ring starts disabled so that the thread which later runs it
// (io_uring_enable_rings) becomes its single issuer.
result<void> init_ring(io_uring& ring, unsigned entries, bool disabled);

// A provided-buffer ring: `count` buffers of `size` bytes, group `bgid`.
struct buffer_ring {
    io_uring_buf_ring* ring = nullptr;
    std::size_t ring_bytes = 0;
    char* base = nullptr;
    std::size_t base_bytes = 0;
    unsigned count = 0;
    unsigned size = 0;
    unsigned short bgid = 0;

    char* data(unsigned short bid) const noexcept { return base + std::size_t(bid) * size; }
    // Hands a buffer back to the kernel (right after on_data returned).
    void give_back(unsigned short bid) noexcept {
        io_uring_buf_ring_add(ring, data(bid), size, bid, io_uring_buf_ring_mask(count), 0);
        io_uring_buf_ring_advance(ring, 1);
    }
};
result<void> setup_buffer_ring(io_uring& ring, buffer_ring& out, unsigned count, unsigned size,
                               unsigned short bgid);
void free_buffer_ring(buffer_ring& b) noexcept;

// ---- per-connection state ------------------------------------------------------

// One queued send: owned bytes, or a view kept alive by `keep`.
struct send_chunk {
    std::string owned;
    const char* view = nullptr;
    std::size_t size = 0;
    std::shared_ptr<const void> keep;

    const char* data() const noexcept { return view != nullptr ? view : owned.data(); }
};

struct conn_timer_op {
    connection* conn;
    std::uint64_t tag;
    clock::time_point expiry;  // when the kernel timeout fires
    __kernel_timespec ts;      // read by the kernel at submission
};

struct timer_slot {
    std::uint64_t tag;
    clock::time_point deadline;
    bool armed;
    conn_timer_op* op;  // the one kernel timeout of this tag, or nullptr
};

struct listener {
    int fd = -1;
    socket_address addr;
    accept_fn on_accept;
    bool accept_armed = false;
};

struct reactor_timer {
    std::uint64_t id;
    std::function<void()> fn;
    __kernel_timespec ts;
    bool canceled = false;
};

inline constexpr unsigned max_iov = 64;

}  // namespace sigrelay::runtime::detail

namespace sigrelay::runtime {

struct connection::impl {
    enum class state : std::uint8_t { connecting, open, closing, dead };

    state st = state::open;
    bool paused = false;
    bool send_in_flight = false;
    bool connect_in_flight = false;
    bool recv_cancel_sent = false;
    bool in_starved = false;  // in reactor::impl::starved_ (holds a ref)
    bool in_resumed = false;  // in reactor::impl::resumed_ (holds a ref)
    bool in_corked = false;   // in reactor::impl::corked (holds a ref)
    bool in_reap = false;
    int recv_ops = 0;       // multishot recvs in flight (1, or 2 briefly around a cancel)
    int refs = 0;           // ops in flight + callbacks on the stack + deferred-list entries
    int close_err = 0;      // what on_closed reports
    std::size_t index = 0;  // position in reactor::impl::conns_

    std::deque<detail::send_chunk> queue;
    std::size_t queued = 0;     // bytes in queue not yet sent
    std::size_t front_off = 0;  // bytes of queue.front() already sent
    msghdr msg{};               // stable while the send is in flight
    iovec iov[detail::max_iov]{};
    __kernel_timespec link_ts{};  // link timeout of the send / connect in flight

    std::string stash;  // bytes that arrived while paused, delivered on resume
    std::vector<detail::timer_slot> timers;
};

struct reactor::impl {
    using conn_state = connection::impl::state;

    reactor* self = nullptr;
    reactor_options opts;
    io_uring ring{};
    bool ring_ok = false;
    bool enabled = false;
    detail::buffer_ring bufs;

    // post(): MPSC queue + eventfd read by the ring; wake_pending saves the
    // write(2) when a wake-up is already on its way.
    int wake_fd = -1;
    std::uint64_t wake_buf = 0;
    std::atomic<bool> wake_pending{false};
    mpsc_queue<std::function<void()>> posted;
    // post() from the reactor's own thread: run between batches like the
    // other deferred work, without the queue's atomics or an eventfd write.
    std::vector<std::function<void()>> local_posted;
    std::thread::id owner;  // the thread in run()

    std::vector<std::unique_ptr<detail::listener>> listeners;
    int accepts_in_flight = 0;

    std::vector<connection*> conns;  // every connection not yet reaped
    std::atomic<std::size_t> conn_count{0};
    std::atomic<std::uint64_t> sends{0};  // sendmsg ops submitted
    std::uint64_t next_conn_id = 1;

    std::unordered_map<std::uint64_t, std::unique_ptr<detail::reactor_timer>> timers;
    std::uint64_t next_timer_id = 1;

    // Deferred work, run between completion batches (never inside a callback).
    std::vector<connection*> starved;  // -ENOBUFS: re-arm recv once buffers are back
    std::vector<connection*> resumed;  // deliver stash, re-arm recv
    std::vector<connection*> corked;   // queued sends, armed at the end of the turn
    std::vector<connection*> reap;     // dead, no op in flight: close, on_closed, free

    bool stopping = false;
    std::uint64_t drain_timer = 0;

    ~impl();

    // ring plumbing (reactor.cpp)
    io_uring_sqe* get_sqe(unsigned need = 1);
    void arm_wakeup();
    void on_wakeup(int res);
    void dispatch(std::uint64_t ud, int res, unsigned flags);
    bool run_deferred();
    void begin_stop(std::chrono::milliseconds drain);

    // listeners and outbound connects (listener.cpp)
    void arm_accept(detail::listener* l);
    void on_accept(detail::listener* l, int res, unsigned flags);
    void on_connect(connection* c, int res);
    connection* make_connection(int fd);

    // connection I/O (connection.cpp)
    void ref(connection* c) noexcept;
    void unref(connection* c) noexcept;
    bool wants_read(connection* c) const noexcept;
    void arm_recv(connection* c);
    void on_recv(connection* c, int res, unsigned flags);
    void deliver(connection* c, const char* data, std::size_t n);
    void enqueue(connection* c, detail::send_chunk&& chunk);
    void arm_send(connection* c);
    void on_send(connection* c, int res);
    void pause(connection* c);
    void resume(connection* c);
    void close(connection* c);
    void abort(connection* c);
    void graceful_end(connection* c);
    void finish(connection* c, int err);
    void destroy(connection* c);

    // timers (timers.cpp)
    void set_timer(connection* c, std::uint64_t tag, std::chrono::milliseconds after);
    void cancel_timer(connection* c, std::uint64_t tag);
    void submit_conn_timer(connection* c, detail::timer_slot& slot);
    void on_conn_timer(detail::conn_timer_op* op, int res);
    std::uint64_t after(std::chrono::milliseconds delay, std::function<void()> fn);
    void cancel(std::uint64_t id);
    void on_reactor_timer(detail::reactor_timer* t, int res);
};

// Holds a reference on a connection while a callback runs, so nothing the
// handler does (close, abort, send) can free it under our feet.
class conn_guard {
public:
    conn_guard(reactor::impl& r, connection* c) noexcept : r_(r), c_(c) { r_.ref(c_); }
    ~conn_guard() { r_.unref(c_); }
    conn_guard(const conn_guard&) = delete;
    conn_guard& operator=(const conn_guard&) = delete;

private:
    reactor::impl& r_;
    connection* c_;
};

}  // namespace sigrelay::runtime
