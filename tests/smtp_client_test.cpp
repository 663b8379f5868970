// The SMTP client session, driven by scripted server replies.
#include <doctest/doctest.h>

#include <sigrelay/smtp_client.hpp>

#include <initializer_list>
#include <span>
#include <string>
#include <vector>

using namespace sigrelay::smtp;

namespace {

struct recorder : client_events {
    std::string sent;
    std::vector<std::string> events;
    server_capabilities caps;
    void send(std::string_view b) override { sent.append(b); }
    void start_tls() override { events.push_back("starttls"); }
    void on_ready(const server_capabilities& c) override {
        caps = c;
        events.push_back("ready");
    }
    void on_reply(command_kind k, const reply& r) override {
        static const char* names[] = {"mail", "rcpt", "data", "rset", "noop", "quit"};
        events.push_back(std::string(names[static_cast<int>(k)]) + ":" + std::to_string(r.code) +
                         (r.enhanced.empty() ? "" : " " + r.enhanced));
    }
    void on_failure(const reply& r) override { events.push_back("failure:" + std::to_string(r.code)); }
    std::string take() { return std::exchange(sent, {}); }
};

void feed(client_session& s, std::string_view bytes) { s.feed({bytes.data(), bytes.size()}); }

// message_content() with the pieces given inline.
void content(client_session& s, std::initializer_list<std::string_view> pieces) {
    s.message_content(std::span<const std::string_view>(pieces.begin(), pieces.size()));
}

// Greeting and EHLO with `keywords` ("PIPELINING", "CHUNKING"…); the bytes sent so far dropped.
void start(client_session& s, recorder& r, std::initializer_list<const char*> keywords) {
    feed(s, "220 sink\r\n");
    std::vector<std::string_view> lines{"sink"};
    lines.insert(lines.end(), keywords.begin(), keywords.end());
    std::string ehlo;
    for (std::size_t i = 0; i < lines.size(); ++i)
        ((ehlo += i + 1 < lines.size() ? "250-" : "250 ") += lines[i]) += "\r\n";
    feed(s, ehlo);
    REQUIRE(s.ready());
    r.take();
}

const char* ehlo_full =
    "250-sink.localhost\r\n250-PIPELINING\r\n250-SIZE 157286400\r\n250-8BITMIME\r\n"
    "250-ENHANCEDSTATUSCODES\r\n250-CHUNKING\r\n250-SMTPUTF8\r\n250 STARTTLS\r\n";

}  // namespace

TEST_CASE("greeting, EHLO and capabilities") {
    recorder r;
    client_session s({"relay.test", tls_mode::none}, r);
    feed(s, "220 sink ESMTP\r\n");
    CHECK(r.take() == "EHLO relay.test\r\n");
    feed(s, ehlo_full);
    REQUIRE(s.ready());
    CHECK(r.caps.pipelining);
    CHECK(r.caps.chunking);
    CHECK(r.caps.starttls);
    CHECK(r.caps.size == 157286400);
    CHECK(r.events == std::vector<std::string>{"ready"});
}

TEST_CASE("a greeting other than 220 fails the session") {
    recorder r;
    client_session s({}, r);
    feed(s, "554 5.7.1 go away\r\n");
    CHECK(s.failed());
    CHECK(r.events == std::vector<std::string>{"failure:554"});
}

TEST_CASE("replies split at every byte give the same result") {
    std::string script = std::string("220 sink ESMTP\r\n") + ehlo_full;
    for (std::size_t cut = 1; cut < script.size(); ++cut) {
        recorder r;
        client_session s({}, r);
        feed(s, std::string_view(script).substr(0, cut));
        feed(s, std::string_view(script).substr(cut));
        REQUIRE_MESSAGE(s.ready(), "cut at " << cut);
        CHECK(r.caps.chunking);
    }
}

