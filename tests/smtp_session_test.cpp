// SMTP server session tests: SMTP dialogues as tables of client writes and
// the events the session must produce (replies, decisions, content, reset,
// close). Legitimate dialogues are also fed split at every byte position;
// pipelining checks depend on what is buffered, so those are fed as written.
#include <doctest/doctest.h>

#include <sigrelay/smtp.hpp>

#include <algorithm>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace doctest {
template <>
struct StringMaker<std::vector<std::string>> {
    static String convert(const std::vector<std::string>& v) {
        std::string out = "{";
        for (const auto& e : v) out += "\n  \"" + sigrelay::smtp::printable(e, 400) + "\"";
        return (out + "\n}").c_str();
    }
};
}  // namespace doctest

using namespace sigrelay::smtp;
using namespace std::literals;
using events = std::vector<std::string>;

namespace {

server_config test_config() {
    server_config c;
    c.hostname = "mx.test";
    c.require_tls = false;
    c.tls_available = true;
    c.max_message_size = 10000;
    c.max_recipients = 3;
    return c;
}

// Records every event; answers decisions with a scripted policy, at once
// (inside the callback) or later when `deferred`.
struct harness : session_events {
    explicit harness(server_config c = test_config()) : cfg(std::move(c)), s(cfg, *this) {}

    server_config cfg;
    server_session s;
    events ev;
    std::vector<std::string> logs;
    bool deferred = false;
    int pending = 0;
    bool closed = false;
    std::string content;  // all content of the session

    std::function<reply(const std::string& kind, const std::string& arg)> policy =
        [](const std::string& kind, const std::string& arg) -> reply {
        if (kind == "mail") return {250, "2.1.0", "Ok"};
        if (kind == "rcpt") {
            if (arg.rfind("bad", 0) == 0) return {550, "5.1.1", "No such user"};
            return {250, "2.1.5", "Ok"};
        }
        return {250, "2.0.0", "Ok: queued"};
    };

    void decide(const std::string& kind, const std::string& arg) {
        if (deferred) {
            ++pending;
            return;
        }
        s.answer(policy(kind, arg));
    }

    void send(std::string_view bytes) override {
        CHECK_FALSE(closed);  // nothing after close
        REQUIRE(bytes.size() >= 6);
        CHECK(bytes.substr(bytes.size() - 2) == "\r\n");
        std::string line(bytes.substr(0, bytes.size() - 2));
        std::replace(line.begin(), line.end(), '\r', '|');
        line.erase(std::remove(line.begin(), line.end(), '\n'), line.end());
        ev.push_back("send:" + line);
    }
    void start_tls() override { ev.push_back("starttls"); }
    void on_helo(std::string_view d, bool esmtp) override {
        ev.push_back((esmtp ? "ehlo:" : "helo:") + std::string(d));
    }
    void on_mail(const mail_command& m) override {
        ev.push_back("mail:<" + m.reverse_path + ">" + (m.params.empty() ? "" : " " + m.params));
        decide("mail", m.reverse_path);
    }
    void on_rcpt(const rcpt_command& r) override {
        ev.push_back("rcpt:<" + r.forward_path + ">");
        decide("rcpt", r.forward_path);
    }
    void on_content(std::span<const char> b) override {
        CHECK_FALSE(b.empty());
        content.append(b.data(), b.size());
        if (!ev.empty() && ev.back().rfind("content:", 0) == 0)
            ev.back().append(b.data(), b.size());
        else
            ev.push_back("content:" + std::string(b.data(), b.size()));
    }
    void on_message() override {
        ev.push_back("message");
        decide("message", "");
    }
    void on_reset() override { ev.push_back("reset"); }
    void on_close() override {
        CHECK_FALSE(closed);
        closed = true;
        ev.push_back("close");
    }
    void on_log(std::string_view l) override { logs.emplace_back(l); }

    void feed(std::string_view b) { s.feed(std::span<const char>(b.data(), b.size())); }
    // Greets and says EHLO; forgets those events.
    harness& ready() {
        s.greet();
        feed("EHLO client.test\r\n");
        ev.clear();
        return *this;
    }
    int count(std::string_view e) const { return int(std::count(ev.begin(), ev.end(), e)); }
};

enum class split { none, two, bytes };

// Runs a dialogue: greet, then each client write fed whole, or split in two
// at `at` (every write), or one octet at a time.
events run(const server_config& cfg, const std::vector<std::string>& writes, split how,
           std::size_t at = 0, std::string* content = nullptr) {
    harness h(cfg);
    h.s.greet();
    for (const auto& w : writes) {
        if (how == split::none) {
            h.feed(w);
        } else if (how == split::two) {
            const std::size_t k = std::min(at, w.size());
            h.feed(std::string_view(w).substr(0, k));
            h.feed(std::string_view(w).substr(k));
        } else {
            for (char c : w) h.feed(std::string_view(&c, 1));
        }
    }
    if (content) *content = h.content;
    return h.ev;
}

// The events of a dialogue, checked to be the same for every split.
events run_all_splits(const server_config& cfg, const std::vector<std::string>& writes) {
    const events whole = run(cfg, writes, split::none);
    std::size_t longest = 0;
    for (const auto& w : writes) longest = std::max(longest, w.size());
    for (std::size_t k = 0; k <= longest; ++k) {
        CAPTURE(k);
        REQUIRE(run(cfg, writes, split::two, k) == whole);
    }
    REQUIRE(run(cfg, writes, split::bytes) == whole);
    return whole;
}

const std::string ehlo_reply_full =
    "send:250-mx.test|250-PIPELINING|250-SIZE 10000|250-8BITMIME|250-ENHANCEDSTATUSCODES|"
    "250-CHUNKING|250-SMTPUTF8|250-STARTTLS|250 XOORG";

const std::vector<std::string> envelope = {
    "EHLO client.test\r\n",
    "MAIL FROM:<a@sender.test>\r\nRCPT TO:<r@dest.test>\r\nDATA\r\n",
};

std::vector<std::string> with_envelope(std::vector<std::string> more) {
    auto w = envelope;
    w.insert(w.end(), more.begin(), more.end());
    return w;
}

const events envelope_events = {
    "send:220 mx.test ESMTP sigrelay",
    "ehlo:client.test",
    ehlo_reply_full,
    "mail:<a@sender.test>",
    "send:250 2.1.0 Ok",
    "rcpt:<r@dest.test>",
    "send:250 2.1.5 Ok",
    "send:354 End data with <CR><LF>.<CR><LF>",
};

events with_envelope_events(events more) {
    auto e = envelope_events;
    e.insert(e.end(), more.begin(), more.end());
    return e;
}

}  // namespace

// ---- greeting, EHLO, simple commands ---------------------------------------------

TEST_CASE("greeting is 220 <hostname> <text>, no enhanced code (RFC 2034 §3)") {
    harness h;
    CHECK(h.s.current_phase() == phase::not_started);
    h.s.greet();
    CHECK(h.ev == events{"send:220 mx.test ESMTP sigrelay"});
    CHECK(h.s.current_phase() == phase::command);
    h.s.greet();  // only once
    CHECK(h.ev.size() == 1);
}

TEST_CASE("EHLO advertises the extensions in order") {
    harness h;
    h.s.greet();
    h.feed("EHLO client.test\r\n");
    CHECK(h.ev == events{"send:220 mx.test ESMTP sigrelay", "ehlo:client.test", ehlo_reply_full});
}

TEST_CASE("EHLO leaves out STARTTLS, CHUNKING and XOORG when not offered") {
    auto cfg = test_config();
    cfg.tls_available = false;
    cfg.chunking = false;
    cfg.advertise_xoorg = false;
    harness h(cfg);
    h.s.greet();
    h.feed("EHLO client.test\r\n");
    CHECK(h.ev.back() ==
          "send:250-mx.test|250-PIPELINING|250-SIZE 10000|250-8BITMIME|"
          "250-ENHANCEDSTATUSCODES|250 SMTPUTF8");
}

TEST_CASE("HELO gets a plain 250 <hostname>") {
    harness h;
    h.s.greet();
    h.feed("HELO client.test\r\n");
    CHECK(h.ev ==
          events{"send:220 mx.test ESMTP sigrelay", "helo:client.test", "send:250 mx.test"});
}

TEST_CASE("EHLO/HELO need an argument") {
    harness h;
    h.s.greet();
    h.feed("EHLO\r\n");
    h.feed("HELO \r\n");
    h.feed("EHLO a\x01z\r\n");
    CHECK(h.ev == events{"send:220 mx.test ESMTP sigrelay", "send:501 5.5.4 Syntax: EHLO hostname",
                         "send:501 5.5.4 Syntax: HELO hostname",
                         "send:501 5.5.4 Syntax: EHLO hostname"});
}

TEST_CASE("NOOP, VRFY, RSET, QUIT replies") {
    harness h;
    h.ready();
    h.feed("NOOP\r\n");
    h.feed("NOOP some text\r\n");
    h.feed("VRFY someone\r\n");
    h.feed("VRFY\r\n");
    h.feed("RSET\r\n");
    h.feed("RSET now\r\n");
    h.feed("QUIT\r\n");
    CHECK(h.ev == events{"send:250 2.0.0 Ok", "send:250 2.0.0 Ok",
                         "send:252 2.5.0 Cannot VRFY user, but will accept message and attempt "
                         "delivery",
                         "send:501 5.5.4 Syntax: VRFY address", "send:250 2.0.0 Ok",
                         "send:501 5.5.4 Syntax: RSET", "send:221 2.0.0 mx.test Bye", "close"});
    CHECK(h.s.current_phase() == phase::closed);
}

TEST_CASE("unknown verbs get 500 5.5.2; verbs are case-insensitive") {
    harness h;
    h.ready();
    h.feed("HELP\r\n");
    h.feed("EXPN list\r\n");
    h.feed("mail from:<a@b.test>\r\n");
    h.feed("\r\n");
    CHECK(h.ev == events{"send:500 5.5.2 Error: command not recognized",
                         "send:500 5.5.2 Error: command not recognized", "mail:<a@b.test>",
                         "send:250 2.1.0 Ok", "send:500 5.5.2 Error: command not recognized"});
}

