// The resolver thread: one c-ares channel driven by poll() over the sockets c-ares reports
// through its socket-state callback, plus an eventfd that wakes it for new queries and for
// shutdown. Outcomes go back to the asking shard with reactor::post().
#include "internal.hpp"

#include <ares.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <thread>

#include <pthread.h>
#include <signal.h>
#include <unordered_map>
#include <utility>

namespace sigrelay::resolve {

namespace {

struct request {
    resolver::core* owner = nullptr;
    std::string name;
    std::shared_ptr<detail::sink> to;
    unsigned attempt = 0;
};

void post_outcome(const std::shared_ptr<detail::sink>& s, const std::string& name,
                  result<detail::found> outcome) {
    std::lock_guard<std::mutex> g(s->m);
    if (s->to == nullptr) return;  // the cache is gone: its reactor may be too
    s->to->post([owner = s->owner, name, outcome = std::move(outcome)]() mutable {
        detail::deliver_outcome(owner, name, std::move(outcome));
    });
}

// c-ares status → (code, retry with another attempt?)
std::pair<errc, bool> classify(int status) {
    switch (status) {
        case ARES_ENOTFOUND:
            return {errc::not_found, false};
        case ARES_ENODATA:
            return {errc::no_address, false};
        case ARES_ETIMEOUT:
            return {errc::timed_out, true};
        case ARES_EBADNAME:
        case ARES_EBADFAMILY:
        case ARES_EBADSTR:
            return {errc::bad_name, false};
        case ARES_EDESTRUCTION:
        case ARES_ECANCELLED:
            return {errc::stopped, false};
        default:  // ESERVFAIL, EREFUSED, ECONNREFUSED, EBADRESP, EFORMERR, ENOTIMP, ENOMEM...
            return {errc::server_failure, true};
    }
}

std::string describe(errc c, int status) {
    switch (c) {
        case errc::not_found:
            return "name not found (NXDOMAIN)";
        case errc::no_address:
            return "no A or AAAA record";
        case errc::timed_out:
            return "no DNS server answered";
        default:
            return ares_strerror(status);
    }
}

}  // namespace

struct resolver::core {
    options opts;
    std::vector<runtime::socket_address> servers;
    ares_channel channel = nullptr;
    bool library_initialized = false;
    int wake_fd = -1;
    std::thread thread;

    std::mutex m;  // guards pending and stopping
    std::vector<std::unique_ptr<request>> pending;
    bool stopping = false;

    std::unordered_map<int, short> sockets;  // resolver thread only: fd → poll events

    ~core() {
        if (channel != nullptr) ares_destroy(channel);  // only when the thread never started
        if (wake_fd >= 0) ::close(wake_fd);
        if (library_initialized) ares_library_cleanup();
    }

    result<void> init();
    void run();
    void start(std::unique_ptr<request> r);
    void wake() {
        std::uint64_t one = 1;
        ssize_t n = ::write(wake_fd, &one, sizeof one);
        (void)n;  // EAGAIN: the counter is saturated, a wake-up is pending anyway
    }

    static void on_sock_state(void* data, ares_socket_t fd, int readable, int writable);
    static void on_addrinfo(void* arg, int status, int timeouts, ares_addrinfo* res);
};

result<void> resolver::core::init() {
    if (int rc = ares_library_init(ARES_LIB_INIT_ALL); rc != ARES_SUCCESS) {
        return make_error(std::string("c-ares: ") + ares_strerror(rc));
    }
    library_initialized = true;

    ares_options o{};
    int mask = 0;
    o.timeout = static_cast<int>(opts.timeout.count());
    mask |= ARES_OPT_TIMEOUTMS;
    // One try per server inside c-ares: the attempts are ours (start()), so that each
    // waits `timeout` (c-ares doubles the timeout on every round of its own retries).
    o.tries = 1;
    mask |= ARES_OPT_TRIES;
    // Names are absolute: no search domains from resolv.conf.
    o.ndomains = 0;
    o.domains = nullptr;
    mask |= ARES_OPT_DOMAINS;
    o.flags = ARES_FLAG_NOSEARCH;
    mask |= ARES_OPT_FLAGS;
    o.sock_state_cb = &core::on_sock_state;
    o.sock_state_cb_data = this;
    mask |= ARES_OPT_SOCK_STATE_CB;
    if (int rc = ares_init_options(&channel, &o, mask); rc != ARES_SUCCESS) {
        channel = nullptr;
        return make_error(std::string("c-ares: init: ") + ares_strerror(rc));
    }

    if (!servers.empty()) {
        std::vector<ares_addr_port_node> nodes(servers.size());
        for (std::size_t i = 0; i < servers.size(); ++i) {
            ares_addr_port_node& n = nodes[i];
            n.next = i + 1 < nodes.size() ? &nodes[i + 1] : nullptr;
            n.family = servers[i].family();
            if (n.family == AF_INET) {
                auto* sin = reinterpret_cast<const sockaddr_in*>(servers[i].get());
                std::memcpy(&n.addr.addr4, &sin->sin_addr, sizeof sin->sin_addr);
            } else {
                auto* sin6 = reinterpret_cast<const sockaddr_in6*>(servers[i].get());
                std::memcpy(&n.addr.addr6, &sin6->sin6_addr, sizeof sin6->sin6_addr);
            }
            n.udp_port = servers[i].port();
            n.tcp_port = servers[i].port();
        }
        if (int rc = ares_set_servers_ports(channel, nodes.data()); rc != ARES_SUCCESS) {
            return make_error(std::string("c-ares: set servers: ") + ares_strerror(rc));
        }
    }

    wake_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wake_fd < 0) return make_error(std::string("eventfd: ") + std::strerror(errno), -errno);
    return ok();
}

