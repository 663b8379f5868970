// Streaming scanner: header parsing, parameters, delimiters, nesting, defects,
// and invariance under every split of the input.
#include <sigrelay/mime/scanner.hpp>

#include <doctest/doctest.h>

#include <sstream>
#include <string>

using namespace sigrelay::mime;

namespace {

std::vector<part> scan_all(std::string_view m, std::uint32_t* defects = nullptr,
                           scan_limits limits = {}) {
    return scan(std::span<const char>(m.data(), m.size()), limits, defects);
}

// A printable description of a part tree (types, offsets, defects).
std::string describe(const std::vector<part>& parts) {
    std::ostringstream o;
    for (const auto& p : parts) {
        o << p.depth << ' ' << p.type << '/' << p.subtype << " [" << p.begin << ',' << p.header_end
          << ',' << p.body_begin << ',' << p.body_end << "] d" << p.defects << " f"
          << p.fields.size() << " c";
        for (int c : p.children) o << c << ',';
        for (const auto& f : p.fields) o << " {" << f.name << '=' << f.value << '}';
        o << '\n';
    }
    return o.str();
}

std::string_view body(std::string_view m, const part& p) {
    return m.substr(p.body_begin, p.body_end - p.body_begin);
}

const char* kAlternative =
    "From: a@example.com\r\n"
    "Subject: folded\r\n"
    " subject\r\n"
    "Content-Type: multipart/mixed;\r\n"
    "\tboundary=\"outer\"\r\n"
    "\r\n"
    "preamble\r\n"
    "--outer\r\n"
    "Content-Type: multipart/alternative; boundary=inner\r\n"
    "\r\n"
    "--inner\r\n"
    "Content-Type: text/plain; charset=\"iso-8859-1\"\r\n"
    "\r\n"
    "plain\r\n"
    "--inner  \r\n"
    "Content-Type: text/html\r\n"
    "\r\n"
    "<p>html</p>\r\n"
    "--inner--\r\n"
    "--outer\r\n"
    "Content-Type: application/pdf; name=\"a.pdf\"\r\n"
    "Content-Disposition: attachment; filename*0*=utf-8''r%C3%A9; filename*1=sum.pdf\r\n"
    "Content-Transfer-Encoding: BASE64\r\n"
    "\r\n"
    "JVBERi0=\r\n"
    "--outer--\t\r\n"
    "epilogue\r\n";

}  // namespace

TEST_CASE("headers: folding, parameters, defaults") {
    std::string m = kAlternative;
    std::uint32_t d = 0;
    auto parts = scan_all(m, &d);
    CHECK(d == 0);
    REQUIRE(parts.size() == 5);
    const part& root = parts[0];
    CHECK(root.is("multipart", "mixed"));
    REQUIRE(root.field("subject"));
    CHECK(root.field("Subject")->value == "folded subject");
    CHECK(*root.param("boundary") == "outer");
    CHECK(m.substr(root.field("Subject")->begin, 7) == "Subject");
    CHECK(m.substr(root.header_end, 2) == "\r\n");
    CHECK(parts[1].is("multipart", "alternative"));
    CHECK(parts[2].is("text", "plain"));
    CHECK(*parts[2].param("charset") == "iso-8859-1");
    CHECK(body(m, parts[2]) == "plain");
    CHECK(parts[3].is("text", "html"));
    CHECK(body(m, parts[3]) == "<p>html</p>");
    CHECK(parts[4].cte == "base64");
    CHECK(parts[4].disposition == "attachment");
    CHECK(parts[4].filename == "r\xc3\xa9sum.pdf");  // RFC 2231 continuation
    CHECK(body(m, parts[4]) == "JVBERi0=");
    CHECK(root.body_end == m.size());
    CHECK(parts[1].children == std::vector<int>{2, 3});
}