TEST_CASE("a bare LF ends a command line") {
    harness h;
    h.s.greet();
    h.feed("EHLO client.test\n");
    h.feed("NOOP\n");
    CHECK(h.ev.back() == "send:250 2.0.0 Ok");
    CHECK(h.count("ehlo:client.test") == 1);
}

// ---- a clean transaction, split invariance ---------------------------------------

TEST_CASE("a clean DATA transaction, for every split of every write") {
    std::string content;
    const auto w = with_envelope({"Subject: hi\r\n\r\nbody\r\n..dot\r\n.\r\n", "QUIT\r\n"});
    const auto ev = run_all_splits(test_config(), w);
    CHECK(ev == with_envelope_events({"content:Subject: hi\r\n\r\nbody\r\n.dot\r\n", "message",
                                      "send:250 2.0.0 Ok: queued", "send:221 2.0.0 mx.test Bye",
                                      "close"}));
}

TEST_CASE("two transactions, RSET, BDAT and NOOP, for every split") {
    const std::vector<std::string> w = {
        "EHLO client.test\r\n",
        "MAIL FROM:<> BODY=8BITMIME\r\nRCPT TO:<bad@x.test>\r\nRCPT TO:<ok@x.test>\r\nDATA\r\n",
        "x\r\n.\r\n",
        "RSET\r\nMAIL FROM:<b@x.test>\r\nRCPT TO:<c@x.test>\r\nBDAT 4\r\nab\r\nBDAT 3 "
        "LAST\r\n\n.\n",
        "NOOP\r\n",
        "QUIT\r\n",
    };
    const auto ev = run_all_splits(test_config(), w);
    CHECK(ev == events{"send:220 mx.test ESMTP sigrelay",
                       "ehlo:client.test",
                       ehlo_reply_full,
                       "mail:<> BODY=8BITMIME",
                       "send:250 2.1.0 Ok",
                       "rcpt:<bad@x.test>",
                       "send:550 5.1.1 No such user",
                       "rcpt:<ok@x.test>",
                       "send:250 2.1.5 Ok",
                       "send:354 End data with <CR><LF>.<CR><LF>",
                       "content:x\r\n",
                       "message",
                       "send:250 2.0.0 Ok: queued",
                       "send:250 2.0.0 Ok",
                       "mail:<b@x.test>",
                       "send:250 2.1.0 Ok",
                       "rcpt:<c@x.test>",
                       "send:250 2.1.5 Ok",
                       "content:ab\r\n",
                       "send:250 2.0.0 4 octets received",
                       "content:\n.\n",
                       "message",
                       "send:250 2.0.0 Ok: queued",
                       "send:250 2.0.0 Ok",
                       "send:221 2.0.0 mx.test Bye",
                       "close"});
}

TEST_CASE("the first content line starts right after 354: '.' alone ends an empty message") {
    const auto ev = run_all_splits(test_config(), with_envelope({".\r\n"}));
    CHECK(ev == with_envelope_events({"message", "send:250 2.0.0 Ok: queued"}));
}

TEST_CASE("messages() counts messages answered 2yz only") {
    harness h;
    h.ready();
    h.feed("MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n");
    h.feed("x\r\n.\r\n");
    CHECK(h.s.messages() == 1);
    CHECK_FALSE(h.s.in_transaction());
    h.policy = [](const std::string& k, const std::string&) -> reply {
        return k == "message" ? reply{554, "5.7.1", "no"} : reply{250, "2.0.0", "Ok"};
    };
    h.feed("MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n");
    h.feed("x\r\n.\r\n");
    CHECK(h.ev.back() == "send:554 5.7.1 no");
    CHECK(h.s.messages() == 1);
    CHECK_FALSE(h.s.in_transaction());
    CHECK(h.count("reset") == 0);  // an answered message is not a reset
}

// ---- sequence, syntax and error limits ---------------------------------------------

TEST_CASE("MAIL before EHLO/HELO is 503 5.5.1") {
    harness h;
    h.s.greet();
    h.feed("MAIL FROM:<a@b.test>\r\n");
    CHECK(h.ev.back() == "send:503 5.5.1 Error: send HELO/EHLO first");
    CHECK(h.count("mail:<a@b.test>") == 0);
}

TEST_CASE("RCPT, DATA and BDAT without MAIL; nested MAIL") {
    harness h;
    h.ready();
    h.feed("RCPT TO:<a@b.test>\r\n");
    h.feed("DATA\r\n");
    h.feed("MAIL FROM:<a@b.test>\r\nMAIL FROM:<c@b.test>\r\n");
    CHECK(h.ev == events{"send:503 5.5.1 Error: need MAIL command",
                         "send:503 5.5.1 Error: need MAIL command", "mail:<a@b.test>",
                         "send:250 2.1.0 Ok", "send:503 5.5.1 Error: nested MAIL command"});
}

TEST_CASE("DATA with no accepted recipient is 554 5.5.1 (RFC 5321 §3.3)") {
    harness h;
    h.ready();
    h.feed("MAIL FROM:<a@b.test>\r\nRCPT TO:<bad@b.test>\r\nDATA\r\n");
    CHECK(h.ev.back() == "send:554 5.5.1 Error: no valid recipients");
    CHECK(h.s.current_phase() == phase::command);
    CHECK(h.s.in_transaction());
}

TEST_CASE("syntax errors in MAIL and RCPT are 501") {
    harness h;
    h.ready();
    h.feed("MAIL FROM:a@b.test\r\n");
    h.feed("MAIL TO:<a@b.test>\r\n");
    h.feed("MAIL FROM:<a@b.test>\r\n");
    h.feed("RCPT TO:<>\r\n");
    h.feed("RCPT TO:<a b@c.test>\r\n");
    h.feed("RCPT <a@c.test>\r\n");
    CHECK(h.ev == events{"send:501 5.1.7 Bad sender address syntax",
                         "send:501 5.5.4 Syntax: MAIL FROM:<address>", "mail:<a@b.test>",
                         "send:250 2.1.0 Ok", "send:501 5.1.3 Bad recipient address syntax",
                         "send:501 5.1.3 Bad recipient address syntax",
                         "send:501 5.5.4 Syntax: RCPT TO:<address>"});
}

TEST_CASE("max_errors errors end the session with 421 4.7.0") {
    auto cfg = test_config();
    cfg.max_errors = 3;
    harness h(cfg);
    h.ready();
    h.feed("BOGUS\r\n");
    h.feed("RCPT TO:<a@b.test>\r\n");
    CHECK_FALSE(h.closed);
    h.feed("MAIL FROM:<a@b.test>\r\nRCPT TO:<x>\r\nNOOP\r\n");
    CHECK(h.ev == events{"send:500 5.5.2 Error: command not recognized",
                         "send:503 5.5.1 Error: need MAIL command", "mail:<a@b.test>",
                         "send:250 2.1.0 Ok", "send:501 5.1.3 Bad recipient address syntax",
                         "send:421 4.7.0 mx.test Error: too many errors", "reset", "close"});
}

TEST_CASE("452 for too many recipients does not count as an error") {
    auto cfg = test_config();
    cfg.max_errors = 2;
    cfg.max_recipients = 1;
    harness h(cfg);
    h.ready();
    h.feed("MAIL FROM:<a@b.test>\r\n");
    for (int i = 0; i < 5; ++i) h.feed("RCPT TO:<r" + std::to_string(i) + "@b.test>\r\n");
    CHECK_FALSE(h.closed);
    CHECK(h.count("send:452 4.5.3 Error: too many recipients") == 4);
    CHECK(h.count("rcpt:<r0@b.test>") == 1);
    CHECK(h.count("rcpt:<r1@b.test>") == 0);
}

TEST_CASE("max_recipients counts accepted recipients only") {
    harness h;  // max_recipients = 3
    h.ready();
    h.feed("MAIL FROM:<a@b.test>\r\n");
    h.feed("RCPT TO:<bad1@b.test>\r\nRCPT TO:<bad2@b.test>\r\n");
    h.feed("RCPT TO:<1@b.test>\r\nRCPT TO:<2@b.test>\r\nRCPT TO:<3@b.test>\r\n");
    h.feed("RCPT TO:<4@b.test>\r\n");
    CHECK(h.count("send:250 2.1.5 Ok") == 3);
    CHECK(h.count("send:550 5.1.1 No such user") == 2);
    CHECK(h.ev.back() == "send:452 4.5.3 Error: too many recipients");
    CHECK(h.count("rcpt:<4@b.test>") == 0);
}

TEST_CASE("require_tls: MAIL before STARTTLS is 530 5.7.0, even without TLS on offer") {
    for (bool tls_available : {true, false}) {
        auto cfg = test_config();
        cfg.require_tls = true;
        cfg.tls_available = tls_available;
        harness h(cfg);
        h.ready();
        h.feed("MAIL FROM:<a@b.test>\r\n");
        CHECK(h.ev == events{"send:530 5.7.0 Must issue a STARTTLS command first"});
        CHECK_FALSE(h.s.in_transaction());
    }
}

// ---- STARTTLS ------------------------------------------------------------------------

TEST_CASE("STARTTLS: 220, start_tls, then a fresh session that needs EHLO") {
    auto cfg = test_config();
    cfg.require_tls = true;
    harness h(cfg);
    h.ready();
    h.feed("STARTTLS\r\n");
    CHECK(h.ev == events{"send:220 2.0.0 Ready to start TLS", "starttls"});
    CHECK(h.s.current_phase() == phase::tls);
    CHECK_FALSE(h.s.tls_active());
    h.s.tls_started();
    CHECK(h.s.tls_active());
    CHECK(h.s.current_phase() == phase::command);
    h.ev.clear();
    h.feed("MAIL FROM:<a@b.test>\r\n");
    CHECK(h.ev == events{"send:503 5.5.1 Error: send HELO/EHLO first"});
    h.feed("EHLO client.test\r\n");
    CHECK(h.ev.back().find("STARTTLS") == std::string::npos);
    CHECK(h.ev.back().find("CHUNKING") != std::string::npos);
    h.feed("MAIL FROM:<a@b.test>\r\n");
    CHECK(h.ev.back() == "send:250 2.1.0 Ok");
    h.feed("STARTTLS\r\n");
    CHECK(h.ev.back() == "send:503 5.5.1 Error: TLS already active");
}

