// Sans-I/O SMTP server session (RFC 5321, 1870, 2034, 2920, 3030, 3207,
// 6152, 6531): bytes in, replies and transaction events out. No sockets, no
// clocks: the owner moves bytes, runs TLS and timers, and answers decisions.
#pragma once

#include <sigrelay/result.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace sigrelay::smtp {

enum class bare_newline_policy { reject, normalize };

struct server_config {
    std::string hostname = "localhost";  // greeting and EHLO
    std::string greeting_text = "ESMTP sigrelay";
    std::uint64_t max_message_size = 150ull << 20;  // SIZE, 552 5.3.4 beyond
    unsigned max_recipients = 1000;                 // 452 4.5.3 beyond (in-flight RCPTs count)
    bool tls_available = false;                     // advertise STARTTLS (until TLS is active)
    bool require_tls = true;                        // MAIL before STARTTLS → 530 5.7.0
    bool chunking = true;                           // advertise CHUNKING, accept BDAT
    bool advertise_xoorg = true;                    // XOORG= MAIL parameter (Exchange Online)
    bare_newline_policy bare_newline = bare_newline_policy::reject;
    unsigned max_errors = 10;  // then 421 4.7.0 and close (0: no limit)
    bool trace = false;        // on_log every phase change ("command -> data")
};

// One reply. `text` may hold '\n' for a multi-line reply; each line gets the
// code (and the enhanced code, when set).
struct reply {
    int code = 250;
    std::string enhanced;  // "2.1.0"; empty only where RFC 2034 has none
    std::string text;
};
std::string format_reply(const reply& r);

struct mail_command {
    std::string reverse_path;           // without <>; empty for the null sender
    std::optional<std::uint64_t> size;  // SIZE=
    bool body_8bitmime = false;         // BODY=8BITMIME
    bool smtputf8 = false;              // SMTPUTF8
    std::string xoorg;                  // XOORG=
    std::string params;                 // the parameters as received
};

struct rcpt_command {
    std::string forward_path;  // without <>
    std::string params;
};

// What the owner implements. Callbacks run inside feed()/answer()/... on the
// owner's thread. A decision (on_mail, on_rcpt, on_message) is answered with
// session::answer(), at once inside the callback or later. Several decisions
// can be pending at once (RFC 2920 pipelining): while on_mail and/or on_rcpt
// decisions wait for their answers, each further RCPT the client pipelined
// is handled at once and may call on_rcpt again, so the owner can forward a
// MAIL + RCPT group without a round trip per command. Every other command
// (DATA, BDAT, RSET, EHLO, QUIT, MAIL, ...) is buffered until all pending
// decisions are answered; on_message is always the only one pending.
class session_events {
public:
    virtual ~session_events() = default;
    // Bytes for the peer (replies). Send them in order.
    virtual void send(std::string_view bytes) = 0;
    // A 220 to STARTTLS has been passed to send(). Flush it, start the TLS
    // handshake, then call session::tls_started(). Pipelined plaintext after
    // STARTTLS has already been discarded (CVE-2011-0411).
    virtual void start_tls() = 0;
    virtual void on_helo(std::string_view /*domain*/, bool /*esmtp*/) {}
    virtual void on_mail(const mail_command& cmd) = 0;
    // May come while the MAIL it follows is still pending (its parameters,
    // e.g. SMTPUTF8, are already checked against that MAIL). If the MAIL is
    // then answered with anything but 2yz, the RCPT must still be answered;
    // the session ignores that answer and replies 503 5.5.1 (need MAIL).
    virtual void on_rcpt(const rcpt_command& cmd) = 0;
    // Message content, in order: DATA content dot-unstuffed with CRLF line
    // ends (the final CRLF.CRLF excluded), BDAT chunks byte-exact.
    virtual void on_content(std::span<const char> bytes) = 0;
    // End of DATA / BDAT LAST with everything in order: answer the message.
    virtual void on_message() = 0;
    // The transaction in progress (if any) is abandoned: RSET, HELO/EHLO,
    // STARTTLS, a rejected message (size, bare newline), or the session end.
    // Called only while in_transaction() (MAIL answered 2yz, message not yet
    // answered); the answer to on_message ends a transaction without it.
    virtual void on_reset() {}
    // The session is over: flush what was sent, then close the connection.
    // Decisions still pending are forgotten; answers after it are ignored.
    virtual void on_close() = 0;
    // A protocol event worth a log line (violations, limits). Peer text in it
    // is already printable and truncated.
    virtual void on_log(std::string_view /*line*/) {}
};

enum class phase {
    not_started,  // before greet()
    command,      // reading commands (command timeout applies)
    data,         // reading DATA content or BDAT chunk bytes (data timeout)
    waiting,      // decisions are pending (RCPTs pipelined behind them are still read)
    tls,          // STARTTLS handshake in progress
    closed,
};

class server_session {
public:
    server_session(const server_config& cfg, session_events& events);
    ~server_session();
    server_session(const server_session&) = delete;
    server_session& operator=(const server_session&) = delete;

    // Sends the 220 greeting. Bytes fed before greet() are a pre-greeting
    // violation: 554 5.5.0 and close (RFC 5321 §4.3.1, like postscreen).
    void greet();
    // Refuses the connection instead of greeting (allow-list, limits):
    // sends `r` and closes.
    void refuse(const reply& r);

    // Bytes from the peer (plaintext: after TLS, decrypted bytes).
    void feed(std::span<const char> bytes);
    // The answer to the oldest pending on_mail / on_rcpt / on_message
    // decision. Decisions are answered strictly in the order they were
    // asked: an owner that learns a later answer first must hold it until
    // the earlier ones are answered, and an answer given inside on_rcpt
    // while earlier decisions are pending answers the earliest of them (a
    // smart host's replies over one pipelined connection already come in
    // order, RFC 2920 §3.1). Replies go to the peer in
    // command order (RFC 2920 §3.1): a reply the session makes itself for a
    // RCPT handled behind pending decisions (452, 501, 553...) is held until
    // those are answered. Ignored when nothing is pending or after close.
    void answer(const reply& r);
    // The TLS handshake succeeded: the session restarts (EHLO required).
    void tls_started();
    // The peer closed its side.
    void peer_closed();
    // The owner's timer for phase() expired, or the data rate fell below the
    // minimum: 421 4.4.2 and close.
    void timed_out(std::string_view why);
    // Shutdown: at once when idle (421 4.3.2), else after the transaction's reply.
    void shutdown();

    phase current_phase() const noexcept;
    bool tls_active() const noexcept;
    bool in_transaction() const noexcept;     // from MAIL's 2yz answer until its end
    std::uint64_t messages() const noexcept;  // messages answered 2yz

    // Octets held by the session: a partial command line, commands
    // pipelined behind pending decisions, and replies held back behind
    // pending decisions for order. The owner stops reading from the socket
    // while this is at or above input_high_water (back-pressure; the session
    // itself never drops pipelined input). At most max_recipients RCPTs are
    // handled ahead of the oldest pending decision; input beyond waits here.
    std::size_t buffered_bytes() const noexcept;
    static constexpr std::size_t input_high_water = 64 * 1024;

    struct impl;

private:
    std::unique_ptr<impl> impl_;
};

// Printable, truncated copy of peer text for a log line.
std::string printable(std::string_view peer_text, std::size_t max = 200);

}  // namespace sigrelay::smtp
