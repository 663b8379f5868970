// QP/base64 codecs and charset conversion: tables of byte strings.
#include <sigrelay/mime/charset.hpp>
#include <sigrelay/mime/codec.hpp>

#include <doctest/doctest.h>

#include <random>
#include <string>

using namespace sigrelay::mime;

namespace {

std::string b64(std::string_view in) {
    std::string out;
    base64_encode(in, out);
    return out;
}
std::string unb64(std::string_view in, bool* ok = nullptr) {
    std::string out;
    bool r = base64_decode(in, out);
    if (ok) *ok = r;
    return out;
}
std::string qp(std::string_view in) {
    std::string out;
    qp_encode(in, out);
    return out;
}
std::string unqp(std::string_view in) {
    std::string out;
    qp_decode(in, out);
    return out;
}

std::size_t max_line(std::string_view s) {
    std::size_t best = 0, start = 0;
    for (std::size_t i = 0; i <= s.size(); ++i) {
        if (i == s.size() || s[i] == '\n') {
            std::size_t len = i - start;
            if (len > 0 && s[i - 1] == '\r') --len;
            best = std::max(best, len);
            start = i + 1;
        }
    }
    return best;
}

std::string random_bytes(std::size_t n, unsigned seed) {
    std::mt19937 rng(seed);
    std::string s(n, '\0');
    for (auto& c : s) c = static_cast<char>(rng());
    return s;
}

}  // namespace

TEST_CASE("base64 known vectors (RFC 4648 §10)") {
    struct row {
        const char* plain;
        const char* encoded;
    };
    const row rows[] = {{"", ""},
                        {"f", "Zg=="},
                        {"fo", "Zm8="},
                        {"foo", "Zm9v"},
                        {"foob", "Zm9vYg=="},
                        {"fooba", "Zm9vYmE="},
                        {"foobar", "Zm9vYmFy"}};
    for (const auto& r : rows) {
        CHECK(b64(r.plain) == r.encoded);
        CHECK(unb64(r.encoded) == r.plain);
    }
}

TEST_CASE("base64 lines are 76 characters, CRLF, no final line end") {
    for (std::size_t n : {0u, 1u, 2u, 3u, 56u, 57u, 58u, 113u, 114u, 115u, 171u, 1000u, 4096u}) {
        std::string in = random_bytes(n, static_cast<unsigned>(n));
        std::string enc = b64(in);
        CHECK(max_line(enc) <= 76);
        CHECK(enc.find("\r\n\r\n") == std::string::npos);
        CHECK_FALSE(enc.ends_with("\r\n"));
        // Every line but the last is exactly 76 characters.
        std::size_t pos = 0, next;
        while ((next = enc.find("\r\n", pos)) != std::string::npos) {
            CHECK(next - pos == 76);
            pos = next + 2;
        }
        bool ok = false;
        CHECK(unb64(enc, &ok) == in);
        CHECK(ok);
    }
}

TEST_CASE("base64 decoder: whitespace skipped, garbage reported, padding mid-stream") {
    bool ok = false;
    CHECK(unb64("Zm9v\r\nYmFy\r\n", &ok) == "foobar");
    CHECK(ok);
    CHECK(unb64(" Zm 9v\tYg = =", &ok) == "foob");
    CHECK(ok);
    CHECK(unb64("Zm9v!YmFy", &ok) == "foobar");
    CHECK_FALSE(ok);
    CHECK(unb64("Zg==Zm8=", &ok) == "ffo");  // concatenated encodings
    CHECK(unb64("Zm9vY", &ok) == "foo");     // a lone sextet is broken
    CHECK_FALSE(ok);
}