TEST_CASE("STARTTLS\\r\\nRSET\\r\\n in one write: RSET is discarded (CVE-2011-0411)") {
    harness h;
    h.ready();
    h.feed("STARTTLS\r\nRSET\r\n");
    CHECK(h.ev == events{"send:220 2.0.0 Ready to start TLS", "starttls"});
    CHECK(h.s.buffered_bytes() == 0);
    REQUIRE_FALSE(h.logs.empty());
    CHECK(h.logs.back().find("RSET\\x0d\\x0a") != std::string::npos);
    // Plaintext fed before the handshake finishes is dropped too.
    h.feed("MAIL FROM:<evil@b.test>\r\n");
    h.s.tls_started();
    h.feed("NOOP\r\n");
    CHECK(h.ev == events{"send:220 2.0.0 Ready to start TLS", "starttls", "send:250 2.0.0 Ok"});
}

TEST_CASE("STARTTLS refused: with arguments, not offered, mid-transaction resets") {
    auto cfg = test_config();
    cfg.tls_available = false;
    harness h(cfg);
    h.ready();
    h.feed("STARTTLS now\r\n");
    h.feed("STARTTLS\r\n");
    CHECK(h.ev == events{"send:501 5.5.4 Syntax: STARTTLS",
                         "send:502 5.5.1 Error: command not implemented"});
    harness h2;
    h2.ready();
    h2.feed("MAIL FROM:<a@b.test>\r\n");
    h2.feed("STARTTLS\r\n");
    CHECK(h2.ev == events{"mail:<a@b.test>", "send:250 2.1.0 Ok", "reset",
                          "send:220 2.0.0 Ready to start TLS", "starttls"});
    CHECK_FALSE(h2.s.in_transaction());
}

TEST_CASE("tls_started called from inside start_tls works") {
    struct eager : harness {
        void start_tls() override {
            harness::start_tls();
            s.tls_started();
        }
    } h;
    h.ready();
    h.feed("STARTTLS\r\n");
    h.feed("EHLO again.test\r\n");
    CHECK(h.s.tls_active());
    CHECK(h.ev.back().find("STARTTLS") == std::string::npos);
    CHECK(h.count("ehlo:again.test") == 1);
}

// ---- pipelining (RFC 2920 §3.1) ------------------------------------------------------

TEST_CASE("input before the greeting: 554 5.5.0 and close, no 220") {
    harness h;
    h.feed("EHLO early.test\r\n");
    h.s.greet();
    CHECK(h.ev ==
          events{"send:554 5.5.0 Error: SMTP protocol violation: input before greeting", "close"});
    CHECK(h.s.current_phase() == phase::closed);
}

TEST_CASE("EHLO, HELO, NOOP, VRFY must be last in a group") {
    for (std::string_view cmd : {"EHLO x.test"sv, "HELO x.test"sv, "NOOP"sv, "VRFY u"sv}) {
        CAPTURE(cmd);
        harness h;
        h.s.greet();
        h.feed("EHLO client.test\r\n");
        h.ev.clear();
        h.feed(std::string(cmd) + "\r\nMAIL FROM:<a@b.test>\r\n");
        CHECK(h.ev == events{"send:554 5.5.0 Error: improper command pipelining", "close"});
    }
}

TEST_CASE("message content before the 354: 554 5.5.0, reset, close") {
    harness h;
    h.ready();
    h.feed(
        "MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\nSubject: early\r\n\r\nx\r\n.\r\n");
    CHECK(h.ev == events{"mail:<a@b.test>", "send:250 2.1.0 Ok", "rcpt:<c@d.test>",
                         "send:250 2.1.5 Ok", "send:554 5.5.0 Error: improper command pipelining",
                         "reset", "close"});
    CHECK(h.content.empty());
}

TEST_CASE("DATA arriving in the same write after MAIL and RCPT is fine") {
    harness h;
    h.ready();
    h.feed("RSET\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n");
    CHECK(h.ev.back() == "send:354 End data with <CR><LF>.<CR><LF>");
    CHECK(h.s.current_phase() == phase::data);
}

TEST_CASE("QUIT with input behind it: 221 and close, the rest ignored") {
    harness h;
    h.ready();
    h.feed("QUIT\r\nMAIL FROM:<a@b.test>\r\n");
    CHECK(h.ev == events{"send:221 2.0.0 mx.test Bye", "close"});
}

// ---- line limits -------------------------------------------------------------------

TEST_CASE("a 512-octet command is accepted, 513 is 500 5.5.2") {
    harness h;
    h.ready();
    const std::string ok = "NOOP " + std::string(505, 'x') + "\r\n";
    REQUIRE(ok.size() == 512);
    h.feed(ok);
    const std::string bad = "NOOP " + std::string(506, 'x') + "\r\n";
    REQUIRE(bad.size() == 513);
    h.feed(bad);
    CHECK(h.ev == events{"send:250 2.0.0 Ok", "send:500 5.5.2 Error: line too long"});
}

TEST_CASE("a 10000-octet command, then NOOP in the same write: 500 then 250") {
    const std::vector<std::string> w = {"EHLO client.test\r\n",
                                        "MAIL FROM:<" + std::string(10000, 'a') + ">\r\nNOOP\r\n"};
    // Splitting changes nothing here: NOOP is last in the write.
    std::string content;
    for (auto how : {split::none, split::bytes}) {
        const auto ev = run(test_config(), w, how);
        CHECK(std::vector(ev.end() - 2, ev.end()) ==
              events{"send:500 5.5.2 Error: line too long", "send:250 2.0.0 Ok"});
    }
    for (std::size_t k : {1u, 511u, 512u, 513u, 5000u}) {
        const auto ev = run(test_config(), w, split::two, k);
        CHECK(ev.back() == "send:250 2.0.0 Ok");
    }
}

TEST_CASE("an endless command line is never buffered") {
    harness h;
    h.ready();
    for (int i = 0; i < 100; ++i) {
        h.feed(std::string(1000, 'z'));
        CHECK(h.s.buffered_bytes() < 512);
    }
    CHECK(h.ev.empty());
    h.feed("\r\nNOOP\r\n");
    CHECK(h.ev == events{"send:500 5.5.2 Error: line too long", "send:250 2.0.0 Ok"});
}

TEST_CASE("DATA lines of 998, 999, 1000 and 10000 octets (RFC 5321 §4.5.3.1.6)") {
    struct row {
        std::size_t len;
        bool ok;
    };
    for (const row r : {row{998, true}, row{999, false}, row{1000, false}, row{10000, false}}) {
        CAPTURE(r.len);
        auto cfg = test_config();
        cfg.max_message_size = 100000;
        const auto w =
            with_envelope({"a\r\n" + std::string(r.len, 'x') + "\r\nb\r\n.\r\n", "NOOP\r\n"});
        const auto ev = run(cfg, w, split::none);
        CHECK(run(cfg, w, split::bytes) == ev);
        if (r.ok) {
            CHECK(std::count(ev.begin(), ev.end(), "message") == 1);
        } else {
            CHECK(std::count(ev.begin(), ev.end(), "message") == 0);
            CHECK(std::vector(ev.end() - 3, ev.end()) ==
                  events{"send:500 5.5.2 Error: line too long", "reset", "send:250 2.0.0 Ok"});
        }
    }
}

// ---- DATA: smuggling ------------------------------------------------------------------

namespace {

const std::string_view smuggling[] = {"\n.\n",   "\n.\r\n", "\r.\n",          "\r.\r",
                                      "\r\n.\r", "\r\n.\n", "\r\n\x00.\r\n"sv};

std::vector<std::string> smuggle_script(std::string_view seq) {
    return with_envelope({"Subject: one\r\n\r\nbody" + std::string(seq) +
                              "MAIL FROM:<evil@x.test>\r\nRCPT TO:<victim@y.test>\r\nDATA\r\n"
                              "Subject: smuggled\r\n\r\nevil\r\n.\r\n",
                          "QUIT\r\n"});
}

}  // namespace

TEST_CASE("smuggling sequences under reject: no message at all, 550 5.6.0") {
    for (std::size_t i = 0; i < 6; ++i) {  // the ones holding a bare CR or LF
        const auto seq = smuggling[i];
        CAPTURE(seq);
        std::string content;
        const auto w = smuggle_script(seq);
        const auto ev = run(test_config(), w, split::none, 0, &content);
        CHECK(run(test_config(), w, split::bytes) == ev);
        CHECK(std::count(ev.begin(), ev.end(), "message") == 0);
        CHECK(std::count(ev.begin(), ev.end(), "mail:<evil@x.test>") == 0);
        CHECK(std::vector(ev.end() - 4, ev.end()) ==
              events{"send:550 5.6.0 Error: bare CR or LF in message content", "reset",
                     "send:221 2.0.0 mx.test Bye", "close"});
        CHECK(content.find("evil") == std::string::npos);
    }
}

TEST_CASE("smuggling sequences under normalize: exactly one message, with the rest as content") {
    auto cfg = test_config();
    cfg.bare_newline = bare_newline_policy::normalize;
    for (const auto seq : smuggling) {
        CAPTURE(seq);
        std::string content;
        const auto w = smuggle_script(seq);
        const auto ev = run(cfg, w, split::none, 0, &content);
        CHECK(run(cfg, w, split::bytes) == ev);
        CHECK(std::count(ev.begin(), ev.end(), "message") == 1);
        CHECK(std::count(ev.begin(), ev.end(), "mail:<evil@x.test>") == 0);
        CHECK(std::vector(ev.end() - 4, ev.end()) == events{"message", "send:250 2.0.0 Ok: queued",
                                                            "send:221 2.0.0 mx.test Bye", "close"});
        CHECK(content.find("\r\nMAIL FROM:<evil@x.test>\r\nRCPT TO:<victim@y.test>\r\nDATA\r\n"
                           "Subject: smuggled\r\n\r\nevil\r\n") != std::string::npos);
        // Content has CRLF line ends only.
        for (std::size_t k = 0; k < content.size(); ++k) {
            if (content[k] == '\n') REQUIRE((k > 0 && content[k - 1] == '\r'));
            if (content[k] == '\r') REQUIRE((k + 1 < content.size() && content[k + 1] == '\n'));
        }
    }
}

