// Per-shard pools of connections to smart hosts: per-destination counts, idle lists and waiters,
// dispatch to idle or new connections, retirement when a destination changes, shutdown.
#include "link.hpp"

#include <sigrelay/outbound.hpp>

#include <algorithm>
#include <cstring>
#include <deque>
#include <unordered_map>
#include <utility>
#include <vector>

namespace sigrelay::outbound {

namespace detail {

struct waiter {
    std::uint64_t ticket = 0;
    acquire_callback cb;
    std::uint64_t timer = 0;
    bool counted_queued = false;
    bool fresh = false;  // only a connection that never carried a transaction
};

struct dest_state {
    destination dest;
    // Addresses a connection could not be made to lately: tried last.
    std::unordered_map<std::string, std::chrono::steady_clock::time_point> avoid_until;
    std::uint64_t generation = 0;  // bumped when the destination changes
    unsigned active = 0;           // connections counted against max_connections
    unsigned starting = 0;         // connecting, setup, probing, resetting: idle soon
    std::vector<link*> idle;       // most recently used last
    std::deque<waiter> waiters;
    bool dispatching = false, again = false, scheduled = false;
};

// What the pool keeps of each connection it made, from start() to on_link_closed().
struct link_slot {
    std::shared_ptr<link> conn;
    dest_state* ds = nullptr;      // destinations live as long as the pool
    std::uint64_t generation = 0;  // ds->generation when the connection was made
    unsigned attempt = 0;          // addresses tried before this one for the same need
};

}  // namespace detail

using detail::dest_state;
using detail::link;
using detail::link_phase;
using detail::link_slot;
using detail::waiter;

namespace {

// Counted against max_connections: everything but a connection on its way out.
bool holds_slot(link_phase p) {
    return p != link_phase::quitting && p != link_phase::closing;
}

// Idle soon unless it fails: a waiter can count on it instead of a new connection.
bool is_starting(link_phase p) {
    return p == link_phase::connecting || p == link_phase::setup || p == link_phase::probing ||
           p == link_phase::resetting;
}

}  // namespace

class pool::impl final : public detail::link_owner {
public:
    impl(runtime::reactor& r, pool_options opts);
    ~impl();

    std::uint64_t acquire(const destination& dest, acquire_callback cb, bool fresh);
    void cancel(std::uint64_t ticket);
    void shutdown();

    const pool_stats& stats() const noexcept { return stats_; }
    const pool_options& options() const noexcept { return opts_; }
    runtime::reactor& reactor() const noexcept { return reactor_; }

