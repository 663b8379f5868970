// The SMTP client state machine: greeting → EHLO → [STARTTLS → EHLO] → ready,
// then commands whose replies are matched to them in order.
#include <sigrelay/smtp_client.hpp>

#include <algorithm>
#include <cctype>

namespace sigrelay::smtp {

namespace {

constexpr std::size_t max_reply_line = 4096;  // RFC 5321 §4.5.3.1.5 says 512; be lenient
constexpr std::size_t max_reply_lines = 200;

bool is_enhanced(std::string_view t, std::size_t& len) {
    // class "." subject "." detail (RFC 3463): d.ddd.ddd followed by a space or the end
    std::size_t i = 0;
    auto digits = [&](std::size_t maxd) {
        std::size_t s = i;
        while (i < t.size() && i - s < maxd && std::isdigit(static_cast<unsigned char>(t[i]))) ++i;
        return i > s;
    };
    if (t.empty() || (t[0] != '2' && t[0] != '4' && t[0] != '5')) return false;
    i = 1;
    if (i >= t.size() || t[i++] != '.') return false;
    if (!digits(3)) return false;
    if (i >= t.size() || t[i++] != '.') return false;
    if (!digits(3)) return false;
    if (i < t.size() && t[i] != ' ') return false;
    len = i;
    return true;
}

std::string upper(std::string_view s) {
    std::string u(s);
    for (char& c : u) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return u;
}

}  // namespace

bool parse_reply_line(std::string_view line, int& code, bool& more, std::string_view& text) {
    if (line.size() < 3) return false;
    for (int i = 0; i < 3; ++i)
        if (!std::isdigit(static_cast<unsigned char>(line[i]))) return false;
    if (line[0] < '2' || line[0] > '5') return false;
    code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
    if (line.size() == 3) {
        more = false;
        text = {};
        return true;
    }
    if (line[3] != ' ' && line[3] != '-') return false;
    more = line[3] == '-';
    text = line.substr(4);
    return true;
}

void dot_stuffer::feed(std::string_view in, std::string& out) {
    const char* p = in.data();
    const char* const end = p + in.size();
    // The LF of a CRLF split between two calls: its CR has ended the line already.
    if (after_cr_ && p < end) {
        after_cr_ = false;
        if (*p == '\n') ++p;
    }
    while (p < end) {
        if (line_start_ && *p == '.') out += '.';
        // Copy the rest of the line in one go; only line ends need work.
        const char* stop = p;
        while (stop < end && *stop != '\r' && *stop != '\n') ++stop;
        out.append(p, static_cast<std::size_t>(stop - p));
        if (stop == end) {
            line_start_ = false;  // p < end: at least one byte of the line was copied
            return;
        }
        // CRLF, bare CR and bare LF all end a line as CRLF.
        out += "\r\n";
        line_start_ = true;
        if (*stop == '\r') {
            if (stop + 1 == end) {
                after_cr_ = true;  // an LF starting the next call belongs to this CR
                return;
            }
            if (stop[1] == '\n') ++stop;
        }
        p = stop + 1;
    }
}

void dot_stuffer::finish(std::string& out) {
    if (!line_start_) out += "\r\n";
    out += ".\r\n";
    *this = {};
}

std::string dot_stuff(std::string_view content) {
    std::string out;
    out.reserve(content.size() + content.size() / 64 + 8);
    dot_stuffer d;
    d.feed(content, out);
    d.finish(out);
    return out;
}

client_session::client_session(const client_config& cfg, client_events& events)
    : cfg_(cfg), ev_(events) {}

void client_session::feed(std::span<const char> bytes) {
    if (state_ == state::failed || state_ == state::closed || state_ == state::tls) return;
    in_.append(bytes.data(), bytes.size());
    std::size_t pos = 0;
    while (state_ != state::failed && state_ != state::closed && state_ != state::tls) {
        std::size_t nl = in_.find('\n', pos);
        if (nl == std::string::npos) {
            if (in_.size() - pos > max_reply_line) {
                fail({421, "4.5.0", "reply line too long"});
                return;
            }
            break;
        }
        std::string_view line(in_.data() + pos, nl - pos);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        pos = nl + 1;
        if (!parse_line(line)) return;
        if (state_ == state::tls) {
            // Whatever followed the 220 to STARTTLS in plaintext is not from
            // the TLS peer: drop it (CVE-2021-38371).
            in_.clear();
            ev_.start_tls();
            return;
        }
    }
    in_.erase(0, pos);
}

bool client_session::parse_line(std::string_view line) {
    int code = 0;
    bool more = false;
    std::string_view text;
    if (!parse_reply_line(line, code, more, text) || (have_partial_ && code != partial_.code) ||
        ehlo_lines_.size() > max_reply_lines) {
        fail({421, "4.5.0", "malformed reply from server: " + printable(line, 100)});
        return false;
    }
    if (!have_partial_) {
        partial_ = reply{code, "", ""};
        ehlo_lines_.clear();
        have_partial_ = true;
        std::size_t elen = 0;
        if (is_enhanced(text, elen)) {
            partial_.enhanced = std::string(text.substr(0, elen));
            text.remove_prefix(std::min(text.size(), elen + 1));
        }
        partial_.text = std::string(text);
    } else {
        std::size_t elen = 0;
        if (!partial_.enhanced.empty() && is_enhanced(text, elen))
            text.remove_prefix(std::min(text.size(), elen + 1));
        partial_.text += '\n';
        partial_.text += text;
    }
    ehlo_lines_.emplace_back(text);
    if (more) return true;
    have_partial_ = false;
    reply r = std::move(partial_);
    handle(r);
    return state_ != state::failed;
}

void client_session::send_ehlo() {
    state_ = state::ehlo;
    ev_.send("EHLO " + cfg_.helo_name + "\r\n");
}

void client_session::tls_started() {
    tls_active_ = true;
    caps_ = {};
    send_ehlo();  // RFC 3207 §4.2: forget what was learnt before TLS
}

void client_session::fail(const reply& r) {
    if (state_ == state::failed) return;
    state_ = state::failed;
    ev_.on_failure(r);
}

void client_session::handle(const reply& r) {
    switch (state_) {
        case state::greeting:
            if (r.code != 220) return fail(r);
            send_ehlo();
            return;
        case state::ehlo: {
            if (r.code != 250) return fail(r);
            caps_ = {};
            for (std::size_t i = 1; i < ehlo_lines_.size(); ++i) {
                std::string u = upper(ehlo_lines_[i]);
                std::string_view kw = u;
                std::string_view arg;
                if (auto sp = kw.find(' '); sp != std::string_view::npos) {
                    arg = kw.substr(sp + 1);
                    kw = kw.substr(0, sp);
                }
                if (kw == "PIPELINING")
                    caps_.pipelining = true;
                else if (kw == "CHUNKING")
                    caps_.chunking = true;
                else if (kw == "STARTTLS")
                    caps_.starttls = true;
                else if (kw == "8BITMIME")
                    caps_.eightbitmime = true;
                else if (kw == "SMTPUTF8")
                    caps_.smtputf8 = true;
                else if (kw == "ENHANCEDSTATUSCODES")
                    caps_.enhanced_status_codes = true;
                else if (kw == "SIZE") {
                    std::uint64_t v = 0;
                    for (char c : arg) {
                        if (c < '0' || c > '9' || v > (~0ull) / 10 - 10) break;
                        v = v * 10 + static_cast<unsigned>(c - '0');
                    }
                    caps_.size = v;
                }
            }
            if (!tls_active_ && cfg_.tls != tls_mode::none && caps_.starttls) {
                state_ = state::starttls;
                ev_.send("STARTTLS\r\n");
                return;
            }
            if (!tls_active_ && cfg_.tls == tls_mode::required)
                return fail({421, "4.7.0", "server does not offer STARTTLS"});
            state_ = state::ready;
            ev_.on_ready(caps_);
            pump();
            return;
        }
        case state::starttls:
            if (r.code == 220) {
                state_ = state::tls;
                return;
            }
            if (cfg_.tls == tls_mode::required) return fail(r);
            state_ = state::ready;
            ev_.on_ready(caps_);
            pump();
            return;
        case state::ready: {
            if (waiting_.empty()) {
                // Unsolicited: only a 421 is meaningful (RFC 5321 §3.8).
                return fail(r.code == 421 ? r : reply{421, "4.5.0", "unexpected reply: " + r.text});
            }
            command& c = waiting_.front();
            switch (c.how) {
                case wire::chunk:
                    return handle_chunk(r);
                case wire::stream:
                    return handle_stream(r);
                case wire::whole:
                    if (in_data_) {
                        in_data_ = false;
                        if (r.code == 354) {
                            ev_.send(dot_stuff(c.content));
                            return;
                        }
                        // A 2yz to DATA itself would be taken for the message's
                        // acceptance although no content was sent.
                        if (r.code < 400)
                            return fail(
                                {421, "4.5.0", "unexpected reply to DATA: " + printable(r.text)});
                    }
                    break;
                default:
                    break;
            }
            finish_front(r, !c.silent);
            return;
        }
        default:
            return;
    }
}

void client_session::finish_front(const reply& r, bool report) {
    command_kind kind = waiting_.front().kind;
    waiting_.pop_front();
    if (kind == command_kind::quit) state_ = state::closed;
    if (report) ev_.on_reply(kind, r);
    if (r.code == 421 && state_ != state::closed) return fail(r);
    pump();
}

void client_session::handle_chunk(const reply& r) {
    const command& c = waiting_.front();
    bool report = !c.silent && r.code >= 400;
    std::uint64_t id = c.message;
    waiting_.pop_front();
    if (r.code >= 300 && r.code < 400)
        return fail({421, "4.5.0", "unexpected reply to BDAT: " + printable(r.text)});
    if (report) {
        // RFC 3030 §2: a 4yz/5yz to a chunk fails the transaction and no further
        // chunk may be sent; the replies to chunks pipelined behind it are not
        // the message's reply, so this one is reported now, and once.
        fail_message(id);
        ev_.on_reply(command_kind::data, r);
    }
    if (r.code == 421 && state_ != state::closed) return fail(r);
    pump();
}

void client_session::handle_stream(const reply& r) {
    command& c = waiting_.front();
    if (!c.got_354) {
        if (r.code == 354) {
            c.got_354 = true;
            if (!c.hold.empty()) ev_.send(c.hold);
            release_hold(c);
            // With the "." already given the content is complete: what is queued
            // may follow it (RFC 2920 §3.1).
            if (c.ended) {
                in_data_ = false;
                pump();
            }
            return;
        }
        in_data_ = false;
        if (r.code < 400)
            return fail({421, "4.5.0", "unexpected reply to DATA: " + printable(r.text)});
        // DATA refused (RFC 5321 §3.3, e.g. 554 no valid recipients): the content
        // given so far and from now on is dropped.
        release_hold(c);
        fail_message(c.message);
        finish_front(r, true);
        return;
    }
    if (c.ended) return finish_front(r, !c.silent);  // the reply to "."
    // A reply while the content still flows: the server has stopped reading it,
    // or never will; the message cannot be completed, and where the server
    // stands is unknown, so the session ends. A 2yz is not taken for acceptance.
    bool report = r.code >= 400;
    fail_message(c.message);
    waiting_.pop_front();
    in_data_ = false;
    if (report) ev_.on_reply(command_kind::data, r);
    if (state_ == state::closed) return;
    fail(r.code == 421 ? r
                       : reply{421, "4.5.0", "reply before the end of DATA: " + printable(r.text)});
}

void client_session::release_hold(command& c) {
    buffered_ -= c.hold.size();
    std::string().swap(c.hold);  // chunks can be large: give the memory back
}

void client_session::fail_message(std::uint64_t id) {
    if (msg_.id == id) msg_.failed = true;
    for (command& c : waiting_)
        if (c.message == id) c.silent = true;
    for (command& c : queued_)
        if (c.message == id) release_hold(c);
    std::erase_if(queued_, [id](const command& c) { return c.message == id; });
}

client_session::command* client_session::find_stream(std::uint64_t id) {
    // From the back: nothing is sent behind a DATA until its ".", so a sent one
    // is waiting_.back() however many RCPTs await their replies before it.
    auto match = [id](const command& c) { return c.how == wire::stream && c.message == id; };
    if (auto q = std::find_if(queued_.rbegin(), queued_.rend(), match); q != queued_.rend())
        return &*q;
    if (auto w = std::find_if(waiting_.rbegin(), waiting_.rend(), match); w != waiting_.rend())
        return &*w;
    return nullptr;
}

void client_session::transmit(command& c) {
    switch (c.how) {
        case wire::whole:
            if (cfg_.use_chunking && caps_.chunking) {
                ev_.send("BDAT " + std::to_string(c.content.size()) + " LAST\r\n");
                if (!c.content.empty()) ev_.send(c.content);
            } else {
                ev_.send("DATA\r\n");
                in_data_ = true;
            }
            return;
        case wire::chunk:
            ev_.send(c.line);
            if (!c.hold.empty()) ev_.send(c.hold);
            release_hold(c);
            return;
        case wire::stream:
            in_data_ = true;  // the content waits in hold for the 354
            break;
        default:
            break;
    }
    ev_.send(c.line);
}

bool client_session::can_send_now() const noexcept {
    if (state_ != state::ready || !queued_.empty()) return false;
    return waiting_.empty() || (cfg_.use_pipelining && caps_.pipelining && !in_data_);
}

void client_session::pump() {
    if (state_ != state::ready) return;
    bool pipelining = cfg_.use_pipelining && caps_.pipelining;
    while (!queued_.empty()) {
        if (!waiting_.empty() && (!pipelining || in_data_)) return;
        waiting_.push_back(std::move(queued_.front()));
        queued_.pop_front();
        transmit(waiting_.back());
    }
}

void client_session::mail(std::string_view reverse_path, std::string_view params) {
    std::string line = "MAIL FROM:<" + std::string(reverse_path) + ">";
    if (!params.empty()) (line += ' ') += params;
    queued_.push_back({command_kind::mail, line + "\r\n", {}});
    pump();
}

void client_session::rcpt(std::string_view forward_path, std::string_view params) {
    std::string line = "RCPT TO:<" + std::string(forward_path) + ">";
    if (!params.empty()) (line += ' ') += params;
    queued_.push_back({command_kind::rcpt, line + "\r\n", {}});
    pump();
}

void client_session::data(std::string_view content) {
    queued_.push_back({command_kind::data, {}, content, wire::whole});
    pump();
}

void client_session::begin_message() {
    msg_ = {};
    msg_.id = ++messages_;
    msg_.active = true;
    msg_.bdat = cfg_.use_chunking && caps_.chunking;
    if (msg_.bdat) return;  // the first chunk goes with the first content
    command c{command_kind::data, "DATA\r\n", {}, wire::stream, msg_.id};
    queued_.push_back(std::move(c));
    pump();
}

void client_session::message_content(std::span<const std::string_view> pieces) {
    if (!msg_.active || msg_.failed) return;
    std::size_t total = 0;
    for (std::string_view p : pieces) total += p.size();
    if (total == 0) return;  // "BDAT 0" without LAST would be a chunk of nothing
    if (msg_.bdat) {
        command c{
            command_kind::data, "BDAT " + std::to_string(total) + "\r\n", {}, wire::chunk, msg_.id};
        if (can_send_now()) {
            // RFC 3030 §4.2: chunks are pipelined, no wait for their 250s; the
            // pieces go out as they are, without a copy.
            waiting_.push_back(std::move(c));
            ev_.send(waiting_.back().line);
            for (std::string_view p : pieces)
                if (!p.empty()) ev_.send(p);
            return;
        }
        c.hold.reserve(total);
        for (std::string_view p : pieces) c.hold.append(p);
        buffered_ += total;
        queued_.push_back(std::move(c));
        return;
    }
    command* c = find_stream(msg_.id);
    if (c == nullptr) return;  // answered already: msg_.failed is set
    if (c->got_354) {
        scratch_.clear();
        for (std::string_view p : pieces) msg_.stuffer.feed(p, scratch_);
        if (!scratch_.empty()) ev_.send(scratch_);  // empty: only the LF of a split CRLF
        return;
    }
    std::size_t before = c->hold.size();
    for (std::string_view p : pieces) msg_.stuffer.feed(p, c->hold);
    buffered_ += c->hold.size() - before;
}

void client_session::end_message() {
    if (!msg_.active) return;
    msg_.active = false;
    if (msg_.failed) return;  // its reply has been reported
    if (msg_.bdat) {
        queued_.push_back({command_kind::data, "BDAT 0 LAST\r\n", {}, wire::last, msg_.id});
        pump();
        return;
    }
    command* c = find_stream(msg_.id);
    if (c == nullptr) return;
    c->ended = true;
    if (c->got_354) {
        scratch_.clear();
        msg_.stuffer.finish(scratch_);
        ev_.send(scratch_);
        in_data_ = false;  // RFC 2920 §3.1: commands may follow the "."
        pump();
        return;
    }
    std::size_t before = c->hold.size();
    msg_.stuffer.finish(c->hold);
    buffered_ += c->hold.size() - before;
}

bool client_session::abandon_message() {
    bool usable = state_ != state::failed && state_ != state::closed;
    if (msg_.id == 0 || msg_.failed) return usable;
    std::uint64_t id = msg_.id;
    if (msg_.bdat) {
        bool unsent = std::any_of(queued_.begin(), queued_.end(),
                                  [id](const command& c) { return c.message == id; });
        if (!msg_.active && !unsent) return usable;  // LAST is out: too late
        // RFC 3030 §2: without LAST the message is not complete, and the
        // owner's RSET discards the chunks sent.
        msg_.active = false;
        fail_message(id);
        return usable;
    }
    command* c = find_stream(id);
    bool sent = false;
    for (const command& w : waiting_) sent = sent || &w == c;
    if (c == nullptr || (c->got_354 && c->ended)) return usable;  // "." is out: too late
    msg_.active = false;
    if (!sent) {
        fail_message(id);  // DATA withdrawn before it went out
        return usable;
    }
    // RFC 5321 §4.1.1.4: once DATA may have been accepted, only "." ends the
    // content, and that would deliver the message: nothing more may be sent.
    msg_.failed = true;
    state_ = state::closed;
    in_data_ = false;
    queued_.clear();
    waiting_.clear();
    buffered_ = 0;
    return false;
}

void client_session::rset() {
    queued_.push_back({command_kind::rset, "RSET\r\n", {}});
    pump();
}

void client_session::noop() {
    queued_.push_back({command_kind::noop, "NOOP\r\n", {}});
    pump();
}

void client_session::quit() {
    queued_.push_back({command_kind::quit, "QUIT\r\n", {}});
    pump();
}

}  // namespace sigrelay::smtp