TEST_CASE("STARTTLS: bytes after the 220 are discarded, EHLO again after TLS") {
    recorder r;
    client_session s({"relay.test", tls_mode::required}, r);
    feed(s, "220 sink ESMTP\r\n");
    r.take();
    feed(s, ehlo_full);
    CHECK(r.take() == "STARTTLS\r\n");
    // CVE-2021-38371: a server (or a man in the middle) injects a reply
    feed(s, "220 2.0.0 go ahead\r\n250 2.1.0 injected\r\n");
    CHECK(r.events == std::vector<std::string>{"starttls"});
    s.tls_started();
    CHECK(r.take() == "EHLO relay.test\r\n");
    feed(s, "250-sink\r\n250-PIPELINING\r\n250 CHUNKING\r\n");
    CHECK(s.ready());
    CHECK(s.tls_active());
    CHECK_FALSE(r.caps.starttls);
    s.mail("a@b.c");
    CHECK(r.take() == "MAIL FROM:<a@b.c>\r\n");
    feed(s, "250 2.1.0 ok\r\n");
    CHECK(r.events.back() == "mail:250 2.1.0");
}

TEST_CASE("required TLS that is not offered fails") {
    recorder r;
    client_session s({"x", tls_mode::required}, r);
    feed(s, "220 sink\r\n250-sink\r\n250 PIPELINING\r\n");
    CHECK(s.failed());
    CHECK(r.events == std::vector<std::string>{"failure:421"});
}

TEST_CASE("pipelined transaction with BDAT") {
    recorder r;
    client_session s({"x"}, r);
    feed(s, "220 sink\r\n");
    feed(s, "250-sink\r\n250-PIPELINING\r\n250 CHUNKING\r\n");
    r.take();
    std::string msg = "Subject: x\r\n\r\nbare\nLF kept\r\n.\r\n";
    s.mail("a@b.c", "BODY=8BITMIME");
    s.rcpt("d@e.f");
    s.rcpt("g@h.i");
    s.data(msg);
    CHECK(r.take() == "MAIL FROM:<a@b.c> BODY=8BITMIME\r\nRCPT TO:<d@e.f>\r\nRCPT TO:<g@h.i>\r\nBDAT " +
                          std::to_string(msg.size()) + " LAST\r\n" + msg);
    feed(s, "250 2.1.0 ok\r\n250 2.1.5 ok\r\n550 5.1.1 no such user\r\n250 2.0.0 queued\r\n");
    CHECK(r.events == std::vector<std::string>{"ready", "mail:250 2.1.0", "rcpt:250 2.1.5",
                                               "rcpt:550 5.1.1", "data:250 2.0.0"});
}

TEST_CASE("DATA without CHUNKING waits for 354 and dot-stuffs") {
    recorder r;
    client_session s({"x"}, r);
    feed(s, "220 sink\r\n250-sink\r\n250 PIPELINING\r\n");
    r.take();
    s.mail("a@b.c");
    s.rcpt("d@e.f");
    s.data(".starts with dot\r\nbare\nlf and bare\rcr\r\n.\r\nend");
    s.quit();
    CHECK(r.take() == "MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\n");
    feed(s, "250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go\r\n");
    CHECK(r.take() == "..starts with dot\r\nbare\r\nlf and bare\r\ncr\r\n..\r\nend\r\n.\r\n");
    feed(s, "250 2.0.0 queued\r\n");
    CHECK(r.take() == "QUIT\r\n");
    feed(s, "221 2.0.0 bye\r\n");
    CHECK(r.events.back() == "quit:221 2.0.0");
}

TEST_CASE("without PIPELINING one command per reply") {
    recorder r;
    client_session s({"x"}, r);
    feed(s, "220 sink\r\n250 sink\r\n");
    r.take();
    s.mail("a@b.c");
    s.rcpt("d@e.f");
    CHECK(r.take() == "MAIL FROM:<a@b.c>\r\n");
    feed(s, "250 ok\r\n");
    CHECK(r.take() == "RCPT TO:<d@e.f>\r\n");
}

