// The reactor loop: one ring per shard, completions dispatched by the kind
// packed in user_data, deferred work between batches, post() and stop().
#include "internal.hpp"

#include <pthread.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <thread>

namespace sigrelay::runtime {

using detail::op_kind;

result<std::unique_ptr<reactor>> reactor::create(const reactor_options& opts) {
    auto im = std::make_unique<impl>();
    im->opts = opts;
    if (opts.ring_entries == 0) return make_error("runtime: ring_entries must be > 0", -EINVAL);
    SIGRELAY_TRY(detail::init_ring(im->ring, opts.ring_entries, /*disabled=*/true));
    im->ring_ok = true;
    SIGRELAY_TRY(detail::setup_buffer_ring(im->ring, im->bufs, opts.buffer_count, opts.buffer_size,
                                           /*bgid=*/0));
    im->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (im->wake_fd < 0) return make_error("runtime: eventfd failed", -errno);
    std::unique_ptr<reactor> r(new reactor(std::move(im)));
    r->impl_->self = r.get();
    r->impl_->arm_wakeup();
    return r;
}

reactor::reactor(std::unique_ptr<impl> i) : impl_(std::move(i)) {}
reactor::~reactor() = default;

reactor::impl::~impl() {
    // Tearing the ring down first ends every op in flight, so nothing below
    // can still be written by the kernel.
    if (ring_ok) io_uring_queue_exit(&ring);
    detail::free_buffer_ring(bufs);
    for (connection* c : conns) {
        for (auto& slot : c->impl_->timers) delete slot.op;
        if (c->fd_ >= 0) ::close(c->fd_);
        delete c;
    }
    for (auto& l : listeners) {
        if (l->fd >= 0) ::close(l->fd);
    }
    if (wake_fd >= 0) ::close(wake_fd);
}

io_uring_sqe* reactor::impl::get_sqe(unsigned need) {
    // Linked SQEs (op + link timeout) must land in the same submission, so
    // make room for all of them before handing out the first.
    if (io_uring_sq_space_left(&ring) < need) {
        if (!enabled) return nullptr;
        io_uring_submit(&ring);
        if (io_uring_sq_space_left(&ring) < need) return nullptr;
    }
    return io_uring_get_sqe(&ring);
}

// ---- post() ---------------------------------------------------------------------

void reactor::impl::arm_wakeup() {
    io_uring_sqe* sqe = get_sqe();
    if (sqe == nullptr) return;
    io_uring_prep_read(sqe, wake_fd, &wake_buf, sizeof wake_buf, 0);
    io_uring_sqe_set_data64(sqe, detail::pack(this, op_kind::wakeup));
}

void reactor::impl::on_wakeup(int res) {
    // Clear the flag before draining: a producer that pushes after the drain
    // sees false and writes the eventfd again.
    wake_pending.store(false, std::memory_order_seq_cst);
    std::function<void()> fn;
    while (posted.pop(fn)) {
        if (fn) fn();
    }
    if (res < 0 && res != -EAGAIN && res != -EINTR && res != -ECANCELED) {
        std::fprintf(stderr, "runtime: shard %u: eventfd read failed: %s\n", opts.shard,
                     strerror(-res));
    }
    arm_wakeup();
}

void reactor::post(std::function<void()> fn) {
    if (std::this_thread::get_id() == impl_->owner) {
        impl_->local_posted.push_back(std::move(fn));
        return;
    }
    impl_->posted.push(std::move(fn));
    if (!impl_->wake_pending.exchange(true, std::memory_order_seq_cst)) {
        std::uint64_t one = 1;
        ssize_t n = ::write(impl_->wake_fd, &one, sizeof one);
        (void)n;  // EAGAIN only when the counter is saturated: a wake-up is pending anyway
    }
}

// ---- loop -------------------------------------------------------------------------

void reactor::impl::dispatch(std::uint64_t ud, int res, unsigned flags) {
    switch (detail::kind_of(ud)) {
        case op_kind::ignore:
            return;
        case op_kind::accept:
            return on_accept(detail::object_of<detail::listener>(ud), res, flags);
        case op_kind::recv:
            return on_recv(detail::object_of<connection>(ud), res, flags);
        case op_kind::send:
            return on_send(detail::object_of<connection>(ud), res);
        case op_kind::connect:
            return on_connect(detail::object_of<connection>(ud), res);
        case op_kind::conn_timer:
            return on_conn_timer(detail::object_of<detail::conn_timer_op>(ud), res);
        case op_kind::reactor_timer:
            return on_reactor_timer(detail::object_of<detail::reactor_timer>(ud), res);
        case op_kind::wakeup:
            return on_wakeup(res);
    }
}

bool reactor::impl::run_deferred() {
    bool did = false;
    if (!local_posted.empty()) {
        std::vector<std::function<void()>> list;
        list.swap(local_posted);
        for (auto& fn : list)
            if (fn) fn();
        did = true;
    }
    if (!starved.empty()) {
        // Every buffer handed out in the last batch has been given back by
        // now: connections that hit -ENOBUFS can read again.
        std::vector<connection*> list;
        list.swap(starved);
        for (connection* c : list) {
            c->impl_->in_starved = false;
            if (wants_read(c)) arm_recv(c);
            unref(c);
        }
        did = true;
    }
    if (!resumed.empty()) {
        std::vector<connection*> list;
        list.swap(resumed);
        for (connection* c : list) {
            auto& ci = *c->impl_;
            ci.in_resumed = false;
            if (ci.st == connection::impl::state::open && !ci.paused && !ci.stash.empty() &&
                c->handler_ != nullptr) {
                std::string bytes;
                bytes.swap(ci.stash);
                conn_guard g(*this, c);
                c->handler_->on_data(*c, std::span<const char>(bytes.data(), bytes.size()));
            }
            if (wants_read(c)) arm_recv(c);
            unref(c);
        }
        did = true;
    }
    if (!corked.empty()) {
        // Last of the deferred work (what ran above may have queued more).
        std::vector<connection*> list;
        list.swap(corked);
        for (connection* c : list) {
            auto& ci = *c->impl_;
            ci.in_corked = false;
            // closing: close() waits for this queue to be sent.
            if (ci.st == connection::impl::state::open || ci.st == connection::impl::state::closing) arm_send(c);
            unref(c);
        }
        did = true;
    }
    if (!reap.empty()) {
        // A prepared cancel may still name a descriptor closed below: hand
        // it to the kernel first, so it never meets a reused fd number.
        if (enabled && io_uring_sq_ready(&ring) > 0) io_uring_submit(&ring);
        std::vector<connection*> list;
        list.swap(reap);
        for (connection* c : list) destroy(c);
        did = true;
    }
    return did;
}

void reactor::run() {
    impl& im = *impl_;
    if (im.opts.cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(im.opts.cpu, &set);
        pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    }
    if (!im.enabled) {
        // This thread becomes the ring's single issuer.
        // Debian's liburing 2.3 declares io_uring_enable_rings() but does not
        // export it: issue the register call ourselves.
        long rc = syscall(__NR_io_uring_register, im.ring.ring_fd, IORING_REGISTER_ENABLE_RINGS,
                          nullptr, 0);
        int r = rc < 0 ? -errno : 0;
        if (r < 0) {
            std::fprintf(stderr, "runtime: shard %u: IORING_REGISTER_ENABLE_RINGS: %s\n",
                         im.opts.shard, strerror(-r));
            return;
        }
        im.enabled = true;
    }

    im.owner = std::this_thread::get_id();
    constexpr unsigned batch = 128;
    io_uring_cqe* cqes[batch];
    struct completion {
        std::uint64_t ud;
        int res;
        unsigned flags;
    };
    completion done[batch];
    for (;;) {
        while (im.run_deferred()) {
        }
        if (im.stopping && im.conns.empty() && im.accepts_in_flight == 0) break;
        flush_log();  // the lines of this turn, before we may block
        int r = io_uring_submit_and_wait(&im.ring, 1);
        if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY && r != -ETIME) {
            std::fprintf(stderr, "runtime: shard %u: io_uring_submit_and_wait: %s\n", im.opts.shard,
                         strerror(-r));
            break;
        }
        for (;;) {
            // Copy the batch out and free the CQ slots before dispatching:
            // handlers submit new work, which may post new completions.
            unsigned n = io_uring_peek_batch_cqe(&im.ring, cqes, batch);
            if (n == 0) break;
            for (unsigned i = 0; i < n; ++i) {
                done[i] = {cqes[i]->user_data, cqes[i]->res, cqes[i]->flags};
            }
            io_uring_cq_advance(&im.ring, n);
            for (unsigned i = 0; i < n; ++i) im.dispatch(done[i].ud, done[i].res, done[i].flags);
            if (n < batch) break;
        }
    }
    // Hand what the last turn prepared (cancels, closes) to the kernel.
    io_uring_submit(&im.ring);
    flush_log();
}

