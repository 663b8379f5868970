// Timers: per-connection tagged timers (SMTP idle timeouts, re-armed on
// every command, so re-arming later is free: the kernel timeout is left alone
// and re-armed lazily when it fires early) and reactor-level after()/cancel().
#include "internal.hpp"

#include <cerrno>

namespace sigrelay::runtime {

using detail::op_kind;

void reactor::impl::set_timer(connection* c, std::uint64_t tag, std::chrono::milliseconds after) {
    auto& ci = *c->impl_;
    if (ci.st == conn_state::dead) return;
    detail::timer_slot* slot = nullptr;
    for (auto& s : ci.timers) {
        if (s.tag == tag) slot = &s;
    }
    if (slot == nullptr) {
        ci.timers.push_back(detail::timer_slot{tag, {}, false, nullptr});
        slot = &ci.timers.back();
    }
    slot->deadline = detail::clock::now() + after;
    slot->armed = true;
    if (slot->op == nullptr) {
        submit_conn_timer(c, *slot);
    } else if (slot->op->expiry > slot->deadline) {
        // Earlier than the kernel timeout in flight: move that one forward.
        // If it already fired, the update fails (-ENOENT) and the firing
        // completion re-arms for the deadline instead.
        io_uring_sqe* sqe = get_sqe();
        if (sqe == nullptr) return;
        slot->op->expiry = slot->deadline;
        slot->op->ts = detail::absolute_timespec(slot->deadline);
        io_uring_prep_timeout_update(
            sqe, &slot->op->ts, detail::pack(slot->op, op_kind::conn_timer), IORING_TIMEOUT_ABS);
        io_uring_sqe_set_data64(sqe, 0);
    }
    // else: the kernel timeout fires first; on_conn_timer re-arms for the rest.
}

void reactor::impl::cancel_timer(connection* c, std::uint64_t tag) {
    // Lazy: the kernel timeout stays; when it fires it finds nothing armed.
    for (auto& s : c->impl_->timers) {
        if (s.tag == tag) s.armed = false;
    }
}

void reactor::impl::submit_conn_timer(connection* c, detail::timer_slot& slot) {
    io_uring_sqe* sqe = get_sqe();
    if (sqe == nullptr) return;
    auto* op = new detail::conn_timer_op{c, slot.tag, slot.deadline,
                                         detail::absolute_timespec(slot.deadline)};
    // Absolute CLOCK_MONOTONIC expiry: the same clock as steady_clock.
    io_uring_prep_timeout(sqe, &op->ts, 0, IORING_TIMEOUT_ABS);
    io_uring_sqe_set_data64(sqe, detail::pack(op, op_kind::conn_timer));
    slot.op = op;
    ++c->impl_->refs;
}

void reactor::impl::on_conn_timer(detail::conn_timer_op* op, int res) {
    (void)res;  // -ETIME (fired) or -ECANCELED (removed at close): the slot decides
    connection* c = op->conn;
    std::uint64_t tag = op->tag;
    auto& ci = *c->impl_;
    conn_guard g(*this, c);
    --ci.refs;
    detail::timer_slot* slot = nullptr;
    for (auto& s : ci.timers) {
        if (s.tag == tag) slot = &s;
    }
    delete op;
    if (slot == nullptr) return;
    slot->op = nullptr;
    if (ci.st == conn_state::dead || !slot->armed) return;
    if (detail::clock::now() < slot->deadline) {
        submit_conn_timer(c, *slot);  // re-armed later since: wait for the rest
        return;
    }
    slot->armed = false;
    if (c->handler_ != nullptr) c->handler_->on_timer(*c, tag);
}

// ---- reactor timers ----------------------------------------------------------------

std::uint64_t reactor::impl::after(std::chrono::milliseconds delay, std::function<void()> fn) {
    io_uring_sqe* sqe = get_sqe();
    if (sqe == nullptr) return 0;
    std::uint64_t id = next_timer_id++;
    auto t = std::make_unique<detail::reactor_timer>();
    t->id = id;
    t->fn = std::move(fn);
    t->ts = detail::relative_timespec(delay);
    io_uring_prep_timeout(sqe, &t->ts, 0, 0);
    io_uring_sqe_set_data64(sqe, detail::pack(t.get(), op_kind::reactor_timer));
    timers.emplace(id, std::move(t));
    return id;
}

void reactor::impl::cancel(std::uint64_t id) {
    auto it = timers.find(id);
    if (it == timers.end() || it->second->canceled) return;
    detail::reactor_timer* t = it->second.get();
    t->canceled = true;
    t->fn = nullptr;  // release captures now
    io_uring_sqe* sqe = get_sqe();
    if (sqe == nullptr) return;  // it fires, finds itself cancelled
    io_uring_prep_timeout_remove(sqe, detail::pack(t, op_kind::reactor_timer), 0);
    io_uring_sqe_set_data64(sqe, 0);
}

void reactor::impl::on_reactor_timer(detail::reactor_timer* t, int res) {
    (void)res;
    auto it = timers.find(t->id);
    if (it == timers.end()) return;
    std::function<void()> fn = std::move(t->fn);
    bool fire = !t->canceled;
    timers.erase(it);  // frees t; fn may arm or cancel other timers
    if (fire && fn) fn();
}

}  // namespace sigrelay::runtime
