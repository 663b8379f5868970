// Start-up check that the kernel's io_uring has everything the reactor uses;
// the error names exactly what is missing and which kernel brings it.
#include "internal.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

namespace sigrelay::runtime {
namespace {

struct required_op {
    int op;
    const char* what;
    const char* kernel;
};

constexpr required_op required_ops[] = {
    {IORING_OP_ACCEPT, "accept", "5.5"},
    {IORING_OP_RECV, "recv", "5.6"},
    {IORING_OP_SEND, "send", "5.6"},
    {IORING_OP_SENDMSG, "sendmsg", "5.3"},
    {IORING_OP_CONNECT, "connect", "5.5"},
    {IORING_OP_TIMEOUT, "timeout", "5.4"},
    {IORING_OP_TIMEOUT_REMOVE, "timeout_remove", "5.5"},
    {IORING_OP_LINK_TIMEOUT, "link_timeout", "5.5"},
    {IORING_OP_ASYNC_CANCEL, "async_cancel", "5.5"},
    {IORING_OP_READ, "read", "5.6"},
    {IORING_OP_CLOSE, "close", "5.6"},
    {IORING_OP_PROVIDE_BUFFERS, "provide_buffers", "5.7"},
};

struct fd_closer {
    int fd = -1;
    ~fd_closer() {
        if (fd >= 0) ::close(fd);
    }
};

struct ring_closer {
    io_uring* ring = nullptr;
    ~ring_closer() {
        if (ring != nullptr) io_uring_queue_exit(ring);
    }
};

// Waits for the completion with user_data `ud` (skipping others), 2 s at most.
int wait_for(io_uring& ring, std::uint64_t ud, unsigned* flags) {
    for (int i = 0; i < 16; ++i) {
        io_uring_cqe* cqe = nullptr;
        __kernel_timespec ts{2, 0};
        int r = io_uring_wait_cqe_timeout(&ring, &cqe, &ts);
        if (r < 0) return r == -ETIME ? -ETIMEDOUT : r;
        std::uint64_t got = cqe->user_data;
        int res = cqe->res;
        if (flags != nullptr) *flags = cqe->flags;
        io_uring_cqe_seen(&ring, cqe);
        if (got == ud) return res;
    }
    return -ETIMEDOUT;
}

// Multishot accept and recv exist only as flags of older opcodes: the probe
// cannot see them, so try them on a Unix socket pair.
result<void> try_multishot(io_uring& ring, detail::buffer_ring& bufs) {
    fd_closer lfd{::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)};
    if (lfd.fd < 0) return make_error("probe: socket(AF_UNIX) failed", -errno);
    sockaddr_un sun{};
    sun.sun_family = AF_UNIX;  // autobind: the kernel picks an abstract name
    if (::bind(lfd.fd, reinterpret_cast<sockaddr*>(&sun), sizeof(sa_family_t)) != 0 ||
        ::listen(lfd.fd, 4) != 0) {
        return make_error("probe: bind/listen(AF_UNIX) failed", -errno);
    }
    sockaddr_un bound{};
    socklen_t blen = sizeof bound;
    getsockname(lfd.fd, reinterpret_cast<sockaddr*>(&bound), &blen);
    fd_closer cfd{::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)};
    if (cfd.fd < 0 || ::connect(cfd.fd, reinterpret_cast<sockaddr*>(&bound), blen) != 0) {
        return make_error("probe: connect(AF_UNIX) failed", -errno);
    }

    io_uring_sqe* sqe = io_uring_get_sqe(&ring);
    io_uring_prep_multishot_accept(sqe, lfd.fd, nullptr, nullptr, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, 1);
    io_uring_submit(&ring);
    unsigned flags = 0;
    int res = wait_for(ring, 1, &flags);
    if (res == -EINVAL) {
        return make_error("io_uring: kernel lacks multishot accept (needs Linux 5.19+)", res);
    }
    if (res < 0)
        return make_error("io_uring: multishot accept failed: " + std::string(strerror(-res)), res);
    fd_closer afd{res};
    bool accept_more = (flags & IORING_CQE_F_MORE) != 0;