TEST_CASE("a failed DATA is reported, not sent") {
    recorder r;
    client_session s({"x"}, r);
    feed(s, "220 sink\r\n250 sink\r\n");
    r.take();
    s.mail("a@b.c");
    CHECK(r.take() == "MAIL FROM:<a@b.c>\r\n");
    feed(s, "250 ok\r\n");
    s.data("hello\r\n");
    CHECK(r.take() == "DATA\r\n");
    feed(s, "554 5.5.1 no valid recipients\r\n");
    CHECK(r.take().empty());
    CHECK(r.events.back() == "data:554 5.5.1");
}

TEST_CASE("malformed and unsolicited replies fail the session") {
    for (const char* bad : {"hello\r\n", "250-a\r\n220 b\r\n", "999 x\r\n"}) {
        recorder r;
        client_session s({"x"}, r);
        feed(s, "220 sink\r\n250 sink\r\n");
        feed(s, bad);
        CHECK_MESSAGE(s.failed(), bad);
    }
    recorder r;
    client_session s({"x"}, r);
    feed(s, "220 sink\r\n250 sink\r\n421 4.3.2 shutting down\r\n");
    CHECK(r.events.back() == "failure:421");
}

TEST_CASE("dot_stuff") {
    CHECK(dot_stuff("") == ".\r\n");
    CHECK(dot_stuff("a") == "a\r\n.\r\n");
    CHECK(dot_stuff(".\r\n") == "..\r\n.\r\n");
    CHECK(dot_stuff("a\r\n.\n.\r.b") == "a\r\n..\r\n..\r\n..b\r\n.\r\n");
    CHECK(dot_stuff("x\r\n\r\n") == "x\r\n\r\n.\r\n");
}

TEST_CASE("parse_reply_line") {
    int code = 0;
    bool more = false;
    std::string_view text;
    CHECK(parse_reply_line("250-PIPELINING", code, more, text));
    CHECK(code == 250);
    CHECK(more);
    CHECK(text == "PIPELINING");
    CHECK(parse_reply_line("354", code, more, text));
    CHECK_FALSE(more);
    CHECK_FALSE(parse_reply_line("25", code, more, text));
    CHECK_FALSE(parse_reply_line("250x", code, more, text));
    CHECK_FALSE(parse_reply_line("650 x", code, more, text));
}

// ---- streamed messages ---------------------------------------------------------------

TEST_CASE("streamed BDAT: one chunk per call, pipelined; only the final reply is reported") {
    recorder r;
    client_session s({"x"}, r);
    start(s, r, {"PIPELINING", "CHUNKING"});
    s.mail("a@b.c");
    s.rcpt("d@e.f");
    s.begin_message();
    CHECK(r.take() == "MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\n");  // no chunk before content
    content(s, {"Subject: x\r\n", "\r\n"});
    CHECK(r.take() == "BDAT 14\r\nSubject: x\r\n\r\n");
    content(s, {});
    content(s, {"", ""});
    CHECK(r.take().empty());  // a total of 0 sends nothing
    content(s, {"bare\nLF", "", " kept\r\n"});
    content(s, {".\r\n", "end\r", "\n"});
    CHECK(r.take() == "BDAT 14\r\nbare\nLF kept\r\nBDAT 8\r\n.\r\nend\r\n");  // byte-exact
    CHECK(s.pending() == 5);  // MAIL, RCPT, three chunks
    s.end_message();
    CHECK(r.take() == "BDAT 0 LAST\r\n");
    CHECK(s.pending() == 6);
    feed(s, "250 2.1.0 ok\r\n250 2.1.5 ok\r\n250 2.0.0 14 octets\r\n250 2.0.0 14 octets\r\n");
    feed(s, "250 2.0.0 8 octets\r\n");
    CHECK(r.events == std::vector<std::string>{"ready", "mail:250 2.1.0", "rcpt:250 2.1.5"});
    CHECK(s.pending() == 1);
    feed(s, "250 2.0.0 queued\r\n");
    CHECK(r.events ==
          std::vector<std::string>{"ready", "mail:250 2.1.0", "rcpt:250 2.1.5", "data:250 2.0.0"});
    CHECK(s.pending() == 0);
    CHECK_FALSE(s.message_failed());
    CHECK(s.buffered_content() == 0);
}

