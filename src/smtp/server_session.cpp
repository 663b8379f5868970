// The SMTP server session (RFC 5321 with PIPELINING, SIZE, 8BITMIME,
// ENHANCEDSTATUSCODES, CHUNKING, SMTPUTF8, STARTTLS): command dispatch from
// one constexpr table, every phase change through enter(), decisions
// answered by the owner, replies in command order through one queue.
// Sans-I/O: bytes in, replies and events out.
#include <sigrelay/smtp.hpp>

#include "bdat_reader.hpp"
#include "command_parser.hpp"
#include "data_reader.hpp"
#include "line_reader.hpp"

#include <algorithm>
#include <string>
#include <vector>

namespace sigrelay::smtp {

using detail::parse_error;

namespace {

// RFC 5321 §4.5.3.1.4: a command line is at most 512 octets with its CRLF.
constexpr std::size_t max_command_line = 512;

const char* phase_name(phase p) noexcept {
    switch (p) {
        case phase::not_started:
            return "not_started";
        case phase::command:
            return "command";
        case phase::data:
            return "data";
        case phase::waiting:
            return "waiting";
        case phase::tls:
            return "tls";
        case phase::closed:
            return "closed";
    }
    return "?";
}

}  // namespace

struct server_session::impl {
    impl(const server_config& c, session_events& e)
        : cfg(c), ev(e), lines(max_command_line), data(c.bare_newline) {}

    // ---- the command table ---------------------------------------------
    using action = void (impl::*)(std::string_view args);
    enum flag : unsigned {
        // RFC 2920 §3.1: may only be the last command of a pipelined group;
        // input already behind it is improper pipelining → 554 5.5.0, close.
        last_in_group = 1u << 0,
        // The command takes no argument (RFC 5321 §4.1.1 grammar) → 501.
        no_args = 1u << 1,
        // Input behind it is dropped instead (RFC 3207 §4.2, CVE-2011-0411).
        drop_pipelined = 1u << 2,
    };
    struct command_spec {
        std::string_view name;
        action run;
        unsigned flags;
    };
    static const command_spec commands[];
    static const command_spec* find_command(std::string_view verb) noexcept;

    // ---- state ---------------------------------------------------------
    enum class decision { none, mail, rcpt, message };
    enum class body { data, bdat };

    const server_config cfg;
    session_events& ev;
    phase phase_ = phase::not_started;
    body body_ = body::data;

    std::string in_;  // input not yet processed from pos_ on
    std::size_t pos_ = 0;
    // During a run() that feed() started with in_ empty: the caller's bytes,
    // processed where they lie; what is left is copied into in_ at the end.
    // Most reads (a pipelined group, a whole message) are used up at once,
    // so they are never copied at all.
    std::string_view ext_;
    bool ext_active_ = false;
    std::string_view input() const noexcept { return ext_active_ ? ext_ : std::string_view(in_); }
    // Whatever of ext_ is still unread becomes in_ (before appending to it).
    void keep_external() {
        if (!ext_active_) return;
        in_.assign(ext_.substr(pos_));
        pos_ = 0;
        ext_ = {};
        ext_active_ = false;
    }
    std::string later_;  // input fed from inside a callback, appended between steps
    std::string line_;   // the command being handled (owns what handlers see)
    std::string out_;    // DATA content of one step
    detail::line_reader lines;
    detail::data_reader data;
    detail::bdat_reader bdat;

    bool running_ = false;    // inside run(): callbacks must not re-enter it
    bool pre_greet_ = false;  // bytes arrived before greet()
    bool helo_seen_ = false;
    bool tls_active_ = false;
    bool in_txn_ = false;        // MAIL answered 2yz, message not yet answered
    bool txn_smtputf8_ = false;  // the transaction's MAIL had SMTPUTF8
    bool pending_smtputf8_ = false;
    bool bdat_used_ = false;  // BDAT seen in this transaction
    bool size_exceeded_ = false;
    bool shutdown_pending_ = false;
    unsigned errors_ = 0;
    unsigned rcpts_ = 0;            // recipients answered 2yz
    unsigned rcpts_in_flight_ = 0;  // on_rcpt asked, not yet answered
    bool mail_pending_ = false;     // on_mail asked, not yet answered
    bool draining_ = false;         // a 421 is queued: read nothing more, close once it is out
    std::uint64_t msg_size_ = 0;    // content octets of this message so far
    std::uint64_t messages_ = 0;

