// Per-shard pools of SMTP client connections to smart hosts: connection set-up
// (greeting, EHLO, STARTTLS, EHLO), leases bound to one transaction, reuse with
// RSET between transactions, retirement, and the mapping of every failure of
// ours to a 4yz reply (docs/behaviour.md, Delivery and Outbound).
#include <sigrelay/outbound.hpp>
#include <sigrelay/transport.hpp>

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <utility>
#include <vector>

namespace sigrelay::outbound {

namespace detail {

namespace {

constexpr std::uint64_t command_timer = 1;  // set-up, each pending command, QUIT
constexpr std::uint64_t idle_timer = 2;
constexpr std::chrono::milliseconds quit_timeout{10'000};

bool is_ip_literal(const std::string& name) {
    in6_addr a6;
    in_addr a4;
    return inet_pton(AF_INET, name.c_str(), &a4) == 1 ||
           inet_pton(AF_INET6, name.c_str(), &a6) == 1;
}

bool same_address(const runtime::socket_address& a, const runtime::socket_address& b) {
    return a.length == b.length && std::memcmp(&a.storage, &b.storage, a.length) == 0;
}

// A reply of the smart host that ended the set-up, as the client's answer to
// MAIL FROM: 5yz stays 5yz (docs/behaviour.md, Delivery); 421 concerns our connection, not the
// client's, so it becomes 451.
smtp::reply setup_reply(const smtp::reply& r) {
    smtp::reply out = r;
    if (out.code == 421 || out.code < 400) out.code = 451;
    if (out.enhanced.empty() || out.enhanced[0] != static_cast<char>('0' + out.code / 100))
        out.enhanced = out.code >= 500 ? "5.0.0" : "4.4.1";
    return out;
}

}  // namespace

enum class phase {
    connecting,  // TCP connect in flight
    setup,       // greeting, EHLO, STARTTLS, EHLO
    probing,     // NOOP before reuse of a long-idle connection
    idle,        // in the pool, ready
    leased,      // bound to a transaction
    resetting,   // RSET after an unfinished transaction
    quitting,    // QUIT sent, no longer counted against pool_size
    closing,     // closed or failed; waiting for on_closed
};

namespace {

const char* name(phase p) {
    switch (p) {
        case phase::connecting:
            return "connecting";
        case phase::setup:
            return "setup";
        case phase::probing:
            return "probing";
        case phase::idle:
            return "idle";
        case phase::leased:
            return "leased";
        case phase::resetting:
            return "resetting";
        case phase::quitting:
            return "quitting";
        case phase::closing:
            return "closing";
    }
    return "?";
}

}  // namespace

struct waiter {
    std::uint64_t ticket = 0;
    acquire_callback cb;
    std::uint64_t timer = 0;
    bool counted_queued = false;
};

struct dest_state {
    destination dest;
    std::uint64_t generation = 0;  // bumped when the destination changes
    unsigned active = 0;           // connections counted against pool_size
    unsigned starting = 0;         // connecting, setup, probing, resetting: idle soon
    std::vector<link*> idle;       // most recently used last
    std::deque<waiter> waiters;
    bool dispatching = false, again = false, scheduled = false;
};

// One connection to a smart host: transport stream + SMTP client session.
class link final : public transport::stream_events,
                   public smtp::client_events,
                   public std::enable_shared_from_this<link> {
public:
    link(pool& p, dest_state& ds, const pool_options& o)
        : pool_(&p),
          ds_(&ds),
          reactor_(&p.owner()),
          opts_(o),
          generation_(ds.generation),
          tls_(ds.dest.tls),
          verify_name_(ds.dest.tls_domain.empty() ? ds.dest.address.ip_string()
                                                  : ds.dest.tls_domain),
          peer_(ds.dest.address.to_string()),
          session_(make_config(o, ds.dest.tls != nullptr), *this) {}

    static smtp::client_config make_config(const pool_options& o, bool tls) {
        smtp::client_config c;
        c.helo_name = o.helo_name;
        c.tls = tls ? smtp::tls_mode::required : smtp::tls_mode::none;
        c.use_chunking = o.use_chunking;
        return c;
    }

    result<void> start() {
        auto c = reactor_->connect(ds_->dest.address, nullptr, opts_.connect_timeout);
        if (!c) return c.err();
        stream_ = std::make_unique<transport::stream>(**c, *this);
        conn_id_ = (*c)->id();
        set_phase(phase::connecting);
        return {};
    }

    // ---- phase changes: the one place that keeps the pool's counts -----------
    void set_phase(phase p) {
        if (p == phase_) return;
        auto counted = [](phase x) { return x != phase::quitting && x != phase::closing; };
        auto starting = [](phase x) {
            return x == phase::connecting || x == phase::setup || x == phase::probing ||
                   x == phase::resetting;
        };
        if (ds_ != nullptr && pool_ != nullptr) {
            pool_stats& st = pool_->stats_;
            if (counted(phase_)) --ds_->active, --st.open;
            if (starting(phase_)) --ds_->starting;
            if (phase_ == phase::idle) {
                std::erase(ds_->idle, this);
                --st.idle;
            }
            if (counted(p)) ++ds_->active, ++st.open;
            if (starting(p)) ++ds_->starting;
            if (p == phase::idle) {
                ds_->idle.push_back(this);
                ++st.idle;
            }
        }
        phase_ = p;
    }

    // ---- pool side ---------------------------------------------------------------
    void become_idle() {
        stream_->cancel_timer(command_timer);
        if (pool_->shutting_down_ || generation_ != ds_->generation) return quit();
        if (messages_ >= opts_.max_messages) {
            ++pool_->stats_.retired_max_messages;
            return quit();
        }
        set_phase(phase::idle);
        idle_since_ = std::chrono::steady_clock::now();
        stream_->set_timer(idle_timer, opts_.idle_timeout);
        pool_->schedule(*ds_);
    }

    bool needs_probe() const {
        return !probed_ && std::chrono::steady_clock::now() - idle_since_ > opts_.probe_after;
    }

    void probe() {
        ++pool_->stats_.probes;
        stream_->cancel_timer(idle_timer);
        set_phase(phase::probing);
        session_.noop();
        stream_->set_timer(command_timer, std::min(opts_.command_timeout, opts_.connect_timeout));
    }

    void lease_out() {
        stream_->cancel_timer(idle_timer);
        set_phase(phase::leased);
        probed_ = false;
        reused_ = messages_ > 0;
        events_ = nullptr;
    }

    // Graceful retirement: QUIT, then close on its reply (or after a bound).
    void quit() {
        if (phase_ == phase::quitting || phase_ == phase::closing) return;
        set_phase(phase::quitting);
        stream_->cancel_timer(idle_timer);
        if (!session_.ready()) {
            stream_->close();
            return;
        }
        session_.quit();
        stream_->set_timer(command_timer, std::min(opts_.command_timeout, quit_timeout));
        if (pool_ != nullptr && ds_ != nullptr) pool_->schedule(*ds_);  // a slot is free
    }

    void close_now() {
        if (phase_ == phase::closing) return;
        set_phase(phase::closing);
        stream_->abort();
        if (pool_ != nullptr && ds_ != nullptr) pool_->schedule(*ds_);
    }

    // The pool is going away: no callback may reach it any more.
    void detach() {
        if (stream_ && !closed_) {
            stream_->conn().set_handler(nullptr);
            stream_->conn().abort();
        }
        closed_ = true;
        broken_ = true;
        phase_ = phase::closing;
        pool_ = nullptr;
        ds_ = nullptr;
        events_ = nullptr;
    }

    // ---- lease side --------------------------------------------------------------
    void issue(smtp::command_kind kind, std::string_view a, std::string_view params,
               std::string content = {}) {
        if (phase_ != phase::leased) {
            defer_failure(kind);
            return;
        }
        pending_.push_back(kind);
        if (pending_.size() == 1) arm_command_timer();
        switch (kind) {
            case smtp::command_kind::mail:
                ++messages_;
                dirty_ = true;
                ++pool_->stats_.transactions;
                session_.mail(a, params);
                break;
            case smtp::command_kind::rcpt:
                session_.rcpt(a, params);
                break;
            case smtp::command_kind::data:
                contents_.push_back(std::move(content));
                session_.data(contents_.back());
                break;
            default:
                break;
        }
    }

    void release(bool reusable) {
        events_ = nullptr;
        if (phase_ != phase::leased || pool_ == nullptr) return;  // failed already
        if (!pending_.empty()) {
            // Replies still outstanding: where the server stands is unknown,
            // and a message half sent must not be completed behind our back.
            close_now();
            return;
        }
        if (!reusable) {
            quit();
            return;
        }
        if (dirty_ && !pool_->shutting_down_ && generation_ == ds_->generation &&
            messages_ < opts_.max_messages) {
            // RFC 5321 §4.1.1.5: abandon the unfinished transaction first.
            ++pool_->stats_.resets;
            set_phase(phase::resetting);
            session_.rset();
            stream_->set_timer(command_timer, opts_.command_timeout);
            return;
        }
        become_idle();
    }

    // A failure in the middle of a lease: every pending command gets `r`.
    void break_lease(const smtp::reply& r) {
        if (phase_ != phase::leased) return;
        broken_ = true;
        ++pool_->stats_.broken;
        set_phase(phase::closing);
        stream_->cancel_timer(command_timer);
        stream_->cancel_timer(idle_timer);
        pool_->schedule(*ds_);
        // Contents stay alive: the client session may still point into them.
        while (!pending_.empty()) {
            smtp::command_kind kind = pending_.front();
            pending_.pop_front();
            if (events_ != nullptr) events_->on_reply(kind, r);
        }
    }

    // A command on a lease that cannot carry it: 451 4.4.2, later (never
    // inside the caller's call).
    void defer_failure(smtp::command_kind kind) {
        if (events_ == nullptr || pool_ == nullptr) return;
        ++deferred_;
        std::weak_ptr<link> self = weak_from_this();
        reactor_->post([self, kind] {
            auto l = self.lock();
            if (!l) return;
            --l->deferred_;
            if (l->events_ != nullptr)
                l->events_->on_reply(kind, {451, "4.4.2", "Connection to the smart host was lost"});
        });
    }

    void arm_command_timer() {
        if (pending_.empty()) {
            stream_->cancel_timer(command_timer);
            return;
        }
        bool data = pending_.front() == smtp::command_kind::data;
        stream_->set_timer(command_timer, data ? opts_.data_timeout : opts_.command_timeout);
    }

    // ---- set-up failures ---------------------------------------------------------
    void fail_setup(const smtp::reply& r, std::string detail) {
        if (phase_ != phase::connecting && phase_ != phase::setup) return;
        ++pool_->stats_.connect_failures;
        set_phase(phase::closing);
        if (!closed_) stream_->close();
        pool_->setup_failed(*ds_, r, "smart host " + peer_ + ": " + detail);
    }

    // ---- transport::stream_events -----------------------------------------------
    void on_connected(transport::stream& s, int err) override {
        if (pool_ == nullptr) return;
        if (err < 0) {
            fail_setup({451, "4.4.1", "Cannot connect to the smart host"},
                       err == -ETIMEDOUT ? "connect timed out" : std::strerror(-err));
            return;
        }
        set_phase(phase::setup);
        s.set_timer(command_timer, opts_.connect_timeout);
    }

    void on_plain(transport::stream&, std::span<const char> bytes) override {
        if (pool_ == nullptr || phase_ == phase::closing) return;
        auto keep = shared_from_this();  // callbacks may release the last lease
        session_.feed(bytes);
    }

    void on_tls_ready(transport::stream& s) override {
        if (pool_ == nullptr) return;
        if (const tls::peer_info* info = s.tls_info(); info != nullptr && info->resumed)
            ++pool_->stats_.tls_resumed;
        session_.tls_started();
    }

    void on_timer(transport::stream&, std::uint64_t tag) override {
        if (pool_ == nullptr) return;
        auto keep = shared_from_this();
        if (tag == idle_timer) {
            if (phase_ == phase::idle) {
                ++pool_->stats_.retired_idle;
                quit();
            }
            return;
        }
        switch (phase_) {
            case phase::connecting:
            case phase::setup:
                fail_setup({451, "4.4.1", "The smart host did not answer in time"},
                           std::string("timeout during ") + name(phase_));
                return;
            case phase::leased:
                ++pool_->stats_.timeouts;
                break_lease({421, "4.4.2", "Timeout waiting for the smart host"});
                stream_->abort();
                return;
            case phase::idle:
                return;
            default:
                close_now();
                return;
        }
    }

    void on_shutdown(transport::stream&) override {
        // The shard stops: what is leased finishes (bounded by the drain),
        // everything else goes now.
        if (pool_ != nullptr) pool_->shutdown();
    }

    void on_closed(transport::stream&, int err, const std::string& tls_error) override {
        closed_ = true;
        if (pool_ == nullptr) return;
        auto keep = shared_from_this();
        switch (phase_) {
            case phase::connecting:
            case phase::setup:
                if (!tls_error.empty())
                    fail_setup({451, "4.4.1", "TLS with the smart host failed"},
                               "TLS: " + tls_error);
                else
                    fail_setup({451, "4.4.1", "The smart host closed the connection"},
                               err < 0 ? std::strerror(-err) : "connection closed during set-up");
                break;
            case phase::idle:
            case phase::probing:
                ++pool_->stats_.dropped_idle;
                break;
            case phase::leased:
                break_lease({451, "4.4.2",
                             tls_error.empty() ? "Connection to the smart host was lost"
                                               : "TLS with the smart host failed"});
                break;
            default:
                break;
        }
        set_phase(phase::closing);
        pool_->link_closed(this);  // may free this link: nothing after
    }

    // ---- smtp::client_events -------------------------------------------------------
    void send(std::string_view bytes) override {
        if (!closed_ && phase_ != phase::closing) stream_->write(bytes);
    }

    void start_tls() override {
        // An IP literal is verified against an IP SAN and never sent as SNI
        // (RFC 6066 §3).
        std::string sni = is_ip_literal(verify_name_) ? std::string() : verify_name_;
        if (auto r = stream_->start_tls_client(*tls_, sni, verify_name_); !r)
            fail_setup({451, "4.4.1", "TLS with the smart host failed"}, "TLS: " + r.err().message);
    }

    void on_ready(const smtp::server_capabilities&) override {
        if (phase_ != phase::setup) return;
        become_idle();
    }

    void on_reply(smtp::command_kind kind, const smtp::reply& r) override {
        using smtp::command_kind;
        switch (kind) {
            case command_kind::noop:
                if (phase_ != phase::probing) return;
                if (r.code == 250) {
                    probed_ = true;  // handed out next without another NOOP
                    become_idle();
                } else {
                    ++pool_->stats_.dropped_idle;
                    quit();
                }
                return;
            case command_kind::rset:
                if (phase_ != phase::resetting) return;
                if (r.code / 100 == 2) {
                    dirty_ = false;
                    become_idle();
                } else {
                    quit();
                }
                return;
            case command_kind::quit:
                stream_->close();
                return;
            default:
                break;
        }
        if (phase_ != phase::leased || pending_.empty()) return;
        pending_.pop_front();
        if (kind == command_kind::data) {
            // Any reply to the end of data ends the transaction (RFC 5321 §4.1.1.4).
            contents_.pop_front();
            dirty_ = false;
        }
        arm_command_timer();
        if (events_ != nullptr) events_->on_reply(kind, r);  // may release: last
    }

    void on_failure(const smtp::reply& r) override {
        if (pool_ == nullptr) return;
        switch (phase_) {
            case phase::connecting:
            case phase::setup:
                fail_setup(setup_reply(r), "refused: " + std::to_string(r.code) + " " + r.text);
                return;
            case phase::idle:
            case phase::probing:
                // The server gave up on an idle connection (421, RFC 5321 §3.8).
                ++pool_->stats_.dropped_idle;
                close_now();
                return;
            case phase::leased:
                break_lease({451, "4.4.2", "The smart host ended the connection: " + r.text});
                stream_->close();
                return;
            default:
                close_now();
                return;
        }
    }

    pool* pool_;
    dest_state* ds_;
    runtime::reactor* reactor_;
    pool_options opts_;  // a copy: a lease may outlive its pool
    std::uint64_t generation_;
    std::shared_ptr<const tls::context> tls_;
    std::string verify_name_;
    std::string peer_;
    std::unique_ptr<transport::stream> stream_;
    smtp::client_session session_;
    phase phase_ = phase::closing;  // until start() succeeds: counted nowhere
    transaction_events* events_ = nullptr;
    std::deque<smtp::command_kind> pending_;
    std::deque<std::string> contents_;
    std::size_t deferred_ = 0;
    unsigned messages_ = 0;
    bool dirty_ = false;  // MAIL sent, transaction not ended by a data reply or RSET
    bool broken_ = false;
    bool reused_ = false;
    bool probed_ = false;  // NOOP answered since the last lease
    bool closed_ = false;  // on_closed seen: the stream's connection is gone
    std::uint64_t conn_id_ = 0;
    std::chrono::steady_clock::time_point idle_since_{};
};

}  // namespace detail

using detail::link;
using detail::phase;

// ---- lease ------------------------------------------------------------------------

lease& lease::operator=(lease&& other) noexcept {
    if (this != &other) {
        release(true);
        link_ = std::move(other.link_);
    }
    return *this;
}

lease::~lease() {
    release(true);
}

void lease::set_events(transaction_events* ev) noexcept {
    if (link_) link_->events_ = ev;
}

void lease::mail(std::string_view reverse_path, std::string_view params) {
    if (link_) link_->issue(smtp::command_kind::mail, reverse_path, params);
}

void lease::rcpt(std::string_view forward_path, std::string_view params) {
    if (link_) link_->issue(smtp::command_kind::rcpt, forward_path, params);
}

void lease::data(std::string content) {
    if (link_) link_->issue(smtp::command_kind::data, {}, {}, std::move(content));
}

void lease::release(bool reusable) {
    if (!link_) return;
    auto l = std::move(link_);
    l->release(reusable);
}

std::size_t lease::pending() const noexcept {
    return link_ ? link_->pending_.size() + link_->deferred_ : 0;
}

bool lease::broken() const noexcept {
    return link_ && link_->broken_;
}
bool lease::reused() const noexcept {
    return link_ && link_->reused_;
}

const smtp::server_capabilities* lease::capabilities() const noexcept {
    return link_ ? &link_->session_.capabilities() : nullptr;
}

const tls::peer_info* lease::tls_info() const noexcept {
    if (!link_ || link_->closed_ || !link_->stream_) return nullptr;
    return link_->stream_->tls_info();
}

std::uint64_t lease::connection_id() const noexcept {
    return link_ ? link_->conn_id_ : 0;
}

// ---- pool -------------------------------------------------------------------------

pool::pool(runtime::reactor& r, pool_options opts) : reactor_(r), opts_(std::move(opts)) {
    if (opts_.pool_size == 0) opts_.pool_size = 1;
    if (opts_.max_messages == 0) opts_.max_messages = 1;
}

pool::~pool() {
    alive_.reset();
    for (auto& [key, ds] : dests_)
        for (auto& w : ds->waiters) reactor_.cancel(w.timer);
    for (auto& [raw, l] : links_) l->detach();
    links_.clear();
}

detail::dest_state& pool::state_for(const destination& d) {
    auto it = dests_.find(d.key);
    if (it == dests_.end()) {
        auto ds = std::make_unique<detail::dest_state>();
        ds->dest = d;
        return *dests_.emplace(d.key, std::move(ds)).first->second;
    }
    detail::dest_state& ds = *it->second;
    if (!detail::same_address(ds.dest.address, d.address) || ds.dest.tls_domain != d.tls_domain ||
        ds.dest.tls != d.tls) {
        // Tenants reloaded with a new smart host, name or certificate: the
        // connections made for the old one are retired.
        ds.dest = d;
        ++ds.generation;
        std::vector<link*> idle = ds.idle;
        for (link* l : idle) l->quit();
    }
    return ds;
}

std::uint64_t pool::acquire(const destination& dest, acquire_callback cb) {
    std::uint64_t ticket = next_ticket_++;
    if (shutting_down_) {
        std::weak_ptr<int> alive = alive_;
        reactor_.post([alive, cb = std::move(cb)] {
            if (alive.expired()) return;
            cb({lease{}, {451, "4.3.2", "The relay is shutting down"}, "pool shut down"});
        });
        return ticket;
    }
    detail::dest_state& ds = state_for(dest);
    detail::waiter w;
    w.ticket = ticket;
    w.cb = std::move(cb);
    std::weak_ptr<int> alive = alive_;
    w.timer = reactor_.after(opts_.acquire_timeout, [this, alive, &ds, ticket] {
        if (alive.expired()) return;
        auto it = std::find_if(ds.waiters.begin(), ds.waiters.end(),
                               [ticket](const detail::waiter& x) { return x.ticket == ticket; });
        if (it == ds.waiters.end()) return;
        acquire_callback done = std::move(it->cb);
        ds.waiters.erase(it);
        ++stats_.acquire_timeouts;
        done({lease{},
              {451, "4.4.5", "No connection to the smart host available in time"},
              "smart host " + ds.dest.address.to_string() + ": pool busy"});
    });
    ds.waiters.push_back(std::move(w));
    schedule(ds);
    return ticket;
}

void pool::cancel(std::uint64_t ticket) {
    for (auto& [key, ds] : dests_) {
        auto it = std::find_if(ds->waiters.begin(), ds->waiters.end(),
                               [ticket](const detail::waiter& x) { return x.ticket == ticket; });
        if (it == ds->waiters.end()) continue;
        reactor_.cancel(it->timer);
        ds->waiters.erase(it);
        return;
    }
}

void pool::schedule(detail::dest_state& ds) {
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

void pool::dispatch(detail::dest_state& ds) {
    if (ds.dispatching) {
        ds.again = true;
        return;
    }
    ds.dispatching = true;
    do {
        ds.again = false;
        while (!ds.waiters.empty() && !shutting_down_) {
            if (!ds.idle.empty()) {
                link* l = ds.idle.back();
                if (l->needs_probe()) {
                    l->probe();
                    continue;
                }
                hand_out(ds, links_.at(l));
                continue;
            }
            if (ds.starting >= ds.waiters.size()) break;
            if (ds.active >= opts_.pool_size) {
                for (auto& w : ds.waiters) {
                    if (w.counted_queued) continue;
                    w.counted_queued = true;
                    ++stats_.queued;
                }
                break;
            }
            start_connect(ds);
        }
    } while (ds.again);
    ds.dispatching = false;
}

void pool::start_connect(detail::dest_state& ds) {
    auto l = std::make_shared<link>(*this, ds, opts_);
    ++stats_.connects;
    if (auto r = l->start(); !r) {
        ++stats_.connect_failures;
        setup_failed(ds, {451, "4.4.1", "Cannot connect to the smart host"},
                     "smart host " + ds.dest.address.to_string() + ": " + r.err().message);
        return;
    }
    links_.emplace(l.get(), std::move(l));
}

void pool::hand_out(detail::dest_state& ds, std::shared_ptr<link> l) {
    detail::waiter w = std::move(ds.waiters.front());
    ds.waiters.pop_front();
    reactor_.cancel(w.timer);
    l->lease_out();
    ++stats_.leases;
    if (l->reused_) ++stats_.reuses;
    w.cb({lease(std::move(l)), {}, {}});
}

void pool::setup_failed(detail::dest_state& ds, const smtp::reply& r, const std::string& detail) {
    if (!ds.waiters.empty()) {
        detail::waiter w = std::move(ds.waiters.front());
        ds.waiters.pop_front();
        reactor_.cancel(w.timer);
        w.cb({lease{}, r, detail});
    }
    // Nothing else open to this smart host: it looks down, so the other
    // waiters get the same answer now instead of one connect timeout each.
    if (ds.active == 0) fail_waiters(ds, r, detail);
    schedule(ds);
}

void pool::fail_waiters(detail::dest_state& ds, const smtp::reply& r, const std::string& detail) {
    std::deque<detail::waiter> waiters;
    waiters.swap(ds.waiters);
    for (auto& w : waiters) {
        reactor_.cancel(w.timer);
        w.cb({lease{}, r, detail});
    }
}

void pool::link_closed(link* l) {
    auto it = links_.find(l);
    if (it == links_.end()) return;
    std::shared_ptr<link> keep = std::move(it->second);
    links_.erase(it);
    if (l->ds_ != nullptr) schedule(*l->ds_);
}

void pool::shutdown() {
    if (shutting_down_) return;
    shutting_down_ = true;
    for (auto& [key, ds] : dests_)
        fail_waiters(*ds, {451, "4.3.2", "The relay is shutting down"}, "pool shut down");
    std::vector<std::shared_ptr<link>> all;
    all.reserve(links_.size());
    for (auto& [raw, l] : links_) all.push_back(l);
    for (auto& l : all) {
        switch (l->phase_) {
            case phase::idle:
                l->quit();
                break;
            case phase::leased:
            case phase::quitting:
            case phase::closing:
                break;  // leased: QUIT on release
            default:
                l->close_now();
                break;
        }
    }
}

}  // namespace sigrelay::outbound
