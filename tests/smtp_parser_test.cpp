// Unit tests for the SMTP parsing pieces: command split, paths, ESMTP and
// BDAT arguments, the bounded line reader, the DATA reader, reply format.
// Tables of byte strings; readers are also fed split at every position.
#include <doctest/doctest.h>

#include "command_parser.hpp"
#include "data_reader.hpp"
#include "line_reader.hpp"

#include <sigrelay/smtp.hpp>

#include <algorithm>
#include <random>
#include <string>
#include <string_view>
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
using namespace sigrelay::smtp::detail;
using namespace std::literals;

TEST_CASE("split_command: verb, arguments, trailing blanks") {
    struct row {
        std::string_view line, verb, args;
    };
    const row rows[] = {
        {"NOOP", "NOOP", ""},
        {"noop  ", "noop", ""},
        {"MAIL FROM:<a@b> SIZE=1", "MAIL", "FROM:<a@b> SIZE=1"},
        {"EHLO   client.example \t", "EHLO", "client.example"},
        {"", "", ""},
    };
    for (const auto& r : rows) {
        CAPTURE(r.line);
        const auto c = split_command(r.line);
        CHECK(c.verb == r.verb);
        CHECK(c.args == r.args);
    }
}

TEST_CASE("iequals and istarts_with ignore ASCII case only") {
    CHECK(iequals("StartTLS", "STARTTLS"));
    CHECK_FALSE(iequals("STARTTL", "STARTTLS"));
    CHECK(istarts_with("from:<>", "FROM:"));
    CHECK_FALSE(istarts_with("FRO", "FROM:"));
    CHECK_FALSE(iequals("\xc3\xa9", "\xc3\x89"));
}

TEST_CASE("valid_utf8") {
    CHECK(valid_utf8("plain"));
    CHECK(valid_utf8("j\xc3\xb6rg"));
    CHECK(valid_utf8("\xe2\x82\xac\xf0\x9f\x98\x80"));
    CHECK_FALSE(valid_utf8("\xc3"));              // truncated
    CHECK_FALSE(valid_utf8("\xc0\xaf"));          // overlong
    CHECK_FALSE(valid_utf8("\xed\xa0\x80"));      // surrogate
    CHECK_FALSE(valid_utf8("\xf4\x90\x80\x80"));  // > U+10FFFF
    CHECK_FALSE(valid_utf8("\xff"));
}

TEST_CASE("parse_path: RFC 5321 §4.1.2 paths") {
    struct row {
        std::string_view in;
        path_kind kind;
        bool ok;
        std::string_view address;
        bool non_ascii;
    };
    const auto R = path_kind::reverse;
    const auto F = path_kind::forward;
    const row rows[] = {
        {"<a@b.example>", R, true, "a@b.example", false},
        {"<>", R, true, "", false},
        {"<>", F, false, "", false},
        {"<postmaster>", F, true, "postmaster", false},
        {"<PostMaster>", F, true, "PostMaster", false},
        {"<postmaster>", R, false, "", false},
        {"<user>", F, false, "", false},
        {"<first.last+tag@sub.example.com>", F, true, "first.last+tag@sub.example.com", false},
        {"<\"john smith\"@example.com>", F, true, "\"john smith\"@example.com", false},
        {"<\"a@b\"@example.com>", F, true, "\"a@b\"@example.com", false},
        {"<\"a\\\"q>\"@example.com>", F, true, "\"a\\\"q>\"@example.com", false},
        {"<\"unterminated@example.com>", F, false, "", false},
        {"<@relay1.example,@relay2.example:user@c.example>", F, true,
         "@relay1.example,@relay2.example:user@c.example", false},
        {"<@relay1.example user@c.example>", F, false, "", false},
        {"<user@[192.0.2.1]>", F, true, "user@[192.0.2.1]", false},
        {"<user@[IPv6:2001:db8::1]>", F, true, "user@[IPv6:2001:db8::1]", false},
        {"<user@[]>", F, false, "", false},
        {"<user%other@example.com>", F, true, "user%other@example.com", false},
        {"<j\xc3\xb6rg@b\xc3\xbc"
         "cher.example>",
         F, true,
         "j\xc3\xb6rg@b\xc3\xbc"
         "cher.example",
         true},
        {"<j\xc3rg@example.com>", F, false, "", false},
        {"<user@-bad.example>", F, false, "", false},
        {"<user@bad-.example>", F, false, "", false},
        {"<user@example..com>", F, false, "", false},
        {"<user@>", F, false, "", false},
        {"<@example.com>", F, false, "", false},
        {"<a b@example.com>", F, false, "", false},
        {"a@b.example", F, false, "", false},
        {"<a@b.example", F, false, "", false},
        {"<a@b_c.example>", F, false, "", false},
    };
    for (const auto& r : rows) {
        CAPTURE(r.in);
        const auto p = parse_path(r.in, r.kind);
        REQUIRE(bool(p) == r.ok);
        if (r.ok) {
            CHECK(p.value->address == r.address);
            CHECK(p.value->non_ascii == r.non_ascii);
            CHECK(p.value->consumed == r.in.size());
        } else {
            CHECK(p.err.code == 501);
        }
    }
}

