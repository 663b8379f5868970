// The SMTP client session, driven by scripted server replies.
#include <doctest/doctest.h>

#include <sigrelay/smtp_client.hpp>

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
