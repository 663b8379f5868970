// Ring creation with the reactor's setup flags, and the provided-buffer ring
// that multishot recv fills. Shared by the reactor and the kernel probe.
#include "internal.hpp"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>

namespace sigrelay::runtime::detail {

__kernel_timespec relative_timespec(std::chrono::nanoseconds d) noexcept {
    if (d.count() < 0) d = std::chrono::nanoseconds(0);
    __kernel_timespec ts{};
    ts.tv_sec = d.count() / 1000000000;
    ts.tv_nsec = d.count() % 1000000000;
    return ts;
}

__kernel_timespec absolute_timespec(clock::time_point t) noexcept {
    return relative_timespec(t.time_since_epoch());
}

result<void> init_ring(io_uring& ring, unsigned entries, bool disabled) {
    io_uring_params p{};
    // SINGLE_ISSUER: only the shard's own thread ever submits, so the kernel
    // skips the locking it needs for concurrent submitters (Linux 6.0).
    // DEFER_TASKRUN: completions are processed only when the shard asks for
    // them (io_uring_enter with GETEVENTS, once per loop turn) instead of
    // interrupting it at arbitrary points: fewer context switches, and
    // completions arrive in batches (Linux 6.1, requires SINGLE_ISSUER).
    p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    // CQSIZE: multishot accept and recv post many completions per submission,
    // so the completion queue is 4x the submission queue to avoid overflow.
    p.flags |= IORING_SETUP_CQSIZE;
    p.cq_entries = entries * 4;
    // SUBMIT_ALL: one bad SQE must not leave the rest of the batch unsubmitted
    // (the loop does not re-check which SQEs the kernel consumed) (Linux 5.18).
    p.flags |= IORING_SETUP_SUBMIT_ALL;
    // CLAMP: a too large ring_entries is clamped rather than refused.
    p.flags |= IORING_SETUP_CLAMP;
    // R_DISABLED: the ring is created by whoever builds the reactor, but the
    // single issuer must be the thread that runs it: io_uring_enable_rings()
    // in run() binds that thread (registrations are allowed before).
    if (disabled) p.flags |= IORING_SETUP_R_DISABLED;

    int r = io_uring_queue_init_params(entries, &ring, &p);
    if (r == -EINVAL) {
        // Linux 6.0 has no DEFER_TASKRUN: COOP_TASKRUN still avoids IPIs to
        // interrupt the shard for task work (Linux 5.19).
        p = io_uring_params{};
        p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_CQSIZE |
                  IORING_SETUP_SUBMIT_ALL | IORING_SETUP_CLAMP;
        p.cq_entries = entries * 4;
        if (disabled) p.flags |= IORING_SETUP_R_DISABLED;
        r = io_uring_queue_init_params(entries, &ring, &p);
        if (r == -EINVAL) {
            return make_error(
                "io_uring: kernel rejects ring flags SINGLE_ISSUER/COOP_TASKRUN/SUBMIT_ALL "
                "(needs Linux 6.0+)",
                r);
        }
    }
    if (r == -ENOSYS) return make_error("io_uring: not supported by this kernel (ENOSYS)", r);
    if (r == -EPERM) {
        return make_error(
            "io_uring: not permitted (EPERM): sysctl kernel.io_uring_disabled, "
            "io_uring_group or a seccomp filter forbids it",
            r);
    }
    if (r < 0) return make_error(std::string("io_uring: ring setup failed: ") + strerror(-r), r);
    if ((p.features & IORING_FEAT_FAST_POLL) == 0 || (p.features & IORING_FEAT_NODROP) == 0) {
        io_uring_queue_exit(&ring);
        return make_error("io_uring: kernel lacks FAST_POLL/NODROP (needs Linux 5.7+)", -ENOTSUP);
    }
    return ok();
}

result<void> setup_buffer_ring(io_uring& ring, buffer_ring& out, unsigned count, unsigned size,
                               unsigned short bgid) {
    if (count == 0 || count > 32768 || (count & (count - 1)) != 0) {
        return make_error("runtime: buffer_count must be a power of two in [1, 32768]", -EINVAL);
    }
    if (size == 0) return make_error("runtime: buffer_size must be > 0", -EINVAL);

    // liburing 2.3 has no io_uring_setup_buf_ring(): the ring lives in
    // page-aligned anonymous memory that we map and register ourselves.
    buffer_ring b;
    b.count = count;
    b.size = size;
    b.bgid = bgid;
    b.ring_bytes = sizeof(io_uring_buf) * count;
    void* rmem =
        mmap(nullptr, b.ring_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (rmem == MAP_FAILED) return make_error("runtime: mmap of buffer ring failed", -errno);
    b.ring = static_cast<io_uring_buf_ring*>(rmem);
    b.base_bytes = std::size_t(count) * size;
    void* bmem =
        mmap(nullptr, b.base_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (bmem == MAP_FAILED) {
        int e = errno;
        munmap(rmem, b.ring_bytes);
        return make_error("runtime: mmap of receive buffers failed", -e);
    }
    b.base = static_cast<char*>(bmem);

    io_uring_buf_reg reg{};
    reg.ring_addr = reinterpret_cast<std::uintptr_t>(b.ring);
    reg.ring_entries = count;
    reg.bgid = bgid;
    int r = io_uring_register_buf_ring(&ring, &reg, 0);
    if (r < 0) {
        free_buffer_ring(b);
        if (r == -EINVAL) {
            return make_error("io_uring: kernel lacks provided-buffer rings (needs Linux 5.19+)",
                              r);
        }
        return make_error(
            std::string("io_uring: registering the buffer ring failed: ") + strerror(-r), r);
    }
    io_uring_buf_ring_init(b.ring);
    int mask = io_uring_buf_ring_mask(count);
    for (unsigned i = 0; i < count; ++i) {
        io_uring_buf_ring_add(b.ring, b.data(static_cast<unsigned short>(i)), size,
                              static_cast<unsigned short>(i), mask, static_cast<int>(i));
    }
    io_uring_buf_ring_advance(b.ring, static_cast<int>(count));
    out = b;
    return ok();
}

void free_buffer_ring(buffer_ring& b) noexcept {
    if (b.ring != nullptr) munmap(b.ring, b.ring_bytes);
    if (b.base != nullptr) munmap(b.base, b.base_bytes);
    b.ring = nullptr;
    b.base = nullptr;
}

}  // namespace sigrelay::runtime::detail
