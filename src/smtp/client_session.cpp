// The SMTP client state machine: greeting → EHLO → [STARTTLS → EHLO] → ready,
// then commands whose replies are matched to them in order.
#include <sigrelay/smtp_client.hpp>

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

std::string dot_stuff(std::string_view content) {
    std::string out;
    out.reserve(content.size() + content.size() / 64 + 8);
    const char* p = content.data();
    const char* const end = p + content.size();
    bool line_start = true;
    while (p < end) {
        if (line_start && *p == '.') out += '.';
        // Copy the rest of the line in one go; only line ends need work.
        const char* stop = p;
        while (stop < end && *stop != '\r' && *stop != '\n') ++stop;
        out.append(p, static_cast<std::size_t>(stop - p));
        if (stop == end) {
            line_start = false;
            break;
        }
        // CRLF, bare CR and bare LF all end a line as CRLF.
        if (*stop == '\r' && stop + 1 < end && stop[1] == '\n') ++stop;
        out += "\r\n";
        p = stop + 1;
        line_start = true;
    }
    if (!line_start) out += "\r\n";
    out += ".\r\n";
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
            if (c.kind == command_kind::data && awaiting_354_) {
                awaiting_354_ = false;
                if (r.code == 354) {
                    ev_.send(dot_stuff(c.content));
                    return;
                }
            }
            command_kind kind = c.kind;
            waiting_.pop_front();
            if (kind == command_kind::quit) state_ = state::closed;
            ev_.on_reply(kind, r);
            if (r.code == 421 && state_ != state::closed) return fail(r);
            pump();
            return;
        }
        default:
            return;
    }
}

void client_session::transmit(command& c) {
    if (c.kind == command_kind::data) {
        if (cfg_.use_chunking && caps_.chunking) {
            ev_.send("BDAT " + std::to_string(c.content.size()) + " LAST\r\n");
            if (!c.content.empty()) ev_.send(c.content);
        } else {
            ev_.send("DATA\r\n");
            awaiting_354_ = true;
        }
        return;
    }
    ev_.send(c.line);
}

void client_session::pump() {
    if (state_ != state::ready) return;
    bool pipelining = cfg_.use_pipelining && caps_.pipelining;
    while (!queued_.empty()) {
        if (!waiting_.empty() && (!pipelining || awaiting_354_)) return;
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
    queued_.push_back({command_kind::data, {}, content});
    pump();
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
