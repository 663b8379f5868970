// Signature injection (docs/behaviour.md, Signature injection): bodies, encodings, charsets,
// placement, stamp-only cases, loop guards, malformed input and the slice output.
#include <sigrelay/mime.hpp>
#include <sigrelay/mime/charset.hpp>
#include <sigrelay/mime/codec.hpp>
#include <sigrelay/mime/placement.hpp>
#include <sigrelay/mime/scanner.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <string>

using namespace sigrelay::mime;

namespace {

const char* kToken = "SIGTOKEN-42";

rendered_signature ascii_sig() {
    rendered_signature s;
    s.html = "<p>Alice Example<br>SIGTOKEN-42</p>";
    s.text = "Alice Example\nSIGTOKEN-42";
    return s;
}

rendered_signature utf8_sig() {  // é and an em dash
    rendered_signature s;
    s.html = "<p>Jos\xc3\xa9 \xe2\x80\x94 SIGTOKEN-42</p>";
    s.text = "Jos\xc3\xa9 \xe2\x80\x94\nSIGTOKEN-42";
    return s;
}

inject_options opts() {
    inject_options o;
    o.processed_header_name = "SignatureContoso";
    o.processed_header_value = "true";
    o.received_header =
        "Received: from exo.example by relay.example; Thu, 1 Jan 2026 00:00:00 +0000";
    o.sender = "alice@contoso.example";
    o.marker_id = "alice-1";
    return o;
}

struct run_result {
    injection inj;
    std::string out;
};

// Output invariants every test checks: CRLF only, lines ≤ 998, re-parses.
void check_wire(std::string_view out) {
    for (std::size_t i = 0; i < out.size(); ++i) {
        if (out[i] == '\n') REQUIRE((i > 0 && out[i - 1] == '\r'));
        if (out[i] == '\r') REQUIRE((i + 1 < out.size() && out[i + 1] == '\n'));
    }
    std::size_t start = 0;
    while (start < out.size()) {
        std::size_t nl = out.find("\r\n", start);
        if (nl == std::string_view::npos) nl = out.size();
        REQUIRE(nl - start <= 998);
        start = nl + 2;
    }
}

run_result run(std::string_view msg, const rendered_signature& sig = ascii_sig(),
               const inject_options& o = opts()) {
    auto r = inject(std::span<const char>(msg.data(), msg.size()), sig, o);
    REQUIRE(r.ok());
    run_result rr{std::move(*r), {}};
    rr.out = rr.inj.flatten(std::span<const char>(msg.data(), msg.size()));
    CHECK(rr.out.size() == rr.inj.size());
    return rr;
}

std::size_t count(std::string_view hay, std::string_view needle) {
    std::size_t n = 0;
    for (std::size_t at = hay.find(needle); at != std::string_view::npos;
         at = hay.find(needle, at + 1))
        ++n;
    return n;
}

// Decoded body of part `index` of a message.
std::string decoded(std::string_view m, std::size_t index) {
    auto parts = scan(std::span<const char>(m.data(), m.size()));
    REQUIRE(index < parts.size());
    const part& p = parts[index];
    std::string_view raw = m.substr(p.body_begin, p.body_end - p.body_begin);
    std::string out;
    if (p.cte == "base64")
        base64_decode(raw, out);
    else if (p.cte == "quoted-printable")
        qp_decode(raw, out);
    else
        out = raw;
    return out;
}

std::vector<part> parts_of(std::string_view m, std::uint32_t* d = nullptr) {
    return scan(std::span<const char>(m.data(), m.size()), {}, d);
}

// Same content-type tree.
bool same_shape(std::string_view a, std::string_view b) {
    auto pa = parts_of(a), pb = parts_of(b);
    if (pa.size() != pb.size()) return false;
    for (std::size_t i = 0; i < pa.size(); ++i)
        if (pa[i].type != pb[i].type || pa[i].subtype != pb[i].subtype ||
            pa[i].children != pb[i].children)
            return false;
    return true;
}

// The output with our two fields removed must be the input.
std::string unstamp(std::string out) {
    auto r = out.find("Received: from exo.example");
    if (r != std::string::npos) out.erase(r, out.find("\r\n", r) + 2 - r);
    auto p = out.find("SignatureContoso: true\r\n");
    if (p != std::string::npos) out.erase(p, 24);
    return out;
}

const std::string kPlain =
    "From: Alice <alice@contoso.example>\r\n"
    "To: bob@example.com\r\n"
    "Subject: hi\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=us-ascii\r\n"
    "\r\n"
    "Hello Bob.\r\n";

std::string alternative(std::string_view plain_headers, std::string_view plain_body,
                        std::string_view html_headers, std::string_view html_body) {
    return "From: a@contoso.example\r\nMIME-Version: 1.0\r\n"
           "Content-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n"
           "--alt\r\n" +
           std::string(plain_headers) + "\r\n" + std::string(plain_body) + "\r\n--alt\r\n" +
           std::string(html_headers) + "\r\n" + std::string(html_body) + "\r\n--alt--\r\n";
}

}  // namespace

TEST_CASE("text/plain: separator and signature appended, headers stamped") {
    auto r = run(kPlain);
    CHECK(r.inj.result == outcome::signed_message);
    CHECK(r.inj.reason == "text/plain");
    CHECK(r.out.starts_with("Received: from exo.example by relay.example;"));
    CHECK(r.out.find("charset=us-ascii\r\nSignatureContoso: true\r\n\r\n") != std::string::npos);
    CHECK(r.out.ends_with("Hello Bob.\r\n-- \r\nAlice Example\r\nSIGTOKEN-42\r\n"));
    check_wire(r.out);
    CHECK(same_shape(kPlain, r.out));
}

TEST_CASE("text/plain without final line end keeps that shape") {
    std::string m = "From: a@contoso.example\r\n\r\nno newline";
    auto r = run(m);
    CHECK(r.out.ends_with("no newline\r\n-- \r\nAlice Example\r\nSIGTOKEN-42"));
}

