// Tests of the resolver and the per-shard cache against a scripted DNS server
// (tests/integration/dns_server.py, run as a subprocess on 127.0.0.1) with a real reactor:
// answer order and ports, IP literals, TTLs, negative caching, stale answers while the
// server is silent or failing, shared queries, bounded failures and shutdown. Queries are
// counted in the server's log. Waits are bounded so a bug fails a check instead of hanging.
#include <sigrelay/resolve.hpp>

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <future>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

using namespace sigrelay;
using namespace sigrelay::resolve;
using namespace std::chrono_literals;
using clk = std::chrono::steady_clock;

namespace {

// ---- a reactor on its own thread ------------------------------------------------------

struct running {
    std::unique_ptr<runtime::reactor> r;
    std::thread t;
    std::promise<void> done;
    std::future<void> done_f = done.get_future();
    bool joined = false;

    running() {
        auto x = runtime::reactor::create({});
        REQUIRE_MESSAGE(x.ok(), (x.ok() ? "" : x.err().message));
        r = std::move(*x);
        t = std::thread([this] {
            r->run();
            done.set_value();
        });
    }
    void stop_and_join() {
        if (joined) return;
        r->stop(0ms);
        if (done_f.wait_for(10s) != std::future_status::ready) {
            std::fprintf(stderr, "reactor did not stop within 10 s\n");
            std::_Exit(1);
        }
        t.join();
        joined = true;
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
    ~running() { stop_and_join(); }
};

// ---- the scripted DNS server ------------------------------------------------------------

std::string env_or_fail(const char* name) {
    const char* v = std::getenv(name);
    REQUIRE_MESSAGE(v != nullptr, name << " is not set (run through meson test)");
    return v;
}

struct dns_server {
    std::string dir, zone_path, log_path;
    pid_t pid = -1;
    std::uint16_t port = 0;

    explicit dns_server(const std::string& zone_json) {
        char tmpl[] = "/tmp/sigrelay-dns-XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        dir = tmpl;
        zone_path = dir + "/zone.json";
        log_path = dir + "/queries.log";
        set(zone_json);
        std::ofstream(log_path).close();

        std::string python = env_or_fail("SIGRELAY_PYTHON");
        std::string script = env_or_fail("SIGRELAY_DNS_SERVER");
        int out[2];
        REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, out[1], 1);
        std::vector<std::string> args = {python, script, "--zone", zone_path, "--log", log_path};
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        int rc = ::posix_spawn(&pid, python.c_str(), &fa, nullptr, argv.data(), environ);
        posix_spawn_file_actions_destroy(&fa);
        ::close(out[1]);
        REQUIRE_MESSAGE(rc == 0, "posix_spawn " << python << ": " << std::strerror(rc));

        std::string line;
        auto end = clk::now() + 10s;
        while (line.find('\n') == std::string::npos && clk::now() < end) {
            pollfd p{out[0], POLLIN, 0};
            int n = ::poll(&p, 1, 100);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) continue;
            char buf[64];
            ssize_t got = ::read(out[0], buf, sizeof buf);
            if (got < 0 && errno == EINTR) continue;
            if (got <= 0) break;
            line.append(buf, static_cast<std::size_t>(got));
        }
        ::close(out[0]);
        REQUIRE_MESSAGE(line.find('\n') != std::string::npos, "dns_server.py printed no port");
        port = static_cast<std::uint16_t>(std::stoi(line));
        REQUIRE(port != 0);
    }

    // Replaces the zone atomically: the server re-reads it on every query.
    void set(const std::string& zone_json) const {
        std::string tmp = zone_path + ".tmp";
        {
            std::ofstream f(tmp);
            f << zone_json;
        }
        REQUIRE(std::rename(tmp.c_str(), zone_path.c_str()) == 0);
    }

    std::string address() const { return "127.0.0.1:" + std::to_string(port); }

    // Queries logged for `name` (of one type: "A", "AAAA"; empty: any).
    int count(const std::string& name, const std::string& type = "") const {
        std::ifstream f(log_path);
        std::string l;
        int n = 0;
        while (std::getline(f, l)) {
            std::istringstream s(l);
            std::string qn, qt;
            s >> qn >> qt;
            if (qn == name && (type.empty() || qt == type)) ++n;
        }
        return n;
    }

