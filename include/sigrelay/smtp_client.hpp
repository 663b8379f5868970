// Sans-I/O SMTP client session (RFC 5321, 2920 PIPELINING, 3030 CHUNKING,
// 3207 STARTTLS): greeting, EHLO, optional STARTTLS, then transactions built
// from mail()/rcpt()/data() calls whose replies come back in order. Used by
// the relay's outbound leg and by smtp-blaster; no sockets, no clocks.
#pragma once

#include <sigrelay/smtp.hpp>

#include <cstdint>
#include <deque>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace sigrelay::smtp {

enum class tls_mode {
    none,      // never STARTTLS
    optional,  // STARTTLS when offered
    required,  // fail unless STARTTLS is offered and succeeds
};

struct client_config {
    std::string helo_name = "localhost";
    tls_mode tls = tls_mode::none;
    bool use_pipelining = true;  // when the server offers PIPELINING
    bool use_chunking = true;    // BDAT when the server offers CHUNKING
};

struct server_capabilities {
    bool pipelining = false, chunking = false, starttls = false, eightbitmime = false;
    bool smtputf8 = false, enhanced_status_codes = false;
    std::uint64_t size = 0;  // 0: not announced
};

enum class command_kind { mail, rcpt, data, rset, noop, quit };

class client_events {
public:
    virtual ~client_events() = default;
    virtual void send(std::string_view bytes) = 0;
    // The 220 to STARTTLS arrived: start the handshake, then call
    // client_session::tls_started(). Bytes the server sent after that 220
    // have been discarded (CVE-2021-38371).
    virtual void start_tls() = 0;
    // Greeting, EHLO (and STARTTLS + EHLO again) done: transactions may begin.
    virtual void on_ready(const server_capabilities&) = 0;
    // The reply to one mail()/rcpt()/data()/rset()/noop() call, in call order.
    virtual void on_reply(command_kind kind, const reply& r) = 0;
    // The session cannot go on (bad greeting, EHLO refused, TLS required but
    // not offered, a malformed reply, 421): close the connection.
    virtual void on_failure(const reply& r) = 0;
};

// The DATA transparency procedure (RFC 5321 §4.5.2) over a stream: a "." that
// starts a line is doubled, and CRLF, a bare CR and a bare LF all end a line as
// CRLF (a bare CR or LF is not allowed in SMTP content, §2.3.8). The state
// carries across feed() calls, so any split of the content gives the same bytes
// as one call: a CR that ends one call is sent as CRLF at once, and an LF that
// starts the next is then its second half, not another line end.
class dot_stuffer {
public:
    // Appends the stuffed form of `in` to `out`.
    void feed(std::string_view in, std::string& out);
    // Appends the CRLF the content lacks (if it did not end with a line end),
    // then "." CRLF; the stuffer is then ready for another message.
    void finish(std::string& out);

private:
    bool line_start_ = true;  // the next byte starts a line
    bool after_cr_ = false;   // the last byte fed was a CR (already sent as CRLF)
};

class client_session {
public:
    client_session(const client_config& cfg, client_events& events);

    void feed(std::span<const char> bytes);
    void tls_started();

    // Queue commands; with PIPELINING they go out at once (RFC 2920), else one
    // per reply. data() sends BDAT <n> LAST with the content byte-exact when
    // the server has CHUNKING, else DATA, waits for 354, and sends the content
    // dot-stuffed with every bare CR or LF made CRLF (RFC 5321 §4.5.2).
    // `content` must stay valid until the data reply has arrived.
    void mail(std::string_view reverse_path, std::string_view params = {});
    void rcpt(std::string_view forward_path, std::string_view params = {});
    void data(std::string_view content);
    void rset();
    void noop();
    void quit();