TEST_CASE("no Content-Type is text/plain us-ascii; a UTF-8 signature makes it QP UTF-8") {
    std::string m = "From: a@contoso.example\r\nSubject: x\r\n\r\nHi\r\n";
    auto r = run(m, utf8_sig());
    CHECK(r.inj.result == outcome::signed_message);
    CHECK(r.out.find(
              "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
              "Content-Transfer-Encoding: quoted-printable\r\nSignatureContoso: true\r\n\r\n") !=
          std::string::npos);
    CHECK(decoded(r.out, 0) == "Hi\r\n-- \r\nJos\xc3\xa9 \xe2\x80\x94\r\nSIGTOKEN-42\r\n");
    check_wire(r.out);
}

TEST_CASE("text/html insertion points") {
    struct row {
        const char* body;
        const char* expect_prefix;  // decoded body up to the marker div
    };
    const row rows[] = {
        {"<html><BODY><p>x</p></BODY></html>", "<html><BODY><p>x</p>"},
        {"<html><body>a</body><!-- </body> in a comment --></body></html>",
         "<html><body>a</body><!-- </body> in a comment -->"},
        {"<html><p>no body</p></HTML>", "<html><p>no body</p>"},
        {"<p>fragment</p>", "<p>fragment</p>"},
    };
    for (const auto& rw : rows) {
        CAPTURE(rw.body);
        std::string m = std::string(
                            "From: a@contoso.example\r\nContent-Type: text/html; "
                            "charset=utf-8\r\n\r\n") +
                        rw.body;
        auto r = run(m);
        CHECK(r.inj.result == outcome::signed_message);
        std::string d = decoded(r.out, 0);
        std::string div = "<div class=\"sigrelay-alice-1\" data-sigrelay=\"alice-1\">";
        CHECK(d.starts_with(std::string(rw.expect_prefix) + div));
        CHECK(count(d, kToken) == 1);
        CHECK(d.find(div + "<p>Alice Example<br>SIGTOKEN-42</p></div>") != std::string::npos);
        check_wire(r.out);
    }
}

TEST_CASE("multipart/alternative: plain and html signed, text/enriched untouched") {
    std::string m =
        "From: a@contoso.example\r\nContent-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n"
        "--alt\r\nContent-Type: text/plain\r\n\r\nplain\r\n"
        "--alt\r\nContent-Type: text/enriched\r\n\r\n<bold>rich</bold>\r\n"
        "--alt\r\nContent-Type: text/html\r\n\r\n<html><body>html</body></html>\r\n"
        "--alt--\r\n";
    auto r = run(m);
    CHECK(r.inj.result == outcome::signed_message);
    CHECK(r.inj.reason == "text/plain+text/html");
    CHECK(count(decoded(r.out, 1), kToken) == 1);
    CHECK(decoded(r.out, 2) == "<bold>rich</bold>");
    CHECK(count(decoded(r.out, 3), kToken) == 1);
    CHECK(same_shape(m, r.out));
    check_wire(r.out);
}

TEST_CASE("mixed > alternative and mixed > related > alternative; attachments untouched") {
    std::string pdf;
    base64_encode(std::string(3 << 20, '\x42'), pdf);  // a 3 MiB attachment
    std::string m =
        "From: a@contoso.example\r\nContent-Type: multipart/mixed; boundary=\"mix\"\r\n\r\n"
        "--mix\r\nContent-Type: multipart/related; boundary=\"rel\"\r\n\r\n"
        "--rel\r\nContent-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n"
        "--alt\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: "
        "quoted-printable\r\n\r\nsee attached=\r\n file\r\n"
        "--alt\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: "
        "base64\r\n\r\n" +
        [] {
            std::string b;
            base64_encode("<html><body><img src=\"cid:i\">see attached</body></html>", b);
            return b;
        }() +
        "\r\n--alt--\r\n"
        "--rel\r\nContent-Type: image/png\r\nContent-ID: <i>\r\nContent-Transfer-Encoding: "
        "base64\r\n\r\niVBORw0K\r\n"
        "--rel--\r\n"
        "--mix\r\nContent-Type: text/plain; name=\"notes.txt\"\r\n\r\nnot the body\r\n"
        "--mix\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; "
        "filename=a.pdf\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\n" +
        pdf + "\r\n--mix--\r\n";
    auto r = run(m);
    CHECK(r.inj.result == outcome::signed_message);
    CHECK(r.inj.reason == "text/plain+text/html");
    auto parts = parts_of(r.out);
    REQUIRE(parts.size() == 8);
    CHECK(decoded(r.out, 3).starts_with("see attached file\r\n-- \r\n"));
    CHECK(count(decoded(r.out, 4), kToken) == 1);
    CHECK(decoded(r.out, 5) == decoded(m, 5));
    CHECK(decoded(r.out, 6) == "not the body");
    CHECK((decoded(r.out, 7) == decoded(m, 7)));
    CHECK(same_shape(m, r.out));
    check_wire(r.out);
    // The attachment is one slice of the input: never copied.
    const std::size_t at = m.find(pdf);
    bool one_slice = false;
    for (const auto& s : r.inj.slices)
        if (s.from_input && s.offset <= at && s.offset + s.length >= at + pdf.size())
            one_slice = true;
    CHECK(one_slice);
    // New fragments are small: the signed parts and headers only.
    std::size_t fragment_bytes = 0;
    for (const auto& f : r.inj.fragments) fragment_bytes += f.size();
    CHECK(fragment_bytes < 2000);
}

TEST_CASE("7bit and 8bit bodies keep their bytes: only the signature is a new fragment") {
    auto r = run(kPlain);
    std::size_t input_bytes = 0;
    for (const auto& s : r.inj.slices)
        if (s.from_input) input_bytes += s.length;
    CHECK(input_bytes == kPlain.size());
}