    ~dns_server() {
        if (pid > 0) {
            ::kill(pid, SIGTERM);
            int st = 0;
            while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
            }
        }
        std::remove(zone_path.c_str());
        std::remove(log_path.c_str());
        std::remove((zone_path + ".tmp").c_str());
        ::rmdir(dir.c_str());
    }
};

// ---- helpers ----------------------------------------------------------------------------

std::unique_ptr<resolver> make_resolver(options o) {
    auto r = resolver::create(std::move(o));
    REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.err().message));
    return std::move(*r);
}

// A cache built, used and destroyed on the reactor thread.
struct shard_cache {
    running& rt;
    std::unique_ptr<cache> c;
    shard_cache(running& on, resolver& res) : rt(on) {
        c = rt.call([&] { return std::make_unique<cache>(res, *rt.r); });
    }
    void reset() {
        if (c) rt.call([this] { c.reset(); });
    }
    ~shard_cache() { reset(); }

    // One lookup, waited for (a hang ends the run: the guard is generous, not a speed check).
    result<answer> get(const std::string& host_port, std::chrono::milliseconds limit = 15s) {
        auto p = std::make_shared<std::promise<result<answer>>>();
        auto f = p->get_future();
        cache* cp = c.get();
        rt.r->post([cp, host_port, p] {
            cp->lookup(host_port, [p](result<answer> a) { p->set_value(std::move(a)); });
        });
        if (f.wait_for(limit) != std::future_status::ready) {
            std::fprintf(stderr, "lookup of %s did not answer within %lld ms\n", host_port.c_str(),
                         static_cast<long long>(limit.count()));
            std::_Exit(1);
        }
        return f.get();
    }
};

std::vector<std::string> strings(const answer& a) {
    std::vector<std::string> v;
    for (const auto& s : a.addresses) v.push_back(s.to_string());
    return v;
}

std::string a_zone(const std::string& name, const std::string& ip, int ttl,
                   const std::string& mode = "answer") {
    return R"({"names": {")" + name + R"(": {"A": [")" + ip + R"("], "ttl": )" +
           std::to_string(ttl) + R"(, "mode": ")" + mode + R"("}}})";
}

void sleep_until(clk::time_point t) {
    std::this_thread::sleep_until(t);
}

options opts_for(const dns_server& s) {
    options o;
    o.servers = {s.address()};
    return o;
}

}  // namespace

// ---- tests ------------------------------------------------------------------------------

TEST_CASE("every A then AAAA address, in answer order, with the lookup's port") {
    dns_server dns(R"({"ttl": 300, "names": {
        "two.test": {"A": ["192.0.2.1", "192.0.2.2"], "AAAA": ["2001:db8::1"]},
        "alias.test": {"CNAME": "two.test", "ttl": 7},
        "v6only.test": {"AAAA": ["2001:db8::6", "2001:db8::5"]},
        "empty.test": {}}})");
    running rt;
    auto res = make_resolver(opts_for(dns));
    shard_cache c(rt, *res);

    auto before = clk::now();
    auto a = c.get("two.test:25");
    REQUIRE_MESSAGE(a.ok(), (a.ok() ? "" : a.err().message));
    CHECK(strings(*a) ==
          std::vector<std::string>{"192.0.2.1:25", "192.0.2.2:25", "[2001:db8::1]:25"});
    CHECK_FALSE(a->stale);
    CHECK(a->expires > before + 290s);
    CHECK(a->expires <= clk::now() + 300s);

    // Same name, other spelling and port: from the cache.
    auto b = c.get("TWO.test.:587");
    REQUIRE(b.ok());
    CHECK(strings(*b) ==
          std::vector<std::string>{"192.0.2.1:587", "192.0.2.2:587", "[2001:db8::1]:587"});
    CHECK(dns.count("two.test", "A") == 1);
    CHECK(dns.count("two.test", "AAAA") == 1);

    // A CNAME's TTL counts: the answer lives for the smallest TTL on the way.
    auto al = c.get("alias.test:25");
    REQUIRE(al.ok());
    CHECK(strings(*al).size() == 3);
    CHECK(al->expires <= clk::now() + 7s);

    auto v6 = c.get("v6only.test:2525");
    REQUIRE(v6.ok());
    CHECK(strings(*v6) == std::vector<std::string>{"[2001:db8::6]:2525", "[2001:db8::5]:2525"});

    auto none = c.get("empty.test:25");
    REQUIRE_FALSE(none.ok());
    CHECK(is(none.err(), errc::no_address));
    CHECK(c.rt.call([&] { return c.c->size(); }) == 4);
}

