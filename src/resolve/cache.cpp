// The per-shard cache: fresh, stale and negative entries, shared queries, and the timer that
// releases waiters with a stale answer when a refresh is slow. Runs only on its reactor's
// thread; the resolver thread reaches it through the sink and a weak pointer.
#include "internal.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <optional>
#include <unordered_map>
#include <utility>

namespace sigrelay::resolve {

using clock = std::chrono::steady_clock;

namespace {

struct waiter {
    std::uint16_t port = 0;
    std::function<void(result<answer>)> cb;
};

struct entry {
    // The last good answer, ports 0; empty when there is none (or it is too old to serve).
    std::vector<runtime::socket_address> addresses;
    clock::time_point expires{};
    // NXDOMAIN, NODATA, or a failure with no answer to fall back on.
    std::optional<error> negative;
    clock::time_point negative_until{};
    // A refresh failed: serve the stale answer without a new query until then.
    clock::time_point retry_after{};
    // The query in flight, if any.
    bool in_flight = false;
    bool stale_released = false;  // its stale timer fired: later lookups get the stale answer
    std::uint64_t stale_timer = 0;
    std::vector<waiter> waiters;
};

answer with_port(const std::vector<runtime::socket_address>& addrs, std::uint16_t port,
                 clock::time_point expires, bool stale) {
    answer a;
    a.addresses = addrs;
    for (auto& s : a.addresses) {
        if (s.family() == AF_INET) {
            reinterpret_cast<sockaddr_in*>(&s.storage)->sin_port = htons(port);
        } else {
            reinterpret_cast<sockaddr_in6*>(&s.storage)->sin6_port = htons(port);
        }
    }
    a.expires = expires;
    a.stale = stale;
    return a;
}

}  // namespace

struct cache::impl : std::enable_shared_from_this<cache::impl> {
    std::shared_ptr<resolver::core> core;
    options opts;
    runtime::reactor& r;
    std::shared_ptr<detail::sink> sink;
    std::unordered_map<std::string, entry> entries;
    std::size_t sweep_at = 1024;
    // Callbacks answered from the cache, run by one posted drain.
    std::vector<std::function<void()>> ready;
    bool drain_posted = false;

    impl(std::shared_ptr<resolver::core> c, runtime::reactor& on)
        : core(std::move(c)), opts(detail::config_of(*core)), r(on) {}

    bool stale_usable(const entry& e, clock::time_point now) const {
        return !e.addresses.empty() && now < e.expires + opts.max_stale;
    }

    void later(std::function<void()> fn) {
        ready.push_back(std::move(fn));
        if (drain_posted) return;
        drain_posted = true;
        r.post([w = weak_from_this()] {
            if (auto self = w.lock()) self->drain();
        });
    }

    void drain() {
        drain_posted = false;
        std::vector<std::function<void()>> now;
        now.swap(ready);
        for (auto& fn : now) fn();  // may queue more: a new drain is posted
    }

    void answer_later(std::function<void(result<answer>)> cb, result<answer> a) {
        later([cb = std::move(cb), a = std::move(a)]() mutable { cb(std::move(a)); });
    }

    void sweep(clock::time_point now) {
        for (auto it = entries.begin(); it != entries.end();) {
            const entry& e = it->second;
            bool dead =
                !e.in_flight && !stale_usable(e, now) && (!e.negative || now >= e.negative_until);
            it = dead ? entries.erase(it) : std::next(it);
        }
        sweep_at = std::max<std::size_t>(1024, entries.size() * 2);
    }