TEST_CASE("transfer encodings are kept") {
    SUBCASE("quoted-printable with soft breaks and escapes") {
        std::string body =
            "A long line that goes on and on and on and needs a soft break here =\r\n"
            "and continues with a=3Db and caf=C3=A9.\r\n";
        std::string m =
            "From: a@contoso.example\r\nContent-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n" +
            body;
        auto r = run(m, utf8_sig());
        CHECK(r.inj.result == outcome::signed_message);
        CHECK(parts_of(r.out)[0].cte == "quoted-printable");
        std::string d = decoded(r.out, 0);
        std::string orig = decoded(m, 0);
        CHECK(d.starts_with(orig));
        CHECK(d.substr(orig.size()) == "-- \r\nJos\xc3\xa9 \xe2\x80\x94\r\nSIGTOKEN-42\r\n");
        check_wire(r.out);
    }
    SUBCASE("base64: lines of 76") {
        std::string text;
        for (int i = 0; i < 50; ++i) text += "line " + std::to_string(i) + "\r\n";
        std::string b;
        base64_encode(text, b);
        std::string m =
            "From: a@contoso.example\r\nContent-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: base64\r\n\r\n" +
            b + "\r\n";
        auto r = run(m, utf8_sig());
        CHECK(parts_of(r.out)[0].cte == "base64");
        CHECK(decoded(r.out, 0) == text + "-- \r\nJos\xc3\xa9 \xe2\x80\x94\r\nSIGTOKEN-42\r\n");
        std::string_view body = std::string_view(r.out).substr(parts_of(r.out)[0].body_begin);
        CHECK(body.find("\r\n") == 76);
        CHECK(body.ends_with("\r\n"));
        check_wire(r.out);
    }
    SUBCASE("7bit with a non-ASCII signature becomes quoted-printable") {
        std::string m =
            "From: a@contoso.example\r\nContent-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: 7bit\r\n\r\nHi=there\r\n";
        auto r = run(m, utf8_sig());
        CHECK(r.out.find("Content-Transfer-Encoding: quoted-printable\r\n") != std::string::npos);
        CHECK(r.out.find("7bit") == std::string::npos);
        CHECK(decoded(r.out, 0) ==
              "Hi=there\r\n-- \r\nJos\xc3\xa9 \xe2\x80\x94\r\nSIGTOKEN-42\r\n");
        check_wire(r.out);
    }
    SUBCASE("8bit stays 8bit") {
        std::string m =
            "From: a@contoso.example\r\nContent-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: 8bit\r\n\r\nGr\xc3\xbc\xc3\x9f"
            "e\r\n";
        auto r = run(m, utf8_sig());
        CHECK(parts_of(r.out)[0].cte == "8bit");
        CHECK(
            r.out.ends_with("Gr\xc3\xbc\xc3\x9f"
                            "e\r\n-- \r\nJos\xc3\xa9 \xe2\x80\x94\r\nSIGTOKEN-42\r\n"));
    }
    SUBCASE("unknown transfer encoding: stamped only") {
        std::string m =
            "From: a@contoso.example\r\nContent-Type: text/html\r\n"
            "Content-Transfer-Encoding: 8bits\r\n\r\n<p>x</p>\r\n";
        auto r = run(m);
        CHECK(r.inj.result == outcome::stamped_only);
        CHECK(r.inj.reason.find("8bits") != std::string::npos);
        CHECK(unstamp(r.out) == m);
    }
    SUBCASE("a long HTML line pushed over 998 octets switches to quoted-printable") {
        std::string html = "<html><body>" + std::string(980, 'x') + "</body></html>";
        std::string m =
            "From: a@contoso.example\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" + html;
        auto r = run(m);
        CHECK(r.inj.result == outcome::signed_message);
        CHECK(parts_of(r.out)[0].cte == "quoted-printable");
        check_wire(r.out);
    }
}

TEST_CASE("charsets") {
    SUBCASE("ISO-8859-1 part and a signature with é stays ISO-8859-1") {
        rendered_signature s;
        s.text = "Ren\xc3\xa9 SIGTOKEN-42";
        std::string m =
            "From: a@contoso.example\r\nContent-Type: text/plain; charset=ISO-8859-1\r\n"
            "Content-Transfer-Encoding: quoted-printable\r\n\r\nCaf=E9\r\n";
        auto r = run(m, s);
        CHECK(r.out.find("charset=ISO-8859-1") != std::string::npos);
        CHECK(decoded(r.out, 0) == "Caf\xe9\r\n-- \r\nRen\xe9 SIGTOKEN-42\r\n");
    }
    SUBCASE("windows-1251 part and a CJK signature: re-encoded as UTF-8") {
        rendered_signature s;
        s.text = "\xe5\xb1\xb1\xe7\x94\xb0 SIGTOKEN-42";  // 山田
        std::string b;
        base64_encode("\xcf\xf0\xe8\xe2\xe5\xf2\r\n", b);  // Привет
        std::string m =
            "From: a@contoso.example\r\nContent-Type: text/plain; charset=\"windows-1251\"; "
            "format=flowed\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
            b + "\r\n";
        auto r = run(m, s);
        CHECK(r.inj.result == outcome::signed_message);
        auto p = parts_of(r.out)[0];
        CHECK(*p.param("charset") == "utf-8");
        CHECK(*p.param("format") == "flowed");
        CHECK(p.cte == "base64");
        CHECK(decoded(r.out, 0) ==
              "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82\r\n-- \r\n\xe5\xb1\xb1\xe7\x94\xb0 "
              "SIGTOKEN-42\r\n");
    }
    SUBCASE("ISO-2022-JP part and a Japanese signature stays ISO-2022-JP") {
        rendered_signature s;
        s.text = "\xe5\xb1\xb1\xe7\x94\xb0 SIGTOKEN-42";
        std::string body = *convert("utf-8", "iso-2022-jp", "\xe3\x81\x93\xe3\x82\x93\r\n");
        std::string m =
            "From: a@contoso.example\r\nContent-Type: text/plain; charset=ISO-2022-JP\r\n"
            "Content-Transfer-Encoding: 7bit\r\n\r\n" +
            body;
        auto r = run(m, s);
        CHECK(r.inj.result == outcome::signed_message);
        CHECK(parts_of(r.out)[0].cte == "7bit");
        auto text = convert("iso-2022-jp", "utf-8", decoded(r.out, 0));
        REQUIRE(text);
        CHECK(*text ==
              "\xe3\x81\x93\xe3\x82\x93\r\n-- \r\n\xe5\xb1\xb1\xe7\x94\xb0 SIGTOKEN-42\r\n");
        check_wire(r.out);
    }
    SUBCASE("HTML in ISO-8859-1 gets character references for what it cannot hold") {
        std::string m =
            "From: a@contoso.example\r\nContent-Type: text/html; charset=iso-8859-1\r\n\r\n"
            "<html><body>x</body></html>";
        auto r = run(m, utf8_sig());
        std::string d = decoded(r.out, 0);
        CHECK(d.find("Jos\xe9 &#8212; SIGTOKEN-42") != std::string::npos);
        CHECK(r.out.find("charset=iso-8859-1") != std::string::npos);
    }
    SUBCASE("HTML without charset: ASCII with references only") {
        std::string m = "From: a@contoso.example\r\nContent-Type: text/html\r\n\r\n<p>x</p>";
        auto r = run(m, utf8_sig());
        CHECK(decoded(r.out, 0).find("Jos&#233; &#8212;") != std::string::npos);
        CHECK(parts_of(r.out)[0].cte.empty());
    }
    SUBCASE("us-ascii body with 8-bit bytes cannot be re-encoded: stamped") {
        std::string m =
            "From: a@contoso.example\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
            "caf\xe9\r\n";
        auto r = run(m, utf8_sig());
        CHECK(r.inj.result == outcome::stamped_only);
        CHECK(unstamp(r.out) == m);
    }
}