TEST_CASE("parse_path: bad sender and bad recipient have their own codes") {
    CHECK(parse_path("<x", path_kind::reverse).err.enhanced == "5.1.7");
    CHECK(parse_path("<x", path_kind::forward).err.enhanced == "5.1.3");
}

TEST_CASE("parse_params: RFC 5321 esmtp-param syntax") {
    auto p = parse_params("SIZE=10  BODY=8BITMIME SMTPUTF8");
    REQUIRE(p);
    REQUIRE(p.value->size() == 3);
    CHECK((*p.value)[0].first == "SIZE");
    CHECK((*p.value)[0].second == "10");
    CHECK((*p.value)[2].second.empty());
    CHECK(parse_params(""));
    CHECK_FALSE(parse_params("=x"));
    CHECK_FALSE(parse_params("-A=x"));
    CHECK_FALSE(parse_params("A_B=x"));
    CHECK_FALSE(parse_params("A="));
    CHECK_FALSE(parse_params("A=b=c"));
    CHECK_FALSE(parse_params("A=\x01"));
    CHECK_FALSE(parse_params("size=1 SIZE=2"));  // repeated keyword
    CHECK(parse_params("X-FOO=caf\xc3\xa9"));
    CHECK_FALSE(parse_params("X-FOO=caf\xc3"));
}

TEST_CASE("parse_mail: parameters SIZE BODY SMTPUTF8 XOORG") {
    auto m =
        parse_mail("FROM:<a@b.example> SIZE=1234 BODY=8BITMIME SMTPUTF8 XOORG=contoso.com", true);
    REQUIRE(m);
    CHECK(m.value->cmd.reverse_path == "a@b.example");
    CHECK(m.value->cmd.size == 1234u);
    CHECK(m.value->cmd.body_8bitmime);
    CHECK(m.value->cmd.smtputf8);
    CHECK(m.value->cmd.xoorg == "contoso.com");
    CHECK(m.value->cmd.params == "SIZE=1234 BODY=8BITMIME SMTPUTF8 XOORG=contoso.com");

    auto lax = parse_mail("from: <a@b.example>", true);
    REQUIRE(lax);
    CHECK(lax.value->cmd.reverse_path == "a@b.example");
    CHECK_FALSE(lax.value->cmd.size.has_value());

    auto null = parse_mail("FROM:<> BODY=7bit", true);
    REQUIRE(null);
    CHECK(null.value->cmd.reverse_path.empty());
    CHECK_FALSE(null.value->cmd.body_8bitmime);

    struct row {
        std::string_view in;
        int code;
    };
    const row bad[] = {
        {"TO:<a@b.example>", 501},
        {"FROM<a@b.example>", 501},
        {"FROM:<a@b.example>SIZE=1", 501},
        {"FROM:<a@b.example> SIZE=", 501},
        {"FROM:<a@b.example> SIZE=12x", 501},
        {"FROM:<a@b.example> SIZE=123456789012345678901", 501},  // 21 digits
        {"FROM:<a@b.example> BODY=9BIT", 501},
        {"FROM:<a@b.example> BODY=BINARYMIME", 555},
        {"FROM:<a@b.example> SMTPUTF8=yes", 501},
        {"FROM:<a@b.example> XOORG", 501},
        {"FROM:<a@b.example> RET=FULL", 555},
        {"FROM:<a@b.example> AUTH=<>", 555},
    };
    for (const auto& r : bad) {
        CAPTURE(r.in);
        const auto p = parse_mail(r.in, true);
        REQUIRE_FALSE(p);
        CHECK(p.err.code == r.code);
    }
    // XOORG only when advertised.
    CHECK(parse_mail("FROM:<a@b.example> XOORG=x.com", false).err.code == 555);
}

