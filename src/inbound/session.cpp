// One inbound SMTP connection: bytes from the stream into the SMTP session,
// replies back, STARTTLS, timeouts and the minimum data rate.
#include <sigrelay/inbound.hpp>

#include <cstdio>

namespace sigrelay::inbound {

namespace {
enum timer_tag : std::uint64_t { idle_timer = 1, rate_timer = 2 };

// A client whose unread replies pile up past this is not reading them: an
// SMTP client reads each reply (RFC 5321 §4.3), pipelining or not.
constexpr std::size_t max_unread_output = 1 << 20;
}  // namespace

session::session(listener& l, runtime::connection& c, const runtime::socket_address& peer)
    : listener_(l),
      peer_(peer),
      id_(c.id()),
      shard_(c.owner().shard()),
      stream_(c, *this),
      smtp_(l.smtp_, *this),
      alive_(std::make_shared<int>(0)) {}

session::~session() = default;

void session::start() {
    arm_timers();
    smtp_.greet();
}

void session::log(std::string_view line) const {
    if (listener_.opts_.quiet) return;
    std::string out = listener_.opts_.log_prefix;
    out += '[' + std::to_string(shard_) + "] #" + std::to_string(id_) + ' ' + peer_.to_string() + ": ";
    out.append(line);
    runtime::log_line(out);
}

void session::answer(const smtp::reply& r) {
    smtp_.answer(r);
    check_input_bound();
    arm_timers();
}

void session::hold(hold_reason why) {
    const bool was = holds_ != 0;
    holds_ |= why;
    if (was) return;
    stream_.pause_reading();
    stream_.cancel_timer(idle_timer);
    if (in_content_) {
        in_content_ = false;
        stream_.cancel_timer(rate_timer);
    }
}

void session::release(hold_reason why) {
    if ((holds_ & why) == 0) return;
    holds_ &= ~static_cast<unsigned>(why);
    if (holds_ != 0) return;
    stream_.resume_reading();
    arm_timers();  // a fresh rate window: the hold was ours, not the client's
}

void session::check_input_bound() {
    // Commands pipelined behind a pending decision are held by the SMTP
    // session; past its high-water mark we stop reading more of them.
    if (smtp_.buffered_bytes() >= smtp::server_session::input_high_water)
        hold(hold_input);
    else
        release(hold_input);
}

void session::arm_timers() {
    const auto& o = listener_.opts_;
    if (holds_ != 0) return;  // held by us: the client's clocks do not run
    switch (smtp_.current_phase()) {
        case smtp::phase::data:
            stream_.set_timer(idle_timer, o.data_timeout);
            if (o.min_data_rate != 0 && !in_content_) {
                in_content_ = true;
                window_start_ = std::chrono::steady_clock::now();
                window_bytes_ = 0;
                stream_.set_timer(rate_timer, o.rate_window);
            }
            return;
        case smtp::phase::waiting:
            // The owner is deciding (e.g. the smart host is answering): the
            // client is not at fault for the wait, the owner bounds it.
            stream_.cancel_timer(idle_timer);
            break;
        case smtp::phase::closed:
            stream_.cancel_timer(idle_timer);
            break;
        default:
            stream_.set_timer(idle_timer, o.command_timeout);
            break;
    }
    if (in_content_) {
        in_content_ = false;
        stream_.cancel_timer(rate_timer);
    }
}

void session::on_plain(transport::stream&, std::span<const char> bytes) {
    if (in_content_) window_bytes_ += bytes.size();
    std::weak_ptr<void> alive = alive_;
    // The replies to everything this input holds (a pipelined group) go out
    // as one TLS record and one send.
    stream_.cork();
    smtp_.feed(bytes);
    if (alive.expired()) return;
    stream_.uncork();
    check_input_bound();
    arm_timers();
}

void session::on_tls_ready(transport::stream&) {
    ++listener_.stats_.tls_handshakes;
    if (const auto* t = stream_.tls_info(); t != nullptr && t->resumed) ++listener_.stats_.tls_resumed;
    // Once per connection: build the line only when it will be written.
    if (const auto* t = stream_.tls_info(); t != nullptr && !listener_.opts_.quiet)
        log("TLS " + t->version + " " + t->cipher + (t->sni.empty() ? "" : " sni=" + t->sni) +
            (t->peer_verified ? " client=" + t->peer_subject_cn : ""));
    smtp_.tls_started();
    arm_timers();
}

void session::on_timer(transport::stream&, std::uint64_t tag) {
    if (tag == idle_timer) {
        ++listener_.stats_.timeouts;
        smtp_.timed_out(smtp_.current_phase() == smtp::phase::data ? "data timeout" : "command timeout");
        return;
    }
    if (tag == rate_timer && in_content_) {
        auto now = std::chrono::steady_clock::now();
        double secs = std::chrono::duration<double>(now - window_start_).count();
        double rate = secs > 0 ? static_cast<double>(window_bytes_) / secs : 0;
        if (rate < static_cast<double>(listener_.opts_.min_data_rate)) {
            ++listener_.stats_.timeouts;
            char why[128];
            std::snprintf(why, sizeof why, "data rate %.0f bytes/s below --min-data-rate %llu", rate,
                          static_cast<unsigned long long>(listener_.opts_.min_data_rate));
            smtp_.timed_out(why);
            return;
        }
        window_start_ = now;
        window_bytes_ = 0;
        stream_.set_timer(rate_timer, listener_.opts_.rate_window);
    }
}

void session::on_shutdown(transport::stream&) { smtp_.shutdown(); }

void session::on_closed(transport::stream&, int, const std::string& tls_error) {
    if (!tls_error.empty()) {
        ++listener_.stats_.tls_failures;
        log("TLS failed: " + tls_error);
    }
    if (handler_) handler_->on_end(*this);
    --listener_.active_;
    listener_.ips_.release(peer_);
    delete this;
}

void session::send(std::string_view bytes) {
    stream_.write(bytes);
    if (stream_.backlog() > max_unread_output && !stream_.conn().closing()) {
        log("client does not read its replies (" + std::to_string(stream_.backlog()) +
            " bytes unsent), closing");
        stream_.abort();
    }
}

void session::start_tls() {
    if (listener_.tls_ == nullptr) {
        stream_.abort();
        return;
    }
    if (auto r = stream_.start_tls_server(*listener_.tls_); !r) {
        log("TLS start failed: " + r.err().message);
        stream_.abort();
    }
}

void session::on_helo(std::string_view domain, bool) {
    helo_ = smtp::printable(domain, 255);
    if (handler_) handler_->on_helo(*this, domain);
}

void session::on_mail(const smtp::mail_command& cmd) { handler_->on_mail(*this, cmd); }
void session::on_rcpt(const smtp::rcpt_command& cmd) { handler_->on_rcpt(*this, cmd); }

void session::on_content(std::span<const char> bytes) {
    listener_.stats_.content_bytes += bytes.size();
    handler_->on_content(*this, bytes);
}

void session::on_message() {
    ++listener_.stats_.messages;
    handler_->on_message(*this);
}

void session::on_reset() {
    if (handler_) handler_->on_reset(*this);
}

void session::on_close() { stream_.close(); }

void session::on_log(std::string_view line) { log(line); }

}  // namespace sigrelay::inbound