TEST_CASE("below_reply: HTML reply markers of each client") {
    struct row {
        const char* client;
        const char* marker;
    };
    const row rows[] = {
        {"Outlook desktop", "<div id=\"divRplyFwdMsg\" dir=\"ltr\"><b>From:</b> Bob</div>"},
        {"Outlook 2013+",
         "<div style=\"border:none;border-top:solid #E1E1E1 1.0pt;padding:3.0pt 0in 0in "
         "0in\"><p>From: Bob</p></div>"},
        {"Outlook 2010",
         "<div style=\"border:none;border-top:solid #B5C4DF 1.0pt\"><p>From: Bob</p></div>"},
        {"OWA", "<div id=\"appendonsend\"></div><hr><div id=\"divRplyFwdMsg\">From: Bob</div>"},
        // Outlook for iOS/Android: the rule, then divRplyFwdMsg, no appendonsend.
        {"Outlook mobile",
         "<hr style=\"display:inline-block;width:98%\" tabindex=\"-1\"> <div id=\"divRplyFwdMsg\" "
         "dir=\"ltr\"><b>From:</b> Bob</div>"},
        {"Gmail",
         "<div class=\"gmail_quote\"><div class=\"gmail_attr\">On Mon, Bob "
         "wrote:</div><blockquote>q</blockquote></div>"},
        {"Thunderbird",
         "<div class=\"moz-cite-prefix\">On 1/1/26 Bob wrote:<br></div><blockquote "
         "type=\"cite\">q</blockquote>"},
        {"Apple", "<blockquote type=\"cite\">On Jan 1, Bob wrote:<br>q</blockquote>"},
    };
    for (const auto& rw : rows) {
        CAPTURE(rw.client);
        std::string html =
            std::string("<html><body><p>My answer.</p>") + rw.marker + "</body></html>";
        std::string m =
            "From: a@contoso.example\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" + html;
        auto s = ascii_sig();
        s.where = placement::below_reply;
        auto r = run(m, s);
        std::string d = decoded(r.out, 0);
        CHECK(d.find("<p>My answer.</p><div class=\"sigrelay-alice-1\"") != std::string::npos);
        CHECK(d.find(std::string("</p></div>") + rw.marker) != std::string::npos);
    }
}

TEST_CASE("below_reply: plain text reply markers") {
    struct row {
        const char* name;
        const char* thread;
    };
    const row rows[] = {
        {"Outlook original message", "-----Original Message-----\r\nFrom: Bob\r\n"},
        {"Outlook rule", "________________________________\r\nFrom: Bob\r\nSent: Monday\r\n"},
        {"Outlook header block", "From: Bob <bob@example.com>\r\nSent: Monday\r\n"},
        {"On wrote", "On Mon, Jan 1, 2026 at 10:00 AM Bob <bob@example.com> wrote:\r\n> q\r\n"},
        {"On wrote wrapped",
         "On Mon, Jan 1, 2026 at 10:00 AM Bob <\r\nbob@example.com> wrote:\r\n> q\r\n"},
        {"quote after attribution", "Bob schrieb am Montag:\r\n> q\r\n"},
        {"tenant marker", "*** VON BOB GESENDET ***\r\nq\r\n"},
    };
    for (const auto& rw : rows) {
        CAPTURE(rw.name);
        std::string m =
            std::string("From: a@contoso.example\r\n\r\nMy answer.\r\n\r\n") + rw.thread;
        auto s = ascii_sig();
        s.where = placement::below_reply;
        auto o = opts();
        o.reply_markers = {"von bob gesendet"};
        auto r = run(m, s, o);
        CHECK(r.inj.result == outcome::signed_message);
        CHECK(decoded(r.out, 0) ==
              std::string("My answer.\r\n\r\nAlice Example\r\nSIGTOKEN-42\r\n\r\n") + rw.thread);
    }
    SUBCASE("no marker: bottom") {
        std::string m =
            "From: a@contoso.example\r\n\r\nJust text.\r\n> not after an attribution\r\n";
        auto s = ascii_sig();
        s.where = placement::below_reply;
        auto r = run(m, s);
        CHECK(
            decoded(r.out, 0).ends_with("attribution\r\n-- \r\nAlice Example\r\nSIGTOKEN-42\r\n"));
    }
}