TEST_CASE("CRLF NUL . CRLF is content under reject too: one message") {
    std::string content;
    const auto w = smuggle_script(smuggling[6]);
    const auto ev = run(test_config(), w, split::none, 0, &content);
    CHECK(std::count(ev.begin(), ev.end(), "message") == 1);
    CHECK(content.find("body\r\n\x00.\r\nMAIL FROM:<evil@x.test>"sv) != std::string::npos);
}

TEST_CASE("a bare LF in DATA is never a line end: rejected, reader stays in sync") {
    const auto ev =
        run_all_splits(test_config(), with_envelope({"\n.\r\n", "x\r\n.\r\n", "NOOP\r\n"}));
    // "\n.\r\n" is content (after a bare LF); "x\r\n.\r\n" then ends the data.
    CHECK(ev == with_envelope_events({"send:550 5.6.0 Error: bare CR or LF in message content",
                                      "reset", "send:250 2.0.0 Ok"}));
}

// ---- sizes -----------------------------------------------------------------------------

TEST_CASE("SIZE= over the maximum is 552 5.3.4 without asking, no overflow") {
    harness h;
    h.ready();
    h.feed("MAIL FROM:<a@b.test> SIZE=99999999999\r\n");
    h.feed("MAIL FROM:<a@b.test> SIZE=99999999999999999999\r\n");
    h.feed("MAIL FROM:<a@b.test> SIZE=1234567890123456789012345\r\n");
    h.feed("MAIL FROM:<a@b.test> SIZE=10001\r\n");
    h.feed("MAIL FROM:<a@b.test> SIZE=10000\r\n");
    const auto big = "send:552 5.3.4 Error: message size exceeds fixed maximum message size";
    CHECK(h.ev == events{big, big, "send:501 5.5.4 Bad parameter syntax", big,
                         "mail:<a@b.test> SIZE=10000", "send:250 2.1.0 Ok"});
}

TEST_CASE("DATA over max_message_size: content stops, 552 5.3.4, reset") {
    auto cfg = test_config();
    cfg.max_message_size = 100;
    std::string body;
    for (int i = 0; i < 20; ++i) body += "0123456789\r\n";
    std::string content;
    const auto w = with_envelope({body + ".\r\n", "NOOP\r\n"});
    const auto ev = run(cfg, w, split::none, 0, &content);
    CHECK(content.size() <= 100);
    CHECK(std::vector(ev.end() - 3, ev.end()) ==
          events{"send:552 5.3.4 Error: message size exceeds fixed maximum message size", "reset",
                 "send:250 2.0.0 Ok"});
    std::string content2;
    CHECK(run(cfg, w, split::bytes, 0, &content2) == ev);
    CHECK(content2 == content);
}

// ---- MAIL/RCPT parameters and addresses --------------------------------------------------

TEST_CASE("BODY=8BITMIME, SMTPUTF8 and XOORG reach on_mail") {
    struct rec : harness {
        mail_command last;
        void on_mail(const mail_command& m) override {
            last = m;
            harness::on_mail(m);
        }
    } h;
    h.ready();
    h.feed("MAIL FROM:<a@b.test> BODY=8BITMIME SMTPUTF8 XOORG=contoso.onmicrosoft.com SIZE=10\r\n");
    CHECK(h.last.body_8bitmime);
    CHECK(h.last.smtputf8);
    CHECK(h.last.xoorg == "contoso.onmicrosoft.com");
    CHECK(h.last.size == 10u);
    CHECK(h.last.params == "BODY=8BITMIME SMTPUTF8 XOORG=contoso.onmicrosoft.com SIZE=10");
}

TEST_CASE("bad and unknown parameters: 501 and 555 5.5.4") {
    harness h;
    h.ready();
    h.feed("MAIL FROM:<a@b.test> BODY=16BIT\r\n");
    h.feed("MAIL FROM:<a@b.test> SMTPUTF8=1\r\n");
    h.feed("MAIL FROM:<a@b.test> BODY=BINARYMIME\r\n");
    h.feed("MAIL FROM:<a@b.test> NOTIFY=NEVER\r\n");
    h.feed("MAIL FROM:<a@b.test>\r\n");
    h.feed("RCPT TO:<c@b.test> ORCPT=rfc822;c@b.test\r\n");
    CHECK(h.ev == events{"send:501 5.5.4 Bad parameter syntax",
                         "send:501 5.5.4 Bad parameter syntax",
                         "send:555 5.5.4 BODY=BINARYMIME not supported",
                         "send:555 5.5.4 Unsupported parameter", "mail:<a@b.test>",
                         "send:250 2.1.0 Ok", "send:555 5.5.4 Unsupported parameter"});
}

TEST_CASE("XOORG is an unknown parameter when not advertised") {
    auto cfg = test_config();
    cfg.advertise_xoorg = false;
    harness h(cfg);
    h.ready();
    h.feed("MAIL FROM:<a@b.test> XOORG=x.test\r\n");
    CHECK(h.ev == events{"send:555 5.5.4 Unsupported parameter"});
}

TEST_CASE("non-ASCII addresses need SMTPUTF8 (RFC 6531)") {
    harness h;
    h.ready();
    h.feed("MAIL FROM:<j\xc3\xb6rg@b.test>\r\n");
    h.feed("MAIL FROM:<a@b.test>\r\n");
    h.feed("RCPT TO:<m\xc3\xbcller@b.test>\r\n");
    h.feed("RSET\r\n");
    h.feed("MAIL FROM:<j\xc3\xb6rg@b.test> SMTPUTF8\r\n");
    h.feed("RCPT TO:<m\xc3\xbcller@b.test>\r\n");
    h.feed("RCPT TO:<m\xc3\xbcller@b\xff.test>\r\n");
    CHECK(h.ev == events{"send:553 5.6.7 Error: non-ASCII address needs SMTPUTF8",
                         "mail:<a@b.test>", "send:250 2.1.0 Ok",
                         "send:553 5.6.7 Error: non-ASCII address needs SMTPUTF8", "reset",
                         "send:250 2.0.0 Ok", "mail:<j\xc3\xb6rg@b.test> SMTPUTF8",
                         "send:250 2.1.0 Ok", "rcpt:<m\xc3\xbcller@b.test>", "send:250 2.1.5 Ok",
                         "send:501 5.1.3 Bad recipient address syntax"});
}

TEST_CASE("quoted local parts, postmaster and source routes are passed verbatim") {
    harness h;
    h.ready();
    h.feed("MAIL FROM:<\"john q. public\"@b.test>\r\n");
    h.feed("RCPT TO:<\"x@y z\"@b.test>\r\n");
    h.feed("RCPT TO:<Postmaster>\r\n");
    h.feed("RCPT TO:<@hop.test,@hop2.test:u%v@b.test>\r\n");
    CHECK(h.ev == events{"mail:<\"john q. public\"@b.test>", "send:250 2.1.0 Ok",
                         "rcpt:<\"x@y z\"@b.test>", "send:250 2.1.5 Ok", "rcpt:<Postmaster>",
                         "send:250 2.1.5 Ok", "rcpt:<@hop.test,@hop2.test:u%v@b.test>",
                         "send:250 2.1.5 Ok"});
}

// ---- BDAT (RFC 3030) -----------------------------------------------------------------

namespace {

std::vector<std::string> bdat_script(std::vector<std::string> more) {
    std::vector<std::string> w = {"EHLO client.test\r\n",
                                  "MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\n"};
    w.insert(w.end(), more.begin(), more.end());
    return w;
}

events bdat_events(events more) {
    events e = {"send:220 mx.test ESMTP sigrelay",
                "ehlo:client.test",
                ehlo_reply_full,
                "mail:<a@b.test>",
                "send:250 2.1.0 Ok",
                "rcpt:<c@d.test>",
                "send:250 2.1.5 Ok"};
    e.insert(e.end(), more.begin(), more.end());
    return e;
}

}  // namespace

TEST_CASE("BDAT chunks are byte-exact, 250 per chunk, LAST asks for the message") {
    const auto ev = run_all_splits(test_config(), bdat_script({"BDAT 10\r\nA\nB\rC\r\n.\r\n",
                                                               "BDAT 4 LAST\r\nEHLO", "NOOP\r\n"}));
    CHECK(ev == bdat_events({"content:A\nB\rC\r\n.\r\n", "send:250 2.0.0 10 octets received",
                             "content:EHLO", "message", "send:250 2.0.0 Ok: queued",
                             "send:250 2.0.0 Ok"}));
}

TEST_CASE("BDAT may be pipelined with MAIL and RCPT (RFC 3030 §4.2)") {
    harness h;
    h.ready();
    h.feed("MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nBDAT 3 LAST\r\nxyzQUIT\r\n");
    CHECK(h.ev == events{"mail:<a@b.test>", "send:250 2.1.0 Ok", "rcpt:<c@d.test>",
                         "send:250 2.1.5 Ok", "content:xyz", "message", "send:250 2.0.0 Ok: queued",
                         "send:221 2.0.0 mx.test Bye", "close"});
}

TEST_CASE("BDAT 0 LAST is valid and ends the message") {
    const auto ev = run_all_splits(test_config(), bdat_script({"BDAT 3\r\nabcBDAT 0 LAST\r\n"}));
    CHECK(ev == bdat_events({"content:abc", "send:250 2.0.0 3 octets received", "message",
                             "send:250 2.0.0 Ok: queued"}));
    const auto empty = run_all_splits(test_config(), bdat_script({"BDAT 0 LAST\r\n"}));
    CHECK(empty == bdat_events({"message", "send:250 2.0.0 Ok: queued"}));
}