TEST_CASE("IP literals and malformed input need no server; callbacks never run inside lookup") {
    running rt;
    options o;
    o.servers = {"127.0.0.1:9"};  // nothing answers there
    auto res = make_resolver(o);
    shard_cache c(rt, *res);

    auto v4 = c.get("192.0.2.7:25");
    REQUIRE(v4.ok());
    CHECK(strings(*v4) == std::vector<std::string>{"192.0.2.7:25"});
    CHECK(v4->expires == clk::time_point::max());
    auto v6 = c.get("[2001:db8::7]:2525");
    REQUIRE(v6.ok());
    CHECK(strings(*v6) == std::vector<std::string>{"[2001:db8::7]:2525"});

    // localhost comes from /etc/hosts (or c-ares' RFC 6761 fallback), not from a server.
    auto lh = c.get("localhost:25");
    REQUIRE(lh.ok());
    auto lhs = strings(*lh);
    CHECK(std::find(lhs.begin(), lhs.end(), "127.0.0.1:25") != lhs.end());

    for (const char* bad :
         {"noport", "[::1]", "::1:25", "2001:db8::1:25", "a..b:25", "host:0", "host:65536",
          "host:2x", ":25", "[::1:25", "[192.0.2.1]:25", "bad name:25", "-"}) {
        auto r = c.get(bad);
        CHECK_MESSAGE(!r.ok(), std::string(bad));
        if (!r.ok()) CHECK_MESSAGE(is(r.err(), errc::bad_name), std::string(bad));
    }
    CHECK(c.rt.call([&] { return c.c->size(); }) == 1);  // localhost only

    // The callback of a lookup answered at once still runs later, from post().
    auto inside = std::make_shared<std::atomic<int>>(0);
    auto ran = std::make_shared<std::promise<void>>();
    auto ran_f = ran->get_future();
    bool during = rt.call([&] {
        c.c->lookup("192.0.2.8:25", [inside, ran](result<answer>) {
            inside->store(1);
            ran->set_value();
        });
        return inside->load() == 1;
    });
    CHECK_FALSE(during);
    CHECK(ran_f.wait_for(5s) == std::future_status::ready);

    // Bad options.
    for (const char* s : {"dns.example:53", "1.2.3.4:99999", "[::1]:0", "1.2.3.4:", "[1.2.3.4]"}) {
        options b;
        b.servers = {s};
        CHECK_MESSAGE(!resolver::create(b).ok(), std::string(s));
    }
    options ok_servers;
    ok_servers.servers = {"127.0.0.1", "[::1]:5353", "::1", "192.0.2.53:53"};
    CHECK(resolver::create(ok_servers).ok());
    options zero;
    zero.tries = 0;
    CHECK_FALSE(resolver::create(zero).ok());
}

TEST_CASE("a changed record is seen after its TTL, not before") {
    dns_server dns(a_zone("ttl.test", "192.0.2.10", 2));
    running rt;
    auto o = opts_for(dns);
    o.min_ttl = 1s;
    auto res = make_resolver(o);
    shard_cache c(rt, *res);

    auto first = c.get("ttl.test:25");
    REQUIRE(first.ok());
    CHECK(strings(*first) == std::vector<std::string>{"192.0.2.10:25"});
    auto expires = first->expires;
    CHECK(expires <= clk::now() + 2s);

    dns.set(a_zone("ttl.test", "192.0.2.11", 2));
    auto cached = c.get("ttl.test:25");
    REQUIRE(cached.ok());
    CHECK(strings(*cached) == std::vector<std::string>{"192.0.2.10:25"});
    CHECK_FALSE(cached->stale);
    sleep_until(expires - 800ms);
    auto still = c.get("ttl.test:25");
    REQUIRE(still.ok());
    CHECK(strings(*still) == std::vector<std::string>{"192.0.2.10:25"});
    CHECK(dns.count("ttl.test", "A") == 1);

    sleep_until(expires + 100ms);
    auto fresh = c.get("ttl.test:25");
    REQUIRE(fresh.ok());
    CHECK(strings(*fresh) == std::vector<std::string>{"192.0.2.11:25"});
    CHECK_FALSE(fresh->stale);
    CHECK(dns.count("ttl.test", "A") == 2);
}

