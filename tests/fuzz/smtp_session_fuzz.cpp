// libFuzzer target for the SMTP server session. The first byte picks the
// feed size and options; the rest is client input, fed in pieces. Decisions
// are answered alternately accept/reject, some at once and some later
// (several can be pending: RCPTs pipelined behind them go on at once).
// Invariants (trap on violation): every reply is whole lines ending in CRLF
// that start with three digits and ' ' or '-'; nothing after on_close;
// on_close once; the DATA content of a message never carries a bare CR
// or LF.
#include <sigrelay/smtp.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

using namespace sigrelay::smtp;

namespace {

void check(bool ok) {
    if (!ok) __builtin_trap();
}

struct fuzz_events : session_events {
    server_session* s = nullptr;
    bool closed = false;
    bool want_tls = false;
    bool deferred = false;  // answer later instead of inside the callback
    unsigned pending = 0;   // decisions deferred, answered in order by settle()
    unsigned decisions = 0;
    bool in_data = false;      // after a 354, before the next reply
    std::string data_content;  // content since the 354

    void send(std::string_view bytes) override {
        check(!closed);
        check(bytes.size() >= 5);
        std::size_t i = 0;
        while (i < bytes.size()) {
            const std::size_t end = bytes.find("\r\n", i);
            check(end != std::string_view::npos);
            const std::string_view line = bytes.substr(i, end - i);
            check(line.size() >= 3);
            for (int k = 0; k < 3; ++k) check(line[k] >= '0' && line[k] <= '9');
            check(line.size() == 3 || line[3] == ' ' || line[3] == '-');
            check(line.find('\r') == std::string_view::npos);
            check(line.find('\n') == std::string_view::npos);
            i = end + 2;
        }
        in_data = bytes.substr(0, 3) == "354";
        data_content.clear();
    }
    void check_no_bare_newline() {
        const std::string& c = data_content;
        for (std::size_t k = 0; k < c.size(); ++k) {
            if (c[k] == '\n') check(k > 0 && c[k - 1] == '\r');
            if (c[k] == '\r') check(k + 1 < c.size() && c[k + 1] == '\n');
        }
    }
    void start_tls() override {
        check(!closed);
        want_tls = true;
    }
    reply next_answer() {
        ++decisions;
        return decisions % 2 ? reply{250, "2.0.0", "Ok"} : reply{550, "5.7.1", "No"};
    }
    void decide() {
        check(!closed);
        if (deferred && (decisions & 2)) {
            ++pending;
            ++decisions;
            return;
        }
        s->answer(next_answer());
    }
    void on_mail(const mail_command& m) override {
        check(m.reverse_path.size() < 512);
        decide();
    }
    void on_rcpt(const rcpt_command& r) override {
        check(!r.forward_path.empty());
        decide();
    }
    void on_content(std::span<const char> b) override {
        check(!closed);
        check(!b.empty());
        if (in_data) data_content.append(b.data(), b.size());
    }
    void on_message() override {
        if (in_data) check_no_bare_newline();
        decide();
    }
    void on_reset() override { check(!closed); }
    void on_close() override {
        check(!closed);
        closed = true;
    }
    void on_log(std::string_view line) override {
        for (char c : line) check(c >= 32 && c < 127);
    }

    // Between feeds: finish a handshake, give a deferred answer.
    void settle() {
        if (want_tls) {
            want_tls = false;
            s->tls_started();
        }
        if (pending != 0 && !closed) {
            --pending;
            s->answer(next_answer());
        }
    }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    const std::uint8_t opts = data[0];
    std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);

    server_config cfg;
    cfg.hostname = "mx.fuzz";
    cfg.max_message_size = 4096;
    cfg.max_recipients = 4;
    cfg.tls_available = true;
    cfg.require_tls = opts & 0x80;
    cfg.bare_newline = (opts & 0x40) ? bare_newline_policy::normalize : bare_newline_policy::reject;
    cfg.chunking = !(opts & 0x20);
    cfg.trace = opts & 0x10;
    cfg.max_errors = 20;

    fuzz_events ev;
    ev.deferred = opts & 0x08;
    server_session s(cfg, ev);
    ev.s = &s;
    s.greet();

    // Feeds are (opts & 7) * 7 + 1 octets long, or split at each '\x01'.
    const std::size_t step = (opts & 7) * 7 + 1;
    const bool by_marker = (opts & 7) == 7;
    while (!in.empty() && !ev.closed) {
        std::size_t n = step;
        if (by_marker) {
            const std::size_t m = in.find('\x01');
            n = m == std::string_view::npos ? in.size() : m + 1;
        }
        n = n < in.size() ? n : in.size();
        s.feed(std::span<const char>(in.data(), n));
        in.remove_prefix(n);
        // Input, plus replies held behind pending decisions (at most
        // max_recipients + 1 of them, none longer than 64 octets here).
        check(s.buffered_bytes() <= size + 64 * (cfg.max_recipients + 1));
        ev.settle();
    }
    for (int i = 0; i < 8 && !ev.closed; ++i) ev.settle();
    while (ev.pending != 0 && !ev.closed) ev.settle();
    if (opts & 0x04) s.shutdown();
    s.timed_out("fuzz end");
    s.peer_closed();
    check(ev.closed);
    check(s.current_phase() == phase::closed);
    return 0;
}