TEST_CASE("parse_mail: SIZE beyond 64 bits saturates instead of overflowing") {
    auto m = parse_mail("FROM:<a@b.example> SIZE=99999999999999999999", true);
    REQUIRE(m);
    CHECK(*m.value->cmd.size == UINT64_MAX);
    auto m2 = parse_mail("FROM:<a@b.example> SIZE=99999999999", true);
    REQUIRE(m2);
    CHECK(*m2.value->cmd.size == 99999999999ull);
}

TEST_CASE("parse_rcpt: no parameters are offered") {
    auto r = parse_rcpt("TO:<\"x y\"@example.com>");
    REQUIRE(r);
    CHECK(r.value->cmd.forward_path == "\"x y\"@example.com");
    CHECK(parse_rcpt("TO:<a@b.example> NOTIFY=NEVER").err.code == 555);
    CHECK(parse_rcpt("TO:<a@b.example> =").err.code == 501);
    CHECK(parse_rcpt("FROM:<a@b.example>").err.code == 501);
    CHECK(parse_rcpt("TO:<>").err.code == 501);
}

TEST_CASE("parse_bdat: chunk sizes (RFC 3030 §2)") {
    struct row {
        std::string_view in;
        bool ok;
        std::uint64_t size;
        bool last;
    };
    const row rows[] = {
        {"0 LAST", true, 0, true},
        {"0", true, 0, false},
        {"100", true, 100, false},
        {"100 last", true, 100, true},
        {"18446744073709551615", true, UINT64_MAX, false},
        {"18446744073709551616", false, 0, false},  // overflow
        {"99999999999999999999", false, 0, false},
        {"1234567890123456789012345", false, 0, false},  // 25 digits
        {"x", false, 0, false},
        {"-1", false, 0, false},
        {"+1", false, 0, false},
        {"", false, 0, false},
        {"10 LASTX", false, 0, false},
        {"10 LAST LAST", false, 0, false},
        {"0x10", false, 0, false},
    };
    for (const auto& r : rows) {
        CAPTURE(r.in);
        const auto b = parse_bdat(r.in);
        REQUIRE(bool(b) == r.ok);
        if (r.ok) {
            CHECK(b.value->size == r.size);
            CHECK(b.value->last == r.last);
        } else {
            CHECK(b.err.code == 501);
        }
    }
}

// ---- line reader --------------------------------------------------------------

namespace {

// Feeds `input` in pieces of `step` octets the way the session does (keeping
// the unconsumed tail) and returns "L:<line>" / "TOO_LONG" entries.
std::vector<std::string> read_lines(std::string_view input, std::size_t step) {
    line_reader lr(512);
    std::vector<std::string> out;
    std::string buf;
    for (std::size_t i = 0; i < input.size(); i += step) {
        buf.append(input.substr(i, step));
        for (;;) {
            const auto r = lr.next(buf);
            if (r.what == line_reader::kind::too_long) out.push_back("TOO_LONG");
            if (r.what == line_reader::kind::line) out.push_back("L:" + std::string(r.line));
            buf.erase(0, r.consumed);
            if (r.what == line_reader::kind::need_more) break;
        }
        CHECK(buf.size() < 512);  // never buffers a long line
    }
    return out;
}

}  // namespace

TEST_CASE("line_reader: 512 octets with CRLF is the limit (RFC 5321 §4.5.3.1.4)") {
    const std::string ok510(510, 'a');
    const std::string long511(511, 'b');
    const std::string input =
        ok510 + "\r\n" + long511 + "\r\nNOOP\r\n" + std::string(10000, 'c') + "\r\nQUIT\n";
    const std::vector<std::string> want = {"L:" + ok510, "TOO_LONG", "L:NOOP", "TOO_LONG",
                                           "L:QUIT"};
    for (std::size_t step : {input.size(), std::size_t{1}, std::size_t{7}, std::size_t{511},
                             std::size_t{512}, std::size_t{513}}) {
        CAPTURE(step);
        CHECK(read_lines(input, step) == want);
    }
}

TEST_CASE("line_reader: bare LF ends a command line, lone CR does not") {
    CHECK(read_lines("NOOP\nRSET\r\nA\rB\r\n", 100) ==
          std::vector<std::string>{"L:NOOP", "L:RSET", "L:A\rB"});
    CHECK(read_lines("NOOP", 100).empty());
}