TEST_CASE("NXDOMAIN and SERVFAIL are cached negative_ttl: no second query inside it") {
    dns_server dns(R"({"names": {"sf.test": {"A": ["192.0.2.40"], "mode": "servfail"}}})");
    running rt;
    auto o = opts_for(dns);
    o.negative_ttl = 3s;
    auto res = make_resolver(o);
    shard_cache c(rt, *res);

    auto start = clk::now();
    auto nx = c.get("nx.test:25");
    REQUIRE_FALSE(nx.ok());
    CHECK(is(nx.err(), errc::not_found));
    CHECK(dns.count("nx.test") == 2);  // one A and one AAAA question

    auto sf = c.get("sf.test:25");
    REQUIRE_FALSE(sf.ok());
    CHECK(is(sf.err(), errc::server_failure));
    int sf_queries = dns.count("sf.test");
    CHECK(sf_queries == 2 * 2);  // both tries

    // The names appear; inside negative_ttl the cached failures are what lookups get.
    dns.set(R"({"names": {"nx.test": {"A": ["192.0.2.41"]}, "sf.test": {"A": ["192.0.2.40"]}}})");
    for (int i = 0; i < 3; ++i) {
        auto again = c.get("nx.test:25");
        REQUIRE_FALSE(again.ok());
        CHECK(is(again.err(), errc::not_found));
        auto sf2 = c.get("sf.test:25");
        REQUIRE_FALSE(sf2.ok());
        CHECK(is(sf2.err(), errc::server_failure));
    }
    CHECK(dns.count("nx.test") == 2);
    CHECK(dns.count("sf.test") == sf_queries);
    CHECK(clk::now() < start + 3s);  // the checks above ran inside negative_ttl

    sleep_until(start + 3s + 200ms);
    auto found = c.get("nx.test:25");
    REQUIRE(found.ok());
    CHECK(strings(*found) == std::vector<std::string>{"192.0.2.41:25"});
    auto sf3 = c.get("sf.test:25");
    REQUIRE(sf3.ok());
    CHECK(dns.count("nx.test") == 4);
}

TEST_CASE("a silent server after a first answer: stale answers, then fresh ones again") {
    dns_server dns(a_zone("stale.test", "192.0.2.20", 1));
    running rt;
    auto o = opts_for(dns);
    o.timeout = 300ms;
    o.tries = 2;
    o.min_ttl = 1s;
    o.negative_ttl = 1s;  // failure recheck while serving stale
    auto res = make_resolver(o);
    shard_cache c(rt, *res);

    auto first = c.get("stale.test:25");
    REQUIRE(first.ok());
    CHECK_FALSE(first->stale);
    CHECK(dns.count("stale.test") == 2);

    dns.set(a_zone("stale.test", "192.0.2.99", 1, "silent"));
    sleep_until(first->expires + 50ms);
    // Expired: a refresh starts; it goes unanswered, so the old answer comes back stale.
    auto a = c.get("stale.test:25");
    REQUIRE(a.ok());
    CHECK(a->stale);
    CHECK(strings(*a) == std::vector<std::string>{"192.0.2.20:25"});
    CHECK(a->expires == first->expires);
    auto stale_at = clk::now();
    // While that refresh is still going: stale at once, no second query.
    auto b = c.get("stale.test:2525");
    REQUIRE(b.ok());
    CHECK(b->stale);
    CHECK(strings(*b) == std::vector<std::string>{"192.0.2.20:2525"});

    // The refresh fails after its 2 tries; for negative_ttl stale answers need no query.
    sleep_until(stale_at + 500ms);
    CHECK(dns.count("stale.test") == 2 + 2 * 2);
    auto c1 = c.get("stale.test:25");
    REQUIRE(c1.ok());
    CHECK(c1->stale);
    CHECK(dns.count("stale.test") == 2 + 2 * 2);

    // The server answers again (a new address): after the recheck time, a fresh answer.
    dns.set(a_zone("stale.test", "192.0.2.21", 1));
    sleep_until(stale_at + 500ms + 1200ms);
    auto d = c.get("stale.test:25");
    REQUIRE(d.ok());
    CHECK_FALSE(d->stale);
    CHECK(strings(*d) == std::vector<std::string>{"192.0.2.21:25"});
}