TEST_CASE("quoted-printable encoding rules (RFC 2045 §6.7)") {
    struct row {
        const char* plain;
        const char* encoded;
    };
    const row rows[] = {
        {"hello", "hello"},
        {"a=b", "a=3Db"},                    // '=' escaped
        {"caf\xc3\xa9", "caf=C3=A9"},        // 8-bit escaped
        {"end \r\nnext", "end=20\r\nnext"},  // whitespace before a line end
        {"tab\t", "tab=09"},                 // whitespace at the end
        {"a b", "a b"},                      // inner space literal
        {"bare\nlf", "bare=0Alf"},           // only CRLF is a line break
        {"bare\rcr", "bare=0Dcr"},
        {"\x01\x7f", "=01=7F"},
    };
    for (const auto& r : rows) {
        CHECK(qp(r.plain) == r.encoded);
        CHECK(unqp(r.encoded) == r.plain);
    }
}

TEST_CASE("quoted-printable soft breaks keep lines at most 76") {
    std::string long_line(200, 'x');
    std::string enc = qp(long_line);
    CHECK(max_line(enc) <= 76);
    CHECK(enc.find("=\r\n") != std::string::npos);
    CHECK(unqp(enc) == long_line);
    // Escapes are never split by a soft break.
    std::string escapes(100, '=');
    enc = qp(escapes);
    CHECK(max_line(enc) <= 76);
    CHECK(unqp(enc) == escapes);
    // A line of exactly 76 characters needs no soft break.
    CHECK(qp(std::string(76, 'y')) == std::string(76, 'y'));
    CHECK(qp(std::string(77, 'y')).find("=\r\n") != std::string::npos);
}

TEST_CASE("quoted-printable round trip of random bytes") {
    for (unsigned seed = 1; seed < 40; ++seed) {
        std::string in = random_bytes(seed * 37, seed);
        std::string enc = qp(in);
        CHECK(max_line(enc) <= 76);
        for (std::size_t i = 0; i < enc.size(); ++i) {
            if (enc[i] == '\n') REQUIRE((i > 0 && enc[i - 1] == '\r'));
            if (enc[i] == '\r') REQUIRE((i + 1 < enc.size() && enc[i + 1] == '\n'));
        }
        CHECK(unqp(enc) == in);
    }
}

TEST_CASE("quoted-printable decoder is lenient") {
    CHECK(unqp("soft=\r\nbreak") == "softbreak");
    CHECK(unqp("soft=  \r\nbreak") == "softbreak");  // whitespace after '='
    CHECK(unqp("soft=\nbreak") == "softbreak");
    CHECK(unqp("lower=c3=a9") == "lower\xc3\xa9");
    CHECK(unqp("bad=ZZ") == "bad=ZZ");
    CHECK(unqp("end=") == "end");
    CHECK(unqp("=0D=0A") == "\r\n");
    CHECK(unqp("keep  \r\n") == "keep  \r\n");  // trailing whitespace kept
}

TEST_CASE("charset labels") {
    CHECK(iconv_name("ks_c_5601-1987") == "CP949");
    CHECK(iconv_name("EUC-KR") == "CP949");
    CHECK(iconv_name("euc-kr", true) == "EUC-KR");
    CHECK(iconv_name("gb2312") == "GBK");
    CHECK(iconv_name("us-ascii") == "ASCII");
    CHECK(iconv_name("Windows-1252") == "CP1252");
    CHECK(iconv_name("iso-2022-jp", true) == "ISO-2022-JP");
    CHECK(iconv_name("KOI8-R") == "KOI8-R");
    CHECK(iconv_name("ISO-8859-15") == "ISO-8859-15");
    CHECK(iconv_name("x-no-such-charset") == "");
    CHECK(iconv_name("utf-16") == "");
    CHECK(is_stateful_label("ISO-2022-JP"));
    CHECK(is_ascii_incompatible_label("UTF-16LE"));
}

