// Tests of the io_uring shard runtime over real loopback sockets: addresses,
// CIDR ranges, the MPSC queue, echo, back-pressure, connect, timers, post,
// close/abort, graceful stop and shard groups. Waits are bounded so a bug
// fails a check instead of hanging the run.
#include <sigrelay/runtime.hpp>

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

using namespace sigrelay::runtime;
using namespace std::chrono_literals;

namespace {

// ---- helpers ------------------------------------------------------------------------

template <class Pred>
bool wait_until(Pred pred, std::chrono::milliseconds limit = 5000ms) {
    auto end = std::chrono::steady_clock::now() + limit;
    while (!pred()) {
        if (std::chrono::steady_clock::now() > end) return false;
        std::this_thread::sleep_for(1ms);
    }
    return true;
}

// A reactor running on its own thread; stopped and joined (bounded) at the end.
struct running {
    std::unique_ptr<reactor> r;
    std::thread t;
    std::promise<void> done;
    std::future<void> done_f = done.get_future();
    bool joined = false;

    explicit running(reactor_options o = {}) {
        auto x = reactor::create(o);
        REQUIRE_MESSAGE(x.ok(), (x.ok() ? "" : x.err().message));
        r = std::move(*x);
    }
    void start() {
        t = std::thread([this] {
            r->run();
            done.set_value();
        });
    }
    // Waits for run() to return; a reactor that never stops ends the test run.
    bool join(std::chrono::milliseconds limit = 10000ms) {
        if (joined || !t.joinable()) return true;
        if (done_f.wait_for(limit) != std::future_status::ready) {
            std::fprintf(stderr, "reactor did not stop within %lld ms\n",
                         static_cast<long long>(limit.count()));
            std::_Exit(1);
        }
        t.join();
        joined = true;
        return true;
    }
    void stop_and_join(std::chrono::milliseconds drain = 0ms) {
        r->stop(drain);
        join();
    }
    // Runs fn on the reactor thread and waits for its result.
    template <class F>
    auto call(F fn) -> decltype(fn()) {
        using R = decltype(fn());
        auto p = std::make_shared<std::promise<R>>();
        auto f = p->get_future();
        r->post([p, fn]() mutable {
            if constexpr (std::is_void_v<R>) {
                fn();
                p->set_value();
            } else {
                p->set_value(fn());
            }
        });
        REQUIRE(f.wait_for(5s) == std::future_status::ready);
        return f.get();
    }
    ~running() {
        if (t.joinable() && !joined) stop_and_join();
    }
};

socket_address loopback(int family = AF_INET) {
    auto a = socket_address::parse(family == AF_INET ? "127.0.0.1:0" : "[::1]:0");
    REQUIRE(a.ok());
    return *a;
}

// Blocking client socket with 5 s send/receive timeouts. Such sockets return
// EINTR on any signal, and destroying a ring signals every thread that used
// it (io_uring's exit work), so the helpers retry on EINTR.
int client_connect(const socket_address& to) {
    int fd = ::socket(to.family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    timeval tv{5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (::connect(fd, to.get(), to.length) != 0) {
        REQUIRE(errno == EINTR);  // the connect goes on: wait for its outcome
        pollfd p{fd, POLLOUT, 0};
        REQUIRE(::poll(&p, 1, 5000) == 1);
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        REQUIRE(err == 0);
    }
    return fd;
}

bool write_all(int fd, std::string_view s) {
    while (!s.empty()) {
        ssize_t n = ::send(fd, s.data(), s.size(), MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        s.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
}

// Reads until `want` bytes, EOF or an error/timeout.
std::string read_n(int fd, std::size_t want) {
    std::string out;
    char buf[65536];
    while (out.size() < want) {
        ssize_t n = ::recv(fd, buf, std::min(sizeof buf, want - out.size()), 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        out.append(buf, static_cast<std::size_t>(n));
    }
    return out;
}

// Reads to EOF; *err gets the errno of a failed read (0 on clean EOF).
std::string read_to_eof(int fd, int* err = nullptr) {
    std::string out;
    char buf[65536];
    for (;;) {
        ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n == 0) {
            if (err) *err = 0;
            break;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            if (err) *err = errno;
            break;
        }
        out.append(buf, static_cast<std::size_t>(n));
    }
    return out;
}

std::string pattern(std::size_t n, unsigned seed = 7) {
    std::string s(n, '\0');
    std::uint32_t x = seed;
    for (auto& ch : s) {
        x = x * 1103515245u + 12345u;
        ch = static_cast<char>(x >> 16);
    }
    return s;
}

struct counters {
    std::atomic<int> accepted{0};
    std::atomic<int> closed{0};
    std::atomic<int> last_err{1};
};

struct echo_handler : connection_handler {
    counters* k;
    explicit echo_handler(counters* kk) : k(kk) {}
    void on_data(connection& c, std::span<const char> b) override {
        c.send(std::string(b.data(), b.size()));
    }
    void on_closed(connection&, int err) override {
        k->last_err = err;
        ++k->closed;
        delete this;
    }
};

accept_fn echo_acceptor(counters& k) {
    return [&k](connection&) -> connection_handler* {
        ++k.accepted;
        return new echo_handler(&k);
    };
}

}  // namespace

// ---- addresses ------------------------------------------------------------------------

TEST_CASE("socket_address parse and format") {
    struct row {
        const char* in;
        bool ok;
        int family;
        const char* ip;
        int port;
        const char* text;
    };
    const row rows[] = {
        {"127.0.0.1:25", true, AF_INET, "127.0.0.1", 25, "127.0.0.1:25"},
        {"[::1]:2525", true, AF_INET6, "::1", 2525, "[::1]:2525"},
        {":25", true, AF_INET, "0.0.0.0", 25, "0.0.0.0:25"},
        {"*:587", true, AF_INET, "0.0.0.0", 587, "0.0.0.0:587"},
        {"[::]:25", true, AF_INET6, "::", 25, "[::]:25"},
        {"[2a01:111:f400::1]:65535", true, AF_INET6, "2a01:111:f400::1", 65535,
         "[2a01:111:f400::1]:65535"},
        {"10.1.2.3:0", true, AF_INET, "10.1.2.3", 0, "10.1.2.3:0"},
        {"127.0.0.1", false, 0, nullptr, 0, nullptr},
        {"127.0.0.1:", false, 0, nullptr, 0, nullptr},
        {"127.0.0.1:65536", false, 0, nullptr, 0, nullptr},
        {"127.0.0.1:2x", false, 0, nullptr, 0, nullptr},
        {"127.0.0.1:-1", false, 0, nullptr, 0, nullptr},
        {"::1:25", false, 0, nullptr, 0, nullptr},
        {"[::1:25", false, 0, nullptr, 0, nullptr},
        {"[::1]25", false, 0, nullptr, 0, nullptr},
        {"[nope]:25", false, 0, nullptr, 0, nullptr},
        {"", false, 0, nullptr, 0, nullptr},
        {"no-such-host.invalid:25", false, 0, nullptr, 0, nullptr},
    };
    for (const auto& r : rows) {
        CAPTURE(r.in);
        auto a = socket_address::parse(r.in);
        REQUIRE(a.ok() == r.ok);
        if (!r.ok) continue;
        CHECK(a->family() == r.family);
        CHECK(a->ip_string() == r.ip);
        CHECK(a->port() == r.port);
        CHECK(a->to_string() == r.text);
    }

    auto lh = socket_address::parse("localhost:2525");
    REQUIRE(lh.ok());
    CHECK(lh->port() == 2525);
    CHECK((lh->ip_string() == "127.0.0.1" || lh->ip_string() == "::1"));

    // IPv4-mapped IPv6 is shown as IPv4.
    sockaddr_in6 m{};
    m.sin6_family = AF_INET6;
    m.sin6_port = htons(25);
    inet_pton(AF_INET6, "::ffff:192.0.2.7", &m.sin6_addr);
    auto mapped = socket_address::from(reinterpret_cast<sockaddr*>(&m), sizeof m);
    CHECK(mapped.ip_string() == "192.0.2.7");
    CHECK(mapped.to_string() == "192.0.2.7:25");
}

TEST_CASE("cidr parse and contains") {
    auto addr = [](const char* s) {
        auto a = socket_address::parse(s);
        REQUIRE(a.ok());
        return *a;
    };
    sockaddr_in6 m{};
    m.sin6_family = AF_INET6;
    inet_pton(AF_INET6, "::ffff:40.93.1.2", &m.sin6_addr);
    const socket_address mapped = socket_address::from(reinterpret_cast<sockaddr*>(&m), sizeof m);

    struct row {
        const char* range;
        const char* peer;  // nullptr: the v4-mapped 40.93.1.2
        bool in;
    };
    const row rows[] = {
        {"40.92.0.0/15", "40.93.1.2:1", true},
        {"40.92.0.0/15", nullptr, true},  // v4 range matches v4-mapped v6 peer
        {"40.92.0.0/15", "40.94.0.1:1", false},
        {"40.92.0.0/16", nullptr, false},
        {"0.0.0.0/0", "203.0.113.9:1", true},
        {"0.0.0.0/0", "[2001:db8::1]:1", false},
        {"127.0.0.1", "127.0.0.1:25", true},
        {"127.0.0.1/32", "127.0.0.2:25", false},
        {"10.1.2.3/8", "10.200.0.1:1", true},  // host bits cleared
        {"2a01:111:f400::/48", "[2a01:111:f400:abcd::1]:1", true},
        {"2a01:111:f400::/48", "[2a01:111:f401::1]:1", false},
        {"2a01:111:f400::/48", "40.93.1.2:1", false},
        {"::/0", "[2001:db8::1]:1", true},
        {"::1/128", "[::1]:25", true},
        {"::1/128", "[::2]:25", false},
        {"::ffff:40.92.0.0/111", "40.93.1.2:1", true},  // mapped v6 range, v4 peer
        {"2a01:111:f403::/49", "[2a01:111:f403:7fff::1]:1", true},
        {"2a01:111:f403::/49", "[2a01:111:f403:8000::1]:1", false},
    };
    for (const auto& r : rows) {
        CAPTURE(r.range);
        CAPTURE((r.peer ? r.peer : "::ffff:40.93.1.2"));
        auto c = cidr::parse(r.range);
        REQUIRE(c.ok());
        CHECK(c->contains(r.peer ? addr(r.peer) : mapped) == r.in);
    }
    CHECK(cidr::parse("10.1.2.3/8")->to_string() == "10.0.0.0/8");
    CHECK(cidr::parse("2a01:111:f400::/48")->to_string() == "2a01:111:f400::/48");
    CHECK(cidr::parse("127.0.0.1")->to_string() == "127.0.0.1/32");
    for (const char* bad :
         {"", "/8", "10.0.0.0/", "10.0.0.0/33", "::/129", "10.0.0/8", "10.0.0.0/8x", "10.0.0.0/-1",
          "host.example/8", "1.2.3.4/ 8", "10.0.0.0/0008"}) {
        CAPTURE(bad);
        CHECK_FALSE(cidr::parse(bad).ok());
    }
}

// ---- mpsc_queue -------------------------------------------------------------------------

TEST_CASE("mpsc_queue: 4 producers x 100k, each item once, per-producer order") {
    constexpr int producers = 4;
    constexpr int per = 100000;
    mpsc_queue<std::uint64_t> q;
    std::vector<std::thread> ts;
    for (int p = 0; p < producers; ++p) {
        ts.emplace_back([&q, p] {
            for (int i = 0; i < per; ++i) q.push((std::uint64_t(p) << 32) | std::uint64_t(i));
        });
    }
    std::vector<std::int64_t> next(producers, 0);
    std::size_t got = 0;
    bool in_order = true;
    auto end = std::chrono::steady_clock::now() + 20s;
    while (got < std::size_t(producers) * per && std::chrono::steady_clock::now() < end) {
        std::uint64_t v;
        if (!q.pop(v)) {
            std::this_thread::yield();
            continue;
        }
        auto p = static_cast<int>(v >> 32);
        auto i = static_cast<std::int64_t>(v & 0xffffffffu);
        if (p >= producers || i != next[p]) in_order = false;
        if (p < producers) next[p] = i + 1;
        ++got;
    }
    for (auto& t : ts) t.join();
    std::uint64_t extra;
    CHECK_FALSE(q.pop(extra));
    CHECK(got == std::size_t(producers) * per);
    CHECK(in_order);
    for (int p = 0; p < producers; ++p) CHECK(next[p] == per);
}

TEST_CASE("mpsc_queue frees what is left at destruction") {
    auto tracker = std::make_shared<int>(0);
    {
        mpsc_queue<std::shared_ptr<int>> q;
        for (int i = 0; i < 10; ++i) q.push(tracker);
        std::shared_ptr<int> one;
        CHECK(q.pop(one));
        CHECK(tracker.use_count() == 11);
    }
    CHECK(tracker.use_count() == 1);
}

// ---- probe --------------------------------------------------------------------------------

TEST_CASE("probe_kernel succeeds on this kernel") {
    auto r = probe_kernel();
    CHECK_MESSAGE(r.ok(), (r.ok() ? "" : r.err().message));
}

// ---- echo -----------------------------------------------------------------------------------

TEST_CASE("echo: 200 concurrent connections, IPv4 and IPv6") {
    for (int family : {AF_INET, AF_INET6}) {
        CAPTURE(family);
        counters k;
        running rr;
        REQUIRE(rr.r->listen(loopback(family), echo_acceptor(k)).ok());
        auto addrs = rr.r->listening_addresses();
        REQUIRE(addrs.size() == 1);
        CHECK(addrs[0].port() != 0);
        rr.start();

        constexpr int n = 200;
        std::atomic<int> good{0};
        std::thread client([&] {
            std::vector<int> fds;
            for (int i = 0; i < n; ++i) fds.push_back(client_connect(addrs[0]));
            for (int i = 0; i < n; ++i) write_all(fds[i], "hello " + std::to_string(i) + "\n");
            for (int i = 0; i < n; ++i) {
                std::string want = "hello " + std::to_string(i) + "\n";
                if (read_n(fds[i], want.size()) == want) ++good;
            }
            for (int fd : fds) ::close(fd);
        });
        client.join();
        CHECK(good == n);
        CHECK(wait_until([&] { return k.closed == n; }));
        CHECK(k.accepted == n);
        CHECK(k.last_err == 0);  // EOF from the peer
        CHECK(rr.r->connection_count() == 0);
        rr.stop_and_join();
    }
}

TEST_CASE("echo: 4 MiB through one connection (partial sends, many buffers)") {
    counters k;
    running rr;
    REQUIRE(rr.r->listen(loopback(), echo_acceptor(k)).ok());
    auto to = rr.r->listening_addresses()[0];
    rr.start();
    const std::string data = pattern(4 << 20);
    int fd = client_connect(to);
    std::thread writer([&] { write_all(fd, data); });
    std::string back = read_n(fd, data.size());
    writer.join();
    ::close(fd);
    CHECK(back.size() == data.size());
    CHECK(back == data);
    CHECK(wait_until([&] { return k.closed == 1; }));
}

TEST_CASE("back-pressure: 8 buffers of 256 bytes, 1 MiB arrives whole and in order") {
    reactor_options o;
    o.buffer_count = 8;
    o.buffer_size = 256;
    running rr(o);
    struct checker : connection_handler {
        std::string expect;
        std::size_t pos = 0;
        std::atomic<bool> mismatch{false};
        std::atomic<std::size_t> got{0};
        std::atomic<bool> closed{false};
        void on_data(connection& c, std::span<const char> b) override {
            if (b.size() > 256) mismatch = true;
            if (pos + b.size() > expect.size() ||
                std::memcmp(expect.data() + pos, b.data(), b.size()) != 0) {
                mismatch = true;
            }
            pos += b.size();
            got = pos;
            if (pos == expect.size()) c.send("OK");
        }
        void on_closed(connection&, int) override { closed = true; }
    } h;
    h.expect = pattern(1 << 20, 99);
    REQUIRE(rr.r->listen(loopback(), [&](connection&) { return &h; }).ok());
    auto to = rr.r->listening_addresses()[0];
    rr.start();
    int fd = client_connect(to);
    CHECK(write_all(fd, h.expect));
    CHECK(read_n(fd, 2) == "OK");
    ::close(fd);
    CHECK(h.got == h.expect.size());
    CHECK_FALSE(h.mismatch);
    CHECK(wait_until([&] { return h.closed.load(); }));
}

TEST_CASE("pause_reading stops on_data until resume_reading") {
    running rr;
    struct pauser : connection_handler {
        std::mutex m;
        std::string got;
        std::atomic<int> calls{0};
        std::atomic<connection*> conn{nullptr};
        void on_data(connection& c, std::span<const char> b) override {
            {
                std::lock_guard lk(m);
                got.append(b.data(), b.size());
            }
            if (++calls == 1) {
                c.pause_reading();
                conn = &c;
            }
        }
        void on_closed(connection&, int) override { conn = nullptr; }
        std::string text() {
            std::lock_guard lk(m);
            return got;
        }
    } h;
    REQUIRE(rr.r->listen(loopback(), [&](connection&) { return &h; }).ok());
    auto to = rr.r->listening_addresses()[0];
    rr.start();
    int fd = client_connect(to);
    CHECK(write_all(fd, "first"));
    REQUIRE(wait_until([&] { return h.conn.load() != nullptr; }));
    CHECK(write_all(fd, "second"));
    CHECK(write_all(fd, "third"));
    std::this_thread::sleep_for(100ms);  // would-be deliveries happen here if pause is broken
    CHECK(h.calls == 1);
    CHECK(h.text() == "first");
    rr.call([&] { h.conn.load()->resume_reading(); });
    CHECK(wait_until([&] { return h.text().size() == 16; }));
    CHECK(h.text() == "firstsecondthird");
    // Pausing and resuming within one callback must not lose anything either.
    rr.call([&] {
        h.conn.load()->pause_reading();
        h.conn.load()->resume_reading();
    });
    CHECK(write_all(fd, "fourth"));
    CHECK(wait_until([&] { return h.text().size() == 22; }));
    CHECK(h.text() == "firstsecondthirdfourth");
    ::close(fd);
    CHECK(wait_until([&] { return h.conn.load() == nullptr; }));
}

// ---- connect -----------------------------------------------------------------------------------

namespace {
struct client_handler : connection_handler {
    std::atomic<int> connected{1};  // 1: not yet
    std::atomic<int> closed_err{1};
    std::atomic<int> events{0};  // on_connected then on_closed: 12
    std::mutex m;
    std::string got;
    std::string say;
    void on_connected(connection& c, int err) override {
        connected = err;
        events = events * 10 + 1;
        if (err == 0 && !say.empty()) c.send(say);
    }
    void on_data(connection& c, std::span<const char> b) override {
        std::lock_guard lk(m);
        got.append(b.data(), b.size());
        if (got == say) c.close();
    }
    void on_closed(connection&, int err) override {
        closed_err = err;
        events = events * 10 + 2;
    }
};
}  // namespace

TEST_CASE("connect to a listening port, echo, close") {
    counters k;
    running rr;
    REQUIRE(rr.r->listen(loopback(), echo_acceptor(k)).ok());
    auto to = rr.r->listening_addresses()[0];
    rr.start();
    client_handler h;
    h.say = "ping\r\n";
    auto c = rr.call([&] { return rr.r->connect(to, &h, 5000ms); });
    REQUIRE(c.ok());
    CHECK(wait_until([&] { return h.closed_err != 1; }));
    CHECK(h.connected == 0);
    CHECK(h.closed_err == 0);
    CHECK(h.events == 12);
    CHECK(h.got == "ping\r\n");
    CHECK(wait_until([&] { return k.closed == 1; }));
}

TEST_CASE("connect to a closed port: on_connected(-ECONNREFUSED) then on_closed") {
    // A port nobody listens on: bind, note it, close.
    int s = ::socket(AF_INET, SOCK_STREAM, 0);
    auto any = loopback();
    REQUIRE(::bind(s, any.get(), any.length) == 0);
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    getsockname(s, reinterpret_cast<sockaddr*>(&ss), &len);
    ::close(s);
    auto to = socket_address::from(reinterpret_cast<sockaddr*>(&ss), len);

    running rr;
    rr.start();
    client_handler h;
    auto c = rr.call([&] { return rr.r->connect(to, &h, 5000ms); });
    REQUIRE(c.ok());
    CHECK(wait_until([&] { return h.closed_err != 1; }));
    CHECK(h.connected == -ECONNREFUSED);
    CHECK(h.closed_err == -ECONNREFUSED);
    CHECK(h.events == 12);
    CHECK(rr.r->connection_count() == 0);
}

// ---- timers
// ----------------------------------------------------------------------------------------

TEST_CASE("connection timers fire, re-arm, shorten, cancel") {
    counters k;
    running rr;
    struct timed : connection_handler {
        std::mutex m;
        std::map<std::uint64_t, int> fired;
        std::atomic<bool> done{false};
        std::atomic<bool> closed{false};
        std::atomic<bool> early{false};
        std::chrono::steady_clock::time_point armed_at;
        void start(connection& c) {
            armed_at = std::chrono::steady_clock::now();
            c.set_timer(1, 10ms);  // fires, then re-armed once from on_timer
            c.set_timer(2, 10s);   // shortened below: must fire
            c.set_timer(2, 30ms);
            c.set_timer(3, 40ms);  // cancelled: must not fire
            c.cancel_timer(3);
            c.set_timer(4, 20ms);  // pushed later (lazy path): fires once, not before 80 ms
            c.set_timer(4, 80ms);
            c.set_timer(99, 200ms);  // sentinel: everything else is due before it
        }
        void on_data(connection&, std::span<const char>) override {}
        void on_timer(connection& c, std::uint64_t tag) override {
            int n;
            {
                std::lock_guard lk(m);
                n = ++fired[tag];
            }
            if (tag == 4 && std::chrono::steady_clock::now() - armed_at < 80ms) early = true;
            if (tag == 1 && n == 1) c.set_timer(1, 10ms);
            if (tag == 99) {
                done = true;
                c.close();
            }
        }
        void on_closed(connection&, int) override { closed = true; }
    } h;
    REQUIRE(rr.r->listen(loopback(),
                         [&](connection& c) {
                             h.start(c);
                             return &h;
                         })
                .ok());
    auto to = rr.r->listening_addresses()[0];
    rr.start();
    int fd = client_connect(to);
    CHECK(wait_until([&] { return h.closed.load(); }));
    ::close(fd);
    std::lock_guard lk(h.m);
    CHECK(h.done);
    CHECK(h.fired[1] == 2);
    CHECK(h.fired[2] == 1);
    CHECK(h.fired[3] == 0);
    CHECK(h.fired[4] == 1);
    CHECK(h.fired[99] == 1);
    CHECK_FALSE(h.early);
}

TEST_CASE("connection timers are dropped when the connection closes") {
    running rr;
    struct h_t : connection_handler {
        std::atomic<int> timers{0};
        std::atomic<int> closed{0};
        void on_data(connection&, std::span<const char>) override {}
        void on_timer(connection&, std::uint64_t) override { ++timers; }
        void on_closed(connection&, int) override { ++closed; }
    } h;
    REQUIRE(rr.r->listen(loopback(),
                         [&](connection& c) {
                             c.set_timer(1, 60s);  // far away: must be removed, not waited for
                             return &h;
                         })
                .ok());
    auto to = rr.r->listening_addresses()[0];
    rr.start();
    int fd = client_connect(to);
    ::close(fd);
    CHECK(wait_until([&] { return h.closed == 1; }));
    CHECK(rr.r->connection_count() == 0);
    CHECK(h.timers == 0);
}

TEST_CASE("reactor after() and cancel()") {
    running rr;
    std::atomic<int> a{0}, b{0}, order_ok{0};
    std::atomic<bool> done{false};
    rr.r->after(20ms, [&] { ++a; });
    auto id = rr.r->after(30ms, [&] { ++b; });
    rr.r->cancel(id);
    rr.r->after(100ms, [&] {
        if (a == 1) order_ok = 1;
        // A timer armed from a timer.
        rr.r->after(10ms, [&] { done = true; });
    });
    rr.start();
    CHECK(wait_until([&] { return done.load(); }));
    CHECK(a == 1);
    CHECK(b == 0);
    CHECK(order_ok == 1);
    // Cancel from the reactor thread, after start.
    std::atomic<int> c{0};
    rr.call([&] {
        auto id2 = rr.r->after(20ms, [&] { ++c; });
        rr.r->cancel(id2);
        rr.r->cancel(id2);     // twice: harmless
        rr.r->cancel(987654);  // unknown: harmless
    });
    std::atomic<bool> later{false};
    rr.call([&] { rr.r->after(60ms, [&] { later = true; }); });
    CHECK(wait_until([&] { return later.load(); }));
    CHECK(c == 0);
}

// ---- post
// -------------------------------------------------------------------------------------------

TEST_CASE("post() from other threads runs every function on the reactor thread") {
    running rr;
    rr.start();
    std::thread::id reactor_thread = rr.call([] { return std::this_thread::get_id(); });
    int counter = 0;  // touched only on the reactor thread
    std::atomic<int> wrong_thread{0};
    std::vector<std::thread> ts;
    for (int t = 0; t < 4; ++t) {
        ts.emplace_back([&] {
            for (int i = 0; i < 2000; ++i) {
                rr.r->post([&] {
                    if (std::this_thread::get_id() != reactor_thread) ++wrong_thread;
                    ++counter;
                });
            }
        });
    }
    for (auto& t : ts) t.join();
    int seen = 0;
    CHECK(wait_until([&] {
        seen = rr.call([&] { return counter; });
        return seen == 8000;
    }));
    CHECK(seen == 8000);
    CHECK(wrong_thread == 0);
}

// ---- close / abort
// ----------------------------------------------------------------------------------

TEST_CASE("close() flushes queued data before FIN; send_view keeps its storage alive") {
    running rr;
    const std::string big = pattern(1 << 20, 3);
    std::weak_ptr<std::string> watch;
    struct h_t : connection_handler {
        std::atomic<int> err{1};
        void on_data(connection&, std::span<const char>) override {}
        void on_closed(connection&, int e) override { err = e; }
    } h;
    REQUIRE(rr.r->listen(loopback(),
                         [&](connection& c) {
                             c.send(big);
                             auto view_store = std::make_shared<std::string>("-view-tail-");
                             watch = view_store;
                             std::span<const char> view(view_store->data(), view_store->size());
                             c.send_view(view, std::move(view_store));
                             c.close();
                             c.send("dropped after close");
                             return &h;
                         })
                .ok());
    auto to = rr.r->listening_addresses()[0];
    rr.start();
    int fd = client_connect(to);
    int err = -1;
    std::string got = read_to_eof(fd, &err);
    ::close(fd);
    CHECK(err == 0);  // FIN, not RST
    CHECK(got.size() == big.size() + 11);
    CHECK(got == big + "-view-tail-");
    CHECK(wait_until([&] { return h.err != 1; }));
    CHECK(h.err == 0);
    CHECK(wait_until([&] { return watch.expired(); }));
}

TEST_CASE("sends queued in one turn leave in one sendmsg, in order") {
    running rr;
    struct h_t : connection_handler {
        void on_data(connection& c, std::span<const char> bytes) override {
            // A reply and two more pieces of it, as a pipelined group would.
            c.send(std::string("250 one\r\n"));
            c.send(std::string(bytes.data(), bytes.size()));
            c.send(std::string("250 three\r\n"));
            c.close();
        }
        void on_closed(connection&, int) override { closed = true; }
        std::atomic<bool> closed{false};
    } h;
    REQUIRE(rr.r->listen(loopback(),
                         [&](connection& c) {
                             c.send(std::string("220 a "));
                             c.send(std::string("greeting\r\n"));
                             return &h;
                         })
                .ok());
    auto to = rr.r->listening_addresses()[0];
    rr.start();
    int fd = client_connect(to);
    std::string greeting(16, '\0');
    REQUIRE(::recv(fd, greeting.data(), greeting.size(), MSG_WAITALL) == 16);
    CHECK(greeting == "220 a greeting\r\n");
    CHECK(wait_until([&] { return rr.r->sends_submitted() == 1; }));
    REQUIRE(::send(fd, "two\r\n", 5, 0) == 5);
    int err = -1;
    CHECK(read_to_eof(fd, &err) == "250 one\r\ntwo\r\n250 three\r\n");
    ::close(fd);
    CHECK(err == 0);
    CHECK(rr.r->sends_submitted() == 2);  // not 5
    // h must outlive every callback the reactor thread makes.
    CHECK(wait_until([&] { return h.closed.load(); }));
}

TEST_CASE("accept_fn may refuse: queued reply, close, no handler") {
    running rr;
    REQUIRE(rr.r->listen(loopback(),
                         [&](connection& c) -> connection_handler* {
                             c.send("421 4.7.0 go away\r\n");
                             c.close();
                             return nullptr;
                         })
                .ok());
    auto to = rr.r->listening_addresses()[0];
    rr.start();
    int fd = client_connect(to);
    CHECK(read_to_eof(fd) == "421 4.7.0 go away\r\n");
    ::close(fd);
    CHECK(wait_until([&] { return rr.r->connection_count() == 0; }));
}

TEST_CASE("abort() drops queued data and reports -ECONNABORTED") {
    running rr;
    struct h_t : connection_handler {
        std::atomic<int> err{1};
        std::atomic<int> closes{0};
        void on_data(connection& c, std::span<const char>) override {
            c.send(pattern(4 << 20));
            c.abort();
            c.abort();  // idempotent
            c.close();  // too late: no effect
            c.send("x");
        }
        void on_closed(connection&, int e) override {
            err = e;
            ++closes;
        }
    } h;
    REQUIRE(rr.r->listen(loopback(), [&](connection&) { return &h; }).ok());
    auto to = rr.r->listening_addresses()[0];
    rr.start();
    int fd = client_connect(to);
    CHECK(write_all(fd, "go"));
    CHECK(wait_until([&] { return h.closes == 1; }));
    CHECK(h.err == -ECONNABORTED);
    int err = 0;
    std::string got = read_to_eof(fd, &err);
    ::close(fd);
    CHECK(got.size() < (4u << 20));
    std::this_thread::sleep_for(20ms);
    CHECK(h.closes == 1);
}

TEST_CASE("close() from inside on_data, then EOF: on_closed exactly once") {
    running rr;
    struct h_t : connection_handler {
        std::atomic<int> closes{0};
        std::atomic<int> datas{0};
        void on_data(connection& c, std::span<const char>) override {
            ++datas;
            c.send("221 bye\r\n");
            c.close();
            c.close();
        }
        void on_closed(connection&, int) override { ++closes; }
    } h;
    REQUIRE(rr.r->listen(loopback(), [&](connection&) { return &h; }).ok());
    auto to = rr.r->listening_addresses()[0];
    rr.start();
    int fd = client_connect(to);
    CHECK(write_all(fd, "QUIT\r\n"));
    CHECK(read_to_eof(fd) == "221 bye\r\n");
    ::close(fd);
    CHECK(wait_until([&] { return h.closes == 1; }));
    std::this_thread::sleep_for(20ms);
    CHECK(h.closes == 1);
    CHECK(h.datas == 1);
}

// ---- stop
// ---------------------------------------------------------------------------------------------

TEST_CASE("stop(drain): on_shutdown closes an idle connection, run() returns early") {
    running rr;
    struct h_t : connection_handler {
        std::atomic<int> shutdowns{0};
        std::atomic<int> err{1};
        void on_data(connection&, std::span<const char>) override {}
        void on_shutdown(connection& c) override {
            ++shutdowns;
            c.send("421 4.3.2 shutting down\r\n");
            c.close();
        }
        void on_closed(connection&, int e) override { err = e; }
    } h;
    REQUIRE(rr.r->listen(loopback(), [&](connection&) { return &h; }).ok());
    auto to = rr.r->listening_addresses()[0];
    rr.start();
    int fd = client_connect(to);
    REQUIRE(wait_until([&] { return rr.r->connection_count() == 1; }));
    auto t0 = std::chrono::steady_clock::now();
    rr.r->stop(30s);
    CHECK(read_to_eof(fd) == "421 4.3.2 shutting down\r\n");
    ::close(fd);
    rr.join();
    CHECK(std::chrono::steady_clock::now() - t0 < 20s);  // did not wait for the drain bound
    CHECK(h.shutdowns == 1);
    CHECK(h.err == 0);
    // The listener is gone.
    int s = ::socket(AF_INET, SOCK_STREAM, 0);
    CHECK(::connect(s, to.get(), to.length) != 0);
    ::close(s);
}

TEST_CASE("stop(drain): a connection ignoring on_shutdown is aborted after the drain") {
    running rr;
    struct h_t : connection_handler {
        std::atomic<int> shutdowns{0};
        std::atomic<int> err{1};
        void on_data(connection&, std::span<const char>) override {}
        void on_shutdown(connection&) override { ++shutdowns; }
        void on_closed(connection&, int e) override { err = e; }
    } h;
    REQUIRE(rr.r->listen(loopback(), [&](connection&) { return &h; }).ok());
    auto to = rr.r->listening_addresses()[0];
    rr.start();
    int fd = client_connect(to);
    REQUIRE(wait_until([&] { return rr.r->connection_count() == 1; }));
    rr.r->stop(150ms);
    rr.join();
    CHECK(h.shutdowns == 1);
    CHECK(h.err == -ECONNABORTED);
    CHECK(rr.r->connection_count() == 0);
    ::close(fd);
}

// ---- shard group
// ------------------------------------------------------------------------------------

TEST_CASE("shard_group: 2 shards accept on one SO_REUSEPORT port") {
    // Reserve a port every shard can bind: a bound (not listening) socket with
    // SO_REUSEPORT holds it until the shards have their listeners.
    int hold = ::socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(hold, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(hold, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    auto any = loopback();
    REQUIRE(::bind(hold, any.get(), any.length) == 0);
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    getsockname(hold, reinterpret_cast<sockaddr*>(&ss), &len);
    auto addr = socket_address::from(reinterpret_cast<sockaddr*>(&ss), len);

    shard_options so;
    so.threads = 2;
    so.pin = true;
    so.drain_timeout = 2000ms;
    so.reactor.ring_entries = 256;
    so.reactor.buffer_count = 64;
    counters k0, k1;
    std::atomic<int> inits{0};
    std::atomic<bool> distinct_threads{false};
    std::thread::id tid[2];
    shard_group g(so);
    CHECK(g.size() == 2);
    auto started = g.start([&](reactor& r, unsigned i) -> sigrelay::result<void> {
        tid[i] = std::this_thread::get_id();
        ++inits;
        CHECK(r.shard() == i);
        return r.listen(addr, echo_acceptor(i == 0 ? k0 : k1));
    });
    REQUIRE_MESSAGE(started.ok(), (started.ok() ? "" : started.err().message));
    ::close(hold);
    CHECK(inits == 2);
    distinct_threads = tid[0] != tid[1];
    CHECK(distinct_threads);

    constexpr int n = 64;
    int good = 0;
    for (int i = 0; i < n; ++i) {
        int fd = client_connect(addr);
        std::string msg = "m" + std::to_string(i);
        write_all(fd, msg);
        if (read_n(fd, msg.size()) == msg) ++good;
        ::close(fd);
    }
    CHECK(good == n);
    CHECK(wait_until([&] { return k0.closed + k1.closed == n; }));
    CHECK(k0.accepted > 0);  // the kernel spread them over both listeners
    CHECK(k1.accepted > 0);
    g.request_stop();
    g.wait();
}

TEST_CASE("shard_group: a failing init stops the group and returns its error") {
    shard_options so;
    so.threads = 2;
    so.pin = false;
    so.reactor.ring_entries = 64;
    so.reactor.buffer_count = 16;
    shard_group g(so);
    auto r = g.start([](reactor&, unsigned i) -> sigrelay::result<void> {
        if (i == 1) return sigrelay::make_error("init failed on purpose", -42);
        return sigrelay::ok();
    });
    REQUIRE_FALSE(r.ok());
    CHECK(r.err().code == -42);
    CHECK(r.err().message == "init failed on purpose");
}

TEST_CASE("shard_group::run_until_signal: SIGHUP calls on_hup, SIGTERM stops") {
    shard_group::block_signals();  // before any shard thread exists
    shard_options so;
    so.threads = 1;
    so.pin = false;
    so.reactor.ring_entries = 64;
    so.reactor.buffer_count = 16;
    shard_group g(so);
    REQUIRE(g.start({}).ok());
    std::atomic<int> hups{0};
    pthread_t self = pthread_self();
    std::thread sender([&] {
        pthread_kill(self, SIGHUP);
        wait_until([&] { return hups == 1; });
        pthread_kill(self, SIGTERM);
    });
    int rc = g.run_until_signal([&] { ++hups; });
    sender.join();
    CHECK(rc == 0);
    CHECK(hups == 1);
}

TEST_CASE("reactor_options are validated") {
    reactor_options o;
    o.buffer_count = 100;  // not a power of two
    CHECK_FALSE(reactor::create(o).ok());
    o.buffer_count = 0;
    CHECK_FALSE(reactor::create(o).ok());
}

TEST_CASE("a peer that never reads is cut off by the send timeout") {
    reactor_options o;
    o.send_timeout = 200ms;
    running rr(o);
    struct h_t : connection_handler {
        std::atomic<int> err{1};
        void on_data(connection&, std::span<const char>) override {}
        void on_closed(connection&, int e) override { err = e; }
    } h;
    REQUIRE(rr.r->listen(loopback(),
                         [&](connection& c) {
                             c.send(pattern(32 << 20));  // far more than the socket buffers hold
                             return &h;
                         })
                .ok());
    auto to = rr.r->listening_addresses()[0];
    rr.start();
    int fd = client_connect(to);  // ... and never reads
    CHECK(wait_until([&] { return h.err != 1; }, 10000ms));
    CHECK(h.err == -ETIMEDOUT);
    ::close(fd);
}

TEST_CASE("log lines from several threads come out whole, each once") {
    // Standard error goes to a pipe for the test; two threads log at once.
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    const int saved = ::dup(2);
    REQUIRE(::dup2(fds[1], 2) == 2);
    std::string got;
    std::thread reader([&] {
        char buf[65536];
        ssize_t n;
        while ((n = ::read(fds[0], buf, sizeof buf)) > 0) got.append(buf, static_cast<std::size_t>(n));
    });
    auto writer = [](char tag) {
        for (int i = 0; i < 3000; ++i)
            sigrelay::runtime::log_line(std::string(1, tag) + " line " + std::to_string(i) + " " +
                                        std::string(static_cast<std::size_t>(i % 97), tag));
        sigrelay::runtime::flush_log();
    };
    std::thread a(writer, 'a'), b(writer, 'b');
    a.join();
    b.join();
    ::dup2(saved, 2);
    ::close(saved);
    ::close(fds[1]);
    reader.join();
    ::close(fds[0]);
    std::size_t lines = 0, bad = 0;
    std::size_t start = 0;
    while (start < got.size()) {
        std::size_t nl = got.find('\n', start);
        REQUIRE(nl != std::string::npos);
        std::string_view l(got.data() + start, nl - start);
        char tag = l.empty() ? '?' : l[0];
        // "<tag> line <i> <tag × (i % 97)>": a line of one thread only.
        std::size_t sp = l.rfind(' ');
        int i = std::atoi(std::string(l.substr(7, sp - 7)).c_str());
        if (l.substr(1, 6) != " line " || l.size() - sp - 1 != static_cast<std::size_t>(i % 97) ||
            l.substr(sp + 1).find_first_not_of(tag) != std::string_view::npos)
            ++bad;
        ++lines;
        start = nl + 1;
    }
    CHECK(bad == 0);
    CHECK(lines == 6000);
}