TEST_CASE("stale answers end: after max_stale, and at once on NXDOMAIN") {
    dns_server dns(R"({"names": {"old.test": {"A": ["192.0.2.50"], "ttl": 1},
                                  "gone.test": {"A": ["192.0.2.51"], "ttl": 1}}})");
    running rt;
    auto o = opts_for(dns);
    o.timeout = 200ms;
    o.tries = 1;
    o.min_ttl = 1s;
    o.max_stale = 1s;
    o.negative_ttl = 30s;
    auto res = make_resolver(o);
    shard_cache c(rt, *res);

    auto old = c.get("old.test:25");
    REQUIRE(old.ok());
    auto gone = c.get("gone.test:25");
    REQUIRE(gone.ok());
    dns.set(R"({"names": {"old.test": {"A": ["192.0.2.50"], "mode": "silent"},
                          "gone.test": {"A": ["192.0.2.51"], "mode": "nxdomain"}}})");

    // NXDOMAIN is an answer: the name is gone, no stale serving.
    sleep_until(gone->expires + 50ms);
    auto g = c.get("gone.test:25");
    REQUIRE_FALSE(g.ok());
    CHECK(is(g.err(), errc::not_found));

    // Past expires + max_stale the old answer is not served any more.
    sleep_until(old->expires + 1s + 100ms);
    auto r = c.get("old.test:25");
    REQUIRE_FALSE(r.ok());
    CHECK(is(r.err(), errc::timed_out));
}

TEST_CASE("concurrent lookups of one name share one query") {
    dns_server dns(R"({"names": {"conc.test": {"A": ["192.0.2.30"], "delay_ms": 200}}})");
    running rt;
    auto res = make_resolver(opts_for(dns));
    shard_cache c(rt, *res);

    constexpr int n = 10;
    std::vector<std::shared_ptr<std::promise<result<answer>>>> ps;
    std::vector<std::future<result<answer>>> fs;
    for (int i = 0; i < n; ++i) {
        ps.push_back(std::make_shared<std::promise<result<answer>>>());
        fs.push_back(ps.back()->get_future());
    }
    rt.call([&] {
        for (int i = 0; i < n; ++i) {
            auto p = ps[static_cast<std::size_t>(i)];
            c.c->lookup("conc.test:" + std::to_string(2500 + i),
                        [p](result<answer> a) { p->set_value(std::move(a)); });
        }
    });
    for (int i = 0; i < n; ++i) {
        auto& f = fs[static_cast<std::size_t>(i)];
        REQUIRE(f.wait_for(10s) == std::future_status::ready);
        auto a = f.get();
        REQUIRE(a.ok());
        CHECK(strings(*a) == std::vector<std::string>{"192.0.2.30:" + std::to_string(2500 + i)});
    }
    CHECK(dns.count("conc.test", "A") == 1);
    CHECK(dns.count("conc.test", "AAAA") == 1);
}