TEST_CASE("stamped only, body byte-exact") {
    struct row {
        const char* name;
        std::string message;
        const char* reason;
    };
    const std::string text_part = "Content-Type: text/plain\r\n\r\nhello\r\n";
    const row rows[] = {
        {"multipart/signed",
         "From: a@contoso.example\r\nContent-Type: multipart/signed; "
         "protocol=\"application/pgp-signature\"; "
         "boundary=s\r\n\r\n--s\r\n" +
             text_part + "--s\r\nContent-Type: application/pgp-signature\r\n\r\nsig\r\n--s--\r\n",
         "multipart/signed"},
        {"multipart/encrypted",
         "From: a@contoso.example\r\nContent-Type: multipart/encrypted; boundary=e\r\n\r\n--e\r\n"
         "Content-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n--e--\r\n",
         "multipart/encrypted"},
        {"pkcs7-mime top level",
         "From: a@contoso.example\r\nContent-Type: application/pkcs7-mime; "
         "smime-type=enveloped-data\r\n"
         "Content-Transfer-Encoding: base64\r\n\r\nMIAGCSqGSIb3DQEHA6CAMIACAQAx\r\n",
         "pkcs7"},
        {"x-pkcs7-mime as the body",
         "From: a@contoso.example\r\nContent-Type: multipart/mixed; boundary=m\r\n\r\n--m\r\n"
         "Content-Type: application/x-pkcs7-mime\r\n\r\nMIAG\r\n--m--\r\n",
         "pkcs7"},
        {"PGP inline signed",
         "From: a@contoso.example\r\n\r\n-----BEGIN PGP SIGNED MESSAGE-----\r\nHash: "
         "SHA256\r\n\r\nhi\r\n",
         "PGP"},
        {"PGP inline message in QP html",
         "From: a@contoso.example\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: "
         "quoted-printable\r\n\r\n"
         "<pre>-----BEGIN PGP MESSAGE-----=\r\n</pre>\r\n",
         "PGP"},
        {"multipart/report",
         "From: a@contoso.example\r\nContent-Type: multipart/report; report-type=delivery-status; "
         "boundary=r\r\n\r\n"
         "--r\r\n" +
             text_part + "--r--\r\n",
         "multipart/report"},
        {"calendar nested",
         "From: a@contoso.example\r\nContent-Type: multipart/mixed; boundary=m\r\n\r\n--m\r\n"
         "Content-Type: multipart/alternative; boundary=a\r\n\r\n--a\r\n" +
             text_part +
             "--a\r\nContent-Type: text/calendar; "
             "method=REQUEST\r\n\r\nBEGIN:VCALENDAR\r\n--a--\r\n--m--\r\n",
         "calendar"},
        {"TNEF named by Exchange's correlator header",
         "From: a@contoso.example\r\nX-MS-TNEF-Correlator: <x@y>\r\n"
         "Content-Type: multipart/mixed; boundary=m\r\n\r\n--m\r\n" +
             text_part +
             "--m\r\nContent-Type: application/ms-tnef; name=winmail.dat\r\n\r\neJ8+\r\n--m--\r\n",
         "TNEF"},
        {"TNEF as the body",
         "From: a@contoso.example\r\nContent-Type: multipart/mixed; boundary=m\r\n\r\n"
         "--m\r\nContent-Type: application/ms-tnef; name=winmail.dat\r\n\r\neJ8+\r\n--m\r\n" +
             text_part + "--m--\r\n",
         "TNEF"},
        {"Auto-Submitted",
         "From: a@contoso.example\r\nAuto-Submitted: auto-replied (vacation)\r\n\r\nAway.\r\n",
         "auto-submitted"},
        {"Auto-Submitted with suppress hint",
         "From: a@contoso.example\r\nX-Auto-Response-Suppress: All\r\nAuto-Submitted: "
         "auto-generated\r\n\r\nx\r\n",
         "auto-submitted"},
        {"Precedence auto_reply",
         "From: a@contoso.example\r\nPrecedence: auto_reply\r\n\r\nAway.\r\n", "auto-reply"},
        {"X-Autoreply", "From: a@contoso.example\r\nX-Autoreply: yes\r\n\r\nAway.\r\n",
         "auto-reply"},
        {"X-Autorespond", "From: a@contoso.example\r\nX-Autorespond: Away\r\n\r\nAway.\r\n",
         "auto-reply"},
        {"attachment only",
         "From: a@contoso.example\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; "
         "filename=a.txt\r\n\r\nx\r\n",
         "no text body"},
        {"forwarded message/rfc822",
         "From: a@contoso.example\r\nContent-Type: message/rfc822\r\n\r\nFrom: b\r\n\r\ninner\r\n",
         "no text body"},
        {"first part is an image",
         "From: a@contoso.example\r\nContent-Type: multipart/related; boundary=r\r\n\r\n--r\r\n"
         "Content-Type: image/png\r\n\r\nPNG\r\n--r\r\n" +
             text_part + "--r--\r\n",
         "no text body"},
    };
    for (const auto& rw : rows) {
        CAPTURE(rw.name);
        auto r = run(rw.message);
        CHECK(r.inj.result == outcome::stamped_only);
        CHECK(r.inj.reason.find(rw.reason) != std::string::npos);
        CHECK(unstamp(r.out) == rw.message);
        CHECK(r.out.find(kToken) == std::string::npos);
        CHECK(r.out.starts_with("Received: "));
    }
    SUBCASE("null sender") {
        auto o = opts();
        o.sender = "";
        auto r = run(kPlain, ascii_sig(), o);
        CHECK(r.inj.result == outcome::stamped_only);
        CHECK(r.inj.reason == "null sender");
        CHECK(unstamp(r.out) == kPlain);
    }
    SUBCASE("Auto-Submitted: no and X-Auto-Response-Suppress alone still sign") {
        std::string m =
            "From: a@contoso.example\r\nAuto-Submitted: no\r\nX-Auto-Response-Suppress: "
            "All\r\n\r\nx\r\n";
        CHECK(run(m).inj.result == outcome::signed_message);
    }
}

TEST_CASE("loop guard: the processed header means untouched") {
    std::string m = "From: a@contoso.example\r\nsignaturecontoso: TRUE\r\n\r\nhello\r\n";
    auto r = run(m);
    CHECK(r.inj.result == outcome::untouched);
    CHECK(r.out == m);
    // The output of a first pass is untouched on a second pass.
    auto first = run(kPlain);
    auto second = run(first.out);
    CHECK(second.inj.result == outcome::untouched);
    CHECK(second.out == first.out);
}