    // ---- the one state-transition function ----------------------------------
    void enter(phase next) {
        if (cfg.trace && next != phase_)
            ev.on_log(std::string("phase ") + phase_name(phase_) + " -> " + phase_name(next));
        phase_ = next;
    }

    // ---- the reply queue --------------------------------------------------
    // RFC 2920 §3.1: replies go out in command order. While decisions are
    // pending, RCPTs pipelined behind them are still handled (rcpt_ahead()),
    // so a reply can be known before the replies it must follow. Each command
    // whose reply cannot go out yet holds one slot: a decision awaiting
    // answer(), or a reply the session made itself. The front slot is always
    // a decision (ready replies at the front are flushed at once), so
    // answer() always resolves the front; the queue is empty whenever nothing
    // is pending, and a reply then goes straight to send().
    struct slot {
        decision kind = decision::none;  // none: `bytes` is a ready reply
        bool needs_mail = false;         // handled while its MAIL was pending
        bool close_after = false;        // the session ends once this is sent
        std::string bytes;
    };
    // A ring over a vector: it grows to the deepest pipeline the session has
    // seen (at most max_recipients + 1 slots, see rcpt_ahead()) and is then
    // reused, so no command allocates for it.
    std::vector<slot> ring_;
    std::size_t head_ = 0;
    std::size_t queued_ = 0;
    std::size_t held_bytes_ = 0;  // octets of the ready replies in the queue

    slot& at(std::size_t i) noexcept {
        std::size_t k = head_ + i;
        if (k >= ring_.size()) k -= ring_.size();
        return ring_[k];
    }
    slot& push(decision d) {
        if (queued_ == ring_.size()) {
            std::vector<slot> bigger(std::max<std::size_t>(4, ring_.size() * 2));
            for (std::size_t i = 0; i < queued_; ++i) bigger[i] = std::move(at(i));
            ring_ = std::move(bigger);
            head_ = 0;
        }
        ++queued_;
        slot& s = at(queued_ - 1);
        s.kind = d;
        s.needs_mail = mail_pending_;
        s.close_after = false;
        s.bytes.clear();
        return s;
    }
    void pop() noexcept {
        head_ = head_ + 1 == ring_.size() ? 0 : head_ + 1;
        --queued_;
    }
    // Sends the ready replies at the front, up to the next pending decision.
    void flush() {
        while (queued_ != 0 && at(0).kind == decision::none) {
            // Taken out before send(): the owner may re-enter from it.
            std::string bytes = std::move(at(0).bytes);
            const bool last = at(0).close_after;
            held_bytes_ -= bytes.size();
            pop();
            ev.send(bytes);
            if (phase_ == phase::closed) return;
            if (last) return close();
        }
        if (queued_ == 0 && phase_ == phase::waiting) enter(phase::command);
    }

    // ---- replies ---------------------------------------------------------
    void say(const reply& r) {
        if (phase_ == phase::closed) return;
        if (queued_ == 0) {
            ev.send(format_reply(r));
            return;
        }
        // Behind a pending decision (RFC 2920 §3.1): out when it is answered.
        slot& s = push(decision::none);
        s.bytes = format_reply(r);
        held_bytes_ += s.bytes.size();
    }
    // A last reply before closing (421, a refusal): sent at once, ahead of
    // anything still pending, which will never be sent (RFC 5321 §3.8).
    void say_now(const reply& r) {
        if (phase_ == phase::closed) return;
        ev.send(format_reply(r));
    }
    void say(int code, std::string_view enhanced, std::string_view text) {
        say(reply{code, std::string(enhanced), std::string(text)});
    }
    // A protocol error: counts toward max_errors (like Postfix's
    // smtpd_hard_error_limit), then 421 4.7.0 and close.
    void error(int code, std::string_view enhanced, std::string_view text) {
        say(code, enhanced, text);
        ++errors_;
        if (cfg.max_errors != 0 && errors_ >= cfg.max_errors && phase_ != phase::closed &&
            !draining_) {
            ev.on_log("too many errors (" + std::to_string(errors_) + "), closing");
            say(421, "4.7.0", cfg.hostname + " Error: too many errors");
            close_after_replies();
        }
    }
    void error(const parse_error& e) { error(e.code, e.enhanced, e.text); }