TEST_CASE("BDAT 0 without LAST is 503 5.5.1 and abandons the transaction") {
    const auto ev =
        run_all_splits(test_config(), bdat_script({"BDAT 0\r\nBDAT 2 LAST\r\nxy", "NOOP\r\n"}));
    CHECK(ev == bdat_events({"send:503 5.5.1 Error: BDAT 0 needs LAST", "reset",
                             "send:503 5.5.1 Error: need MAIL command", "send:250 2.0.0 Ok"}));
}

TEST_CASE("DATA after BDAT is 503 5.5.1") {
    const auto ev = run_all_splits(test_config(), bdat_script({"BDAT 2\r\nab", "DATA\r\n"}));
    CHECK(ev == bdat_events({"content:ab", "send:250 2.0.0 2 octets received",
                             "send:503 5.5.1 Error: DATA after BDAT"}));
}

TEST_CASE("BDAT after LAST is 503 5.5.1 and its bytes are consumed, never commands") {
    const auto ev = run_all_splits(
        test_config(),
        bdat_script({"BDAT 1 LAST\r\nz", "BDAT 12\r\nQUIT\r\nQUIT\r\n", "NOOP\r\n"}));
    CHECK(ev == bdat_events({"content:z", "message", "send:250 2.0.0 Ok: queued",
                             "send:503 5.5.1 Error: need MAIL command", "send:250 2.0.0 Ok"}));
}

TEST_CASE("BDAT without accepted recipients or without CHUNKING consumes its bytes") {
    harness h;
    h.ready();
    h.feed("MAIL FROM:<a@b.test>\r\nRCPT TO:<bad@d.test>\r\nBDAT 6\r\nRSET\r\n");
    h.feed("NOOP\r\n");
    CHECK(h.ev == events{"mail:<a@b.test>", "send:250 2.1.0 Ok", "rcpt:<bad@d.test>",
                         "send:550 5.1.1 No such user", "send:503 5.5.1 Error: need RCPT command",
                         "reset", "send:250 2.0.0 Ok"});
    auto cfg = test_config();
    cfg.chunking = false;
    harness h2(cfg);
    h2.ready();
    h2.feed("BDAT 6\r\nRSET\r\n");
    h2.feed("NOOP\r\n");
    CHECK(h2.ev == events{"send:502 5.5.1 Error: BDAT not supported", "send:250 2.0.0 Ok"});
}

TEST_CASE("bad BDAT sizes: 501 5.5.4 and close") {
    for (std::string_view arg : {"x"sv, "-1"sv, "1234567890123456789012345"sv, ""sv,
                                 "18446744073709551616"sv, "5 FIRST"sv}) {
        CAPTURE(arg);
        harness h;
        h.ready();
        h.feed("MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\n");
        h.ev.clear();
        h.feed("BDAT " + std::string(arg) + "\r\nNOOP\r\n");
        CHECK(h.ev == events{"send:501 5.5.4 Syntax: BDAT <size> [LAST]", "reset", "close"});
    }
}

TEST_CASE("BDAT over max_message_size: 552 5.3.4, bytes consumed, transaction reset") {
    auto cfg = test_config();
    cfg.max_message_size = 10;
    const auto ev =
        run_all_splits(cfg, bdat_script({"BDAT 6\r\n123456", "BDAT 6 LAST\r\n789012", "NOOP\r\n"}));
    const events tail(ev.begin() + 3, ev.end());
    CHECK(tail == events{"mail:<a@b.test>", "send:250 2.1.0 Ok", "rcpt:<c@d.test>",
                         "send:250 2.1.5 Ok", "content:123456", "send:250 2.0.0 6 octets received",
                         "send:552 5.3.4 Error: message size exceeds fixed maximum message size",
                         "reset", "send:250 2.0.0 Ok"});
}

TEST_CASE("a huge BDAT chunk is streamed, not buffered") {
    auto cfg = test_config();
    cfg.max_message_size = 1u << 30;
    harness h(cfg);
    h.ready();
    h.feed("MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nBDAT 1000000 LAST\r\n");
    const std::string block(10000, 'q');
    for (int i = 0; i < 100; ++i) {
        h.feed(block);
        CHECK(h.s.buffered_bytes() == 0);
    }
    CHECK(h.content.size() == 1000000);
    CHECK(h.ev.back() == "send:250 2.0.0 Ok: queued");
}

// ---- decisions: deferred and re-entrant answers ----------------------------------------

TEST_CASE("deferred answers: pipelined input waits, then resumes") {
    harness h;
    h.deferred = true;
    h.ready();
    h.feed("MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nRCPT TO:<e@d.test>\r\nDATA\r\n");
    // The RCPTs go on at once (RFC 2920); DATA waits for every answer.
    CHECK(h.ev == events{"mail:<a@b.test>", "rcpt:<c@d.test>", "rcpt:<e@d.test>"});
    CHECK(h.s.current_phase() == phase::waiting);
    CHECK(h.s.buffered_bytes() == 6);
    CHECK_FALSE(h.s.in_transaction());
    h.s.answer({250, "2.1.0", "Sender ok"});
    CHECK(h.s.in_transaction());
    CHECK(h.ev == events{"mail:<a@b.test>", "rcpt:<c@d.test>", "rcpt:<e@d.test>",
                         "send:250 2.1.0 Sender ok"});
    h.s.answer({450, "4.2.0", "try later"});
    h.s.answer({250, "", "ok"});  // no enhanced code given: one is added
    CHECK(h.ev == events{"mail:<a@b.test>", "rcpt:<c@d.test>", "rcpt:<e@d.test>",
                         "send:250 2.1.0 Sender ok", "send:450 4.2.0 try later",
                         "send:250 2.0.0 ok", "send:354 End data with <CR><LF>.<CR><LF>"});
    CHECK(h.s.buffered_bytes() == 0);
    h.feed("x\r\n.\r\nQUIT\r\n");
    CHECK(h.ev.back() == "message");
    CHECK(h.s.buffered_bytes() == 6);
    h.s.answer({451, "4.4.1", "smart host down"});
    CHECK(h.ev == events{"mail:<a@b.test>", "rcpt:<c@d.test>", "rcpt:<e@d.test>",
                         "send:250 2.1.0 Sender ok", "send:450 4.2.0 try later",
                         "send:250 2.0.0 ok", "send:354 End data with <CR><LF>.<CR><LF>",
                         "content:x\r\n", "message", "send:451 4.4.1 smart host down",
                         "send:221 2.0.0 mx.test Bye", "close"});
    CHECK(h.s.messages() == 0);
}

TEST_CASE("deferred: a rejected MAIL leaves no transaction, RCPT then 503") {
    harness h;
    h.deferred = true;
    h.ready();
    h.feed("MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\n");
    h.s.answer({550, "5.7.1", "unknown tenant"});
    // The RCPT went on behind the MAIL; its answer is replaced by the 503.
    h.s.answer({250, "2.1.5", "Ok"});
    CHECK(h.ev == events{"mail:<a@b.test>", "rcpt:<c@d.test>", "send:550 5.7.1 unknown tenant",
                         "send:503 5.5.1 Error: need MAIL command"});
}

TEST_CASE("answer() with nothing pending is ignored; a bad code becomes 451") {
    harness h;
    h.deferred = true;
    h.ready();
    h.s.answer({250, "2.0.0", "stray"});
    CHECK(h.ev.empty());
    h.feed("MAIL FROM:<a@b.test>\r\n");
    h.s.answer({99, "", "nonsense"});
    CHECK(h.ev.back() == "send:451 4.3.0 Error: internal error");
    CHECK_FALSE(h.s.in_transaction());
}

TEST_CASE("re-entrant answers inside callbacks process a long pipeline without recursion") {
    harness h;  // answers inside on_mail / on_rcpt / on_message
    h.ready();
    std::string w;
    for (int i = 0; i < 2000; ++i) w += "RSET\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\n";
    w += "DATA\r\n";
    h.feed(w);
    CHECK(h.count("send:250 2.1.0 Ok") == 2000);
    CHECK(h.ev.back() == "send:354 End data with <CR><LF>.<CR><LF>");
    h.feed("x\r\n.\r\n");
    CHECK(h.s.messages() == 1);
}

TEST_CASE("feed() from inside a callback is queued, not recursed") {
    struct refeed : harness {
        bool once = false;
        void on_mail(const mail_command& m) override {
            harness::on_mail(m);
            if (!once) {
                once = true;
                feed("RCPT TO:<late@d.test>\r\n");
            }
        }
    } h;
    h.ready();
    h.feed("MAIL FROM:<a@b.test>\r\n");
    CHECK(h.ev == events{"mail:<a@b.test>", "send:250 2.1.0 Ok", "rcpt:<late@d.test>",
                         "send:250 2.1.5 Ok"});
}

TEST_CASE("input is read where it lies and only the unread rest is kept") {
    // feed() with nothing buffered processes the caller's bytes in place:
    // the caller may reuse its buffer as soon as feed() returns.
    harness h;
    h.deferred = true;
    h.ready();
    std::string buf = "MAIL FROM:<a@b.test>\r\nRCPT TO:<one@d.test>\r\nRCPT TO:<tw";
    h.s.feed(std::span<const char>(buf.data(), buf.size()));
    const auto kept = h.s.buffered_bytes();
    std::fill(buf.begin(), buf.end(), 'X');
    buf = "o@d.test>\r\n";
    h.s.feed(std::span<const char>(buf.data(), buf.size()));
    std::fill(buf.begin(), buf.end(), 'Y');
    while (h.pending > 0) {
        --h.pending;
        h.s.answer({250, "2.1.5", "Ok"});
    }
    CHECK(kept > 0);
    CHECK(h.count("rcpt:<one@d.test>") == 1);
    CHECK(h.count("rcpt:<two@d.test>") == 1);
    CHECK(h.s.buffered_bytes() == 0);
}

