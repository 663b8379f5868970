// resolve: non-blocking name resolution for the outbound leg (smart host names such as
// fabrikam.mail.protection.outlook.com), with a per-shard cache that honours TTLs, caches
// negative answers and serves stale answers while the DNS fails (RFC 8767).
//
// Design: one resolver thread per process runs c-ares with its own poll() loop (c-ares'
// socket-state callback keeps the set of sockets to watch, an eventfd wakes it for new
// queries). Shards hand it queries under a short mutex (only on a cache miss or an expired
// entry, never on a hit) and it posts each outcome back to the asking shard with
// reactor::post(). Driving c-ares on the shard's io_uring instead would need a generic
// "poll this fd" operation in the reactor, which the runtime does not have; a thread keeps
// c-ares entirely off the shards (its /etc/hosts reads and socket calls included), costs one
// mostly idle thread, and resolution is rare next to the cache hits that stay on the shard.
//
// A cache belongs to one shard and is used only on its reactor's thread; every callback runs
// there, through post(), never inside lookup(). Concurrent lookups of one name (any ports)
// share one query (an A and an AAAA question, sent together).
//
// Caching, per name (case-insensitive, one trailing dot ignored; names are absolute: no
// search domains are appended):
//   - An answer is fresh for the minimum TTL of its records (A, AAAA and any CNAME on the
//     way), clamped to [min_ttl, max_ttl]. A fresh answer is served from the cache.
//   - A lookup of an expired answer starts a refresh. If the refresh has not answered within
//     `timeout` (one attempt), the waiting callers get the old answer with stale = true (the
//     refresh goes on and updates the cache when it answers).
//   - A refresh that fails (timeout, SERVFAIL, REFUSED, unreachable server, malformed reply)
//     keeps the old answer: lookups get it with stale = true, without a new query, for
//     `negative_ttl` (RFC 8767's failure recheck timer); the next lookup after that tries
//     again. An answer is served stale for at most `max_stale` past its expiry; after that
//     it is dropped and the failure is what lookups get.
//   - NXDOMAIN and NODATA (the name exists but has no A or AAAA) are answers, not failures:
//     they replace any cached answer at once (no stale serving; the name is gone) and are
//     cached for `negative_ttl`.
//   - A failure with no answer to fall back on is cached for `negative_ttl` too, so a dead
//     DNS costs each name one query (tries x timeout) per negative_ttl, not one per message.
//   - IP literals ("192.0.2.1:25", "[2001:db8::1]:25") are answered without a query and
//     without touching the cache (expires = time_point::max()).
//   - /etc/hosts is read before DNS (c-ares' default lookup order "files, then DNS"), so
//     "localhost:25" needs no server; its answers live min_ttl.
//
// Each query is sent to the servers in order, `tries` times in all when they time out or fail,
// each attempt waiting `timeout` per server: an unanswered name fails within
// tries x servers x timeout (c-ares' own retry doubling is not used). A server that is down
// (ICMP port unreachable) may still cost its timeout: c-ares' connected UDP socket often
// learns of the refusal only on a later send.
//
// Shutdown: destroy every cache before its reactor (on the reactor's thread, or after its
// run() has returned); from then on nothing is posted to that reactor and callbacks already
// posted do not run. Destroying the resolver stops its thread: queries in flight end with
// errc::stopped for the caches still alive, and later lookups of a miss fail the same way.
// A cache may outlive the resolver it was made from.
#pragma once

#include <sigrelay/result.hpp>
#include <sigrelay/runtime.hpp>

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace sigrelay::resolve {

// error::code of a failed lookup.
enum class errc : int {
    not_found = 1,       // NXDOMAIN: the name does not exist
    no_address = 2,      // NODATA: the name exists, with no A or AAAA record
    timed_out = 3,       // no server answered
    server_failure = 4,  // SERVFAIL, REFUSED, connection refused, malformed reply, ...
    bad_name = 5,        // not "host:port", or not a valid host name
    stopped = 6,         // the resolver has been shut down
};
inline bool is(const error& e, errc c) noexcept {
    return e.code == static_cast<int>(c);
}

struct options {
    // "IP:PORT", "[IPv6]:PORT" or a bare IP (port 53), in the order to ask them
    // (--dns-server, repeatable). Empty: the nameservers of /etc/resolv.conf (read once).
    std::vector<std::string> servers;
    std::chrono::milliseconds timeout{2000};  // per query attempt and server
    unsigned tries = 2;                       // attempts per query
    std::chrono::seconds negative_ttl{30};    // NXDOMAIN, NODATA or failure: cached this long
    std::chrono::seconds max_stale{3600};     // serve an expired answer this long past expiry
    std::chrono::seconds min_ttl{5}, max_ttl{3600};
};

struct answer {
    // Every A record, then every AAAA record, each family in the order of the DNS answer,
    // with the port of the lookup. Never empty.
    std::vector<runtime::socket_address> addresses;
    // When the records expire (already past when stale).
    std::chrono::steady_clock::time_point expires;
    bool stale = false;  // served past its TTL because the refresh failed or is slow
};

// Process-wide: owns the c-ares channel and the thread that drives it.
class resolver {
public:
    // Checks the options (servers must be IP literals), sets up c-ares (reading
    // /etc/resolv.conf when no server is given) and starts the thread.
    static result<std::unique_ptr<resolver>> create(options opts);
    ~resolver();  // stops and joins the thread
    resolver(const resolver&) = delete;
    resolver& operator=(const resolver&) = delete;

    const options& config() const noexcept;

    struct core;

private:
    explicit resolver(std::shared_ptr<core> c);
    std::shared_ptr<core> core_;
    friend class cache;
};

// Per shard: built, called and destroyed on its reactor's thread (or destroyed on another
// thread once that reactor's run() has returned, but always before the reactor itself).
class cache {
public:
    cache(resolver& r, runtime::reactor& on);
    ~cache();
    cache(const cache&) = delete;
    cache& operator=(const cache&) = delete;

    // "name:port", "[v6]:port" or "192.0.2.1:port". The callback runs later on this
    // reactor's thread (see the caching rules above); errors carry an errc code.
    void lookup(std::string_view host_port, std::function<void(result<answer>)> cb);

    // Names held (fresh, stale, negative or being resolved).
    std::size_t size() const noexcept;

    struct impl;

private:
    std::shared_ptr<impl> impl_;
};

}  // namespace sigrelay::resolve