    void log_peer(std::string_view what, std::string_view peer_text) {
        ev.on_log(std::string(what) + ": " + printable(peer_text));
    }

    // ---- transaction and session ends ---------------------------------------
    void end_txn(bool notify) {
        if (!in_txn_) return;
        in_txn_ = false;
        rcpts_ = 0;
        bdat_used_ = false;
        if (notify) ev.on_reset();
    }
    void close() {
        if (phase_ == phase::closed) return;
        const bool txn = in_txn_;
        in_txn_ = false;
        // Pending decisions are forgotten: answers after close are ignored.
        for (std::size_t i = 0; i < queued_; ++i) at(i).bytes.clear();
        head_ = 0;
        queued_ = 0;
        held_bytes_ = 0;
        mail_pending_ = false;
        rcpts_in_flight_ = 0;
        draining_ = false;
        pos_ = input().size();
        later_.clear();
        enter(phase::closed);
        if (txn) ev.on_reset();
        ev.on_close();
    }
    // Closes once the replies the peer is owed for commands already handled
    // are out (the 421 of max_errors behind pending decisions): nothing more
    // is read meanwhile.
    void close_after_replies() {
        if (queued_ == 0) return close();
        at(queued_ - 1).close_after = true;
        draining_ = true;
    }
    // Shutdown waits for the transaction in flight, then 421 4.3.2.
    bool maybe_shutdown() {
        if (!shutdown_pending_ || phase_ != phase::command || in_txn_) return false;
        say(421, "4.3.2", cfg.hostname + " Service shutting down");
        close();
        return true;
    }
    // Queues decision `d`; the caller then asks the owner (on_mail...).
    void ask(decision d) {
        push(d);
        if (d == decision::mail) mail_pending_ = true;
        if (d == decision::rcpt) ++rcpts_in_flight_;
        enter(phase::waiting);
    }
    // RFC 2920 §3.1: a client may send MAIL and its RCPTs without waiting
    // for replies. While MAIL/RCPT decisions are pending, the next command is
    // handled at once if it is a RCPT, so the owner can forward it at once
    // (one round trip to the smart host for the group, not one per RCPT).
    // Anything else waits for every answer: DATA/BDAT need the final
    // recipient count, RSET/EHLO/QUIT/STARTTLS end what is pending, MAIL is
    // nested or not depending on the pending one. At most max_recipients
    // commands are handled ahead of the front decision, which bounds the
    // queue; beyond that input waits in in_ (counted by buffered_bytes()).
    bool rcpt_ahead() const noexcept {
        if (queued_ == 0 || draining_ || lines.skipping() || queued_ > cfg.max_recipients)
            return false;
        const decision front = ring_[head_].kind;
        if (front != decision::mail && front != decision::rcpt) return false;
        // Only a whole line within the limit: the line reader will return
        // exactly this line (a longer one waits and is refused in order).
        const std::string_view avail = input().substr(pos_, max_command_line);
        const std::size_t lf = avail.find('\n');
        if (lf == std::string_view::npos) return false;
        std::string_view line = avail.substr(0, lf);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        return detail::iequals(detail::split_command(line).verb, "RCPT");
    }
    bool input_pending() const noexcept { return pos_ < input().size() || !later_.empty(); }

    // ---- the processing loop --------------------------------------------
    void run() {
        if (running_) return;  // answer()/feed() from inside a callback
        running_ = true;
        for (;;) {
            if (!later_.empty()) {
                keep_external();
                in_.append(later_);
                later_.clear();
            }
            if (phase_ == phase::command && maybe_shutdown()) break;
            if (pos_ >= input().size()) break;
            if (phase_ == phase::command) {
                if (!step_command()) break;
            } else if (phase_ == phase::data) {
                step_body();
            } else if (phase_ == phase::waiting && rcpt_ahead()) {
                step_command();  // a whole line: always consumed
            } else {
                break;
            }
        }
        running_ = false;
        if (phase_ == phase::closed) {
            ext_ = {};
            ext_active_ = false;
            in_.clear();
            pos_ = 0;
        } else if (ext_active_) {
            keep_external();
        } else if (pos_ > 0) {
            in_.erase(0, pos_);
            pos_ = 0;
        }
    }