// ---- pipelined MAIL/RCPT groups (RFC 2920 §3.1): decisions ahead of answers --------------

namespace {

std::string rcpts(int from, int to) {
    std::string w;
    for (int i = from; i <= to; ++i) w += "RCPT TO:<" + std::to_string(i) + "@d.test>\r\n";
    return w;
}

const std::string reply_354 = "send:354 End data with <CR><LF>.<CR><LF>";
const std::string need_mail = "send:503 5.5.1 Error: need MAIL command";

}  // namespace

TEST_CASE("pipelining: MAIL, RCPT x3, DATA in one write asks every decision before any answer") {
    harness h;
    h.deferred = true;
    h.ready();
    h.feed("MAIL FROM:<a@b.test>\r\n" + rcpts(1, 3) + "DATA\r\n");
    CHECK(h.ev ==
          events{"mail:<a@b.test>", "rcpt:<1@d.test>", "rcpt:<2@d.test>", "rcpt:<3@d.test>"});
    CHECK(h.pending == 4);
    CHECK(h.s.current_phase() == phase::waiting);
    CHECK(h.s.buffered_bytes() == 6);  // DATA waits for the final recipient count
    CHECK_FALSE(h.s.in_transaction());
    h.ev.clear();
    h.s.answer({250, "2.1.0", "Sender ok"});
    CHECK(h.s.in_transaction());
    h.s.answer({250, "2.1.5", "one"});
    h.s.answer({250, "2.1.5", "two"});
    CHECK(h.ev == events{"send:250 2.1.0 Sender ok", "send:250 2.1.5 one", "send:250 2.1.5 two"});
    CHECK(h.s.current_phase() == phase::waiting);
    h.s.answer({250, "2.1.5", "three"});
    CHECK(h.ev == events{"send:250 2.1.0 Sender ok", "send:250 2.1.5 one", "send:250 2.1.5 two",
                         "send:250 2.1.5 three", reply_354});
    CHECK(h.s.current_phase() == phase::data);
    CHECK(h.s.buffered_bytes() == 0);
    h.feed("x\r\n.\r\n");
    h.s.answer({250, "2.0.0", "queued"});
    CHECK(h.ev.back() == "send:250 2.0.0 queued");
    CHECK(h.s.messages() == 1);
}

TEST_CASE("pipelining: mixed RCPT answers, DATA counts only the accepted ones") {
    harness h;
    h.deferred = true;
    h.ready();
    h.feed("MAIL FROM:<a@b.test>\r\n" + rcpts(1, 3) + "DATA\r\n");
    h.s.answer({250, "2.1.0", "Ok"});
    h.s.answer({550, "5.1.1", "no 1"});
    h.s.answer({250, "2.1.5", "ok 2"});
    h.s.answer({550, "5.1.1", "no 3"});
    CHECK(std::vector(h.ev.end() - 5, h.ev.end()) ==
          events{"send:250 2.1.0 Ok", "send:550 5.1.1 no 1", "send:250 2.1.5 ok 2",
                 "send:550 5.1.1 no 3", reply_354});
    h.feed(".\r\n");
    h.s.answer({250, "2.0.0", "queued"});
    // One recipient accepted: two more fit under max_recipients = 3.
    h.feed("MAIL FROM:<a@b.test>\r\n" + rcpts(4, 5));
    h.s.answer({250, "2.1.0", "Ok"});
    CHECK(h.count("rcpt:<5@d.test>") == 1);

    harness none;
    none.deferred = true;
    none.ready();
    none.feed("MAIL FROM:<a@b.test>\r\n" + rcpts(1, 2) + "DATA\r\n");
    none.s.answer({250, "2.1.0", "Ok"});
    none.s.answer({550, "5.1.1", "no"});
    none.s.answer({450, "4.2.0", "later"});
    CHECK(none.ev.back() == "send:554 5.5.1 Error: no valid recipients");
    CHECK(none.count(reply_354) == 0);
}

TEST_CASE("pipelining: MAIL refused after RCPTs went on: 503 for each, no reset, not errors") {
    auto cfg = test_config();
    cfg.max_errors = 2;  // the two 503s of the RCPTs would otherwise close the session
    harness h(cfg);
    h.deferred = true;
    h.ready();
    h.feed("MAIL FROM:<a@b.test>\r\n" + rcpts(1, 2) + "DATA\r\n");
    CHECK(h.ev == events{"mail:<a@b.test>", "rcpt:<1@d.test>", "rcpt:<2@d.test>"});
    h.s.answer({451, "4.4.3", "Smart host unavailable"});
    CHECK_FALSE(h.s.in_transaction());
    h.s.answer({250, "2.1.5", "Ok"});       // ignored: its MAIL was refused
    h.s.answer({451, "4.4.2", "Lost it"});  // ignored too
    CHECK(h.ev == events{"mail:<a@b.test>", "rcpt:<1@d.test>", "rcpt:<2@d.test>",
                         "send:451 4.4.3 Smart host unavailable", need_mail, need_mail,
                         need_mail});  // the last one is DATA's
    CHECK(h.count("reset") == 0);
    CHECK_FALSE(h.closed);  // only DATA's 503 counted
    CHECK(h.s.current_phase() == phase::command);
    h.s.answer({250, "2.0.0", "stray"});  // nothing pending: ignored
    CHECK(h.ev.back() == need_mail);
}

TEST_CASE("pipelining: replies the session makes behind a refused MAIL become 503 too") {
    harness h;
    h.deferred = true;
    h.ready();
    h.feed("MAIL FROM:<a@b.test>\r\nRCPT TO:<1@d.test>\r\nRCPT TO:<a b@c.test>\r\n");
    CHECK(h.pending == 2);
    h.s.answer({550, "5.7.1", "no"});
    h.s.answer({250, "2.1.5", "Ok"});
    CHECK(h.ev ==
          events{"mail:<a@b.test>", "rcpt:<1@d.test>", "send:550 5.7.1 no", need_mail, need_mail});
}

TEST_CASE("pipelining: RCPT checks use the pending MAIL's SMTPUTF8") {
    harness h;
    h.deferred = true;
    h.ready();
    h.feed("MAIL FROM:<a@b.test> SMTPUTF8\r\nRCPT TO:<m\xc3\xbcller@b.test>\r\n");
    CHECK(h.count("rcpt:<m\xc3\xbcller@b.test>") == 1);
    h.s.answer({250, "2.1.0", "Ok"});
    h.s.answer({250, "2.1.5", "Ok"});
    h.feed("RSET\r\n");
    h.ev.clear();
    h.feed("MAIL FROM:<a@b.test>\r\nRCPT TO:<m\xc3\xbcller@b.test>\r\nRCPT TO:<1@d.test>\r\n");
    CHECK(h.ev == events{"mail:<a@b.test>", "rcpt:<1@d.test>"});  // the 553 is held
    h.s.answer({250, "2.1.0", "Ok"});
    h.s.answer({250, "2.1.5", "Ok"});
    CHECK(h.ev == events{"mail:<a@b.test>", "rcpt:<1@d.test>", "send:250 2.1.0 Ok",
                         "send:553 5.6.7 Error: non-ASCII address needs SMTPUTF8",
                         "send:250 2.1.5 Ok"});
}

TEST_CASE("pipelining: 452 for a RCPT over max_recipients comes after the earlier replies") {
    auto cfg = test_config();
    cfg.max_recipients = 2;
    harness h(cfg);
    h.deferred = true;
    h.ready();
    h.feed("MAIL FROM:<a@b.test>\r\n");
    h.s.answer({250, "2.1.0", "Ok"});
    h.ev.clear();
    h.feed(rcpts(1, 3));
    // Two in flight count against the limit: the third is refused at once,
    // but its 452 waits for the first two replies.
    CHECK(h.ev == events{"rcpt:<1@d.test>", "rcpt:<2@d.test>"});
    const std::string r452 = format_reply({452, "4.5.3", "Error: too many recipients"});
    CHECK(h.s.buffered_bytes() == r452.size());
    h.s.answer({250, "2.1.5", "one"});
    CHECK(h.ev.back() == "send:250 2.1.5 one");
    h.s.answer({250, "2.1.5", "two"});
    CHECK(h.ev == events{"rcpt:<1@d.test>", "rcpt:<2@d.test>", "send:250 2.1.5 one",
                         "send:250 2.1.5 two", "send:452 4.5.3 Error: too many recipients"});
    CHECK(h.s.buffered_bytes() == 0);
    CHECK(h.s.current_phase() == phase::command);

    // The same with the MAIL itself still pending.
    harness m(cfg);
    m.deferred = true;
    m.ready();
    m.feed("MAIL FROM:<a@b.test>\r\n" + rcpts(1, 3));
    CHECK(m.ev == events{"mail:<a@b.test>", "rcpt:<1@d.test>", "rcpt:<2@d.test>"});
    m.s.answer({250, "2.1.0", "Ok"});
    m.s.answer({250, "2.1.5", "one"});
    CHECK(m.count("send:452 4.5.3 Error: too many recipients") == 0);
    m.s.answer({250, "2.1.5", "two"});
    CHECK(m.ev == events{"mail:<a@b.test>", "rcpt:<1@d.test>", "rcpt:<2@d.test>",
                         "send:250 2.1.0 Ok", "send:250 2.1.5 one", "send:250 2.1.5 two",
                         "send:452 4.5.3 Error: too many recipients"});
}