void resolver::core::on_sock_state(void* data, ares_socket_t fd, int readable, int writable) {
    auto* self = static_cast<core*>(data);
    if (!readable && !writable) {
        self->sockets.erase(fd);
        return;
    }
    short ev = 0;
    if (readable) ev |= POLLIN;
    if (writable) ev |= POLLOUT;
    self->sockets[fd] = ev;
}

void resolver::core::start(std::unique_ptr<request> r) {
    ares_addrinfo_hints hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_flags = ARES_AI_NOSORT;  // keep the answer's order (no RFC 6724 probing)
    request* raw = r.release();
    // The callback may run inside this call (hosts file, immediate errors).
    ares_getaddrinfo(channel, raw->name.c_str(), nullptr, &hints, &core::on_addrinfo, raw);
}

void resolver::core::on_addrinfo(void* arg, int status, int /*timeouts*/, ares_addrinfo* res) {
    std::unique_ptr<request> r(static_cast<request*>(arg));
    core& self = *r->owner;
    if (status == ARES_SUCCESS && res != nullptr) {
        detail::found f;
        std::vector<runtime::socket_address> v6;
        long ttl = LONG_MAX;
        for (ares_addrinfo_node* n = res->nodes; n != nullptr; n = n->ai_next) {
            if (n->ai_addr == nullptr) continue;
            if (n->ai_family != AF_INET && n->ai_family != AF_INET6) continue;
            auto a = runtime::socket_address::from(n->ai_addr, n->ai_addrlen);
            (n->ai_family == AF_INET ? f.addresses : v6).push_back(a);
            ttl = std::min<long>(ttl, std::max(0, n->ai_ttl));
        }
        for (ares_addrinfo_cname* c = res->cnames; c != nullptr; c = c->next) {
            ttl = std::min<long>(ttl, std::max(0, c->ttl));
        }
        ares_freeaddrinfo(res);
        f.addresses.insert(f.addresses.end(), v6.begin(), v6.end());
        if (f.addresses.empty()) {
            post_outcome(r->to, r->name,
                         detail::make(errc::no_address, r->name + ": no A or AAAA record"));
            return;
        }
        if (ttl == LONG_MAX) ttl = 0;
        ttl = std::clamp<long>(ttl, self.opts.min_ttl.count(), self.opts.max_ttl.count());
        f.ttl = std::chrono::seconds(ttl);
        post_outcome(r->to, r->name, std::move(f));
        return;
    }
    if (res != nullptr) ares_freeaddrinfo(res);
    auto [code, retry] = classify(status);
    if (retry && r->attempt + 1 < self.opts.tries) {
        ++r->attempt;
        self.start(std::move(r));
        return;
    }
    std::string what = r->name + ": " + describe(code, status);
    if (retry && self.opts.tries > 1) what += " (" + std::to_string(self.opts.tries) + " tries)";
    post_outcome(r->to, r->name, detail::make(code, std::move(what)));
}

