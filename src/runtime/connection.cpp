// A connection's I/O: multishot recv into the provided-buffer ring, the send
// queue (one sendmsg in flight, linked with a timeout), pause/resume, and the
// close path that frees the connection only once no op of it is in flight.
#include "internal.hpp"

#include <unistd.h>

#include <cerrno>

namespace sigrelay::runtime {

using detail::op_kind;

connection::connection(reactor& r, int fd, std::uint64_t id)
    : reactor_(&r), fd_(fd), id_(id), impl_(std::make_unique<impl>()) {}

connection::~connection() = default;

// ---- public API: forwards to the shard's reactor ----------------------------------

void connection::send(std::string bytes) {
    if (bytes.empty()) return;
    detail::send_chunk ch;
    ch.size = bytes.size();
    ch.owned = std::move(bytes);
    reactor_->impl_->enqueue(this, std::move(ch));
}

void connection::send_view(std::span<const char> bytes, std::shared_ptr<const void> keep) {
    if (bytes.empty()) return;
    detail::send_chunk ch;
    ch.view = bytes.data();
    ch.size = bytes.size();
    ch.keep = std::move(keep);
    reactor_->impl_->enqueue(this, std::move(ch));
}

std::size_t connection::queued_bytes() const noexcept {
    return impl_->queued;
}

void connection::set_timer(std::uint64_t tag, std::chrono::milliseconds after) {
    reactor_->impl_->set_timer(this, tag, after);
}

void connection::cancel_timer(std::uint64_t tag) {
    reactor_->impl_->cancel_timer(this, tag);
}
void connection::pause_reading() {
    reactor_->impl_->pause(this);
}
void connection::resume_reading() {
    reactor_->impl_->resume(this);
}
void connection::close() {
    reactor_->impl_->close(this);
}
void connection::abort() {
    reactor_->impl_->abort(this);
}

bool connection::closing() const noexcept {
    return impl_->st == impl::state::closing || impl_->st == impl::state::dead;
}

// ---- references -------------------------------------------------------------------

void reactor::impl::ref(connection* c) noexcept {
    ++c->impl_->refs;
}

void reactor::impl::unref(connection* c) noexcept {
    auto& ci = *c->impl_;
    if (--ci.refs == 0 && ci.st == conn_state::dead && !ci.in_reap) {
        ci.in_reap = true;
        reap.push_back(c);
    }
}

bool reactor::impl::wants_read(connection* c) const noexcept {
    const auto& ci = *c->impl_;
    return ci.st == conn_state::open && !ci.paused && ci.recv_ops == 0 && c->handler_ != nullptr;
}

// ---- receive ----------------------------------------------------------------------

void reactor::impl::arm_recv(connection* c) {
    auto& ci = *c->impl_;
    io_uring_sqe* sqe = get_sqe();
    if (sqe == nullptr) {
        finish(c, -ENOBUFS);
        return;
    }
    // Multishot recv: one SQE, a completion per chunk, each in a buffer the
    // kernel picks from group bgid.
    io_uring_prep_recv_multishot(sqe, c->fd_, nullptr, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = bufs.bgid;
    io_uring_sqe_set_data64(sqe, detail::pack(c, op_kind::recv));
    ++ci.recv_ops;
    ++ci.refs;
    ci.recv_cancel_sent = false;
}

void reactor::impl::deliver(connection* c, const char* data, std::size_t n) {
    auto& ci = *c->impl_;
    if (ci.st != conn_state::open || c->handler_ == nullptr) return;  // reading stopped: drop
    if (ci.paused || !ci.stash.empty()) {
        // Arrived after pause_reading() (before the cancel took effect), or
        // behind bytes still stashed: keep order, deliver on resume.
        ci.stash.append(data, n);
        if (!ci.paused && !ci.in_resumed) {
            ci.in_resumed = true;
            ++ci.refs;
            resumed.push_back(c);
        }
        return;
    }
    c->handler_->on_data(*c, std::span<const char>(data, n));
}

void reactor::impl::on_recv(connection* c, int res, unsigned flags) {
    auto& ci = *c->impl_;
    conn_guard g(*this, c);
    if ((flags & IORING_CQE_F_MORE) == 0) {
        // The multishot recv ended (EOF, error, -ENOBUFS, cancel, or the
        // kernel just stopped it): re-arm below when still wanted.
        --ci.recv_ops;
        --ci.refs;
    }
    if ((flags & IORING_CQE_F_BUFFER) != 0) {
        auto bid = static_cast<unsigned short>(flags >> IORING_CQE_BUFFER_SHIFT);
        if (res > 0) deliver(c, bufs.data(bid), static_cast<std::size_t>(res));
        bufs.give_back(bid);  // right after on_data: the span is gone
    }
    if (res > 0 || res == -ECANCELED) {
        if (wants_read(c)) arm_recv(c);
        return;
    }
    if (res == 0) {
        // EOF: the peer is gone. While closing we still try to flush.
        if (ci.st == conn_state::open || ci.st == conn_state::connecting) finish(c, 0);
        return;
    }
    if (res == -ENOBUFS) {
        // Back-pressure, not failure: every buffer is in use. Re-arm after
        // this batch, when the buffers have been given back.
        if (ci.st == conn_state::open && !ci.in_starved) {
            ci.in_starved = true;
            ++ci.refs;
            starved.push_back(c);
        }
        return;
    }
    finish(c, res);
}

void reactor::impl::pause(connection* c) {
    auto& ci = *c->impl_;
    if (ci.paused || ci.st == conn_state::dead) return;
    ci.paused = true;
    if (ci.recv_ops > 0 && !ci.recv_cancel_sent) {
        io_uring_sqe* sqe = get_sqe();
        if (sqe == nullptr) return;  // bytes that still arrive are stashed
        io_uring_prep_cancel64(sqe, detail::pack(c, op_kind::recv), 0);
        io_uring_sqe_set_data64(sqe, 0);
        ci.recv_cancel_sent = true;
    }
}

void reactor::impl::resume(connection* c) {
    auto& ci = *c->impl_;
    if (!ci.paused) return;
    ci.paused = false;
    if (ci.st != conn_state::open || ci.in_resumed) return;
    // Deferred: resume_reading() may be called from inside on_data.
    ci.in_resumed = true;
    ++ci.refs;
    resumed.push_back(c);
}

// ---- send -------------------------------------------------------------------------

void reactor::impl::enqueue(connection* c, detail::send_chunk&& chunk) {
    auto& ci = *c->impl_;
    if (ci.st != conn_state::open && ci.st != conn_state::connecting) return;  // closing: dropped
    ci.queued += chunk.size;
    ci.queue.push_back(std::move(chunk));
    // Corked until the end of this turn: everything the handlers queue for
    // the connection meanwhile (MAIL and its RCPTs, a reply and the next
    // one) leaves in one sendmsg, so one segment and one wake-up of the
    // peer instead of one per piece. A send in flight picks the queue up
    // when it completes.
    if (ci.st == conn_state::open && !ci.send_in_flight && !ci.in_corked) {
        ci.in_corked = true;
        ++ci.refs;
        corked.push_back(c);
    }
}

void reactor::impl::arm_send(connection* c) {
    auto& ci = *c->impl_;
    if (ci.send_in_flight || ci.queue.empty()) return;
    // Gather up to max_iov queued chunks into one sendmsg.
    unsigned n = 0;
    for (auto it = ci.queue.begin(); it != ci.queue.end() && n < detail::max_iov; ++it, ++n) {
        std::size_t off = n == 0 ? ci.front_off : 0;
        ci.iov[n].iov_base = const_cast<char*>(it->data()) + off;
        ci.iov[n].iov_len = it->size - off;
    }
    ci.msg = msghdr{};
    ci.msg.msg_iov = ci.iov;
    ci.msg.msg_iovlen = n;
    io_uring_sqe* sqe = get_sqe(2);
    if (sqe == nullptr) {
        finish(c, -ENOBUFS);
        return;
    }
    io_uring_prep_sendmsg(sqe, c->fd_, &ci.msg, MSG_NOSIGNAL);
    sends.fetch_add(1, std::memory_order_relaxed);
    io_uring_sqe_set_data64(sqe, detail::pack(c, op_kind::send));
    // Linked timeout: a peer that never reads cannot hold the connection
    // (and its queue) forever; the send then ends with -ECANCELED.
    sqe->flags |= IOSQE_IO_LINK;
    ci.link_ts = detail::relative_timespec(opts.send_timeout);
    io_uring_sqe* lt = io_uring_get_sqe(&ring);
    io_uring_prep_link_timeout(lt, &ci.link_ts, 0);
    io_uring_sqe_set_data64(lt, 0);
    ci.send_in_flight = true;
    ++ci.refs;
}

void reactor::impl::on_send(connection* c, int res) {
    auto& ci = *c->impl_;
    conn_guard g(*this, c);
    ci.send_in_flight = false;
    --ci.refs;
    if (ci.st == conn_state::dead) return;
    if (res < 0) {
        finish(c, res == -ECANCELED ? -ETIMEDOUT : res);
        return;
    }
    // A partial send leaves the rest of the queue (and of its front chunk).
    auto left = static_cast<std::size_t>(res);
    ci.queued -= left;
    while (left > 0 && !ci.queue.empty()) {
        std::size_t rest = ci.queue.front().size - ci.front_off;
        if (left < rest) {
            ci.front_off += left;
            left = 0;
        } else {
            left -= rest;
            ci.queue.pop_front();
            ci.front_off = 0;
        }
    }
    if (!ci.queue.empty()) {
        arm_send(c);
        return;
    }
    if (ci.st == conn_state::closing) {
        graceful_end(c);
        return;
    }
    if (c->handler_ != nullptr) c->handler_->on_send_drained(*c);
}

// ---- close --------------------------------------------------------------------------

void reactor::impl::close(connection* c) {
    auto& ci = *c->impl_;
    if (ci.st == conn_state::dead || ci.st == conn_state::closing) return;
    if (ci.st == conn_state::connecting) {
        finish(c, 0);
        return;
    }
    ci.st = conn_state::closing;
    // Stop reading: later bytes from the peer are not delivered.
    if (ci.recv_ops > 0 && !ci.recv_cancel_sent) {
        io_uring_sqe* sqe = get_sqe();
        if (sqe != nullptr) {
            io_uring_prep_cancel64(sqe, detail::pack(c, op_kind::recv), 0);
            io_uring_sqe_set_data64(sqe, 0);
            ci.recv_cancel_sent = true;
        }
    }
    if (!ci.send_in_flight && ci.queue.empty()) graceful_end(c);
}

void reactor::impl::graceful_end(connection* c) {
    // Everything queued is on the wire: FIN, then the descriptor goes.
    ::shutdown(c->fd_, SHUT_WR);
    finish(c, 0);
}

void reactor::impl::abort(connection* c) {
    if (c->impl_->st == conn_state::dead) return;
    // RST rather than FIN: the peer must not take a half-sent reply as whole.
    linger lg{1, 0};
    setsockopt(c->fd_, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    finish(c, -ECONNABORTED);
}

void reactor::impl::finish(connection* c, int err) {
    auto& ci = *c->impl_;
    if (ci.st == conn_state::dead) return;
    ci.st = conn_state::dead;
    ci.close_err = err;
    if (ci.recv_ops > 0 || ci.send_in_flight || ci.connect_in_flight) {
        // Every op on the socket: recv, the send and its link timeout, connect.
        io_uring_sqe* sqe = get_sqe();
        if (sqe != nullptr) {
            io_uring_prep_cancel_fd(sqe, c->fd_, IORING_ASYNC_CANCEL_ALL);
            io_uring_sqe_set_data64(sqe, 0);
        } else {
            ::shutdown(c->fd_, SHUT_RDWR);  // wakes them up just as well
        }
    }
    for (auto& slot : ci.timers) {
        slot.armed = false;
        if (slot.op == nullptr) continue;
        io_uring_sqe* sqe = get_sqe();
        if (sqe == nullptr) continue;  // it fires on its own, at worst later
        io_uring_prep_timeout_remove(sqe, detail::pack(slot.op, op_kind::conn_timer), 0);
        io_uring_sqe_set_data64(sqe, 0);
    }
    if (ci.refs == 0 && !ci.in_reap) {
        ci.in_reap = true;
        reap.push_back(c);
    }
}

void reactor::impl::destroy(connection* c) {
    // No op of c is in flight any more (refs == 0): close, report, free.
    std::size_t i = c->impl_->index;
    conns[i] = conns.back();
    conns[i]->impl_->index = i;
    conns.pop_back();
    conn_count.fetch_sub(1, std::memory_order_relaxed);
    ::close(c->fd_);
    c->fd_ = -1;
    connection_handler* h = c->handler_;
    int err = c->impl_->close_err;
    if (h != nullptr) h->on_closed(*c, err);
    delete c;
}

}  // namespace sigrelay::runtime