TEST_CASE("once per conversation: the signature in a quoted thread is detected") {
    auto other_tenant = opts();
    other_tenant.processed_header_name = "SignatureFabrikam";
    SUBCASE("HTML marker survives a reply") {
        std::string m =
            alternative("Content-Type: text/plain\r\n", "first", "Content-Type: text/html\r\n",
                        "<html><body>first</body></html>");
        auto first = run(m);
        REQUIRE(first.inj.result == outcome::signed_message);
        // The reply quotes the whole signed message (as OWA does, with x_ prefixes).
        std::string quoted_html = decoded(first.out, 2);
        auto pos = quoted_html.find("class=\"sigrelay-");
        quoted_html.replace(pos, 16, "class=\"x_sigrelay-");
        std::string reply = alternative(
            "Content-Type: text/plain\r\n", "answer", "Content-Type: text/html\r\n",
            "<html><body>answer<div id=\"divRplyFwdMsg\"></div>" + quoted_html + "</body></html>");
        auto second = run(reply, ascii_sig(), other_tenant);
        CHECK(second.inj.result == outcome::stamped_only);
        CHECK(second.inj.reason.find("already holds") != std::string::npos);
        // Another sender's marker does not count.
        auto bob = other_tenant;
        bob.marker_id = "bob-2";
        CHECK(run(reply, ascii_sig(), bob).inj.result == outcome::signed_message);
        // Neither does a longer id sharing the prefix.
        bob.marker_id = "alice";
        CHECK(run(reply, ascii_sig(), bob).inj.result == outcome::signed_message);
    }
    SUBCASE("plain text quoted with '>'") {
        auto first = run(kPlain);
        std::string body = decoded(first.out, 0);
        std::string quoted;
        std::size_t start = 0;
        while (start < body.size()) {
            auto nl = body.find("\r\n", start);
            quoted += "> " + body.substr(start, nl - start) + "\r\n";
            start = nl + 2;
        }
        std::string reply =
            "From: bob@example.com\r\n\r\nThanks\r\n\r\nOn Monday Alice wrote:\r\n" + quoted;
        auto second = run(reply, ascii_sig(), other_tenant);
        CHECK(second.inj.result == outcome::stamped_only);
    }
}

TEST_CASE("once per conversation: a byte undefined in the charset does not hide the signature") {
    // fuzz regression mime_inject-crash-982c57: windows-1250 has no 0x90, so
    // the body does not convert strictly to UTF-8; the signature (é and — are
    // in windows-1250) went in all the same and must be found on a later pass.
    std::string m =
        "From: a@contoso.example\r\n"
        "Content-Type: text/plain; charset=windows-1250\r\n"
        "Content-Transfer-Encoding: 8bit\r\n"
        "\r\n"
        "x\x90y\r\n";
    auto first = run(m, utf8_sig());
    REQUIRE(first.inj.result == outcome::signed_message);
    check_wire(first.out);
    CHECK(first.out.find("Jos\xe9 \x97\r\nSIGTOKEN-42") != std::string::npos);
    auto other_tenant = opts();
    other_tenant.processed_header_name = "SignatureFabrikam";
    auto second = run(first.out, utf8_sig(), other_tenant);
    CHECK(second.inj.result == outcome::stamped_only);
    CHECK(second.inj.reason.find("already holds") != std::string::npos);
}

TEST_CASE("an empty alternative right before a delimiter keeps the delimiter on its line") {
    // fuzz regression mime_inject-crash-44bba8: an empty text/html alternative
    // (its header's empty line is also the CRLF before the delimiter) got the
    // signature with no line end, which swallowed the delimiter line.
    struct row {
        const char* headers;
        const char* body;  // "" : the delimiter follows the header block directly
    };
    const row rows[] = {
        {"Content-Type: text/html; charset=utf-8\r\n", ""},
        {"Content-Type: text/html\r\n", ""},  // 7bit: becomes QP for the UTF-8 signature
        {"Content-Type: text/html; charset=utf-8\r\n", "<p>fragment</p>\r\n"},
        {"Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n", ""},
        {"Content-Type: text/html; charset=utf-8\r\n"
         "Content-Transfer-Encoding: quoted-printable\r\n",
         ""},
        {"Content-Type: text/plain; charset=utf-8\r\n", ""},
        // Not empty: the CRLF before the delimiter is its own, nothing to add.
        {"Content-Type: text/html; charset=utf-8\r\n"
         "Content-Transfer-Encoding: quoted-printable\r\n",
         "<p>soft=\r\n"},
        {"Content-Type: text/plain; charset=utf-8\r\n"
         "Content-Transfer-Encoding: quoted-printable\r\n",
         "soft=\r\n"},
    };
    for (const auto& rw : rows) {
        const std::string headers = rw.headers, body = rw.body;
        CAPTURE(headers);
        CAPTURE(body);
        std::string m =
            alternative("Content-Type: text/plain\r\n", "Test\r\n", rw.headers, rw.body);
        // alternative() adds "\r\n" after each body: take it out again.
        auto at = m.find(std::string(rw.body) + "\r\n--alt--");
        REQUIRE(at != std::string::npos);
        m.erase(at + std::string(rw.body).size(), 2);
        REQUIRE(parts_of(m).size() == 3);
        auto r = run(m, utf8_sig());
        REQUIRE(r.inj.result == outcome::signed_message);
        CHECK(r.inj.reason == "text/plain+text/" + parts_of(m)[2].subtype);
        check_wire(r.out);
        std::uint32_t d = 0;
        parts_of(r.out, &d);
        CHECK(d == 0);
        CHECK(same_shape(m, r.out));
        CHECK(r.out.find("\r\n--alt--\r\n") != std::string::npos);
        CHECK(count(decoded(r.out, 2), "SIGTOKEN-42") == 1);
        if (!body.empty()) CHECK(r.out.find("\r\n\r\n--alt--") == std::string::npos);
    }
}

