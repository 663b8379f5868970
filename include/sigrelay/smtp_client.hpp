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

    bool ready() const noexcept { return state_ == state::ready; }
    bool failed() const noexcept { return state_ == state::failed; }
    std::size_t pending() const noexcept { return waiting_.size() + queued_.size(); }
    const server_capabilities& capabilities() const noexcept { return caps_; }
    bool tls_active() const noexcept { return tls_active_; }

private:
    enum class state { greeting, ehlo, starttls, tls, ready, failed, closed };
    struct command {
        command_kind kind;
        std::string line;          // the command line, CRLF included
        std::string_view content;  // data(): the message
    };

    void handle(const reply& r);
    void fail(const reply& r);
    void send_ehlo();
    void pump();
    void transmit(command& c);
    bool parse_line(std::string_view line);

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
    bool awaiting_354_ = false;    // DATA sent, content held until 354
};

// Dot-stuffs `content` for DATA and turns every bare CR or LF into CRLF; the
// result ends with CRLF "." CRLF.
std::string dot_stuff(std::string_view content);

// Parses one reply line "250-text" / "250 2.0.0 text"; false if malformed.
bool parse_reply_line(std::string_view line, int& code, bool& more, std::string_view& text);

}  // namespace sigrelay::smtp