    // One command line; false when more input is needed.
    bool step_command() {
        const auto r = lines.next(input().substr(pos_));
        pos_ += r.consumed;
        switch (r.what) {
            case detail::line_reader::kind::need_more:
                return false;
            case detail::line_reader::kind::too_long:
                ev.on_log("command line too long, skipped");
                error(500, "5.5.2", "Error: line too long");
                return true;
            case detail::line_reader::kind::line:
                line_.assign(r.line);
                dispatch(line_);
                return true;
        }
        return true;
    }

    void dispatch(std::string_view line) {
        const auto [verb, args] = detail::split_command(line);
        const command_spec* spec = find_command(verb);
        if (spec == nullptr) {
            log_peer("unknown command", line);
            error(500, "5.5.2", "Error: command not recognized");
            return;
        }
        if ((spec->flags & last_in_group) && !(spec->flags & drop_pipelined) && input_pending()) {
            // RFC 2920 §3.1. For DATA this is message content sent before
            // the 354 (RFC 2920 §3.1, RFC 5321 §4.1.1.4); it must never be
            // read as commands or content.
            log_peer("improper pipelining after " + std::string(spec->name), input().substr(pos_));
            say(554, "5.5.0", "Error: improper command pipelining");
            close();
            return;
        }
        if ((spec->flags & no_args) && !args.empty()) {
            error(501, "5.5.4", "Syntax: " + std::string(spec->name));
            return;
        }
        (this->*spec->run)(args);
    }

    // DATA content or BDAT chunk bytes.
    void step_body() {
        const std::string_view avail = input().substr(pos_);
        if (body_ == body::data) {
            out_.clear();
            const auto r = data.consume(avail, out_);
            pos_ += r.consumed;
            deliver(out_);
            if (r.done) end_data();
        } else {
            const std::string_view chunk = bdat.take(avail);
            pos_ += chunk.size();
            if (bdat.delivering()) deliver(chunk);
            if (bdat.done()) end_chunk();
        }
    }

    // Content is counted as it arrives (docs/behaviour.md, SMTP server rules: checked while
    // reading); past the limit nothing more is passed on, the rest is only consumed.
    void deliver(std::string_view bytes) {
        if (bytes.empty() || size_exceeded_) return;
        if (bytes.size() > cfg.max_message_size - msg_size_) {
            // Pass on what fits (the same whatever the input's split), then
            // nothing more; the message is refused at its end.
            size_exceeded_ = true;
            ev.on_log("message size exceeds " + std::to_string(cfg.max_message_size));
            bytes = bytes.substr(0, cfg.max_message_size - msg_size_);
            msg_size_ += bytes.size();
            if (!bytes.empty()) ev.on_content(std::span<const char>(bytes.data(), bytes.size()));
            return;
        }
        msg_size_ += bytes.size();
        ev.on_content(std::span<const char>(bytes.data(), bytes.size()));
    }

    void end_data() {
        enter(phase::command);
        switch (data.error()) {
            case detail::data_error::bare_newline:
                // docs/behaviour.md, SMTP server rules --bare-newline reject; RFC 5321 §2.3.8.
                ev.on_log("bare CR or LF in message content, rejected");
                say(550, "5.6.0", "Error: bare CR or LF in message content");
                end_txn(true);
                return;
            case detail::data_error::line_too_long:
                // RFC 5321 §4.5.3.1.6.
                ev.on_log("message line longer than 1000 octets, rejected");
                say(500, "5.5.2", "Error: line too long");
                end_txn(true);
                return;
            case detail::data_error::none:
                break;
        }
        if (size_exceeded_) {
            say(552, "5.3.4", "Error: message size exceeds fixed maximum message size");
            end_txn(true);
            return;
        }
        ask(decision::message);
        ev.on_message();
    }

    void end_chunk() {
        enter(phase::command);
        if (!bdat.delivering()) return;  // a refused chunk: already answered
        if (size_exceeded_) {
            say(552, "5.3.4", "Error: message size exceeds fixed maximum message size");
            end_txn(true);
            return;
        }
        if (bdat.last()) {
            ask(decision::message);
            ev.on_message();
            return;
        }
        say(250, "2.0.0", std::to_string(bdat.size()) + " octets received");
    }