void resolver::core::run() {
    std::vector<pollfd> fds;
    std::vector<std::unique_ptr<request>> batch;
    for (;;) {
        bool stop;
        {
            std::lock_guard<std::mutex> g(m);
            batch.swap(pending);
            stop = stopping;
        }
        if (stop) {
            for (auto& r : batch) {
                post_outcome(r->to, r->name,
                             detail::make(errc::stopped, r->name + ": resolver stopped"));
            }
            break;
        }
        for (auto& r : batch) start(std::move(r));
        batch.clear();

        fds.clear();
        fds.push_back(pollfd{wake_fd, POLLIN, 0});
        for (const auto& [fd, ev] : sockets) fds.push_back(pollfd{fd, ev, 0});
        timeval tv{};
        timeval* t = ares_timeout(channel, nullptr, &tv);
        int wait_ms = -1;
        if (t != nullptr) {
            // Round up: waking before the deadline would only spin until it.
            long long ms = static_cast<long long>(t->tv_sec) * 1000 + (t->tv_usec + 999) / 1000;
            wait_ms = static_cast<int>(std::min<long long>(ms, INT_MAX));
        }
        int n = ::poll(fds.data(), fds.size(), wait_ms);
        if (n < 0 && errno != EINTR) {
            std::fprintf(stderr, "resolve: poll: %s\n", std::strerror(errno));
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        if (n > 0) {
            if (fds[0].revents != 0) {
                std::uint64_t v;
                ssize_t got = ::read(wake_fd, &v, sizeof v);
                (void)got;
            }
            for (std::size_t i = 1; i < fds.size(); ++i) {
                short re = fds[i].revents;
                if (re == 0) continue;
                ares_socket_t rfd =
                    (re & (POLLIN | POLLERR | POLLHUP)) ? fds[i].fd : ARES_SOCKET_BAD;
                ares_socket_t wfd =
                    (re & (POLLOUT | POLLERR | POLLHUP)) ? fds[i].fd : ARES_SOCKET_BAD;
                ares_process_fd(channel, rfd, wfd);
            }
        }
        ares_process_fd(channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);  // timeouts
    }
    // Queries in flight end with ARES_EDESTRUCTION: errc::stopped for their caches.
    ares_destroy(channel);
    channel = nullptr;
    sockets.clear();
}

// ---- public -----------------------------------------------------------------------

result<std::unique_ptr<resolver>> resolver::create(options opts) {
    if (opts.timeout.count() <= 0) return make_error("resolve: timeout must be positive");
    if (opts.timeout.count() > INT_MAX) return make_error("resolve: timeout too large");
    if (opts.tries == 0) return make_error("resolve: tries must be at least 1");
    if (opts.min_ttl.count() < 0 || opts.max_ttl < opts.min_ttl) {
        return make_error("resolve: need 0 <= min_ttl <= max_ttl");
    }
    if (opts.negative_ttl.count() < 0 || opts.max_stale.count() < 0) {
        return make_error("resolve: negative_ttl and max_stale must not be negative");
    }
    auto c = std::make_shared<core>();
    for (const std::string& s : opts.servers) {
        auto hp = detail::parse_host_port(s, 53);
        if (!hp || !hp->literal) {
            return make_error("--dns-server " + s + ": expected IP:PORT, [IPv6]:PORT or IP");
        }
        c->servers.push_back(hp->address);
    }
    c->opts = std::move(opts);
    SIGRELAY_TRY(c->init());
    c->thread = std::thread([raw = c.get()] {
        // Process signals (SIGTERM, SIGHUP…) belong to the thread that waits
        // for them: delivered here, the default action would kill the process.
        sigset_t all;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, nullptr);
        raw->run();
    });
    return std::unique_ptr<resolver>(new resolver(std::move(c)));
}

resolver::resolver(std::shared_ptr<core> c) : core_(std::move(c)) {}

resolver::~resolver() {
    {
        std::lock_guard<std::mutex> g(core_->m);
        core_->stopping = true;
    }
    core_->wake();
    if (core_->thread.joinable()) core_->thread.join();
}

const options& resolver::config() const noexcept {
    return core_->opts;
}

namespace detail {

const options& config_of(const resolver::core& c) noexcept {
    return c.opts;
}

void submit(resolver::core& c, std::string name, std::shared_ptr<sink> to) {
    auto r = std::make_unique<request>();
    r->owner = &c;
    r->name = std::move(name);
    r->to = std::move(to);
    {
        std::lock_guard<std::mutex> g(c.m);
        if (!c.stopping) {
            c.pending.push_back(std::move(r));
            r = nullptr;
        }
    }
    if (r == nullptr) {
        c.wake();
        return;
    }
    post_outcome(r->to, r->name, make(errc::stopped, r->name + ": resolver stopped"));
}

}  // namespace detail

}  // namespace sigrelay::resolve