TEST_CASE("charset labels iconv reads as an ASCII-incompatible charset are never edited") {
    // fuzz regression mime_inject-crash-a45c35: glibc's iconv_open drops '['
    // from "utf-[7" and opens UTF-7, which the name check let through; the
    // signature went in as UTF-7 and a later pass signed again.
    for (const char* cs : {"utf-[7", "utf7", "UTF-{16}le", "10646-1:1993", "ibm037"}) {
        CAPTURE(cs);
        CHECK(is_ascii_incompatible_label(cs));
        for (const char* type : {"text/plain", "text/html"}) {
            std::string m = std::string("From: a@contoso.example\r\nContent-Type: ") + type +
                            "; charset=\"" + cs + "\"\r\n\r\nHello\r\n";
            auto r = run(m, utf8_sig());
            CHECK(r.inj.result == outcome::stamped_only);
            CHECK(r.inj.reason.starts_with("unsupported charset"));
            CHECK(unstamp(r.out) == m);
        }
    }
    for (const char* cs : {"utf-8", "us-ascii", "iso-8859-1", "windows-1250", "iso-2022-jp",
                           "shift_jis", "gb2312", "ks_c_5601-1987", "koi8-r"})
        CHECK_FALSE(is_ascii_incompatible_label(cs));
    // Labels iconv would read as another name (or with a "//" suffix) are unknown.
    CHECK(iconv_name("utf-[8").empty());
    CHECK(iconv_name("iso-8859-1//translit").empty());
}

TEST_CASE("ISO-2022 text left in a two-byte set where the signature goes: stamped only") {
    // fuzz regression mime_inject-crash-031d11: the body ends after ESC $ B
    // without ESC ( B; the marker went in as JIS X 0208 bytes, so readers
    // would see kanji and a later pass did not find it and signed again.
    for (const char* type : {"text/html", "text/plain"}) {
        CAPTURE(type);
        std::string m = std::string("From: a@contoso.example\r\nContent-Type: ") + type +
                        "; charset=iso-2022-jp\r\n\r\nee \x1b$B$3$s\r\n";
        auto r = run(m, utf8_sig());
        CHECK(r.inj.result == outcome::stamped_only);
        CHECK(r.inj.reason.starts_with("ISO-2022 text not in ASCII"));
        CHECK(unstamp(r.out) == m);
        // Back in ASCII at the end: signed.
        std::string ok = m;
        ok.insert(ok.size() - 2, "\x1b(B");
        CHECK(run(ok, utf8_sig()).inj.result == outcome::signed_message);
    }
    CHECK(iso2022_ascii_at("a\x1b$B$3\x1b(Bb", 1));
    CHECK_FALSE(iso2022_ascii_at("a\x1b$B$3\x1b(Bb", 6));
    CHECK(iso2022_ascii_at("a\x1b$B$3\x1b(Bb", 10));
    CHECK_FALSE(iso2022_ascii_at("a\x0e!!", 3));
    // ISO-2022-KR's announcement designates G1 only: still ASCII after it.
    CHECK(iso2022_ascii_at("\x1b$)Chi", 6));
    CHECK(ascii_search_view("\x1b$)C<b>\x0e!!\x0f</b>").ends_with("<b>\x01\x01\x01\x0f</b>"));
}

TEST_CASE("ISO-2022-KR HTML: the marker is found again on a later pass") {
    std::string m =
        "From: a@contoso.example\r\nContent-Type: text/html; charset=iso-2022-kr\r\n\r\n"
        "\x1b$)C<html><body>hi \x0e!!\x0f</body></html>\r\n";
    CHECK_FALSE(is_ascii_incompatible_label("iso-2022-kr"));
    auto first = run(m, utf8_sig());
    REQUIRE(first.inj.result == outcome::signed_message);
    CHECK(decoded(first.out, 0).find("<div class=\"sigrelay-alice-1\"") <
          decoded(first.out, 0).find("</body>"));
    auto other_tenant = opts();
    other_tenant.processed_header_name = "SignatureFabrikam";
    auto second = run(first.out, utf8_sig(), other_tenant);
    CHECK(second.inj.result == outcome::stamped_only);
    CHECK(second.inj.reason.find("already holds") != std::string::npos);
}

TEST_CASE("relabelling as UTF-8 changes the charset the parser reads, nothing else") {
    // fuzz regression mime_inject-crash-7633b3: "; charset=" inside another
    // parameter's quoted value was rewritten instead of the real charset, so
    // the UTF-8 body stayed labelled iso-8859-1 and a later pass signed again.
    std::string m =
        "From: a@contoso.example\r\n"
        "Content-Type: text/plain; x=\"a; charset=us-ascii\"; charset=iso-8859-1\r\n"
        "\r\n"
        "caf\xe9\r\n";
    auto r = run(m, utf8_sig());  // the em dash is not in iso-8859-1: the part becomes UTF-8
    REQUIRE(r.inj.result == outcome::signed_message);
    check_wire(r.out);
    auto parts = parts_of(r.out);
    REQUIRE(parts[0].param("charset"));
    CHECK(*parts[0].param("charset") == "utf-8");
    REQUIRE(parts[0].param("x"));
    CHECK(*parts[0].param("x") == "a; charset=us-ascii");
    CHECK(decoded(r.out, 0).starts_with("caf\xc3\xa9\r\n"));
    auto other_tenant = opts();
    other_tenant.processed_header_name = "SignatureFabrikam";
    CHECK(run(r.out, utf8_sig(), other_tenant).inj.result == outcome::stamped_only);
}

TEST_CASE("malformed MIME is relayed unchanged but stamped") {
    const char* rows[] = {
        "Content-Type: multipart/mixed\r\n\r\nno boundary\r\n",
        "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nunterminated\r\n",
        "Content-Type: multipart/mixed; boundary=\"----------\"\r\n\r\n--------------x\r\n",
        "From: a\r\nno blank line\r\n",
        "From: a\r\nTo: b",
        "Content-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\nContent-Type: "
        "multipart/alternative; "
        "boundary=o\r\n\r\n--o\r\n\r\nx\r\n--o--\r\n",
        "From: a\n\nbare lf\n",
        "From: a\r\n\r\nbare\rcr\r\n",
        "",
    };
    for (const char* m : rows) {
        CAPTURE(std::string(m));
        auto r = run(m);
        CHECK(r.inj.result == outcome::stamped_only);
        std::string u = unstamp(r.out);
        CHECK((u == m || u == std::string(m) + "\r\n"));
    }
    SUBCASE("header block over max_header_bytes") {
        auto o = opts();
        o.max_header_bytes = 100;
        std::string m = "X-Long: " + std::string(200, 'a') + "\r\n\r\nbody\r\n";
        auto r = run(m, ascii_sig(), o);
        CHECK(r.inj.result == outcome::stamped_only);
        CHECK(unstamp(r.out) == m);
    }
}