TEST_CASE("streamed BDAT without PIPELINING: one chunk per reply, copied meanwhile") {
    recorder r;
    client_session s({"x"}, r);
    start(s, r, {"CHUNKING"});
    s.mail("a@b.c");
    s.rcpt("d@e.f");
    s.begin_message();
    std::string piece = "abc";
    content(s, {piece});
    piece = "XYZ";  // the caller's bytes may change once the call returns
    content(s, {"de"});
    CHECK(s.buffered_content() == 5);
    s.end_message();
    CHECK(r.take() == "MAIL FROM:<a@b.c>\r\n");
    feed(s, "250 ok\r\n");
    CHECK(r.take() == "RCPT TO:<d@e.f>\r\n");
    feed(s, "250 ok\r\n");
    CHECK(r.take() == "BDAT 3\r\nabc");
    CHECK(s.buffered_content() == 2);
    feed(s, "250 ok\r\n");
    CHECK(r.take() == "BDAT 2\r\nde");
    feed(s, "250 ok\r\n");
    CHECK(r.take() == "BDAT 0 LAST\r\n");
    CHECK(s.buffered_content() == 0);
    feed(s, "250 2.0.0 queued\r\n");
    CHECK(r.events.back() == "data:250 2.0.0");
    CHECK(r.events.size() == 4);
}

TEST_CASE("dot_stuffer: any split of the content gives dot_stuff()'s bytes") {
    for (std::string_view m :
         {std::string_view(
              ".lead\r\n..two\r\nx\r\n.\r\nbare CR\r.cr\nbare LF\n.lf\r\r\n\n\r\r.t\r\nno end"),
          std::string_view("x\r"), std::string_view("\r\n"), std::string_view("."),
          std::string_view(""), std::string_view("a\r\n")}) {
        const std::string whole = dot_stuff(m);
        for (std::size_t i = 0; i <= m.size(); ++i) {
            for (std::size_t j = i; j <= m.size(); ++j) {
                dot_stuffer d;
                std::string out;
                d.feed(m.substr(0, i), out);
                d.feed(m.substr(i, j - i), out);
                d.feed(m.substr(j), out);
                d.finish(out);
                REQUIRE_MESSAGE(out == whole, "splits at " << i << " and " << j);
            }
        }
        dot_stuffer d;  // byte by byte, empty feeds between
        std::string out;
        for (char c : m) {
            d.feed(std::string_view(&c, 1), out);
            d.feed({}, out);
        }
        d.finish(out);
        CHECK(out == whole);
        out.clear();
        d.feed(m, out);  // finish() made it ready for the next message
        d.finish(out);
        CHECK(out == whole);
    }
}

TEST_CASE("streamed DATA equals dot_stuff(whole) for every split, before and after the 354") {
    const std::string m =
        ".lead\r\n..two\r\nx\r\n.\r\nbare CR\r.cr\nbare LF\n.lf\r\r\n\n\r\r.t\r\nno final CRLF";
    const std::string expect = dot_stuff(m);
    CHECK(expect.ends_with("\r\nno final CRLF\r\n.\r\n"));
    std::string_view v = m;
    for (std::size_t i = 0; i <= m.size(); ++i) {
        for (std::size_t j = i; j <= m.size(); ++j) {
            recorder r;
            client_session s({"x"}, r);
            start(s, r, {"PIPELINING"});
            s.mail("a@b.c");
            s.rcpt("d@e.f");
            s.begin_message();
            REQUIRE(r.take() == "MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\n");
            content(s, {v.substr(0, i)});  // buffered: the 354 is not there yet
            feed(s, "250 ok\r\n250 ok\r\n354 go\r\n");
            // The second call in two pieces (split in the middle), the third in one.
            std::size_t mid = i + (j - i) / 2;
            content(s, {v.substr(i, mid - i), v.substr(mid, j - mid)});
            content(s, {v.substr(j), {}});
            s.end_message();
            REQUIRE_MESSAGE(r.take() == expect, "splits at " << i << " and " << j);
            feed(s, "250 2.0.0 queued\r\n");
            REQUIRE(r.events.back() == "data:250 2.0.0");
        }
    }
}