// ---- DATA reader ---------------------------------------------------------------

namespace {

struct data_run {
    std::string content;
    bool done = false;
    std::size_t consumed = 0;
    data_error error = data_error::none;
    bool operator==(const data_run&) const = default;
};

data_run read_data(std::string_view input, bare_newline_policy policy, std::size_t split) {
    data_reader dr(policy);
    data_run r;
    std::size_t off = 0;
    for (std::string_view part : {input.substr(0, split), input.substr(split)}) {
        const auto res = dr.consume(part, r.content);
        off += res.consumed;
        if (res.done) {
            r.done = true;
            break;
        }
        CHECK(res.consumed == part.size());
    }
    r.consumed = off;
    r.error = dr.error();
    return r;
}

// Same result for every split of the input into two calls, and byte by byte.
data_run read_data_all_splits(std::string_view input, bare_newline_policy policy) {
    const data_run whole = read_data(input, policy, input.size());
    for (std::size_t k = 0; k <= input.size(); ++k) {
        CAPTURE(k);
        CHECK(read_data(input, policy, k) == whole);
    }
    data_reader dr(policy);
    std::string out;
    std::size_t used = 0;
    bool done = false;
    for (std::size_t i = 0; i < input.size() && !done; ++i) {
        const auto res = dr.consume(input.substr(i, 1), out);
        used += res.consumed;
        done = res.done;
    }
    CHECK(out == whole.content);
    CHECK(done == whole.done);
    CHECK(used == whole.consumed);
    return whole;
}

constexpr auto reject = bare_newline_policy::reject;
constexpr auto normalize = bare_newline_policy::normalize;

}  // namespace

TEST_CASE("data_reader: end of data and dot-unstuffing (RFC 5321 §4.5.2)") {
    struct row {
        std::string_view in;
        std::string_view content;
        bool done;
        std::size_t consumed;
    };
    const row rows[] = {
        {".\r\n", "", true, 3},  // the first line starts after DATA's CRLF
        {".\r\nNEXT", "", true, 3},
        {"a\r\n.\r\n", "a\r\n", true, 6},
        {"..\r\n.\r\n", ".\r\n", true, 7},
        {"..x\r\n.\r\n", ".x\r\n", true, 8},
        {".x\r\n.\r\n", "x\r\n", true, 7},
        {"a\r\n..\r\n.\r\nafter", "a\r\n.\r\n", true, 10},
        {"a.\r\n.b\r\n.\r\n", "a.\r\nb\r\n", true, 11},
        {"\r\n\r\n.\r\n", "\r\n\r\n", true, 7},
        {"a\r\n.", "a\r\n", false, 4},
        {"a\r\n.\r", "a\r\n", false, 5},
        {"a\r\n\x00.\r\n.\r\n"sv, "a\r\n\x00.\r\n"sv, true, 10},
    };
    for (const auto& r : rows) {
        CAPTURE(r.in);
        const auto got = read_data_all_splits(r.in, reject);
        CHECK(got.content == r.content);
        CHECK(got.done == r.done);
        CHECK(got.consumed == r.consumed);
        CHECK(got.error == data_error::none);
    }
}

TEST_CASE("data_reader: bare CR/LF never end the data, under either policy") {
    // The smuggling family: each sequence, then a "second message" and the
    // real end. Only the final CRLF.CRLF may end the data.
    const std::string_view seqs[] = {"\n.\n",   "\n.\r\n", "\r.\n", "\r.\r",
                                     "\r\n.\r", "\r\n.\n", "\n",    "\r"};
    for (auto seq : seqs) {
        CAPTURE(seq);
        const std::string in = "a" + std::string(seq) + "MAIL FROM:<x@y>\r\n.\r\n";
        const auto rej = read_data_all_splits(in, reject);
        CHECK(rej.done);
        CHECK(rej.consumed == in.size());
        CHECK(rej.error == data_error::bare_newline);
        CHECK(rej.content.find("MAIL") == std::string::npos);

        const auto norm = read_data_all_splits(in, normalize);
        CHECK(norm.done);
        CHECK(norm.consumed == in.size());
        CHECK(norm.error == data_error::none);
        CHECK(norm.content.find("MAIL FROM:<x@y>\r\n") != std::string::npos);
        // No bare CR or LF survives.
        for (std::size_t i = 0; i < norm.content.size(); ++i) {
            if (norm.content[i] == '\n') CHECK((i > 0 && norm.content[i - 1] == '\r'));
            if (norm.content[i] == '\r')
                CHECK((i + 1 < norm.content.size() && norm.content[i + 1] == '\n'));
        }
    }
}