    // ---- detail::link_owner ---------------------------------------------------------
    void on_link_phase(link& l, link_phase from, link_phase to) override;
    bool keeps(const link& l) const override;
    std::chrono::milliseconds idle_time(const link& l) const override;
    void on_link_setup_failed(link& l, const smtp::reply& r, const std::string& detail) override;
    void on_link_closed(link& l) override;
    void on_reactor_stopping(link& l) override;

private:
    // The connection's slot, or null when this pool does not hold it.
    link_slot* find(const link* l);
    void leave(dest_state& ds, link* l, link_phase p);
    void enter(dest_state& ds, link* l, link_phase p);
    dest_state& state_for(const destination& d);
    void schedule(dest_state& ds);
    void dispatch(dest_state& ds);
    void start_connect(dest_state& ds, unsigned attempt = 0);
    const runtime::socket_address* pick_address(dest_state& ds) const;
    void hand_out(dest_state& ds, std::deque<waiter>::iterator w, std::shared_ptr<link> l);
    void setup_failed(dest_state& ds, const smtp::reply& r, const std::string& detail,
                      const link* failed = nullptr);
    void fail_waiters(dest_state& ds, const smtp::reply& r, const std::string& detail);

public:
    pool::load load_of(std::string_view key) const {
        auto it = dests_.find(std::string(key));
        if (it == dests_.end()) return {};
        const dest_state& ds = *it->second;
        return {ds.active, static_cast<unsigned>(ds.idle.size()), static_cast<unsigned>(ds.waiters.size())};
    }

private:
    runtime::reactor& reactor_;
    pool_options opts_;
    pool_stats stats_;
    bool shutting_down_ = false;
    std::uint64_t next_ticket_ = 1;
    std::unordered_map<std::string, std::unique_ptr<dest_state>> dests_;
    std::unordered_map<const link*, link_slot> links_;
    std::shared_ptr<int> alive_ = std::make_shared<int>(0);  // guards post()ed work
};

// ---- pool: the public face ----------------------------------------------------------

pool::pool(runtime::reactor& r, pool_options opts)
    : impl_(std::make_unique<impl>(r, std::move(opts))) {}

pool::~pool() = default;

std::uint64_t pool::acquire(const destination& dest, acquire_callback cb, bool fresh) {
    return impl_->acquire(dest, std::move(cb), fresh);
}

void pool::cancel(std::uint64_t ticket) {
    impl_->cancel(ticket);
}

void pool::shutdown() {
    impl_->shutdown();
}

const pool_stats& pool::stats() const noexcept {
    return impl_->stats();
}

pool::load pool::load_of(std::string_view key) const {
    return impl_->load_of(key);
}

const pool_options& pool::options() const noexcept {
    return impl_->options();
}

runtime::reactor& pool::owner() const noexcept {
    return impl_->reactor();
}

// ---- pool::impl ---------------------------------------------------------------------

pool::impl::impl(runtime::reactor& r, pool_options opts) : reactor_(r), opts_(std::move(opts)) {
    if (opts_.max_connections == 0) opts_.max_connections = 1;
    if (opts_.max_messages == 0) opts_.max_messages = 1;
}

pool::impl::~impl() {
    alive_.reset();
    for (auto& [key, ds] : dests_)
        for (auto& w : ds->waiters) reactor_.cancel(w.timer);
    for (auto& [raw, slot] : links_) slot.conn->detach();
    links_.clear();
}

link_slot* pool::impl::find(const link* l) {
    auto it = links_.find(l);
    return it == links_.end() ? nullptr : &it->second;
}

// ---- counts: kept from the links' phase changes only --------------------------------

void pool::impl::leave(dest_state& ds, link* l, link_phase p) {
    if (holds_slot(p)) --ds.active, --stats_.open;
    if (is_starting(p)) --ds.starting;
    if (p == link_phase::idle) {
        std::erase(ds.idle, l);
        --stats_.idle;
    }
}

void pool::impl::enter(dest_state& ds, link* l, link_phase p) {
    if (holds_slot(p)) ++ds.active, ++stats_.open;
    if (is_starting(p)) ++ds.starting;
    if (p == link_phase::idle) {
        ds.idle.push_back(l);
        ++stats_.idle;
    }
}

void pool::impl::on_link_phase(link& l, link_phase from, link_phase to) {
    link_slot* slot = find(&l);
    if (slot == nullptr) return;  // not this pool's: counted nowhere
    leave(*slot->ds, &l, from);
    enter(*slot->ds, &l, to);
    // A connection to hand out, or one on its way out (a slot for a new one): waiters may move.
    if (to == link_phase::idle || !holds_slot(to)) schedule(*slot->ds);
}

bool pool::impl::keeps(const link& l) const {
    auto it = links_.find(&l);
    if (it == links_.end()) return false;
    const dest_state& ds = *it->second.ds;
    return !shutting_down_ && it->second.generation == ds.generation;
}

std::chrono::milliseconds pool::impl::idle_time(const link& l) const {
    // Beyond --pool-size idle ones, a connection waits only briefly: long
    // enough for the next MAIL of a busy client (closing and reopening
    // between a 250 and the next MAIL halves throughput), short enough that
    // the surplus of a burst goes soon after it.
    constexpr std::chrono::milliseconds surplus_grace{2000};
    auto it = links_.find(&l);
    if (it == links_.end()) return opts_.idle_timeout;
    // The link is in the idle list already when this is asked.
    if (it->second.ds->idle.size() <= opts_.max_idle) return opts_.idle_timeout;
    return std::min(opts_.idle_timeout, surplus_grace);
}

void pool::impl::on_link_setup_failed(link& l, const smtp::reply& r, const std::string& detail) {
    if (link_slot* slot = find(&l)) setup_failed(*slot->ds, r, detail, &l);
}

void pool::impl::on_link_closed(link& l) {
    auto it = links_.find(&l);
    if (it == links_.end()) return;
    dest_state& ds = *it->second.ds;
    links_.erase(it);  // the link holds itself until this returns
    schedule(ds);
}

void pool::impl::on_reactor_stopping(link&) {
    shutdown();
}

// ---- waiters and dispatch ------------------------------------------------------------

dest_state& pool::impl::state_for(const destination& d) {
    auto it = dests_.find(d.key);
    if (it == dests_.end()) {
        auto ds = std::make_unique<dest_state>();
        ds->dest = d;
        return *dests_.emplace(d.key, std::move(ds)).first->second;
    }
    dest_state& ds = *it->second;
    if (ds.dest.tls_domain != d.tls_domain || ds.dest.tls != d.tls) {
        // Tenants reloaded with a new smart host name or certificate: the
        // connections made for the old one are retired.
        ds.dest = d;
        ++ds.generation;
        std::vector<link*> idle = ds.idle;  // a copy: each quit() leaves the list
        for (link* l : idle) l->quit();
    } else if (!d.addresses.empty()) {
        // A new DNS answer: new connections use it. Idle connections to an
        // address it no longer gives go (Exchange Online's names rotate and
        // the old address may be going away); busy ones finish first.
        ds.dest.addresses = d.addresses;
        std::vector<link*> gone;
        for (link* l : ds.idle)
            if (std::none_of(d.addresses.begin(), d.addresses.end(), [l](const runtime::socket_address& a) {
                    return a.length == l->address().length &&
                           std::memcmp(&a.storage, &l->address().storage, a.length) == 0;
                }))
                gone.push_back(l);
        for (link* l : gone) l->quit();
    }
    return ds;
}

std::uint64_t pool::impl::acquire(const destination& dest, acquire_callback cb, bool fresh) {
    std::uint64_t ticket = next_ticket_++;
    if (shutting_down_) {
        std::weak_ptr<int> alive = alive_;
        reactor_.post([alive, cb = std::move(cb)] {
            if (alive.expired()) return;
            cb({lease{}, {451, "4.3.2", "The relay is shutting down"}, "pool shut down"});
        });
        return ticket;
    }
    dest_state& ds = state_for(dest);
    waiter w;
    w.ticket = ticket;
    w.cb = std::move(cb);
    w.fresh = fresh;
    std::weak_ptr<int> alive = alive_;
    w.timer = reactor_.after(opts_.acquire_timeout, [this, alive, &ds, ticket] {
        if (alive.expired()) return;
        auto it = std::find_if(ds.waiters.begin(), ds.waiters.end(),
                               [ticket](const waiter& x) { return x.ticket == ticket; });
        if (it == ds.waiters.end()) return;
        acquire_callback done = std::move(it->cb);
        ds.waiters.erase(it);
        ++stats_.acquire_timeouts;
        done({lease{},
              {451, "4.4.5", "No connection to the smart host available in time"},
              "smart host " + (ds.dest.addresses.empty() ? ds.dest.key : ds.dest.addresses.front().to_string()) +
                  ": pool busy"});
    });
    ds.waiters.push_back(std::move(w));
    schedule(ds);
    return ticket;
}

void pool::impl::cancel(std::uint64_t ticket) {
    for (auto& [key, ds] : dests_) {
        auto it = std::find_if(ds->waiters.begin(), ds->waiters.end(),
                               [ticket](const waiter& x) { return x.ticket == ticket; });
        if (it == ds->waiters.end()) continue;
        reactor_.cancel(it->timer);
        ds->waiters.erase(it);
        return;
    }
}

void pool::impl::schedule(dest_state& ds) {
    // Dispatch on a fresh stack: callbacks never run inside the call (acquire,
    // release) that made a connection or a slot available.
    if (ds.scheduled) return;
    ds.scheduled = true;
    std::weak_ptr<int> alive = alive_;
    reactor_.post([this, alive, &ds] {
        if (alive.expired()) return;
        ds.scheduled = false;
        dispatch(ds);
    });
}

void pool::impl::dispatch(dest_state& ds) {
    if (ds.dispatching) {
        ds.again = true;
        return;
    }
    ds.dispatching = true;
    do {
        ds.again = false;
        // Idle connections to the waiters, in order; a waiter that wants a
        // fresh connection lets the ones behind it take the reused ones.
        bool progress = true;
        while (progress && !ds.waiters.empty() && !shutting_down_) {
            progress = false;
            for (auto w = ds.waiters.begin(); w != ds.waiters.end() && !progress; ++w) {
                for (auto it = ds.idle.rbegin(); it != ds.idle.rend(); ++it) {
                    link* l = *it;
                    if (w->fresh && !l->fresh()) continue;
                    link_slot* slot = find(l);
                    if (slot == nullptr) {
                        // Not reachable (a link leaves the idle list before its slot goes);
                        // were it so, drop the entry rather than hand out a connection
                        // nobody holds.
                        leave(ds, l, link_phase::idle);
                    } else if (l->needs_probe()) {
                        l->probe();
                    } else {
                        hand_out(ds, w, slot->conn);
                    }
                    progress = true;
                    break;
                }
            }
        }
        // New connections for the waiters nothing starting will serve.
        while (!shutting_down_ && ds.waiters.size() > ds.starting) {
            if (ds.active >= opts_.max_connections) {
                for (auto& w : ds.waiters) {
                    if (w.counted_queued) continue;
                    w.counted_queued = true;
                    ++stats_.queued;
                }
                break;
            }
            const std::size_t before = ds.waiters.size();
            start_connect(ds);
            if (ds.waiters.size() < before) break;  // it failed at once: the waiter has its answer
        }
    } while (ds.again);
    ds.dispatching = false;
}

const runtime::socket_address* pool::impl::pick_address(dest_state& ds) const {
    if (ds.dest.addresses.empty()) return nullptr;
    const auto now = std::chrono::steady_clock::now();
    for (const auto& a : ds.dest.addresses) {
        auto it = ds.avoid_until.find(a.to_string());
        if (it == ds.avoid_until.end() || it->second <= now) return &a;
    }
    // Every address failed lately: try them again, in order.
    ds.avoid_until.clear();
    return &ds.dest.addresses.front();
}

void pool::impl::start_connect(dest_state& ds, unsigned attempt) {
    const runtime::socket_address* address = pick_address(ds);
    if (address == nullptr) {
        ++stats_.connect_failures;
        setup_failed(ds, {451, "4.4.1", "Cannot connect to the smart host"},
                     "smart host " + ds.dest.key + ": no address");
        return;
    }
    auto l = std::make_shared<link>(*this, stats_, reactor_, ds.dest, *address, opts_);
    link* raw = l.get();
    ++stats_.connects;
    // Held before start(): its first phase change is counted like every other.
    links_.emplace(raw, link_slot{std::move(l), &ds, ds.generation, attempt});
    if (auto r = raw->start(); !r) {
        ++stats_.connect_failures;
        const std::string detail = "smart host " + address->to_string() + ": " + r.err().message;
        setup_failed(ds, {451, "4.4.1", "Cannot connect to the smart host"}, detail, raw);
        links_.erase(raw);  // never connected, nothing counted
    }
}

void pool::impl::hand_out(dest_state& ds, std::deque<waiter>::iterator it, std::shared_ptr<link> l) {
    waiter w = std::move(*it);
    ds.waiters.erase(it);
    reactor_.cancel(w.timer);
    l->lease_out();
    ++stats_.leases;
    if (l->reused()) ++stats_.reuses;
    w.cb({lease(std::move(l)), {}, {}});
}

void pool::impl::setup_failed(dest_state& ds, const smtp::reply& r, const std::string& detail,
                              const link* failed) {
    if (failed != nullptr && !failed->connected()) {
        // The address did not take the connection (refused, unreachable, no
        // answer): avoid it for a while and try the next one for the same
        // waiter, before anyone is told (RFC 5321 §5.1: try the addresses).
        ds.avoid_until[failed->address().to_string()] =
            std::chrono::steady_clock::now() + std::chrono::seconds(30);
        const link_slot* slot = find(failed);
        const unsigned attempt = slot ? slot->attempt + 1 : 1;
        if (attempt < ds.dest.addresses.size() && !ds.waiters.empty() && !shutting_down_) {
            start_connect(ds, attempt);
            return;
        }
    }
    if (!ds.waiters.empty()) {
        waiter w = std::move(ds.waiters.front());
        ds.waiters.pop_front();
        reactor_.cancel(w.timer);
        w.cb({lease{}, r, detail});
    }
    // Nothing else open to this smart host: it looks down, so the other
    // waiters get the same answer now instead of one connect timeout each.
    if (ds.active == 0) fail_waiters(ds, r, detail);
    schedule(ds);
}

void pool::impl::fail_waiters(dest_state& ds, const smtp::reply& r, const std::string& detail) {
    std::deque<waiter> waiters;
    waiters.swap(ds.waiters);
    for (auto& w : waiters) {
        reactor_.cancel(w.timer);
        w.cb({lease{}, r, detail});
    }
}

void pool::impl::shutdown() {
    if (shutting_down_) return;
    shutting_down_ = true;
    for (auto& [key, ds] : dests_)
        fail_waiters(*ds, {451, "4.3.2", "The relay is shutting down"}, "pool shut down");
    std::vector<std::shared_ptr<link>> all;
    all.reserve(links_.size());
    for (auto& [raw, slot] : links_) all.push_back(slot.conn);
    for (auto& l : all) {
        switch (l->phase()) {
            case link_phase::idle:
                l->quit();
                break;
            case link_phase::leased:
            case link_phase::quitting:
            case link_phase::closing:
                break;  // leased: QUIT on release
            default:
                l->close_now();
                break;
        }
    }
}

}  // namespace sigrelay::outbound