TEST_CASE("pipelining: at most max_recipients commands go ahead; the rest waits as input") {
    harness h;  // max_recipients = 3
    h.deferred = true;
    h.ready();
    const std::string w = "MAIL FROM:<a@b.test>\r\n" + rcpts(1, 5);
    h.feed(w);
    CHECK(h.pending == 4);  // MAIL and 3 RCPTs
    CHECK(h.s.buffered_bytes() == 2 * rcpts(4, 4).size());
    for (int i = 0; i < 4; ++i) h.s.answer({250, "2.0.0", "ok " + std::to_string(i)});
    CHECK(h.ev == events{"mail:<a@b.test>", "rcpt:<1@d.test>", "rcpt:<2@d.test>", "rcpt:<3@d.test>",
                         "send:250 2.0.0 ok 0", "send:250 2.0.0 ok 1", "send:250 2.0.0 ok 2",
                         "send:250 2.0.0 ok 3", "send:452 4.5.3 Error: too many recipients",
                         "send:452 4.5.3 Error: too many recipients"});
    CHECK(h.s.buffered_bytes() == 0);
}

TEST_CASE("pipelining: a bad RCPT behind a pending one gets its 501 after it") {
    harness h;
    h.deferred = true;
    h.ready();
    h.feed("MAIL FROM:<a@b.test>\r\n");
    h.s.answer({250, "2.1.0", "Ok"});
    h.ev.clear();
    h.feed("RCPT TO:<1@d.test>\r\nRCPT TO:<a b@c.test>\r\nRCPT TO:<2@d.test>\r\n");
    CHECK(h.ev == events{"rcpt:<1@d.test>", "rcpt:<2@d.test>"});
    CHECK(h.s.buffered_bytes() ==
          format_reply({501, "5.1.3", "Bad recipient address syntax"}).size());
    h.s.answer({550, "5.1.1", "no 1"});
    CHECK(h.ev == events{"rcpt:<1@d.test>", "rcpt:<2@d.test>", "send:550 5.1.1 no 1",
                         "send:501 5.1.3 Bad recipient address syntax"});
    h.s.answer({250, "2.1.5", "ok 2"});
    CHECK(h.ev.back() == "send:250 2.1.5 ok 2");
    CHECK(h.s.current_phase() == phase::command);
}

TEST_CASE("pipelining: max_errors reached behind pending decisions: 421 after them, then close") {
    auto cfg = test_config();
    cfg.max_errors = 1;
    harness h(cfg);
    h.deferred = true;
    h.ready();
    h.feed("MAIL FROM:<a@b.test>\r\n");
    h.s.answer({250, "2.1.0", "Ok"});
    h.ev.clear();
    h.feed("RCPT TO:<1@d.test>\r\nRCPT TO:<>\r\nRCPT TO:<2@d.test>\r\n");
    CHECK(h.ev == events{"rcpt:<1@d.test>"});  // nothing read after the last error
    CHECK_FALSE(h.closed);
    h.s.answer({250, "2.1.5", "Ok"});
    CHECK(h.ev == events{"rcpt:<1@d.test>", "send:250 2.1.5 Ok",
                         "send:501 5.1.3 Bad recipient address syntax",
                         "send:421 4.7.0 mx.test Error: too many errors", "reset", "close"});
}

TEST_CASE("pipelining: RSET or QUIT behind pending RCPTs waits for their answers") {
    harness h;
    h.deferred = true;
    h.ready();
    h.feed("MAIL FROM:<a@b.test>\r\n");
    h.s.answer({250, "2.1.0", "Ok"});
    h.ev.clear();
    h.feed(rcpts(1, 2) + "RSET\r\n");
    CHECK(h.ev == events{"rcpt:<1@d.test>", "rcpt:<2@d.test>"});
    h.s.answer({250, "2.1.5", "one"});
    CHECK(h.count("reset") == 0);
    h.s.answer({550, "5.1.1", "two"});
    CHECK(h.ev == events{"rcpt:<1@d.test>", "rcpt:<2@d.test>", "send:250 2.1.5 one",
                         "send:550 5.1.1 two", "reset", "send:250 2.0.0 Ok"});
    CHECK_FALSE(h.s.in_transaction());

    harness q;
    q.deferred = true;
    q.ready();
    q.feed("MAIL FROM:<a@b.test>\r\n" + rcpts(1, 1) + "QUIT\r\n");
    q.s.answer({250, "2.1.0", "Ok"});
    CHECK_FALSE(q.closed);
    q.s.answer({250, "2.1.5", "Ok"});
    CHECK(q.ev == events{"mail:<a@b.test>", "rcpt:<1@d.test>", "send:250 2.1.0 Ok",
                         "send:250 2.1.5 Ok", "send:221 2.0.0 mx.test Bye", "reset", "close"});
}

TEST_CASE("pipelining: peer close, timeout or shutdown while RCPT answers are pending") {
    harness h;
    h.deferred = true;
    h.ready();
    h.feed("MAIL FROM:<a@b.test>\r\n");
    h.s.answer({250, "2.1.0", "Ok"});
    h.feed(rcpts(1, 3));
    h.s.peer_closed();
    CHECK(std::vector(h.ev.end() - 2, h.ev.end()) == events{"reset", "close"});
    const auto seen = h.ev;
    for (int i = 0; i < 3; ++i) h.s.answer({250, "2.1.5", "late"});  // ignored
    h.feed("DATA\r\n");
    CHECK(h.ev == seen);
    CHECK(h.s.buffered_bytes() == 0);

    // MAIL still pending: no transaction was ever opened, so no reset.
    harness m;
    m.deferred = true;
    m.ready();
    m.feed("MAIL FROM:<a@b.test>\r\n" + rcpts(1, 2));
    m.s.peer_closed();
    m.s.answer({250, "2.1.0", "late"});
    CHECK(m.ev == events{"mail:<a@b.test>", "rcpt:<1@d.test>", "rcpt:<2@d.test>", "close"});
    CHECK_FALSE(m.s.in_transaction());

    // A timeout sends its 421 at once; the held 501 is never sent.
    harness t;
    t.deferred = true;
    t.ready();
    t.feed("MAIL FROM:<a@b.test>\r\n");
    t.s.answer({250, "2.1.0", "Ok"});
    t.ev.clear();
    t.feed("RCPT TO:<1@d.test>\r\nRCPT TO:<>\r\n");
    t.s.timed_out("smart host");
    CHECK(t.ev == events{"rcpt:<1@d.test>", "send:421 4.4.2 mx.test Error: timeout exceeded",
                         "reset", "close"});

    // Shutdown waits for the pending answers and the transaction.
    harness s;
    s.deferred = true;
    s.ready();
    s.feed("MAIL FROM:<a@b.test>\r\n" + rcpts(1, 1));
    s.s.shutdown();
    s.s.answer({550, "5.7.1", "no"});
    CHECK_FALSE(s.closed);
    s.s.answer({250, "2.1.5", "Ok"});
    CHECK(s.ev == events{"mail:<a@b.test>", "rcpt:<1@d.test>", "send:550 5.7.1 no", need_mail,
                         "send:421 4.3.2 mx.test Service shutting down", "close"});
}

TEST_CASE("pipelining: 100 RCPTs in one write, 100 decisions before any answer, replies in order") {
    auto cfg = test_config();
    cfg.max_recipients = 100;
    harness h(cfg);
    h.deferred = true;
    h.ready();
    h.feed("MAIL FROM:<a@b.test>\r\n" + rcpts(1, 100) + "DATA\r\n");
    REQUIRE(h.ev.size() == 101);
    for (int i = 1; i <= 100; ++i) CHECK(h.ev[i] == "rcpt:<" + std::to_string(i) + "@d.test>");
    CHECK(h.pending == 101);
    CHECK(h.s.buffered_bytes() == 6);
    h.ev.clear();
    h.s.answer({250, "2.1.0", "Ok"});
    for (int i = 1; i <= 100; ++i)
        h.s.answer(i % 7 ? reply{250, "2.1.5", "ok " + std::to_string(i)}
                         : reply{550, "5.1.1", "no " + std::to_string(i)});
    REQUIRE(h.ev.size() == 102);
    CHECK(h.ev[0] == "send:250 2.1.0 Ok");
    for (int i = 1; i <= 100; ++i)
        CHECK(h.ev[i] == (i % 7 ? "send:250 2.1.5 ok " : "send:550 5.1.1 no ") + std::to_string(i));
    CHECK(h.ev.back() == reply_354);
}

TEST_CASE("pipelining: nothing goes ahead past a non-RCPT command (BDAT bytes stay content)") {
    harness h;
    h.deferred = true;
    h.ready();
    const std::string chunk = "RCPT TO:<evil@x.test>\r\n";
    h.feed("MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nBDAT " + std::to_string(chunk.size()) +
           " LAST\r\n" + chunk + "NOOP\r\nRCPT TO:<late@x.test>\r\n");
    CHECK(h.ev == events{"mail:<a@b.test>", "rcpt:<c@d.test>"});
    h.s.answer({250, "2.1.0", "Ok"});
    h.s.answer({250, "2.1.5", "Ok"});
    CHECK(h.ev == events{"mail:<a@b.test>", "rcpt:<c@d.test>", "send:250 2.1.0 Ok",
                         "send:250 2.1.5 Ok", "content:" + chunk, "message"});
    CHECK(h.count("rcpt:<evil@x.test>") == 0);
    h.s.answer({250, "2.0.0", "queued"});
    // NOOP with input behind it is improper pipelining, as before.
    CHECK(std::vector(h.ev.end() - 3, h.ev.end()) ==
          events{"send:250 2.0.0 queued", "send:554 5.5.0 Error: improper command pipelining",
                 "close"});
}

