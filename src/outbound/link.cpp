// One connection to a smart host: set-up (greeting, EHLO, STARTTLS, EHLO), idle/probe/lease/RSET/
// QUIT phases, timers, and the mapping of every failure of ours to a 4yz (docs/behaviour.md).
#include "link.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

namespace sigrelay::outbound::detail {

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

smtp::client_config make_config(const pool_options& o, bool tls) {
    smtp::client_config c;
    c.helo_name = o.helo_name;
    c.tls = tls ? smtp::tls_mode::required : smtp::tls_mode::none;
    c.use_chunking = o.use_chunking;
    return c;
}

}  // namespace

link::link(link_owner& owner, pool_stats& stats, runtime::reactor& r, const destination& dest,
           const runtime::socket_address& address, const pool_options& o)
    : owner_(&owner),
      stats_(&stats),
      reactor_(&r),
      opts_(o),
      address_(address),
      tls_(dest.tls),
      verify_name_(dest.tls_domain.empty() ? address.ip_string() : dest.tls_domain),
      peer_(address.to_string()),
      session_(make_config(o, dest.tls != nullptr), *this) {}

result<void> link::start() {
    auto c = reactor_->connect(address_, nullptr, opts_.connect_timeout);
    if (!c) return c.err();
    stream_ = std::make_unique<transport::stream>(**c, *this);
    conn_id_ = (*c)->id();
    set_phase(link_phase::connecting);
    return {};
}

// The one place the phase changes; the owner keeps its counts from what it is told here.
void link::set_phase(link_phase p) {
    if (p == phase_) return;
    link_phase from = phase_;
    phase_ = p;
    if (owner_ != nullptr) owner_->on_link_phase(*this, from, p);
}

const tls::peer_info* link::tls_info() const noexcept {
    if (closed_ || !stream_) return nullptr;
    return stream_->tls_info();
}

// ---- owner side ------------------------------------------------------------------

void link::become_idle() {
    stream_->cancel_timer(command_timer);
    if (!owner_->keeps(*this)) return quit();
    if (messages_ >= opts_.max_messages) {
        count(&pool_stats::retired_max_messages);
        return quit();
    }
    set_phase(link_phase::idle);
    idle_since_ = std::chrono::steady_clock::now();
    stream_->set_timer(idle_timer, owner_->idle_time(*this));
}

bool link::needs_probe() const {
    return !probed_ && std::chrono::steady_clock::now() - idle_since_ > opts_.probe_after;
}

void link::probe() {
    count(&pool_stats::probes);
    stream_->cancel_timer(idle_timer);
    set_phase(link_phase::probing);
    session_.noop();
    stream_->set_timer(command_timer, std::min(opts_.command_timeout, opts_.connect_timeout));
}

void link::lease_out() {
    stream_->cancel_timer(idle_timer);
    set_phase(link_phase::leased);
    probed_ = false;
    reused_ = messages_ > 0;
    events_ = nullptr;
}

void link::quit() {
    if (phase_ == link_phase::quitting || phase_ == link_phase::closing) return;
    set_phase(link_phase::quitting);
    stream_->cancel_timer(idle_timer);
    if (!session_.ready()) {
        stream_->close();
        return;
    }
    session_.quit();
    stream_->set_timer(command_timer, std::min(opts_.command_timeout, quit_timeout));
}

void link::close_now() {
    if (phase_ == link_phase::closing) return;
    set_phase(link_phase::closing);
    stream_->abort();
}

void link::detach() {
    if (stream_ && !closed_) {
        stream_->conn().set_handler(nullptr);
        stream_->conn().abort();
    }
    closed_ = true;
    broken_ = true;
    phase_ = link_phase::closing;  // not reported: there is no owner any more
    owner_ = nullptr;
    stats_ = nullptr;
    events_ = nullptr;
}

// ---- lease side ------------------------------------------------------------------