TEST_CASE("a silent server and a name never resolved: an error after the tries, cached") {
    dns_server dns(R"({"mode": "silent"})");
    running rt;
    auto o = opts_for(dns);
    o.timeout = 300ms;
    o.tries = 2;
    auto res = make_resolver(o);
    shard_cache c(rt, *res);

    auto r = c.get("never.test:25", 10s);  // hang guard only
    REQUIRE_FALSE(r.ok());
    CHECK(is(r.err(), errc::timed_out));
    CHECK(dns.count("never.test") == 2 * 2);
    auto again = c.get("never.test:25");
    REQUIRE_FALSE(again.ok());
    CHECK(is(again.err(), errc::timed_out));
    CHECK(dns.count("never.test") == 2 * 2);
}

TEST_CASE("servers are asked in order: a dead first server, a live second one") {
    dns_server dns(a_zone("two-servers.test", "192.0.2.60", 60));
    // A UDP port with nothing behind it: c-ares gets ECONNREFUSED and moves on.
    int s = ::socket(AF_INET, SOCK_DGRAM, 0);
    REQUIRE(s >= 0);
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(s, reinterpret_cast<sockaddr*>(&sin), sizeof sin) == 0);
    socklen_t len = sizeof sin;
    REQUIRE(::getsockname(s, reinterpret_cast<sockaddr*>(&sin), &len) == 0);
    std::uint16_t dead = ntohs(sin.sin_port);
    ::close(s);

    running rt;
    options o;
    o.servers = {"127.0.0.1:" + std::to_string(dead), dns.address()};
    o.timeout = 500ms;
    auto res = make_resolver(o);
    shard_cache c(rt, *res);
    auto a = c.get("two-servers.test:25");
    REQUIRE_MESSAGE(a.ok(), (a.ok() ? "" : a.err().message));
    CHECK(strings(*a) == std::vector<std::string>{"192.0.2.60:25"});
}

TEST_CASE("shutdown: a destroyed cache gets no callback; a stopped resolver says so") {
    dns_server dns(R"({"names": {"slow.test": {"A": ["192.0.2.70"], "delay_ms": 300},
                                  "cached.test": {"A": ["192.0.2.71"]}}})");
    auto o = opts_for(dns);
    o.timeout = 1000ms;

    SUBCASE("cache destroyed while its query is in flight") {
        running rt;
        auto res = make_resolver(o);
        shard_cache c(rt, *res);
        auto called = std::make_shared<std::atomic<int>>(0);
        rt.call([&] { c.c->lookup("slow.test:25", [called](result<answer>) { ++*called; }); });
        c.reset();
        std::this_thread::sleep_for(600ms);  // the answer arrives meanwhile
        CHECK(called->load() == 0);
        CHECK(dns.count("slow.test", "A") == 1);
    }

    SUBCASE("cache and reactor destroyed (after run() returned), then the answer comes") {
        auto res = make_resolver(o);
        auto called = std::make_shared<std::atomic<int>>(0);
        {
            running rt;
            auto cp = rt.call([&] { return std::make_unique<cache>(*res, *rt.r); });
            rt.call([&] { cp->lookup("slow.test:25", [called](result<answer>) { ++*called; }); });
            rt.stop_and_join();
            cp.reset();  // after run() returned, before the reactor
        }
        std::this_thread::sleep_for(600ms);  // the resolver gets the answer: nowhere to post it
        CHECK(called->load() == 0);
        res.reset();
    }

    SUBCASE("resolver destroyed: queries in flight and later misses fail with stopped") {
        running rt;
        auto res = make_resolver(o);
        shard_cache c(rt, *res);
        auto cached = c.get("cached.test:25");
        REQUIRE(cached.ok());

        auto p = std::make_shared<std::promise<result<answer>>>();
        auto f = p->get_future();
        rt.call([&] {
            c.c->lookup("slow.test:25", [p](result<answer> a) { p->set_value(std::move(a)); });
        });
        res.reset();
        REQUIRE(f.wait_for(5s) == std::future_status::ready);
        auto r = f.get();
        REQUIRE_FALSE(r.ok());
        CHECK(is(r.err(), errc::stopped));

        auto later = c.get("other.test:25");
        REQUIRE_FALSE(later.ok());
        CHECK(is(later.err(), errc::stopped));
        auto still = c.get("cached.test:25");  // the cache outlives its resolver
        REQUIRE(still.ok());
        CHECK(strings(*still) == std::vector<std::string>{"192.0.2.71:25"});
    }
}