    // ---- commands ----------------------------------------------------------
    bool valid_helo_arg(std::string_view args) {
        if (args.empty() || !detail::valid_utf8(args)) return false;
        for (char c : args)
            if (c >= 0 && (c < 32 || c == 127)) return false;
        return true;
    }

    void do_ehlo(std::string_view args) { hello(args, true); }
    void do_helo(std::string_view args) { hello(args, false); }
    void hello(std::string_view args, bool esmtp) {
        if (!valid_helo_arg(args)) {
            error(501, "5.5.4", esmtp ? "Syntax: EHLO hostname" : "Syntax: HELO hostname");
            return;
        }
        // RFC 5321 §4.1.4: EHLO/HELO mid-transaction resets it.
        end_txn(true);
        helo_seen_ = true;
        ev.on_helo(args, esmtp);
        if (phase_ == phase::closed) return;
        // RFC 2034 §3: no enhanced code on the EHLO/HELO 250 (it starts with
        // the domain, RFC 5321 §4.1.1.1).
        if (!esmtp) {
            say(250, "", cfg.hostname);
            return;
        }
        std::string text = cfg.hostname;
        text += "\nPIPELINING";                                       // RFC 2920
        text += "\nSIZE " + std::to_string(cfg.max_message_size);     // RFC 1870
        text += "\n8BITMIME";                                         // RFC 6152
        text += "\nENHANCEDSTATUSCODES";                              // RFC 2034
        if (cfg.chunking) text += "\nCHUNKING";                       // RFC 3030
        text += "\nSMTPUTF8";                                         // RFC 6531
        if (cfg.tls_available && !tls_active_) text += "\nSTARTTLS";  // RFC 3207 §4.2
        if (cfg.advertise_xoorg) text += "\nXOORG";
        say(250, "", text);
    }

    void do_mail(std::string_view args) {
        if (!helo_seen_) return error(503, "5.5.1", "Error: send HELO/EHLO first");
        if (in_txn_) return error(503, "5.5.1", "Error: nested MAIL command");
        // docs/behaviour.md, SMTP server rules --require-tls; RFC 3207 §4 (530 5.7.0).
        if (cfg.require_tls && !tls_active_)
            return error(530, "5.7.0", "Must issue a STARTTLS command first");
        auto p = detail::parse_mail(args, cfg.advertise_xoorg);
        if (!p) {
            log_peer("bad MAIL", args);
            return error(p.err);
        }
        auto& m = *p.value;
        // RFC 6531 §3.4: a non-ASCII address needs SMTPUTF8 on MAIL.
        if (m.non_ascii && !m.cmd.smtputf8)
            return error(553, "5.6.7", "Error: non-ASCII address needs SMTPUTF8");
        // RFC 1870 §6.1: a declared size over the fixed maximum.
        if (m.cmd.size && *m.cmd.size > cfg.max_message_size) {
            say(552, "5.3.4", "Error: message size exceeds fixed maximum message size");
            return;
        }
        pending_smtputf8_ = m.cmd.smtputf8;
        ask(decision::mail);
        ev.on_mail(m.cmd);
    }

    void do_rcpt(std::string_view args) {
        // A RCPT pipelined behind its pending MAIL goes on at once (RFC 2920
        // §3.1); should the MAIL be refused, its reply becomes this 503
        // (answer()).
        if (!in_txn_ && !mail_pending_) return error(503, "5.5.1", "Error: need MAIL command");
        if (bdat_used_) return error(503, "5.5.1", "Error: RCPT after BDAT");
        auto p = detail::parse_rcpt(args);
        if (!p) {
            log_peer("bad RCPT", args);
            return error(p.err);
        }
        auto& r = *p.value;
        // RFC 6531 §3.4, against the MAIL this RCPT follows, pending or not.
        if (r.non_ascii && !(mail_pending_ ? pending_smtputf8_ : txn_smtputf8_))
            return error(553, "5.6.7", "Error: non-ASCII address needs SMTPUTF8");
        // RFC 5321 §4.5.3.1.10: 452 for too many recipients; the client
        // sends the rest in another transaction. Not a protocol error.
        // Recipients still in flight count: each may yet be accepted.
        if (rcpts_ + rcpts_in_flight_ >= cfg.max_recipients) {
            say(452, "4.5.3", "Error: too many recipients");
            return;
        }
        ask(decision::rcpt);
        ev.on_rcpt(r.cmd);
    }