TEST_CASE("data_reader: normalize maps each bare line end to CRLF") {
    CHECK(read_data_all_splits("a\nb\rc\r\r\n.\r\n", normalize).content == "a\r\nb\r\nc\r\n\r\n");
    // A "." line ended by a bare newline is content, not the end; a dot
    // after a normalised line end is not unstuffed.
    CHECK(read_data_all_splits("a\n.\nb\r\n.\r\n", normalize).content == "a\r\n.\r\nb\r\n");
    CHECK(read_data_all_splits("a\r\n.\rb\r\n.\r\n", normalize).content == "a\r\n.\r\nb\r\n");
    CHECK(read_data_all_splits("a\r\n.\nb\r\n.\r\n", normalize).content == "a\r\n.\r\nb\r\n");
    CHECK(read_data_all_splits("a\n..\r\n.\r\n", normalize).content == "a\r\n..\r\n");
}

TEST_CASE("data_reader: text lines are at most 1000 octets with CRLF (§4.5.3.1.6)") {
    struct row {
        std::size_t len;
        bool ok;
    };
    for (const row r : {row{998, true}, row{999, false}, row{1000, false}, row{10000, false}}) {
        CAPTURE(r.len);
        const std::string in = std::string(r.len, 'x') + "\r\nnext\r\n.\r\n";
        data_reader dr(reject);
        std::string out;
        const auto res = dr.consume(in, out);
        CHECK(res.done);
        CHECK(res.consumed == in.size());
        CHECK((dr.error() == data_error::none) == r.ok);
        if (!r.ok) CHECK(out.size() < r.len);  // stops passing content on
    }
    // The stuffing dot counts: "." + 998 octets is a 1001-octet line.
    data_reader dr(reject);
    std::string out;
    CHECK(dr.consume("." + std::string(998, 'x') + "\r\n.\r\n", out).done);
    CHECK(dr.error() == data_error::line_too_long);
    // Many short lines are fine.
    data_reader dr2(reject);
    std::string big;
    for (int i = 0; i < 5000; ++i) big += "line\r\n";
    CHECK(dr2.consume(big + ".\r\n", out).done);
    CHECK(dr2.error() == data_error::none);
}

// ---- DATA reader against a byte-at-a-time reference -------------------------------

namespace {

// The DATA reader as first written: one state transition per input byte
// (runs of ordinary bytes aside). The reader scans in bulk; for every input
// and every split it must give the same content, end, consumption and error.
class reference_data_reader {
public:
    explicit reference_data_reader(bare_newline_policy policy) : policy_(policy) {}

    data_reader::result consume(std::string_view in, std::string& out) {
        std::size_t i = 0;
        while (i < in.size()) {
            const char c = in[i];
            switch (state_) {
                case st::bol:
                    if (c == '.') {
                        count(1);
                        state_ = st::dot;
                        ++i;
                    } else {
                        state_ = st::mid;
                    }
                    break;
                case st::mid:
                    if (c == '\r') {
                        state_ = st::cr;
                    } else if (c == '\n') {
                        bare(out, "");
                    } else {
                        if (error_ == data_error::none && line_len_ < data_reader::max_line - 2)
                            out.push_back(c);
                        count(1);
                    }
                    ++i;
                    break;
                case st::cr:
                    if (c == '\n') {
                        if (error_ == data_error::none) out += "\r\n";
                        line_len_ = 0;
                        state_ = st::bol;
                        ++i;
                    } else {
                        bare(out, "");
                    }
                    break;
                case st::dot:
                    if (c == '\r') {
                        state_ = st::dot_cr;
                        ++i;
                    } else if (c == '\n') {
                        bare(out, ".");
                        ++i;
                    } else {
                        state_ = st::mid;
                    }
                    break;
                case st::dot_cr:
                    if (c == '\n') {
                        state_ = st::bol;
                        return {i + 1, true};
                    }
                    bare(out, ".");
                    break;
            }
        }
        return {i, false};
    }
    data_error error() const { return error_; }

private:
    enum class st { bol, mid, cr, dot, dot_cr };
    void count(std::size_t n) {
        line_len_ += n;
        if (line_len_ > data_reader::max_line - 2 && error_ == data_error::none)
            error_ = data_error::line_too_long;
    }
    void bare(std::string& out, std::string_view before) {
        if (policy_ == bare_newline_policy::reject && error_ == data_error::none)
            error_ = data_error::bare_newline;
        if (error_ == data_error::none) {
            out += before;
            out += "\r\n";
        }
        line_len_ = 0;
        state_ = st::mid;
    }

