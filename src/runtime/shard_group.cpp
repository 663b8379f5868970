// N shard threads, each pinned to a CPU and running its own reactor; signal
// handling for the process (TERM/INT: graceful stop, HUP: reload) and an
// optional periodic callback between signals (sigtimedwait).
#include "internal.hpp"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>

namespace sigrelay::runtime {
namespace {

std::vector<int> affinity_cpus() {
    std::vector<int> cpus;
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        for (int i = 0; i < CPU_SETSIZE; ++i) {
            if (CPU_ISSET(i, &set)) cpus.push_back(i);
        }
    }
    return cpus;
}

sigset_t handled_signals() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    return set;
}

}  // namespace

struct shard_group::impl {
    shard_options opts;
    std::vector<std::unique_ptr<reactor>> reactors;
    std::vector<std::thread> threads;
    // Start-up hand-shake only (not the hot path).
    std::mutex m;
    std::condition_variable cv;
    unsigned ready = 0;
    std::optional<error> first_error;
};

shard_group::shard_group(shard_options opts) : impl_(std::make_unique<impl>()) {
    impl_->opts = std::move(opts);
    if (impl_->opts.threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        impl_->opts.threads = n > 0 ? static_cast<unsigned>(n) : 1;
    }
}

shard_group::~shard_group() {
    request_stop();
    wait();
}

result<void> shard_group::start(shard_init init) {
    impl& im = *impl_;
    unsigned n = im.opts.threads;
    std::vector<int> cpus = im.opts.pin ? affinity_cpus() : std::vector<int>{};
    im.reactors.resize(n);
    for (unsigned i = 0; i < n; ++i) {
        reactor_options ro = im.opts.reactor;
        ro.shard = i;
        ro.cpu = cpus.empty() ? -1 : cpus[i % cpus.size()];
        im.threads.emplace_back([&im, ro, i, init] {
            if (ro.cpu >= 0) {
                // Pinned before the ring and buffers exist, so their memory
                // is allocated near this CPU.
                cpu_set_t set;
                CPU_ZERO(&set);
                CPU_SET(ro.cpu, &set);
                pthread_setaffinity_np(pthread_self(), sizeof set, &set);
            }
            auto r = reactor::create(ro);
            std::optional<error> err;
            if (!r) {
                err = r.err();
                err->message = "shard " + std::to_string(i) + ": " + err->message;
            } else {
                reactor* self = r->get();
                {
                    std::lock_guard lk(im.m);
                    im.reactors[i] = std::move(*r);
                }
                if (init) {
                    auto ir = init(*self, i);
                    if (!ir) err = ir.err();
                }
            }
            reactor* mine = nullptr;
            {
                std::lock_guard lk(im.m);
                if (err && !im.first_error) im.first_error = std::move(err);
                if (!err) mine = im.reactors[i].get();
                ++im.ready;
            }
            im.cv.notify_all();
            if (mine != nullptr) mine->run();
        });
    }
    std::unique_lock lk(im.m);
    im.cv.wait(lk, [&] { return im.ready == n; });
    if (im.first_error) {
        error e = *im.first_error;
        lk.unlock();
        for (auto& r : im.reactors) {
            if (r) r->stop(std::chrono::milliseconds(0));
        }
        wait();
        return e;
    }
    return ok();
}

void shard_group::request_stop() {
    for (auto& r : impl_->reactors) {
        if (r) r->stop(impl_->opts.drain_timeout);
    }
}

void shard_group::wait() {
    for (auto& t : impl_->threads) {
        if (t.joinable()) t.join();
    }
}

void shard_group::block_signals() {
    sigset_t set = handled_signals();
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

int shard_group::run_until_signal(std::function<void()> on_hup, std::function<void()> on_stop,
                                  std::function<void()> periodic, std::chrono::milliseconds interval) {
    using clock = std::chrono::steady_clock;
    block_signals();
    sigset_t set = handled_signals();
    const bool timed = periodic && interval.count() > 0;
    clock::time_point due = clock::now() + interval;
    for (;;) {
        int sig = 0;
        if (!timed) {
            if (sigwait(&set, &sig) != 0) continue;
        } else {
            const clock::time_point now = clock::now();
            if (now >= due) {
                periodic();
                // Next slot after now: a late run (a slow callback, a long
                // reload) is not followed by a burst of catch-up runs.
                due += interval;
                if (due <= clock::now()) due = clock::now() + interval;
                continue;
            }
            const auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(due - now);
            timespec ts{};
            ts.tv_sec = static_cast<time_t>(left.count() / 1000000000);
            ts.tv_nsec = static_cast<long>(left.count() % 1000000000);
            sig = sigtimedwait(&set, nullptr, &ts);
            if (sig < 0) continue;  // EAGAIN: the periodic run is due; EINTR: wait again
        }
        if (sig == SIGHUP) {
            if (on_hup) on_hup();
            continue;
        }
        if (on_stop) on_stop();
        request_stop();
        wait();
        return 0;
    }
}

unsigned shard_group::size() const noexcept {
    return impl_->opts.threads;
}

reactor& shard_group::shard(unsigned i) {
    return *impl_->reactors.at(i);
}

}  // namespace sigrelay::runtime