void link::issue(smtp::command_kind kind, std::string_view a, std::string_view params,
                 std::string content) {
    if (phase_ != link_phase::leased) {
        defer_failure(kind);
        return;
    }
    pending_.push_back(kind);
    if (pending_.size() == 1) arm_command_timer();
    switch (kind) {
        case smtp::command_kind::mail:
            ++messages_;
            dirty_ = true;
            count(&pool_stats::transactions);
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

void link::begin_message() {
    if (phase_ != link_phase::leased) {
        defer_failure(smtp::command_kind::data);
        return;
    }
    // One data entry for the whole message: its reply is the only one reported.
    pending_.push_back(smtp::command_kind::data);
    streaming_ = true;
    session_.begin_message();
    arm_command_timer();
}

void link::message_content(std::span<const std::string_view> pieces) {
    if (phase_ != link_phase::leased || !streaming_) return;
    stream_->cork();
    session_.message_content(pieces);
    stream_->uncork();
    arm_command_timer();
}

void link::end_message() {
    if (phase_ != link_phase::leased || !streaming_) return;
    streaming_ = false;
    session_.end_message();
    arm_command_timer();
}

void link::abandon_message() {
    if (phase_ != link_phase::leased || !streaming_) return;
    streaming_ = false;
    // No data reply will be reported: the message's entry goes.
    for (auto it = pending_.rbegin(); it != pending_.rend(); ++it)
        if (*it == smtp::command_kind::data) {
            pending_.erase(std::next(it).base());
            break;
        }
    if (!session_.abandon_message()) unfinishable_ = true;
    arm_command_timer();
}

std::size_t link::backlog() const noexcept {
    if (closed_ || !stream_) return 0;
    return stream_->backlog() + session_.buffered_content();
}

void link::on_drained(transport::stream&) {
    if (owner_ == nullptr || phase_ != link_phase::leased) return;
    if (session_.buffered_content() == 0 && events_ != nullptr) events_->on_drained();
}

void link::release(bool reusable) {
    events_ = nullptr;
    if (phase_ != link_phase::leased || owner_ == nullptr) return;  // failed already
    if (unfinishable_ || streaming_) {
        // A DATA stream can only end with its final dot, which must never be
        // sent for an abandoned message: the connection goes (RFC 5321 §4.1.1.4).
        count(&pool_stats::broken);
        close_now();
        return;
    }
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
    if (dirty_ && owner_->keeps(*this) && messages_ < opts_.max_messages) {
        // RFC 5321 §4.1.1.5: abandon the unfinished transaction first.
        count(&pool_stats::resets);
        set_phase(link_phase::resetting);
        session_.rset();
        stream_->set_timer(command_timer, opts_.command_timeout);
        return;
    }
    become_idle();
}

// A failure in the middle of a lease: every pending command gets `r`.
void link::break_lease(const smtp::reply& r) {
    if (phase_ != link_phase::leased) return;
    broken_ = true;
    count(&pool_stats::broken);
    set_phase(link_phase::closing);
    stream_->cancel_timer(command_timer);
    stream_->cancel_timer(idle_timer);
    // Contents stay alive: the client session may still point into them.
    while (!pending_.empty()) {
        smtp::command_kind kind = pending_.front();
        pending_.pop_front();
        if (events_ != nullptr) events_->on_reply(kind, r);
    }
}

// A command on a lease that cannot carry it: 451 4.4.2, later (never
// inside the caller's call).
void link::defer_failure(smtp::command_kind kind) {
    if (events_ == nullptr || owner_ == nullptr) return;
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

void link::arm_command_timer() {
    // Only while the smart host owes us a reply: a streamed message waiting
    // for more content from our own client is not the smart host's delay.
    if (pending_.empty() || session_.pending() == 0) {
        stream_->cancel_timer(command_timer);
        return;
    }
    bool data = pending_.front() == smtp::command_kind::data;
    stream_->set_timer(command_timer, data ? opts_.data_timeout : opts_.command_timeout);
}

// ---- set-up failures -------------------------------------------------------------

void link::fail_setup(const smtp::reply& r, std::string detail) {
    if (phase_ != link_phase::connecting && phase_ != link_phase::setup) return;
    count(&pool_stats::connect_failures);
    set_phase(link_phase::closing);
    if (!closed_) stream_->close();
    owner_->on_link_setup_failed(*this, r, "smart host " + peer_ + ": " + detail);
}

// ---- transport::stream_events ----------------------------------------------------

void link::on_connected(transport::stream& s, int err) {
    if (owner_ == nullptr) return;
    if (err < 0) {
        fail_setup({451, "4.4.1", "Cannot connect to the smart host"},
                   err == -ETIMEDOUT ? "connect timed out" : std::strerror(-err));
        return;
    }
    connected_ = true;
    set_phase(link_phase::setup);
    s.set_timer(command_timer, opts_.connect_timeout);
}

void link::on_plain(transport::stream&, std::span<const char> bytes) {
    if (owner_ == nullptr || phase_ == link_phase::closing) return;
    auto keep = shared_from_this();  // callbacks may release the last lease
    session_.feed(bytes);
}

void link::on_tls_ready(transport::stream& s) {
    if (owner_ == nullptr) return;
    if (const tls::peer_info* info = s.tls_info(); info != nullptr && info->resumed)
        count(&pool_stats::tls_resumed);
    session_.tls_started();
}

void link::on_timer(transport::stream&, std::uint64_t tag) {
    if (owner_ == nullptr) return;
    auto keep = shared_from_this();
    if (tag == idle_timer) {
        if (phase_ == link_phase::idle) {
            count(&pool_stats::retired_idle);
            quit();
        }
        return;
    }
    switch (phase_) {
        case link_phase::connecting:
        case link_phase::setup:
            fail_setup({451, "4.4.1", "The smart host did not answer in time"},
                       phase_ == link_phase::connecting ? "timeout during connecting"
                                                        : "timeout during setup");
            return;
        case link_phase::leased:
            count(&pool_stats::timeouts);
            break_lease({421, "4.4.2", "Timeout waiting for the smart host"});
            stream_->abort();
            return;
        case link_phase::idle:
            return;
        default:
            close_now();
            return;
    }
}

void link::on_shutdown(transport::stream&) {
    // The shard stops: what is leased finishes (bounded by the drain),
    // everything else goes now.
    if (owner_ != nullptr) owner_->on_reactor_stopping(*this);
}

void link::on_closed(transport::stream&, int err, const std::string& tls_error) {
    closed_ = true;
    if (owner_ == nullptr) return;
    auto keep = shared_from_this();
    switch (phase_) {
        case link_phase::connecting:
        case link_phase::setup:
            if (!tls_error.empty())
                fail_setup({451, "4.4.1", "TLS with the smart host failed"}, "TLS: " + tls_error);
            else
                fail_setup({451, "4.4.1", "The smart host closed the connection"},
                           err < 0 ? std::strerror(-err) : "connection closed during set-up");
            break;
        case link_phase::idle:
        case link_phase::probing:
            count(&pool_stats::dropped_idle);
            break;
        case link_phase::leased:
            break_lease({451, "4.4.2",
                         tls_error.empty() ? "Connection to the smart host was lost"
                                           : "TLS with the smart host failed"});
            break;
        default:
            break;
    }
    set_phase(link_phase::closing);
    owner_->on_link_closed(*this);  // may drop the owner's reference: `keep` holds this
}

// ---- smtp::client_events ---------------------------------------------------------

void link::send(std::string_view bytes) {
    if (!closed_ && phase_ != link_phase::closing) stream_->write(bytes);
}

void link::start_tls() {
    // An IP literal is verified against an IP SAN and never sent as SNI
    // (RFC 6066 §3).
    std::string sni = is_ip_literal(verify_name_) ? std::string() : verify_name_;
    if (auto r = stream_->start_tls_client(*tls_, sni, verify_name_); !r)
        fail_setup({451, "4.4.1", "TLS with the smart host failed"}, "TLS: " + r.err().message);
}

void link::on_ready(const smtp::server_capabilities&) {
    if (phase_ != link_phase::setup) return;
    become_idle();
}

void link::on_reply(smtp::command_kind kind, const smtp::reply& r) {
    using smtp::command_kind;
    switch (kind) {
        case command_kind::noop:
            if (phase_ != link_phase::probing) return;
            if (r.code == 250) {
                probed_ = true;  // handed out next without another NOOP
                become_idle();
            } else {
                count(&pool_stats::dropped_idle);
                quit();
            }
            return;
        case command_kind::rset:
            if (phase_ != link_phase::resetting) return;
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
    if (phase_ != link_phase::leased || pending_.empty()) return;
    pending_.pop_front();
    if (kind == command_kind::data) {
        // A reply to the end of data ends the transaction (RFC 5321 §4.1.1.4);
        // a refused chunk or DATA only fails it: RSET before the next one.
        if (!contents_.empty() && !streaming_) contents_.pop_front();
        if (session_.message_failed()) {
            streaming_ = false;
        } else {
            dirty_ = false;
        }
    }
    arm_command_timer();
    if (events_ != nullptr) events_->on_reply(kind, r);  // may release: last
}

void link::on_failure(const smtp::reply& r) {
    if (owner_ == nullptr) return;
    switch (phase_) {
        case link_phase::connecting:
        case link_phase::setup:
            fail_setup(setup_reply(r), "refused: " + std::to_string(r.code) + " " + r.text);
            return;
        case link_phase::idle:
        case link_phase::probing:
            // The server gave up on an idle connection (421, RFC 5321 §3.8).
            count(&pool_stats::dropped_idle);
            close_now();
            return;
        case link_phase::leased:
            break_lease({451, "4.4.2", "The smart host ended the connection: " + r.text});
            stream_->close();
            return;
        default:
            close_now();
            return;
    }
}

}  // namespace sigrelay::outbound::detail