TEST_CASE(
    "streamed DATA: content before the 354 is buffered, then flushed; QUIT waits for the dot") {
    recorder r;
    client_session s({"x"}, r);
    start(s, r, {"PIPELINING"});
    s.mail("a@b.c");
    s.rcpt("d@e.f");
    s.begin_message();
    content(s, {"Hello\r\n", ".dot\r"});
    CHECK(r.take() == "MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\n");
    CHECK(s.buffered_content() == std::string_view("Hello\r\n..dot\r\n").size());
    content(s, {"\nmore"});  // the LF of the CRLF split over two calls
    CHECK(s.buffered_content() == std::string_view("Hello\r\n..dot\r\nmore").size());
    s.quit();  // RFC 2920: nothing may follow DATA before its content is done
    feed(s, "250 ok\r\n250 ok\r\n");
    CHECK(r.take().empty());
    feed(s, "354 go\r\n");
    CHECK(r.take() == "Hello\r\n..dot\r\nmore");
    CHECK(s.buffered_content() == 0);
    content(s, {" text\r\n", ".x"});
    CHECK(r.take() == " text\r\n..x");  // sent at once once the 354 is in
    CHECK(s.pending() == 2);            // DATA, QUIT
    s.end_message();
    CHECK(r.take() == "\r\n.\r\nQUIT\r\n");
    feed(s, "250 2.0.0 queued\r\n221 bye\r\n");
    CHECK(r.events ==
          std::vector<std::string>{"ready", "mail:250", "rcpt:250", "data:250 2.0.0", "quit:221"});
}

TEST_CASE("streamed DATA: the end given before the 354 goes out with the content") {
    recorder r;
    client_session s({"x"}, r);
    start(s, r, {"PIPELINING"});
    s.mail("a@b.c");
    s.rcpt("d@e.f");
    s.begin_message();
    content(s, {"body"});
    s.end_message();
    s.mail("n@b.c");  // the next transaction, pipelined behind the dot (RFC 2920 §3.1)
    CHECK(r.take() == "MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\n");
    CHECK(s.buffered_content() == std::string_view("body\r\n.\r\n").size());
    feed(s, "250 ok\r\n250 ok\r\n354 go\r\n");
    CHECK(r.take() == "body\r\n.\r\nMAIL FROM:<n@b.c>\r\n");
    CHECK(s.buffered_content() == 0);
    feed(s, "250 2.0.0 queued\r\n250 ok\r\n");
    CHECK(r.events ==
          std::vector<std::string>{"ready", "mail:250", "rcpt:250", "data:250 2.0.0", "mail:250"});
}