namespace {

// The harness policy, and MAIL from "bad@..." refused.
reply refusing_policy(const std::string& kind, const std::string& arg) {
    if (kind == "mail" && arg.rfind("bad", 0) == 0) return {451, "4.4.3", "Smart host down"};
    if (kind == "mail") return {250, "2.1.0", "Ok"};
    if (kind == "rcpt" && arg.rfind("bad", 0) == 0) return {550, "5.1.1", "No such user"};
    if (kind == "rcpt") return {250, "2.1.5", "Ok"};
    return {250, "2.0.0", "Ok: queued"};
}

// Answers decisions later, in the order asked.
struct fifo_harness : harness {
    explicit fifo_harness(server_config c) : harness(std::move(c)) {
        deferred = true;
        policy = refusing_policy;
    }
    std::vector<std::pair<std::string, std::string>> asked;
    std::size_t next = 0;
    void on_mail(const mail_command& m) override {
        harness::on_mail(m);
        asked.emplace_back("mail", m.reverse_path);
    }
    void on_rcpt(const rcpt_command& r) override {
        harness::on_rcpt(r);
        asked.emplace_back("rcpt", r.forward_path);
    }
    void on_message() override {
        harness::on_message();
        asked.emplace_back("message", "");
    }
    void drain() {
        while (next < asked.size() && !closed) {
            const auto [kind, arg] = asked[next++];
            s.answer(policy(kind, arg));
        }
    }
};

// What the client sees and the content the owner gets, not when decisions were asked.
events observable(const events& ev) {
    events out;
    for (const auto& e : ev)
        if (e.rfind("mail:", 0) != 0 && e.rfind("rcpt:", 0) != 0) out.push_back(e);
    return out;
}

// Random pipelined groups: MAIL (accepted or refused), RCPTs (accepted,
// refused, bad syntax, non-ASCII), then DATA, BDAT, RSET, NOOP, MAIL or nothing.
std::vector<std::string> random_dialogue(unsigned& seed) {
    const auto rnd = [&seed](unsigned n) {
        seed = seed * 1103515245u + 12345u;
        return (seed >> 16) % n;
    };
    std::vector<std::string> w = {"EHLO client.test\r\n"};
    const int groups = 1 + int(rnd(4));
    for (int g = 0; g < groups; ++g) {
        std::string group;
        if (rnd(5) != 0)
            group += rnd(3) == 0 ? "MAIL FROM:<bad@b.test>\r\n"
                     : rnd(2)    ? "MAIL FROM:<a@b.test>\r\n"
                                 : "MAIL FROM:<a@b.test> SMTPUTF8\r\n";
        const int n = int(rnd(8));
        for (int i = 0; i < n; ++i) {
            switch (rnd(6)) {
                case 0:
                    group += "RCPT TO:<bad" + std::to_string(i) + "@d.test>\r\n";
                    break;
                case 1:
                    group += "RCPT TO:<x y@d.test>\r\n";
                    break;
                case 2:
                    group += "RCPT TO:<m\xc3\xbc" + std::to_string(i) + "@d.test>\r\n";
                    break;
                default:
                    group += "RCPT TO:<r" + std::to_string(i) + "@d.test>\r\n";
                    break;
            }
        }
        switch (rnd(6)) {
            case 0:
                w.push_back(group + "DATA\r\n");
                w.push_back("x\r\n.\r\n");
                continue;
            case 1:
                group += "BDAT 5 LAST\r\nRCPT\r";
                break;
            case 2:
                group += "RSET\r\n";
                break;
            case 3:
                group += "NOOP\r\n";
                break;
            case 4:
                group += "MAIL FROM:<c@b.test>\r\n";
                break;
            default:
                break;
        }
        w.push_back(group);
    }
    w.push_back("QUIT\r\n");
    return w;
}

}  // namespace

TEST_CASE("pipelining: replies are the same whether answers come at once or later") {
    auto cfg = test_config();
    cfg.max_recipients = 1000;  // in-flight RCPTs count toward the limit: keep it out of reach
    cfg.max_errors = 0;  // refused MAIL: later 503s count when lock-step, not when handled ahead
    unsigned seed = 2920;
    for (int round = 0; round < 300; ++round) {
        const auto w = random_dialogue(seed);
        CAPTURE(round);
        std::string script;
        for (const auto& x : w) script += x + "\x01";
        CAPTURE(script);
        harness lockstep(cfg);  // answers inside the callbacks
        lockstep.policy = refusing_policy;
        lockstep.s.greet();
        for (const auto& x : w) lockstep.feed(x);
        const events at_once = observable(lockstep.ev);
        for (bool bytes : {false, true}) {
            CAPTURE(bytes);
            fifo_harness h(cfg);
            h.s.greet();
            for (const auto& x : w) {
                if (!bytes) {
                    h.feed(x);
                    h.drain();
                    continue;
                }
                for (char c : x) {
                    h.feed(std::string_view(&c, 1));
                    if (c == '\n') h.drain();
                }
                h.drain();
            }
            REQUIRE(observable(h.ev) == at_once);
        }
    }
}

TEST_CASE("pipelining: answers inside the callbacks behave as before") {
    harness h;  // answers at once
    h.ready();
    h.feed("MAIL FROM:<a@b.test>\r\n" + rcpts(1, 2) + "DATA\r\n");
    CHECK(h.ev == events{"mail:<a@b.test>", "send:250 2.1.0 Ok", "rcpt:<1@d.test>",
                         "send:250 2.1.5 Ok", "rcpt:<2@d.test>", "send:250 2.1.5 Ok", reply_354});
}

TEST_CASE("pipelining: trace shows one waiting phase for a whole group") {
    auto cfg = test_config();
    cfg.trace = true;
    harness h(cfg);
    h.deferred = true;
    h.ready();
    h.logs.clear();
    h.feed("MAIL FROM:<a@b.test>\r\n" + rcpts(1, 2));
    CHECK(h.logs == std::vector<std::string>{"phase command -> waiting"});
    for (int i = 0; i < 3; ++i) h.s.answer({250, "2.0.0", "Ok"});
    CHECK(h.logs ==
          std::vector<std::string>{"phase command -> waiting", "phase waiting -> command"});
}

// ---- shutdown, timeouts, peer close, refuse ------------------------------------------------

TEST_CASE("shutdown when idle: 421 4.3.2 and close") {
    harness h;
    h.ready();
    h.s.shutdown();
    CHECK(h.ev == events{"send:421 4.3.2 mx.test Service shutting down", "close"});
    h.feed("NOOP\r\n");  // nothing after close
    CHECK(h.ev.size() == 2);
}

TEST_CASE("shutdown in a transaction: after the message's reply, 421") {
    harness h;
    h.deferred = true;
    h.ready();
    h.feed("MAIL FROM:<a@b.test>\r\n");
    h.s.answer({250, "2.1.0", "Ok"});
    h.s.shutdown();
    CHECK_FALSE(h.closed);
    h.feed("RCPT TO:<c@d.test>\r\n");
    h.s.answer({250, "2.1.5", "Ok"});
    h.feed("DATA\r\n");
    h.feed("x\r\n.\r\n");
    CHECK_FALSE(h.closed);
    h.s.answer({250, "2.0.0", "queued"});
    CHECK(std::vector(h.ev.end() - 3, h.ev.end()) ==
          events{"send:250 2.0.0 queued", "send:421 4.3.2 mx.test Service shutting down", "close"});
    CHECK(h.count("reset") == 0);
}

TEST_CASE("shutdown while a MAIL decision is pending and then rejected") {
    harness h;
    h.deferred = true;
    h.ready();
    h.feed("MAIL FROM:<a@b.test>\r\n");
    h.s.shutdown();
    CHECK_FALSE(h.closed);
    h.s.answer({550, "5.7.1", "no"});
    CHECK(h.ev == events{"mail:<a@b.test>", "send:550 5.7.1 no",
                         "send:421 4.3.2 mx.test Service shutting down", "close"});
}

TEST_CASE("timed_out: 421 4.4.2, reset if in a transaction, close") {
    harness h;
    h.ready();
    h.feed("MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n");
    h.feed("partial");
    h.s.timed_out("data timeout");
    CHECK(std::vector(h.ev.end() - 3, h.ev.end()) ==
          events{"send:421 4.4.2 mx.test Error: timeout exceeded", "reset", "close"});
    CHECK(h.logs.back().find("data timeout") != std::string::npos);
    h.s.timed_out("again");
    CHECK(h.count("close") == 1);
}

TEST_CASE("peer_closed: reset only in a transaction, close once") {
    harness h;
    h.ready();
    h.s.peer_closed();
    CHECK(h.ev == events{"close"});
    harness h2;
    h2.ready();
    h2.feed("MAIL FROM:<a@b.test>\r\n");
    h2.s.peer_closed();
    h2.s.peer_closed();
    CHECK(h2.ev == events{"mail:<a@b.test>", "send:250 2.1.0 Ok", "reset", "close"});
}

TEST_CASE("refuse() sends the reply and closes") {
    harness h;
    h.s.refuse({554, "5.7.1", "mx.test Access denied"});
    CHECK(h.ev == events{"send:554 5.7.1 mx.test Access denied", "close"});
    h.s.greet();
    CHECK(h.ev.size() == 2);
}

TEST_CASE("EHLO in a transaction resets it; RSET resets it") {
    harness h;
    h.ready();
    h.feed("MAIL FROM:<a@b.test>\r\n");
    h.feed("EHLO again.test\r\n");
    CHECK(h.ev[2] == "reset");
    CHECK_FALSE(h.s.in_transaction());
    h.ev.clear();
    h.feed("MAIL FROM:<a@b.test>\r\n");
    h.feed("RSET\r\n");
    h.feed("RSET\r\n");
    CHECK(h.ev == events{"mail:<a@b.test>", "send:250 2.1.0 Ok", "reset", "send:250 2.0.0 Ok",
                         "send:250 2.0.0 Ok"});
}

// ---- logs ---------------------------------------------------------------------------------

TEST_CASE("peer text in log lines is printable; trace shows phase changes") {
    auto cfg = test_config();
    cfg.trace = true;
    harness h(cfg);
    h.ready();
    h.feed("B\x01\xff\x1b[2J\r\n");
    REQUIRE_FALSE(h.logs.empty());
    bool found = false;
    for (const auto& l : h.logs) {
        for (unsigned char c : l) CHECK((c >= 32 && c < 127));
        found = found || l.find("B\\x01\\xff\\x1b[2J") != std::string::npos;
    }
    CHECK(found);
    CHECK(std::find(h.logs.begin(), h.logs.end(), "phase not_started -> command") != h.logs.end());
    h.feed("MAIL FROM:<a@b.test>\r\n");
    CHECK(std::find(h.logs.begin(), h.logs.end(), "phase command -> waiting") != h.logs.end());
}