TEST_CASE("header values we write never carry CR, LF or NUL") {
    auto o = opts();
    o.processed_header_value = std::string("true\r\nBcc: evil@example.com\0x", 29);
    o.received_header = "Received: from a\r\n\tby b;\r\nBcc: evil@example.com\nX: y";
    auto r = run(kPlain, ascii_sig(), o);
    CHECK(r.out.starts_with("Received: from a\r\n\tby b;  Bcc: evil@example.com X: y\r\nFrom:"));
    CHECK(r.out.find("SignatureContoso: true  Bcc: evil@example.com x\r\n") != std::string::npos);
    check_wire(r.out);
    auto bad = opts();
    bad.processed_header_name = "Bad Name";
    CHECK_FALSE(inject(std::span<const char>(kPlain.data(), kPlain.size()), ascii_sig(), bad).ok());
    bad.processed_header_name = "";
    CHECK_FALSE(inject(std::span<const char>(kPlain.data(), kPlain.size()), ascii_sig(), bad).ok());
    bad = opts();
    bad.received_header = "no colon";
    CHECK_FALSE(inject(std::span<const char>(kPlain.data(), kPlain.size()), ascii_sig(), bad).ok());
    bad = opts();
    bad.marker_id = "x\" onload=\"evil";
    auto html = std::string("From: a@contoso.example\r\nContent-Type: text/html\r\n\r\n<p>x</p>");
    auto rr = run(html, ascii_sig(), bad);
    CHECK(rr.out.find("onload=") == std::string::npos);
}

TEST_CASE("mbox From_ line: Received goes after it") {
    std::string m =
        "From alice@contoso.example Mon Jan  1 00:00:00 2026\r\nFrom: "
        "a@contoso.example\r\n\r\nx\r\n";
    auto r = run(m);
    CHECK(r.inj.result == outcome::signed_message);
    CHECK(r.out.starts_with("From alice@contoso.example Mon Jan  1 00:00:00 2026\r\nReceived: "));
}

TEST_CASE("a From_ line without a line end: each stamp field still starts a line") {
    // fuzz regression mime_inject-crash-bb70ae: the message is one unterminated
    // "From " line; Received went onto that line and the processed header
    // after an empty line, in the body, so a second pass signed again.
    const std::string m = "From x: y";
    auto r = run(m);
    CHECK(r.inj.result == outcome::stamped_only);
    check_wire(r.out);
    CHECK(r.out.starts_with("From x: y\r\nReceived: from exo.example"));
    CHECK(r.out.find("\r\n\r\n") == std::string::npos);
    auto fields = parts_of(r.out)[0].fields;
    REQUIRE(fields.size() == 2);
    CHECK(fields[0].name == "Received");
    CHECK(fields[1].name == "SignatureContoso");
    auto second = run(r.out);
    CHECK(second.inj.result == outcome::untouched);
    CHECK(second.out == r.out);
    // Without a Received field the processed header still starts a line.
    auto no_received = opts();
    no_received.received_header.clear();
    CHECK(run(m, ascii_sig(), no_received).out == "From x: y\r\nSignatureContoso: true\r\n");
}

TEST_CASE("html signature derived from the text one when empty") {
    rendered_signature s;
    s.text = "A & B <x>\nSIGTOKEN-42";
    std::string m = "From: a@contoso.example\r\nContent-Type: text/html\r\n\r\n<p>x</p>";
    auto r = run(m, s);
    CHECK(decoded(r.out, 0).find("A &amp; B &lt;x&gt;<br>\r\nSIGTOKEN-42") != std::string::npos);
}

TEST_CASE("placement helpers") {
    CHECK(html_bottom_offset("<body>x</BODY>") == 7);
    CHECK(html_bottom_offset("x</html>") == 1);
    CHECK(html_bottom_offset("x") == 1);
    CHECK(html_reply_offset("<p>gmail_quote in text</p>", {}) == std::string::npos);
    CHECK(text_reply_offset("no reply here\r\n", {}) == std::string::npos);
    CHECK(has_pgp_armor("x\r\n-----BEGIN PGP MESSAGE-----\r\n"));
    CHECK(sanitize_marker_id("a b\"c") == "a_b_c");
    std::string jp = "\x1b$B</body>\x1b(B</body>";  // the first is inside a two-byte run
    CHECK(html_bottom_offset(ascii_search_view(jp)) == 13);
}

TEST_CASE("allow_8bit: a 7bit ASCII part takes a UTF-8 signature as 8bit, its bytes as they were") {
    const std::string body = "Hello Bob, a line with = and trailing spaces   \r\nand more.\r\n";
    const std::string msg = "From: a@contoso.example\r\nMIME-Version: 1.0\r\n"
                            "Content-Type: text/plain; charset=us-ascii\r\n\r\n" + body;
    inject_options o = opts();
    o.allow_8bit = true;
    auto r = run(msg, utf8_sig(), o);
    CHECK(r.inj.result == outcome::signed_message);
    auto ps = parts_of(r.out);
    CHECK(ps[0].cte == "8bit");
    CHECK(*ps[0].param("charset") == "utf-8");
    // The body is the input's, byte for byte, with the signature after it.
    CHECK(r.out.find(body + "-- \r\nJos\xc3\xa9 \xe2\x80\x94\r\nSIGTOKEN-42") != std::string::npos);
    // The body goes out as a slice of the input: not decoded, copied or encoded.
    const std::size_t at = msg.find(body);
    bool sliced = false;
    for (const auto& s : r.inj.slices)
        sliced = sliced || (s.from_input && s.offset <= at && s.offset + s.length >= at + body.size());
    CHECK(sliced);

    // Without 8BITMIME on the way out the whole part becomes quoted-printable.
    auto q = run(msg, utf8_sig());
    CHECK(parts_of(q.out)[0].cte == "quoted-printable");
    CHECK(decoded(q.out, 0) == decoded(r.out, 0));
}