    void do_data(std::string_view) {
        if (!in_txn_) return error(503, "5.5.1", "Error: need MAIL command");
        // RFC 3030 §3: a transaction uses DATA or BDAT, never both.
        if (bdat_used_) return error(503, "5.5.1", "Error: DATA after BDAT");
        // RFC 5321 §3.3: no accepted recipient → 554 "no valid recipients".
        if (rcpts_ == 0) return error(554, "5.5.1", "Error: no valid recipients");
        // RFC 2034 §3: 354 is not 2yz/4yz/5yz, no enhanced code.
        say(354, "", "End data with <CR><LF>.<CR><LF>");
        if (phase_ == phase::closed) return;
        data.reset();
        msg_size_ = 0;
        size_exceeded_ = false;
        body_ = body::data;
        enter(phase::data);
    }

    void do_bdat(std::string_view args) {
        const auto p = detail::parse_bdat(args);
        if (!p) {
            // Without a size we cannot know where the chunk ends: anything we
            // read next could be chunk bytes, so stop (docs/behaviour.md, SMTP server rules).
            log_peer("bad BDAT", args);
            say(p.err.code, p.err.enhanced, p.err.text);
            close();
            return;
        }
        const auto [size, last] = *p.value;
        parse_error refused{};
        bool refuse = true;
        bool counts = true;
        if (!cfg.chunking) {
            refused = {502, "5.5.1", "Error: BDAT not supported"};
        } else if (!in_txn_) {
            refused = {503, "5.5.1", "Error: need MAIL command"};
        } else if (rcpts_ == 0) {
            refused = {503, "5.5.1", "Error: need RCPT command"};
        } else if (size == 0 && !last) {
            // RFC 3030 §2 only gives a zero-length chunk a meaning as the
            // final one ("BDAT 0 LAST"); an empty non-final chunk is a
            // sequence error (503, docs/behaviour.md, SMTP server rules). Nothing follows it to
            // consume.
            refused = {503, "5.5.1", "Error: BDAT 0 needs LAST"};
        } else if (size > cfg.max_message_size - msg_size_) {
            // docs/behaviour.md, SMTP server rules: checked against the declared chunk before
            // reading.
            refused = {552, "5.3.4", "Error: message size exceeds fixed maximum message size"};
            counts = false;
        } else {
            refuse = false;
        }
        if (refuse) {
            // RFC 3030 §2: the chunk's octets are consumed, never read as
            // commands; a refused chunk ends the transaction (the client
            // MUST NOT send more BDAT after a 4yz/5yz).
            if (counts)
                error(refused);
            else
                say(refused.code, refused.enhanced, refused.text);
            end_txn(true);
            if (phase_ == phase::closed || size == 0) return;
            bdat.start(size, last, false);
            body_ = body::bdat;
            enter(phase::data);
            return;
        }
        if (!bdat_used_) {
            bdat_used_ = true;
            msg_size_ = 0;
            size_exceeded_ = false;
        }
        bdat.start(size, last, true);
        if (size == 0) {  // BDAT 0 LAST
            ask(decision::message);
            ev.on_message();
            return;
        }
        body_ = body::bdat;
        enter(phase::data);
    }