void reactor::stop(std::chrono::milliseconds drain) {
    post([this, drain] { impl_->begin_stop(drain); });
}

void reactor::impl::begin_stop(std::chrono::milliseconds drain) {
    if (stopping) return;
    stopping = true;
    for (auto& l : listeners) {
        if (l->fd < 0) continue;
        if (l->accept_armed) {
            // The listener fd is closed when the accept's last completion
            // arrives: the cancel must find the file still open.
            io_uring_sqe* sqe = get_sqe();
            if (sqe != nullptr) {
                io_uring_prep_cancel_fd(sqe, l->fd, IORING_ASYNC_CANCEL_ALL);
                io_uring_sqe_set_data64(sqe, 0);
            }
        } else {
            ::close(l->fd);
            l->fd = -1;
        }
    }
    // Handlers may close (or open) connections from on_shutdown; nothing is
    // freed before run_deferred, so the snapshot stays valid.
    std::vector<connection*> snapshot = conns;
    for (connection* c : snapshot) {
        auto st = c->impl_->st;
        if (st == connection::impl::state::dead || st == connection::impl::state::closing) continue;
        if (c->handler_ == nullptr) {
            close(c);
            continue;
        }
        conn_guard g(*this, c);
        c->handler_->on_shutdown(*c);
    }
    drain_timer = after(drain, [this] {
        std::vector<connection*> rest = conns;
        for (connection* c : rest) abort(c);
    });
}

std::uint64_t reactor::after(std::chrono::milliseconds delay, std::function<void()> fn) {
    return impl_->after(delay, std::move(fn));
}

void reactor::cancel(std::uint64_t timer_id) {
    impl_->cancel(timer_id);
}

std::size_t reactor::connection_count() const noexcept {
    return impl_->conn_count.load(std::memory_order_relaxed);
}

std::uint64_t reactor::sends_submitted() const noexcept {
    return impl_->sends.load(std::memory_order_relaxed);
}

unsigned reactor::shard() const noexcept {
    return impl_->opts.shard;
}

std::vector<socket_address> reactor::listening_addresses() const {
    std::vector<socket_address> out;
    out.reserve(impl_->listeners.size());
    for (const auto& l : impl_->listeners) out.push_back(l->addr);
    return out;
}

}  // namespace sigrelay::runtime