    void lookup(std::string_view host_port, std::function<void(result<answer>)> cb) {
        auto hp = detail::parse_host_port(host_port);
        if (!hp) return answer_later(std::move(cb), std::move(hp).err());
        if (hp->literal) {
            answer a;
            a.addresses.push_back(hp->address);
            a.expires = clock::time_point::max();
            return answer_later(std::move(cb), std::move(a));
        }
        auto now = clock::now();
        if (entries.size() >= sweep_at) sweep(now);
        entry& e = entries[hp->name];
        if (!e.addresses.empty() && now < e.expires) {
            return answer_later(std::move(cb), with_port(e.addresses, hp->port, e.expires, false));
        }
        if (e.negative && now < e.negative_until) return answer_later(std::move(cb), *e.negative);
        if (e.in_flight) {
            if (e.stale_released && stale_usable(e, now)) {
                return answer_later(std::move(cb),
                                    with_port(e.addresses, hp->port, e.expires, true));
            }
            e.waiters.push_back(waiter{hp->port, std::move(cb)});
            return;
        }
        if (stale_usable(e, now) && now < e.retry_after) {
            return answer_later(std::move(cb), with_port(e.addresses, hp->port, e.expires, true));
        }
        // Ask: a miss, an expired answer, or a negative entry past its time.
        if (!stale_usable(e, now)) e.addresses.clear();
        e.negative.reset();
        e.in_flight = true;
        e.stale_released = false;
        e.waiters.push_back(waiter{hp->port, std::move(cb)});
        if (!e.addresses.empty()) {
            e.stale_timer = r.after(opts.timeout, [w = weak_from_this(), name = hp->name] {
                if (auto self = w.lock()) self->on_stale_timer(name);
            });
        }
        detail::submit(*core, hp->name, sink);
    }

    void on_stale_timer(const std::string& name) {
        auto it = entries.find(name);
        if (it == entries.end()) return;
        entry& e = it->second;
        e.stale_timer = 0;
        if (!e.in_flight) return;
        e.stale_released = true;
        auto now = clock::now();
        if (!stale_usable(e, now)) return;  // past max_stale: wait for the outcome
        std::vector<waiter> ws = std::move(e.waiters);
        e.waiters.clear();
        std::vector<runtime::socket_address> addrs = e.addresses;
        auto expires = e.expires;
        // Not an entry reference from here on: a callback may look up (and sweep).
        for (auto& w : ws) w.cb(with_port(addrs, w.port, expires, true));
    }