    bare_newline_policy policy_;
    st state_ = st::bol;
    std::size_t line_len_ = 0;
    data_error error_ = data_error::none;
};

// Feeds `input` in the pieces cut at `cuts` (ascending) until the end of data.
template <typename Reader>
data_run read_pieces(Reader& dr, std::string_view input, const std::vector<std::size_t>& cuts) {
    data_run r;
    std::size_t from = 0;
    for (std::size_t k = 0; k <= cuts.size(); ++k) {
        const std::size_t to = k < cuts.size() ? cuts[k] : input.size();
        const auto res = dr.consume(input.substr(from, to - from), r.content);
        r.consumed += res.consumed;
        if (res.done) {
            r.done = true;
            break;
        }
        from = to;
    }
    r.error = dr.error();
    return r;
}

}  // namespace

TEST_CASE("data_reader: same as the byte-at-a-time reference, any input and split") {
    std::mt19937 rng(20240601);
    const char alphabet[] = {'a', '.', '\r', '\n', '\0'};
    for (int n = 0; n < 6000; ++n) {
        std::string in;
        const std::size_t len = rng() % 64;
        // Every fourth input has long runs, for the 1000-octet line limit.
        const bool long_runs = n % 4 == 3;
        while (in.size() < len) {
            if (long_runs && rng() % 3 == 0)
                in.append(990 + rng() % 12, 'a');
            else
                in.push_back(alphabet[rng() % 5]);
        }
        if (rng() % 2 == 0) in += "\r\n.\r\n";
        std::vector<std::size_t> cuts;
        const std::size_t pieces = rng() % 6;
        for (std::size_t k = 0; k < pieces; ++k) cuts.push_back(rng() % (in.size() + 1));
        std::sort(cuts.begin(), cuts.end());
        for (const auto policy : {reject, normalize}) {
            CAPTURE(printable(in, 400));
            CAPTURE(cuts.size());
            data_reader dr(policy);
            reference_data_reader ref(policy);
            const data_run want = read_pieces(ref, in, cuts);
            CHECK(read_pieces(dr, in, cuts) == want);
            // A reader reset after a message behaves as a fresh one.
            dr.reset();
            CHECK(read_pieces(dr, in, {}) == read_data(in, policy, in.size()));
        }
    }
}

// ---- replies and log text ---------------------------------------------------------

TEST_CASE("format_reply: single, multi-line, no enhanced code") {
    CHECK(format_reply({250, "2.1.0", "Ok"}) == "250 2.1.0 Ok\r\n");
    CHECK(format_reply({250, "", "mx.example\nPIPELINING\nSIZE 10"}) ==
          "250-mx.example\r\n250-PIPELINING\r\n250 SIZE 10\r\n");
    CHECK(format_reply({550, "5.1.1", "a\nb"}) == "550-5.1.1 a\r\n550 5.1.1 b\r\n");
    CHECK(format_reply({354, "", "go"}) == "354 go\r\n");
    CHECK(format_reply({250, "2.0.0", ""}) == "250 2.0.0\r\n");
    CHECK(format_reply({250, "", ""}) == "250\r\n");
    CHECK(format_reply({421, "4.4.2", "a\rb\x01"}) == "421 4.4.2 a b \r\n");  // no CR inside
    CHECK(format_reply({99, "", "x"}).substr(0, 4) == "451 ");
}

TEST_CASE("printable: escapes control and non-ASCII octets, truncates") {
    CHECK(printable("MAIL FROM:<a@b>") == "MAIL FROM:<a@b>");
    CHECK(printable("a\r\nb") == "a\\x0d\\x0ab");
    CHECK(printable("\xc3\xa9\x7f") == "\\xc3\\xa9\\x7f");
    CHECK(printable("back\\slash") == "back\\\\slash");
    CHECK(printable(std::string(300, 'a')) == std::string(200, 'a') + "...");
    CHECK(printable("abcdef", 4) == "abcd...");
    CHECK(printable("ab\x01", 4) == "ab...");  // never splits an escape
}