    void do_rset(std::string_view) {
        end_txn(true);
        say(250, "2.0.0", "Ok");
    }
    void do_noop(std::string_view) { say(250, "2.0.0", "Ok"); }
    void do_vrfy(std::string_view args) {
        if (args.empty()) return error(501, "5.5.4", "Syntax: VRFY address");
        // RFC 5321 §3.5.3: 252 when we will not verify.
        say(252, "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery");
    }
    void do_quit(std::string_view) {
        // RFC 2920 §3.1 wants QUIT last in a group; we close right after the
        // 221 anyway, so whatever is behind it is never read, only logged.
        if (input_pending())
            log_peer("input after QUIT ignored", input().substr(pos_));
        say(221, "2.0.0", cfg.hostname + " Bye");
        close();
    }
    void do_starttls(std::string_view) {
        if (!cfg.tls_available) return error(502, "5.5.1", "Error: command not implemented");
        if (tls_active_) return error(503, "5.5.1", "Error: TLS already active");
        // RFC 3207 §4.2 / CVE-2011-0411: plaintext pipelined behind STARTTLS
        // must not be read as if it came over TLS. Drop it.
        if (input_pending()) {
            log_peer("input pipelined after STARTTLS discarded", std::string(input().substr(pos_)) + later_);
            pos_ = input().size();
            later_.clear();
        }
        end_txn(true);
        say(220, "2.0.0", "Ready to start TLS");
        if (phase_ == phase::closed) return;
        enter(phase::tls);
        ev.start_tls();
    }
};

// Postfix smtpd_cmd_table style: verb, action, rules. RFC 5321 §4.1.1.
const server_session::impl::command_spec server_session::impl::commands[] = {
    {"EHLO", &impl::do_ehlo, last_in_group},
    {"HELO", &impl::do_helo, last_in_group},
    {"MAIL", &impl::do_mail, 0},
    {"RCPT", &impl::do_rcpt, 0},
    {"DATA", &impl::do_data, last_in_group | no_args},
    {"BDAT", &impl::do_bdat, 0},  // RFC 3030 §4.2: BDAT may be pipelined
    {"RSET", &impl::do_rset, no_args},
    {"NOOP", &impl::do_noop, last_in_group},
    {"VRFY", &impl::do_vrfy, last_in_group},
    {"QUIT", &impl::do_quit, no_args},
    {"STARTTLS", &impl::do_starttls, last_in_group | no_args | drop_pipelined},
};

const server_session::impl::command_spec* server_session::impl::find_command(
    std::string_view verb) noexcept {
    for (const auto& c : commands)
        if (detail::iequals(verb, c.name)) return &c;
    return nullptr;
}

// ---- public interface -------------------------------------------------------

server_session::server_session(const server_config& cfg, session_events& events)
    : impl_(std::make_unique<impl>(cfg, events)) {}

server_session::~server_session() = default;

void server_session::greet() {
    auto& s = *impl_;
    if (s.phase_ != phase::not_started) return;
    if (s.pre_greet_) {
        // RFC 5321 §4.3.1 lets a server open with 554; a client that talks
        // before the greeting is not an SMTP client (postscreen's pregreet).
        s.say(554, "5.5.0", "Error: SMTP protocol violation: input before greeting");
        s.close();
        return;
    }
    // RFC 5321 §4.2: the greeting starts with our domain; RFC 2034 §3 gives
    // it no enhanced code.
    s.say(220, "", s.cfg.hostname + " " + s.cfg.greeting_text);
    s.enter(phase::command);
    s.run();
}

void server_session::refuse(const reply& r) {
    auto& s = *impl_;
    if (s.phase_ == phase::closed) return;
    s.say_now(r);
    s.close();
}

void server_session::feed(std::span<const char> bytes) {
    auto& s = *impl_;
    const std::string_view b(bytes.data(), bytes.size());
    switch (s.phase_) {
        case phase::closed:
            return;
        case phase::not_started:
            if (!s.pre_greet_ && !b.empty()) s.log_peer("input before greeting", b);
            s.pre_greet_ = s.pre_greet_ || !b.empty();
            return;
        case phase::tls:
            // Plaintext after STARTTLS, before the handshake: CVE-2011-0411.
            if (!b.empty()) s.log_peer("input during TLS handshake discarded", b);
            return;
        default:
            break;
    }
    if (s.running_) {
        s.later_.append(b);
        return;
    }
    if (s.in_.empty()) {
        s.ext_ = b;
        s.ext_active_ = true;
        s.pos_ = 0;
    } else {
        s.in_.append(b);
    }
    s.run();
}

void server_session::answer(const reply& r) {
    auto& s = *impl_;
    if (s.phase_ == phase::closed || s.queued_ == 0) return;
    // Decisions are answered in the order they were asked: this one is the
    // oldest, the front of the queue (a decision, see flush()).
    const auto d = s.at(0).kind;
    s.pop();

    reply out = r;
    if (out.code < 200 || out.code > 599) {
        out = reply{451, "4.3.0", "Error: internal error"};
    } else if (out.enhanced.empty()) {
        // RFC 2034 §3: every 2yz/4yz/5yz reply carries an enhanced code.
        out.enhanced = std::to_string(out.code / 100) + ".0.0";
    }
    const bool ok = out.code / 100 == 2;
    if (s.queued_ == 0) s.enter(phase::command);
    switch (d) {
        case impl::decision::mail:
            s.mail_pending_ = false;
            if (!ok) {
                // The RCPTs handled behind the refused MAIL get what they
                // would have got after it, the 503 of do_rcpt() (also for
                // those still pending: see decision::rcpt); the client
                // pipelined legitimately, so none counts toward max_errors.
                for (std::size_t i = 0; i < s.queued_; ++i) {
                    auto& q = s.at(i);
                    if (q.kind != impl::decision::none || !q.needs_mail || q.close_after) continue;
                    s.held_bytes_ -= q.bytes.size();
                    q.bytes = format_reply({503, "5.5.1", "Error: need MAIL command"});
                    s.held_bytes_ += q.bytes.size();
                }
            } else {
                s.in_txn_ = true;
                s.txn_smtputf8_ = s.pending_smtputf8_;
                s.rcpts_ = 0;
                s.bdat_used_ = false;
                s.msg_size_ = 0;
                s.size_exceeded_ = false;
            }
            break;
        case impl::decision::rcpt:
            --s.rcpts_in_flight_;
            // Only a RCPT sent on while its MAIL was pending can be answered
            // outside a transaction (nothing else ends one while a RCPT is
            // pending): its MAIL was refused, the owner's answer is moot.
            if (!s.in_txn_)
                out = reply{503, "5.5.1", "Error: need MAIL command"};
            else if (ok)
                ++s.rcpts_;
            break;
        case impl::decision::message:
            if (ok) ++s.messages_;
            s.end_txn(false);
            break;
        case impl::decision::none:
            break;
    }
    // The front of the queue: nothing is owed before it.
    s.ev.send(format_reply(out));
    if (s.phase_ == phase::closed) return;
    s.flush();
    s.run();
}

void server_session::tls_started() {
    auto& s = *impl_;
    if (s.phase_ != phase::tls) return;
    // RFC 3207 §4.2: forget everything learnt before TLS; EHLO again.
    s.tls_active_ = true;
    s.helo_seen_ = false;
    s.lines.reset();
    // Nothing read before the handshake is kept (even if it is called from
    // inside a run() over the caller's bytes).
    s.ext_ = {};
    s.ext_active_ = false;
    s.in_.clear();
    s.pos_ = 0;
    s.later_.clear();
    s.enter(phase::command);
    s.run();
}

void server_session::peer_closed() {
    auto& s = *impl_;
    if (s.phase_ == phase::closed) return;
    if (s.in_txn_ || s.phase_ == phase::data)
        s.ev.on_log(std::string("peer closed the connection in phase ") + phase_name(s.phase_));
    s.close();
}

void server_session::timed_out(std::string_view why) {
    auto& s = *impl_;
    if (s.phase_ == phase::closed) return;
    s.ev.on_log(std::string("timeout in phase ") + phase_name(s.phase_) + ": " + printable(why));
    // Nothing in plaintext in the middle of a TLS handshake. At once, ahead
    // of replies still pending, which will never be sent.
    if (s.phase_ != phase::tls)
        s.say_now({421, "4.4.2", s.cfg.hostname + " Error: timeout exceeded"});
    s.close();
}

void server_session::shutdown() {
    auto& s = *impl_;
    if (s.phase_ == phase::closed) return;
    s.shutdown_pending_ = true;
    if (s.phase_ == phase::not_started) {
        s.say(421, "4.3.2", s.cfg.hostname + " Service shutting down");
        s.close();
        return;
    }
    // Idle now, or later when the transaction in flight has its reply.
    if (!s.running_) s.maybe_shutdown();
}

phase server_session::current_phase() const noexcept {
    return impl_->phase_;
}
bool server_session::tls_active() const noexcept {
    return impl_->tls_active_;
}
bool server_session::in_transaction() const noexcept {
    return impl_->in_txn_;
}
std::uint64_t server_session::messages() const noexcept {
    return impl_->messages_;
}
std::size_t server_session::buffered_bytes() const noexcept {
    const auto& s = *impl_;
    return s.input().size() - s.pos_ + s.later_.size() + s.held_bytes_;
}

}  // namespace sigrelay::smtp