    // A streamed message, beside data(): the content is sent while it still
    // arrives. Call begin_message() after mail()/rcpt(), message_content() any
    // number of times, then end_message() (or abandon_message()). One streamed
    // message at a time: end or abandon it before the next begin_message() (the
    // next transaction may be pipelined behind its end). The mode (BDAT or
    // DATA) is chosen by begin_message() from the capabilities known then. The
    // message gets exactly one reply, on_reply(command_kind::data, r): the reply
    // to its end, or the first 4yz/5yz that failed it, or none at all after
    // abandon_message() or on_failure().
    //
    // With CHUNKING (and use_chunking) nothing is sent yet; else "DATA" is queued
    // (pipelined after the RCPTs when the server offers PIPELINING).
    void begin_message();
    // Content bytes in order. BDAT: one "BDAT <total>" chunk per call with a
    // non-zero total, pipelined (RFC 3030 §4.2) and sent without a copy when it
    // can go out at once (else copied and counted in buffered_content()); the
    // 250 to a non-LAST chunk is consumed here. BDAT is byte-exact (RFC 3030 §2),
    // so bare CR/LF are sent as they are. DATA: dot-stuffed by a dot_stuffer;
    // content given before the 354 arrived is copied and sent right after it.
    // The pieces need to stay valid only during the call. Dropped once
    // message_failed(), and outside begin_message()…end_message().
    void message_content(std::span<const std::string_view> pieces);
    // BDAT: "BDAT 0 LAST" (RFC 3030 §2 allows an empty last chunk); DATA: the
    // CRLF the content lacks, then "." CRLF. Sends nothing once message_failed().
    void end_message();
    // Gives up on the streamed message, which must never be completed: nothing
    // more is sent for it and nothing reported. BDAT: LAST is never sent (RFC
    // 3030 §2: RSET discards the chunks), replies to chunks already sent are
    // consumed; returns true, the session takes rset() or quit() next. DATA not
    // yet sent: it is withdrawn; true. DATA sent: the stream can only be ended
    // by ".", so the session closes itself (sends nothing, reports nothing,
    // ready() false); returns false: close the connection. After end_message()
    // has sent the end it is too late: no-op, the data reply still comes; true.
    bool abandon_message();
    // Content bytes copied and waiting to be sent (DATA before its 354, BDAT
    // chunks behind commands without PIPELINING): the owner's back-pressure.
    std::size_t buffered_content() const noexcept { return buffered_; }
    // The streamed message can no longer be completed on this connection: a
    // chunk or the DATA command got 4yz/5yz (already reported as the data
    // reply), or it was abandoned. Cleared by begin_message().
    bool message_failed() const noexcept { return msg_.failed; }

    bool ready() const noexcept { return state_ == state::ready; }
    bool failed() const noexcept { return state_ == state::failed; }
    // Commands queued or awaiting a reply, each BDAT chunk included.
    std::size_t pending() const noexcept { return waiting_.size() + queued_.size(); }
    const server_capabilities& capabilities() const noexcept { return caps_; }
    bool tls_active() const noexcept { return tls_active_; }

private:
    enum class state { greeting, ehlo, starttls, tls, ready, failed, closed };
    // How a command goes on the wire and how its reply is taken.
    enum class wire : std::uint8_t {
        line,    // the command line
        whole,   // data(): BDAT <n> LAST + content, or DATA, 354, content
        chunk,   // streamed non-LAST BDAT: its 2yz is consumed
        last,    // streamed BDAT 0 LAST
        stream,  // streamed DATA: 354, content as it comes, "."
    };
    struct command {
        command_kind kind;
        std::string line;          // the command line, CRLF included
        std::string_view content;  // data(): the message
        wire how = wire::line;
        std::uint64_t message = 0;  // streamed: which message
        std::string hold;           // streamed: content copied until it can be sent
        bool silent = false;        // the reply is consumed, not reported
        bool got_354 = false;       // stream: the 354 arrived
        bool ended = false;         // stream: "." CRLF is in hold or sent
    };
    struct streamed {
        std::uint64_t id = 0;
        bool bdat = false;
        bool active = false;  // between begin_message() and end/abandon
        bool failed = false;
        dot_stuffer stuffer;  // DATA
    };

    void handle(const reply& r);
    void handle_chunk(const reply& r);
    void handle_stream(const reply& r);
    void finish_front(const reply& r, bool report);
    void fail(const reply& r);
    void send_ehlo();
    void pump();
    bool can_send_now() const noexcept;
    void transmit(command& c);
    bool parse_line(std::string_view line);
    void fail_message(std::uint64_t id);
    command* find_stream(std::uint64_t id);
    void release_hold(command& c);

    client_config cfg_;
    client_events& ev_;
    state state_ = state::greeting;
    server_capabilities caps_;
    bool tls_active_ = false;
    std::string in_;              // unparsed reply bytes
    reply partial_;               // a multi-line reply being collected
    bool have_partial_ = false;
    std::vector<std::string> ehlo_lines_;
    std::deque<command> queued_;   // not yet sent
    std::deque<command> waiting_;  // sent, awaiting a reply
    // DATA sent and its "." not yet: nothing else may follow (RFC 2920 §3.1:
    // DATA ends a pipelined group; the content then runs until the ".").
    bool in_data_ = false;
    streamed msg_;                // the streamed message being fed
    std::uint64_t messages_ = 0;  // streamed messages begun
    std::size_t buffered_ = 0;    // bytes in the commands' hold strings
    std::string scratch_;         // streamed DATA content stuffed for sending
};

// Dot-stuffs `content` for DATA and turns every bare CR or LF into CRLF; the
// result ends with CRLF "." CRLF. One dot_stuffer fed the whole content.
std::string dot_stuff(std::string_view content);

// Parses one reply line "250-text" / "250 2.0.0 text"; false if malformed.
bool parse_reply_line(std::string_view line, int& code, bool& more, std::string_view& text);

}  // namespace sigrelay::smtp