TEST_CASE("strict conversion") {
    CHECK(convert("utf-8", "iso-8859-1", "caf\xc3\xa9").value() == "caf\xe9");
    CHECK_FALSE(convert("utf-8", "iso-8859-1", "\xe2\x80\x94").has_value());  // em dash
    CHECK(convert("utf-8", "windows-1252", "\xe2\x80\x94").value() == "\x97");
    CHECK_FALSE(convert("utf-8", "us-ascii", "\xc3\xa9").has_value());
    CHECK(convert("koi8-r", "utf-8", "\xf0\xd2\xc9").value() == "\xd0\x9f\xd1\x80\xd0\xb8");
    CHECK(convert("ks_c_5601-1987", "utf-8", "\xc7\xd1").value() == "\xed\x95\x9c");  // 한
    CHECK(convert("gb2312", "utf-8", "\xd6\xd0").value() == "\xe4\xb8\xad");          // 中
    // ISO-2022-JP output returns to ASCII at the end.
    auto jp = convert("utf-8", "iso-2022-jp",
                      "\xe6\x97\xa5"
                      "a")
                  .value();
    CHECK(jp == "\x1b$BF|\x1b(Ba");
    CHECK(convert("iso-2022-jp", "utf-8", jp).value() ==
          "\xe6\x97\xa5"
          "a");
    CHECK_FALSE(convert("x-unknown", "utf-8", "a").has_value());
}

TEST_CASE("UTF-8 to a charset with numeric character references") {
    CHECK(utf8_to_charset_ncr("iso-8859-1", "caf\xc3\xa9 \xe2\x80\x94 \xe4\xb8\xad").value() ==
          "caf\xe9 &#8212; &#20013;");
    CHECK(utf8_to_charset_ncr("utf-8", "\xe4\xb8\xad").value() == "\xe4\xb8\xad");
    CHECK(utf8_to_charset_ncr("us-ascii", "\xc3\xa9").value() == "&#233;");
    CHECK(utf8_to_ascii_ncr("a\xf0\x9f\x98\x80") == "a&#128512;");
    auto jp = utf8_to_charset_ncr("iso-2022-jp", "\xe6\x97\xa5\xc3\xa9").value();
    CHECK(jp == "\x1b$BF|\x1b(B&#233;");
    CHECK_FALSE(utf8_to_charset_ncr("x-unknown", "a").has_value());
}

namespace {
// The encoder's rules byte by byte, as a reference for its fast path:
// literal printable ASCII, '=' and 8-bit escaped, whitespace escaped before a
// line end, soft breaks keeping lines at 76 characters.
std::string reference_qp(std::string_view in) {
    static const char hex[] = "0123456789ABCDEF";
    std::string o;
    std::size_t col = 0;
    const std::size_t n = in.size();
    auto crlf_at = [&](std::size_t k) { return k + 1 < n && in[k] == '\r' && in[k + 1] == '\n'; };
    for (std::size_t i = 0; i < n;) {
        const auto c = static_cast<unsigned char>(in[i]);
        if (crlf_at(i)) {
            o += "\r\n";
            col = 0;
            i += 2;
            continue;
        }
        const bool last = i + 1 == n || crlf_at(i + 1);
        bool literal = c >= 33 && c <= 126 && c != '=';
        if (c == ' ' || c == '\t') literal = !last;
        const std::size_t width = literal ? 1 : 3;
        if (col + width > (last ? 76u : 75u)) {
            o += "=\r\n";
            col = 0;
        }
        if (literal) o += static_cast<char>(c);
        else (o += '=') += hex[c >> 4], o += hex[c & 15];
        col += width;
        ++i;
    }
    return o;
}
}  // namespace

TEST_CASE("qp_encode: the fast path writes what the byte rules say") {
    std::mt19937 rng(7);
    const std::string alphabet = std::string("abc  \t\t=\r\n\r\n\x80\xff.XYZ0123456789", 28);
    for (int t = 0; t < 20000; ++t) {
        const std::size_t n = rng() % 300;
        const bool words = rng() % 2;
        std::string in;
        for (std::size_t i = 0; i < n; ++i)
            in.push_back(words && rng() % 4 ? static_cast<char>('a' + rng() % 26) : alphabet[rng() % alphabet.size()]);
        std::string got;
        qp_encode(in, got);
        REQUIRE(got == reference_qp(in));
        std::string back;
        qp_decode(got, back);
        REQUIRE(back == in);
    }
}