TEST_CASE("parameter parsing") {
    std::string t, s;
    std::vector<content_param> p;
    REQUIRE(parse_content_type(" Text/HTML (comment) ; CHARSET = \"utf-8\" ; name=\"a \\\"b\\\"\"",
                               t, s, p));
    CHECK(t == "text");
    CHECK(s == "html");
    REQUIRE(p.size() == 2);
    CHECK(p[0].name == "charset");
    CHECK(p[0].value == "utf-8");
    CHECK(p[1].value == "a \"b\"");
    p.clear();
    REQUIRE(parse_content_type("multipart/mixed; boundary*0=\"ab\"; boundary*1=cd", t, s, p));
    CHECK(p[0].value == "abcd");
    p.clear();
    REQUIRE(parse_content_type("text/plain; title*=us-ascii'en'This%20is%20%2A%2A%2Afun%2A%2A%2A",
                               t, s, p));
    CHECK(p[0].value == "This is ***fun***");
    p.clear();
    REQUIRE(parse_content_type("multipart/mixed; boundary=----=_Part_1.2", t, s, p));
    CHECK(p[0].value == "----=_Part_1.2");
    CHECK_FALSE(parse_content_type("text", t, s, p));
    CHECK_FALSE(parse_content_type("", t, s, p));
    CHECK(valid_boundary("simple"));
    CHECK(valid_boundary("----=_Part_0_1.2"));
    CHECK_FALSE(valid_boundary("ends in space "));
    CHECK_FALSE(valid_boundary(std::string(71, 'a')));
    CHECK_FALSE(valid_boundary("bad\"quote"));
    CHECK_FALSE(valid_boundary(""));
}

TEST_CASE("no Content-Type: text/plain; multipart/digest children: message/rfc822") {
    auto parts = scan_all("Subject: x\r\n\r\nhello\r\n");
    CHECK(parts[0].is("text", "plain"));
    CHECK_FALSE(parts[0].has_content_type);
    std::string digest =
        "Content-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\nSubject: in\r\n\r\nx\r\n"
        "--d--\r\n";
    parts = scan_all(digest);
    REQUIRE(parts.size() == 2);
    CHECK(parts[1].is("message", "rfc822"));
}

TEST_CASE("delimiters: padding, near misses, prefixes, close") {
    std::string m =
        "Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n"
        "--b \t \r\n\r\none\r\n"
        "--bx\r\n"    // not a delimiter: more than padding follows
        "--b-\r\n"    // not a close delimiter
        " --b\r\n"    // not at the line start
        "--b--x\r\n"  // not a close delimiter
        "--b\r\n\r\ntwo\r\n"
        "--b--\r\n";
    std::uint32_t d = 1;
    auto parts = scan_all(m, &d);
    CHECK(d == 0);
    REQUIRE(parts.size() == 3);
    CHECK(body(m, parts[1]) == "one\r\n--bx\r\n--b-\r\n --b\r\n--b--x");
    CHECK(body(m, parts[2]) == "two");
}

TEST_CASE("inner boundary = outer + suffix is not ambiguous; equal boundaries are") {
    std::string m =
        "Content-Type: multipart/mixed; boundary=\"x\"\r\n\r\n--x\r\n"
        "Content-Type: multipart/alternative; boundary=\"x1\"\r\n\r\n--x1\r\n\r\na\r\n--x1--\r\n"
        "--x--\r\n";
    std::uint32_t d = 1;
    auto parts = scan_all(m, &d);
    CHECK(d == 0);
    CHECK(parts.size() == 3);
    std::string same =
        "Content-Type: multipart/mixed; boundary=\"x\"\r\n\r\n--x\r\n"
        "Content-Type: multipart/alternative; boundary=\"x\"\r\n\r\n--x\r\n\r\na\r\n--x--\r\n";
    scan_all(same, &d);
    CHECK((d & defect_boundary_overlap));
}

struct malformed_row {
    const char* name;
    const char* message;
    std::uint32_t defect;
};

TEST_CASE("malformed structures are flagged") {
    const malformed_row rows[] = {
        {"missing boundary parameter", "Content-Type: multipart/mixed\r\n\r\nx\r\n",
         defect_missing_boundary},
        {"boundary never matches",
         "Content-Type: multipart/mixed; boundary=b\r\n\r\n--c\r\n\r\nx\r\n--c--\r\n",
         defect_no_parts},
        {"boundary of dashes",
         "Content-Type: multipart/related; boundary=\"----------\"\r\n\r\n"
         "--------------related\r\ntext\r\n",
         defect_no_parts},
        {"close delimiter only", "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b--\r\n",
         defect_no_parts},
        {"unterminated", "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nx\r\n",
         defect_unterminated},
        {"inner closed by outer",
         "Content-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\n"
         "Content-Type: multipart/alternative; boundary=i\r\n\r\n--i\r\n\r\na\r\n--o\r\n\r\nb\r\n"
         "--o--\r\n",
         defect_unterminated},
        {"no empty line", "From: a\r\nthis is body\r\n", defect_no_header_separator},
        {"header only", "From: a\r\nTo: b\r\n", defect_no_header_separator},
        {"part headers run into body",
         "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n"
         "body line\r\n--b--\r\n",
         defect_no_header_separator},
        {"folded first line", " folded\r\nFrom: a\r\n\r\nx", defect_continuation_first},
        {"bare LF", "From: a\n\nx\n", defect_bare_newline},
        {"bare CR", "From: a\r\n\r\nx\ry\r\n", defect_bare_newline},
        {"boundary too long",
         "Content-Type: multipart/mixed; "
         "boundary="
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n",
         defect_bad_boundary},
        {"two Content-Types", "Content-Type: text/plain\r\nContent-Type: text/html\r\n\r\nx",
         defect_duplicate_header},
        {"bad Content-Type", "Content-Type: garbage\r\n\r\nx", defect_bad_content_type},
    };
    for (const auto& r : rows) {
        CAPTURE(r.name);
        std::uint32_t d = 0;
        auto parts = scan_all(r.message, &d);
        CHECK((d & r.defect));
        CHECK(!parts.empty());
    }
}