    if (::write(cfd.fd, "x", 1) != 1) return make_error("probe: write failed", -errno);
    sqe = io_uring_get_sqe(&ring);
    io_uring_prep_recv_multishot(sqe, afd.fd, nullptr, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = bufs.bgid;
    io_uring_sqe_set_data64(sqe, 2);
    io_uring_submit(&ring);
    res = wait_for(ring, 2, &flags);
    if (res == -EINVAL) {
        return make_error("io_uring: kernel lacks multishot recv (needs Linux 6.0+)", res);
    }
    if (res != 1 || (flags & IORING_CQE_F_BUFFER) == 0) {
        return make_error("io_uring: multishot recv into a buffer ring failed: " +
                              std::string(res < 0 ? strerror(-res) : "no buffer selected"),
                          res < 0 ? res : -EIO);
    }
    bufs.give_back(static_cast<unsigned short>(flags >> IORING_CQE_BUFFER_SHIFT));
    bool recv_more = (flags & IORING_CQE_F_MORE) != 0;

    // Cancel both multishots and wait, so no op outlives the sockets.
    sqe = io_uring_get_sqe(&ring);
    io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY | IORING_ASYNC_CANCEL_ALL);
    io_uring_sqe_set_data64(sqe, 3);
    io_uring_submit(&ring);
    (void)wait_for(ring, 3, nullptr);

    if (!accept_more) {
        return make_error("io_uring: kernel lacks multishot accept (needs Linux 5.19+)", -ENOTSUP);
    }
    if (!recv_more) {
        return make_error("io_uring: kernel lacks multishot recv (needs Linux 6.0+)", -ENOTSUP);
    }
    return ok();
}

}  // namespace

result<void> probe_kernel() {
    if (std::FILE* f = std::fopen("/proc/sys/kernel/io_uring_disabled", "r")) {
        int v = 0;
        if (std::fscanf(f, "%d", &v) != 1) v = 0;
        std::fclose(f);
        if (v == 2) {
            return make_error("io_uring: disabled by sysctl kernel.io_uring_disabled=2", -EPERM);
        }
    }

    io_uring_probe* probe = io_uring_get_probe();
    if (probe == nullptr) {
        // Find out why: the same error a ring setup gets.
        io_uring ring{};
        int r = io_uring_queue_init(2, &ring, 0);
        if (r == 0) {
            io_uring_queue_exit(&ring);
            return make_error("io_uring: kernel lacks IORING_REGISTER_PROBE (needs Linux 5.6+)",
                              -ENOTSUP);
        }
        if (r == -ENOSYS) {
            return make_error("io_uring: not supported by this kernel (ENOSYS)", r);
        }
        if (r == -EPERM) {
            return make_error(
                "io_uring: not permitted (EPERM): sysctl kernel.io_uring_disabled=1 and not "
                "in io_uring_group, or a seccomp filter forbids it",
                r);
        }
        return make_error(std::string("io_uring: unavailable: ") + strerror(-r), r);
    }
    std::string missing;
    const char* newest = "";
    for (const auto& op : required_ops) {
        if (!io_uring_opcode_supported(probe, op.op)) {
            if (!missing.empty()) missing += ", ";
            missing += op.what;
            if (std::strcmp(op.kernel, newest) > 0) newest = op.kernel;
        }
    }
    io_uring_free_probe(probe);
    if (!missing.empty()) {
        return make_error(
            "io_uring: kernel lacks opcodes " + missing + " (needs Linux " + newest + "+)",
            -ENOTSUP);
    }

    // A ring exactly like a shard's, with a registered buffer ring.
    io_uring ring{};
    SIGRELAY_TRY(detail::init_ring(ring, 8, /*disabled=*/false));
    ring_closer rc{&ring};
    detail::buffer_ring bufs;
    SIGRELAY_TRY(detail::setup_buffer_ring(ring, bufs, 4, 256, 0));
    auto r = try_multishot(ring, bufs);
    rc.ring = nullptr;
    io_uring_queue_exit(&ring);
    detail::free_buffer_ring(bufs);
    return r;
}

bool kernel_has_send_zc() {
    io_uring_probe* probe = io_uring_get_probe();
    if (probe == nullptr) return false;
    bool has = io_uring_opcode_supported(probe, IORING_OP_SEND_ZC) != 0;
    io_uring_free_probe(probe);
    return has;
}

}  // namespace sigrelay::runtime