TEST_CASE("streamed BDAT: a 552 to the second chunk fails the message once, at once") {
    recorder r;
    client_session s({"x"}, r);
    start(s, r, {"PIPELINING", "CHUNKING"});
    s.mail("a@b.c");
    s.rcpt("d@e.f");
    s.begin_message();
    content(s, {"one\r\n"});
    content(s, {"two\r\n"});
    content(s, {"three\r\n"});
    CHECK(r.take() ==
          "MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nBDAT 5\r\none\r\nBDAT 5\r\ntwo\r\n"
          "BDAT 7\r\nthree\r\n");
    feed(s, "250 ok\r\n250 ok\r\n250 2.0.0 5 octets\r\n552 5.3.4 message too big\r\n");
    CHECK(r.events == std::vector<std::string>{"ready", "mail:250", "rcpt:250", "data:552 5.3.4"});
    CHECK(s.message_failed());
    content(s, {"four\r\n"});  // RFC 3030 §2: no further chunk
    s.end_message();           // nor LAST
    CHECK(r.take().empty());
    CHECK(s.pending() == 1);  // the third chunk's reply
    feed(s, "503 5.5.1 no transaction\r\n");
    CHECK(r.events.size() == 4);  // swallowed
    CHECK(s.pending() == 0);
    CHECK(s.abandon_message());  // nothing left to abandon: still usable
    s.rset();
    CHECK(r.take() == "RSET\r\n");
    feed(s, "250 2.0.0 reset\r\n");
    CHECK(r.events.back() == "rset:250 2.0.0");
    s.mail("a@b.c");
    s.rcpt("d@e.f");
    s.begin_message();
    CHECK_FALSE(s.message_failed());
    content(s, {"again\r\n"});
    s.end_message();
    CHECK(r.take() == "MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nBDAT 7\r\nagain\r\nBDAT 0 LAST\r\n");
    feed(s, "250 ok\r\n250 ok\r\n250 ok\r\n250 2.0.0 queued\r\n");
    CHECK(r.events == std::vector<std::string>{"ready", "mail:250", "rcpt:250", "data:552 5.3.4",
                                               "rset:250 2.0.0", "mail:250", "rcpt:250",
                                               "data:250 2.0.0"});
}

TEST_CASE("streamed BDAT: a chunk failing after LAST went out; the LAST reply is swallowed") {
    recorder r;
    client_session s({"x"}, r);
    start(s, r, {"PIPELINING", "CHUNKING"});
    s.mail("a@b.c");
    s.begin_message();
    content(s, {"x\r\n"});
    s.end_message();
    feed(s, "250 ok\r\n451 4.3.0 disk full\r\n554 5.5.1 no transaction\r\n");
    CHECK(r.events == std::vector<std::string>{"ready", "mail:250", "data:451 4.3.0"});
    CHECK(s.pending() == 0);
    CHECK(s.ready());
}

TEST_CASE("streamed BDAT: a 421 to a chunk ends the session") {
    recorder r;
    client_session s({"x"}, r);
    start(s, r, {"PIPELINING", "CHUNKING"});
    s.mail("a@b.c");
    s.begin_message();
    content(s, {"x\r\n"});
    content(s, {"y\r\n"});
    feed(s, "250 ok\r\n421 4.3.2 shutting down\r\n");
    CHECK(r.events ==
          std::vector<std::string>{"ready", "mail:250", "data:421 4.3.2", "failure:421"});
    CHECK(s.failed());
}

TEST_CASE("streamed DATA answered 554 instead of 354: reported once, content dropped") {
    recorder r;
    client_session s({"x"}, r);
    start(s, r, {"PIPELINING"});
    s.mail("a@b.c");
    s.rcpt("d@e.f");
    s.begin_message();
    content(s, {"early\r\n"});
    CHECK(s.buffered_content() == 7);
    r.take();
    feed(s, "250 ok\r\n550 5.1.1 no such user\r\n554 5.5.1 no valid recipients\r\n");
    CHECK(r.events ==
          std::vector<std::string>{"ready", "mail:250", "rcpt:550 5.1.1", "data:554 5.5.1"});
    CHECK(s.message_failed());
    CHECK(s.buffered_content() == 0);
    content(s, {"late\r\n"});
    s.end_message();
    CHECK(r.take().empty());
    CHECK(r.events.size() == 4);
    CHECK(s.pending() == 0);
    s.rset();
    CHECK(r.take() == "RSET\r\n");
}

