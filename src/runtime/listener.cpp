// Where connections come from: SO_REUSEPORT listeners with multishot accept,
// and outbound connects linked with a timeout.
#include "internal.hpp"

#include <netinet/tcp.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace sigrelay::runtime {

using detail::op_kind;

namespace {

void set_nodelay(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

socket_address local_of(int fd) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return {};
    return socket_address::from(reinterpret_cast<sockaddr*>(&ss), len);
}

socket_address peer_of(int fd) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return {};
    return socket_address::from(reinterpret_cast<sockaddr*>(&ss), len);
}

error sys_error(const std::string& what, int err) {
    return make_error(what + ": " + strerror(err), -err);
}

}  // namespace

result<void> reactor::listen(const socket_address& addr, accept_fn on_accept, int backlog) {
    impl& im = *impl_;
    if (im.stopping) return make_error("runtime: listen() after stop()", -ESHUTDOWN);
    int fd = ::socket(addr.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return sys_error("socket(" + addr.to_string() + ")", errno);
    int one = 1;
    // SO_REUSEPORT: every shard binds the same address with its own listener
    // and the kernel spreads incoming connections over them.
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
        int e = errno;
        ::close(fd);
        return sys_error("setsockopt(SO_REUSEPORT)", e);
    }
    if (::bind(fd, addr.get(), addr.length) != 0) {
        int e = errno;
        ::close(fd);
        return sys_error("bind(" + addr.to_string() + ")", e);
    }
    if (::listen(fd, backlog) != 0) {
        int e = errno;
        ::close(fd);
        return sys_error("listen(" + addr.to_string() + ")", e);
    }
    auto l = std::make_unique<detail::listener>();
    l->fd = fd;
    l->addr = local_of(fd);
    l->on_accept = std::move(on_accept);
    detail::listener* raw = l.get();
    im.listeners.push_back(std::move(l));
    im.arm_accept(raw);
    if (!raw->accept_armed) return make_error("runtime: submission queue full in listen()", -EBUSY);
    return ok();
}

void reactor::impl::arm_accept(detail::listener* l) {
    if (stopping || l->fd < 0 || l->accept_armed) return;
    io_uring_sqe* sqe = get_sqe();
    if (sqe == nullptr) return;
    // Multishot: one SQE keeps accepting; the peer address is read with
    // getpeername() since all completions would share one sockaddr buffer.
    io_uring_prep_multishot_accept(sqe, l->fd, nullptr, nullptr, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, detail::pack(l, op_kind::accept));
    l->accept_armed = true;
    ++accepts_in_flight;
}

connection* reactor::impl::make_connection(int fd) {
    auto* c = new connection(*self, fd, next_conn_id++);
    c->impl_->index = conns.size();
    conns.push_back(c);
    conn_count.fetch_add(1, std::memory_order_relaxed);
    return c;
}

void reactor::impl::on_accept(detail::listener* l, int res, unsigned flags) {
    if ((flags & IORING_CQE_F_MORE) == 0) {
        l->accept_armed = false;
        --accepts_in_flight;
    }
    if (res >= 0) {
        if (stopping) {
            ::close(res);
        } else {
            int fd = res;
            set_nodelay(fd);
            connection* c = make_connection(fd);
            c->peer_ = peer_of(fd);
            c->local_ = local_of(fd);
            conn_guard g(*this, c);
            connection_handler* h = l->on_accept ? l->on_accept(*c) : nullptr;
            if (c->impl_->st == connection::impl::state::open) {
                if (h != nullptr) {
                    c->handler_ = h;
                    if (wants_read(c)) arm_recv(c);
                } else {
                    close(c);  // refused without a reply: just close
                }
            } else if (h != nullptr && c->handler_ == nullptr) {
                c->handler_ = h;  // closed from inside accept: still tell it
            }
        }
    }
    if (l->accept_armed) return;
    if (stopping) {
        // Last completion of a cancelled accept: nothing refers to the fd now.
        if (l->fd >= 0) ::close(l->fd);
        l->fd = -1;
        return;
    }
    if (res == -EMFILE || res == -ENFILE || res == -ENOBUFS || res == -ENOMEM) {
        // Out of descriptors or memory: re-arming at once would spin.
        after(std::chrono::milliseconds(100), [this, l] { arm_accept(l); });
        return;
    }
    arm_accept(l);
}

result<connection*> reactor::connect(const socket_address& to, connection_handler* h,
                                     std::chrono::milliseconds timeout) {
    impl& im = *impl_;
    int fd = ::socket(to.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return sys_error("socket(" + to.to_string() + ")", errno);
    io_uring_sqe* sqe = im.get_sqe(2);
    if (sqe == nullptr) {
        ::close(fd);
        return make_error("runtime: submission queue full in connect()", -EBUSY);
    }
    connection* c = im.make_connection(fd);
    auto& ci = *c->impl_;
    c->peer_ = to;
    c->handler_ = h;
    ci.st = connection::impl::state::connecting;
    ci.connect_in_flight = true;
    ++ci.refs;
    // connect linked with a timeout: the timeout cancels the connect
    // (-ECANCELED, reported as -ETIMEDOUT) when the peer never answers.
    io_uring_prep_connect(sqe, fd, c->peer_.get(), c->peer_.length);
    io_uring_sqe_set_data64(sqe, detail::pack(c, op_kind::connect));
    sqe->flags |= IOSQE_IO_LINK;
    ci.link_ts = detail::relative_timespec(timeout);
    io_uring_sqe* lt = io_uring_get_sqe(&im.ring);
    io_uring_prep_link_timeout(lt, &ci.link_ts, 0);
    io_uring_sqe_set_data64(lt, 0);
    return c;
}

void reactor::impl::on_connect(connection* c, int res) {
    auto& ci = *c->impl_;
    conn_guard g(*this, c);
    ci.connect_in_flight = false;
    --ci.refs;
    if (ci.st != connection::impl::state::connecting) return;  // closed meanwhile
    if (res < 0) {
        int err = res == -ECANCELED ? -ETIMEDOUT : res;
        if (c->handler_ != nullptr) c->handler_->on_connected(*c, err);
        finish(c, err);
        return;
    }
    ci.st = connection::impl::state::open;
    set_nodelay(c->fd_);
    c->local_ = local_of(c->fd_);
    if (c->handler_ != nullptr) c->handler_->on_connected(*c, 0);
    if (ci.st != connection::impl::state::open) return;
    arm_send(c);  // anything queued while connecting
    if (wants_read(c)) arm_recv(c);
}

}  // namespace sigrelay::runtime