TEST_CASE("depth limit and header size limit") {
    std::string m;
    for (int i = 0; i < 30; ++i)
        m += "--b" + std::to_string(i - 1) + "\r\nContent-Type: multipart/mixed; boundary=b" +
             std::to_string(i) + "\r\n\r\n";
    std::uint32_t d = 0;
    auto parts = scan_all(m.substr(m.find("Content-Type")), &d);
    CHECK((d & defect_too_deep));
    unsigned deepest = 0;
    for (const auto& p : parts) deepest = std::max(deepest, p.depth);
    CHECK(deepest <= 17);

    std::string big = "X-Big: " + std::string(5000, 'a') + "\r\n\r\nbody";
    scan_all(big, &d, scan_limits{16, 1000});
    CHECK((d & defect_header_too_big));
}

TEST_CASE("mbox From_ line before the header") {
    std::string m = "From someone@example.com Mon Jan  1 00:00:00 2024\r\nFrom: a\r\n\r\nx\r\n";
    std::uint32_t d = 1;
    auto parts = scan_all(m, &d);
    CHECK(d == 0);
    CHECK(parts[0].begin == m.find("From: a"));
    CHECK(parts[0].fields.size() == 1);
}

TEST_CASE("feeding in any split gives the same part tree") {
    const std::string messages[] = {
        kAlternative,
        "Content-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\n"
        "Content-Type: multipart/alternative; boundary=i\r\n\r\n--i\r\n\r\na\r\n--o\r\n\r\nb\r\n",
        "From: a\r\nSubject: no body separator\r\nbody\r\n",
        "From: a\r\nTo: b\r\n",
        "Content-Type: text/plain\r\n\r\nno final newline",
        "Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\t\r\n\r\nx\r\n--b--  \r\nep",
        "From x\r\nFrom: a\r\n\r\nmixed\nline\rends\r\n",
    };
    for (const auto& m : messages) {
        const std::string expect = describe(scan_all(m));
        std::uint32_t expect_defects = 0;
        scan_all(m, &expect_defects);
        for (std::size_t cut = 0; cut <= m.size(); ++cut) {
            scanner s;
            s.feed(std::span<const char>(m.data(), cut));
            s.feed(std::span<const char>(m.data() + cut, m.size() - cut));
            s.finish();
            REQUIRE(describe(s.parts()) == expect);
            REQUIRE(s.defects() == expect_defects);
        }
        for (std::size_t a = 0; a < m.size(); a += 7) {  // three pieces
            for (std::size_t b = a; b <= m.size(); b += 5) {
                scanner s;
                s.feed(std::span<const char>(m.data(), a));
                s.feed(std::span<const char>(m.data() + a, b - a));
                s.feed(std::span<const char>(m.data() + b, m.size() - b));
                s.finish();
                REQUIRE(describe(s.parts()) == expect);
            }
        }
        scanner bytewise;
        for (char c : m) bytewise.feed(std::span<const char>(&c, 1));
        bytewise.finish();
        CHECK(describe(bytewise.parts()) == expect);
    }
}

TEST_CASE("a comment that ends in a backslash ends the Content-Type value") {
    std::string type, subtype;
    std::vector<content_param> params;
    // The quoted pair "\" + end used to step past the end of the value.
    CHECK(parse_content_type("text/html; charset=x (\\", type, subtype, params));
    CHECK(type == "text");
    CHECK(parse_content_type("text/html; (a\\", type, subtype, params));
}