    void on_outcome(const std::string& name, result<detail::found> outcome) {
        auto it = entries.find(name);
        if (it == entries.end() || !it->second.in_flight) return;
        entry& e = it->second;
        e.in_flight = false;
        e.stale_released = false;
        if (e.stale_timer != 0) {
            r.cancel(e.stale_timer);
            e.stale_timer = 0;
        }
        auto now = clock::now();
        std::vector<waiter> ws = std::move(e.waiters);
        e.waiters.clear();

        std::optional<error> failed;
        bool stale = false;
        if (outcome) {
            e.addresses = std::move(outcome->addresses);
            e.expires = now + outcome->ttl;
            e.retry_after = {};
        } else {
            const error& err = outcome.err();
            bool definitive =
                is(err, errc::not_found) || is(err, errc::no_address) || is(err, errc::bad_name);
            bool stopped = is(err, errc::stopped);
            if (!definitive && stale_usable(e, now)) {
                // RFC 8767: keep serving the expired answer; ask again after negative_ttl.
                if (!stopped) e.retry_after = now + opts.negative_ttl;
                stale = true;
            } else {
                e.addresses.clear();
                if (!stopped) {
                    e.negative = err;
                    e.negative_until = now + opts.negative_ttl;
                }
                failed = err;
            }
        }
        std::vector<runtime::socket_address> addrs = e.addresses;
        auto expires = e.expires;
        // Not an entry reference from here on: a callback may look up (and sweep).
        for (auto& w : ws) {
            if (failed) {
                w.cb(*failed);
            } else {
                w.cb(with_port(addrs, w.port, expires, stale));
            }
        }
    }
};

void detail::deliver_outcome(const std::weak_ptr<cache::impl>& owner, const std::string& name,
                             result<found> outcome) {
    if (auto self = owner.lock()) self->on_outcome(name, std::move(outcome));
}

cache::cache(resolver& res, runtime::reactor& on) : impl_(std::make_shared<impl>(res.core_, on)) {
    impl_->sink = std::make_shared<detail::sink>();
    impl_->sink->to = &on;
    impl_->sink->owner = impl_;
}

cache::~cache() {
    std::lock_guard<std::mutex> g(impl_->sink->m);
    impl_->sink->to = nullptr;
}

void cache::lookup(std::string_view host_port, std::function<void(result<answer>)> cb) {
    impl_->lookup(host_port, std::move(cb));
}

std::size_t cache::size() const noexcept {
    return impl_->entries.size();
}

// ---- "host:port" --------------------------------------------------------------------

namespace {

bool parse_port(std::string_view s, std::uint16_t& out) {
    if (s.empty() || s.size() > 5) return false;
    unsigned v = 0;
    for (char c : s) {
        if (c < '0' || c > '9') return false;
        v = v * 10 + static_cast<unsigned>(c - '0');
    }
    if (v == 0 || v > 65535) return false;
    out = static_cast<std::uint16_t>(v);
    return true;
}

// Lowercase, without one trailing dot; labels of letters, digits, '-' and '_'.
bool normalize_name(std::string_view host, std::string& out) {
    if (!host.empty() && host.back() == '.') host.remove_suffix(1);
    if (host.empty() || host.size() > 253) return false;
    out.clear();
    out.reserve(host.size());
    std::size_t label = 0;
    for (char c : host) {
        if (c == '.') {
            if (label == 0) return false;
            label = 0;
        } else {
            bool okc = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                       c == '-' || c == '_';
            if (!okc || ++label > 63) return false;
            if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
        }
        out.push_back(c);
    }
    return label != 0;
}

}  // namespace

result<detail::host_port> detail::parse_host_port(std::string_view text,
                                                  std::uint16_t default_port) {
    auto bad = [&](const char* why) {
        return make(errc::bad_name, "\"" + std::string(text) + "\": " + why);
    };
    host_port hp;
    std::string_view host;
    std::string_view port;
    bool has_port = false;
    bool bracketed = false;
    if (!text.empty() && text.front() == '[') {
        auto close = text.find(']');
        if (close == std::string_view::npos) return bad("missing ']'");
        host = text.substr(1, close - 1);
        std::string_view rest = text.substr(close + 1);
        if (!rest.empty()) {
            if (rest.front() != ':') return bad("expected ':port' after ']'");
            port = rest.substr(1);
            has_port = true;
        }
        bracketed = true;
    } else {
        auto colon = text.rfind(':');
        if (colon != std::string_view::npos && text.find(':') != colon) {
            host = text;  // several colons: a bare IPv6 address (allowed without a port only)
        } else if (colon != std::string_view::npos) {
            host = text.substr(0, colon);
            port = text.substr(colon + 1);
            has_port = true;
        } else {
            host = text;
        }
    }
    if (host.empty()) return bad("no host");
    if (has_port) {
        if (!parse_port(port, hp.port)) return bad("port must be 1-65535");
    } else if (default_port != 0) {
        hp.port = default_port;
    } else {
        return bad("expected host:port");
    }

    std::string h(host);
    in6_addr a6{};
    in_addr a4{};
    if (inet_pton(AF_INET6, h.c_str(), &a6) == 1) {
        if (!bracketed && has_port) return bad("an IPv6 address needs brackets: [addr]:port");
        sockaddr_in6 sin6{};
        sin6.sin6_family = AF_INET6;
        sin6.sin6_addr = a6;
        sin6.sin6_port = htons(hp.port);
        hp.address =
            runtime::socket_address::from(reinterpret_cast<const sockaddr*>(&sin6), sizeof sin6);
        hp.literal = true;
        return hp;
    }
    if (bracketed) return bad("not an IPv6 address inside [ ]");
    if (host.find(':') != std::string_view::npos) return bad("expected host:port");
    if (inet_pton(AF_INET, h.c_str(), &a4) == 1) {
        sockaddr_in sin{};
        sin.sin_family = AF_INET;
        sin.sin_addr = a4;
        sin.sin_port = htons(hp.port);
        hp.address =
            runtime::socket_address::from(reinterpret_cast<const sockaddr*>(&sin), sizeof sin);
        hp.literal = true;
        return hp;
    }
    if (!normalize_name(host, hp.name)) return bad("not a valid host name");
    return hp;
}

}  // namespace sigrelay::resolve