TEST_CASE("streamed DATA: a reply before the dot is not taken for the message's acceptance") {
    recorder r;
    client_session s({"x"}, r);
    start(s, r, {});
    s.mail("a@b.c");
    feed(s, "250 ok\r\n");
    s.begin_message();
    feed(s, "354 go\r\n");
    content(s, {"half"});
    r.take();
    feed(s, "250 2.0.0 queued\r\n");
    CHECK(r.events == std::vector<std::string>{"ready", "mail:250", "failure:421"});
    CHECK(s.failed());
    CHECK(r.take().empty());
}

TEST_CASE("abandon_message with BDAT: no LAST, outstanding replies swallowed, RSET works") {
    recorder r;
    client_session s({"x"}, r);
    start(s, r, {"PIPELINING", "CHUNKING"});
    s.mail("a@b.c");
    s.rcpt("d@e.f");
    s.begin_message();
    content(s, {"one\r\n"});
    content(s, {"two\r\n"});
    r.take();
    CHECK(s.abandon_message());
    CHECK(s.message_failed());
    content(s, {"three\r\n"});
    s.end_message();
    CHECK(r.take().empty());  // never a LAST
    s.rset();
    CHECK(r.take() == "RSET\r\n");  // pipelined behind the chunks (RFC 2920 §3.1)
    feed(s, "250 ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n250 2.0.0 reset\r\n");
    CHECK(r.events == std::vector<std::string>{"ready", "mail:250", "rcpt:250", "rset:250 2.0.0"});
    CHECK(s.pending() == 0);
    CHECK(s.ready());

    // Abandoned before any content, and again once the message is over: no-ops.
    s.mail("a@b.c");
    s.begin_message();
    CHECK(s.abandon_message());
    CHECK(s.abandon_message());
    CHECK(r.take() == "MAIL FROM:<a@b.c>\r\n");
}

TEST_CASE("abandon_message with DATA after the 354: false, nothing more is sent") {
    recorder r;
    client_session s({"x"}, r);
    start(s, r, {"PIPELINING"});
    s.mail("a@b.c");
    s.rcpt("d@e.f");
    s.begin_message();
    feed(s, "250 ok\r\n250 ok\r\n354 go\r\n");
    content(s, {"partial\r\n"});
    CHECK(r.take() == "MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\npartial\r\n");
    CHECK_FALSE(s.abandon_message());
    CHECK_FALSE(s.ready());
    content(s, {"more\r\n"});
    s.end_message();
    s.rset();
    s.quit();
    feed(s, "250 ok\r\n");
    CHECK(r.take().empty());
    CHECK(r.events == std::vector<std::string>{"ready", "mail:250", "rcpt:250"});
    CHECK(s.buffered_content() == 0);
}

TEST_CASE("abandon_message with DATA sent but no 354 yet: false; not yet sent: withdrawn") {
    {
        recorder r;
        client_session s({"x"}, r);
        start(s, r, {"PIPELINING"});
        s.mail("a@b.c");
        s.begin_message();
        content(s, {"early\r\n"});
        s.end_message();  // the dot waits with the content for the 354
        r.take();
        CHECK_FALSE(s.abandon_message());
        feed(s, "250 ok\r\n354 go\r\n");
        CHECK(r.take().empty());
        CHECK(s.buffered_content() == 0);
    }
    recorder r;
    client_session s({"x"}, r);
    start(s, r, {});  // no PIPELINING: DATA waits for the RCPT reply
    s.mail("a@b.c");
    feed(s, "250 ok\r\n");
    r.take();
    s.rcpt("d@e.f");
    s.begin_message();
    content(s, {"early\r\n"});
    CHECK(r.take() == "RCPT TO:<d@e.f>\r\n");
    CHECK(s.abandon_message());
    CHECK(s.buffered_content() == 0);
    s.rset();
    feed(s, "250 ok\r\n");
    CHECK(r.take() == "RSET\r\n");
    feed(s, "250 ok\r\n");
    CHECK(r.events == std::vector<std::string>{"ready", "mail:250", "rcpt:250", "rset:250"});
}
