// SMTP command-line parsing: verb split, paths, ESMTP and BDAT arguments.
#include "command_parser.hpp"

#include <limits>

namespace sigrelay::smtp::detail {

namespace {

constexpr bool is_alpha(char c) noexcept {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
constexpr bool is_digit(char c) noexcept {
    return c >= '0' && c <= '9';
}
constexpr bool is_alnum(char c) noexcept {
    return is_alpha(c) || is_digit(c);
}
constexpr bool is_high(char c) noexcept {
    return static_cast<unsigned char>(c) >= 0x80;
}

// atext, RFC 5322 §3.2.3.
constexpr bool is_atext(char c) noexcept {
    if (is_alnum(c)) return true;
    switch (c) {
        case '!':
        case '#':
        case '$':
        case '%':
        case '&':
        case '\'':
        case '*':
        case '+':
        case '-':
        case '/':
        case '=':
        case '?':
        case '^':
        case '_':
        case '`':
        case '{':
        case '|':
        case '}':
        case '~':
            return true;
        default:
            return false;
    }
}

constexpr parse_error bad_sender{501, "5.1.7", "Bad sender address syntax"};
constexpr parse_error bad_recipient{501, "5.1.3", "Bad recipient address syntax"};
constexpr parse_error bad_param{501, "5.5.4", "Bad parameter syntax"};
constexpr parse_error unknown_param{555, "5.5.4", "Unsupported parameter"};

// One run of UTF-8 starting at s[i] (a byte >= 0x80): its length, 0 if bad.
std::size_t utf8_len(std::string_view s, std::size_t i) noexcept {
    const auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
    const unsigned char c = b(i);
    std::size_t n;
    std::uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2, cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3, cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4, cp = c & 0x07;
    } else {
        return 0;
    }
    if (i + n > s.size()) return 0;
    for (std::size_t k = 1; k < n; ++k) {
        if ((b(i + k) & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (b(i + k) & 0x3F);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10FFFF) return 0;
    if (cp >= 0xD800 && cp <= 0xDFFF) return 0;
    return n;
}

struct cursor {
    std::string_view s;
    std::size_t i = 0;
    bool non_ascii = false;
    bool at_end() const noexcept { return i >= s.size(); }
    char peek() const noexcept { return at_end() ? '\0' : s[i]; }
    bool eat(char c) noexcept {
        if (at_end() || s[i] != c) return false;
        ++i;
        return true;
    }
    // A UTF-8 sequence at the cursor (RFC 6531 UTF8-non-ascii).
    bool eat_utf8() noexcept {
        if (at_end() || !is_high(s[i])) return false;
        const auto n = utf8_len(s, i);
        if (n == 0) return false;
        i += n;
        non_ascii = true;
        return true;
    }
};

// sub-domain = Let-dig [Ldh-str] (RFC 5321 §4.1.2), or a U-label (RFC 6531).
bool parse_domain(cursor& c) noexcept {
    for (;;) {
        const std::size_t start = c.i;
        char last = '\0';
        while (!c.at_end()) {
            const char ch = c.peek();
            if (is_alnum(ch) || ch == '-') {
                if (ch == '-' && c.i == start) return false;
                last = ch;
                ++c.i;
            } else if (is_high(ch)) {
                if (!c.eat_utf8()) return false;
                last = 'a';
            } else {
                break;
            }
        }
        if (c.i == start || last == '-') return false;
        if (!c.eat('.')) return true;
    }
}

// address-literal = "[" ... "]" (RFC 5321 §4.1.3); the inside is dcontent
// (%d33-90 / %d94-126), enough to carry IPv4, IPv6 and general literals.
bool parse_address_literal(cursor& c) noexcept {
    if (!c.eat('[')) return false;
    const std::size_t start = c.i;
    while (!c.at_end()) {
        const char ch = c.peek();
        if (ch == ']') break;
        if (ch < 33 || ch > 126 || ch == '[' || ch == '\\') return false;
        ++c.i;
    }
    return c.i > start && c.eat(']');
}

// Local-part = Dot-string / Quoted-string (RFC 5321 §4.1.2). Like Postfix,
// the Dot-string is lenient about where its dots are ("a..b", "a."):
// such addresses exist in the wild and we never route on them.
bool parse_local_part(cursor& c) noexcept {
    if (c.eat('"')) {
        // QcontentSMTP = qtextSMTP / quoted-pairSMTP; qtextSMTP is %d32-33 /
        // %d35-91 / %d93-126 plus UTF8-non-ascii (RFC 6531 §3.3).
        while (!c.at_end()) {
            const char ch = c.peek();
            if (ch == '"') {
                ++c.i;
                return true;
            }
            if (ch == '\\') {
                ++c.i;
                if (c.at_end() || c.peek() < 32 || c.peek() > 126) return false;
                ++c.i;
            } else if (is_high(ch)) {
                if (!c.eat_utf8()) return false;
            } else if (ch >= 32 && ch <= 126) {
                ++c.i;
            } else {
                return false;
            }
        }
        return false;
    }
    const std::size_t start = c.i;
    while (!c.at_end()) {
        const char ch = c.peek();
        if (is_atext(ch) || ch == '.') {
            ++c.i;
        } else if (is_high(ch)) {
            if (!c.eat_utf8()) return false;
        } else {
            break;
        }
    }
    return c.i > start;
}

// Parses `FROM:` / `TO:` then optional blanks (many clients write
// "MAIL FROM: <a@b>"; Postfix accepts it too), returning the rest.
std::optional<std::string_view> after_keyword(std::string_view args, std::string_view kw) {
    if (!istarts_with(args, kw)) return std::nullopt;
    args.remove_prefix(kw.size());
    while (!args.empty() && args.front() == ' ') args.remove_prefix(1);
    return args;
}

// What follows the path: nothing, or SP and parameters.
std::optional<std::string_view> params_after_path(std::string_view rest) {
    if (rest.empty()) return rest;
    if (rest.front() != ' ') return std::nullopt;
    while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
    return rest;
}

}  // namespace

bool istarts_with(std::string_view s, std::string_view prefix) noexcept {
    return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

bool valid_utf8(std::string_view s) noexcept {
    for (std::size_t i = 0; i < s.size();) {
        if (!is_high(s[i])) {
            ++i;
            continue;
        }
        const auto n = utf8_len(s, i);
        if (n == 0) return false;
        i += n;
    }
    return true;
}

command_line split_command(std::string_view line) noexcept {
    const auto blank = [](char c) { return c == ' ' || c == '\t'; };
    while (!line.empty() && blank(line.back())) line.remove_suffix(1);
    std::size_t sp = line.find(' ');
    if (sp == std::string_view::npos) return {line, {}};
    std::string_view args = line.substr(sp + 1);
    while (!args.empty() && blank(args.front())) args.remove_prefix(1);
    return {line.substr(0, sp), args};
}

parsed<path> parse_path(std::string_view s, path_kind kind) noexcept {
    const parse_error bad = kind == path_kind::reverse ? bad_sender : bad_recipient;
    cursor c{s};
    if (!c.eat('<')) return parsed<path>::fail(bad);
    if (c.eat('>')) {
        // "<>" is the null reverse-path (RFC 5321 §4.5.5), never a recipient.
        if (kind == path_kind::forward) return parsed<path>::fail(bad);
        return {path{{}, false, c.i}, {}};
    }
    // A-d-l = At-domain *( "," At-domain ) ":" — a source route. RFC 5321
    // §4.1.1.3 says servers SHOULD ignore it; we keep it verbatim because
    // recipients are never rewritten (docs/behaviour.md, SMTP server rules): the tenant's own smart
    // host decides what it means.
    if (c.peek() == '@') {
        do {
            if (!c.eat('@') || !parse_domain(c)) return parsed<path>::fail(bad);
        } while (c.eat(','));
        if (!c.eat(':')) return parsed<path>::fail(bad);
    }
    const std::size_t local_start = c.i;
    if (!parse_local_part(c)) return parsed<path>::fail(bad);
    const std::string_view local = s.substr(local_start, c.i - local_start);
    if (c.peek() == '>' && kind == path_kind::forward && local_start == 1 &&
        iequals(local, "postmaster")) {
        // "<Postmaster>" without a domain (RFC 5321 §4.1.1.3, §4.5.1).
        ++c.i;
        return {path{s.substr(1, c.i - 2), false, c.i}, {}};
    }
    if (!c.eat('@')) return parsed<path>::fail(bad);
    if (c.peek() == '[' ? !parse_address_literal(c) : !parse_domain(c))
        return parsed<path>::fail(bad);
    if (!c.eat('>')) return parsed<path>::fail(bad);
    return {path{s.substr(1, c.i - 2), c.non_ascii, c.i}, {}};
}

parsed<param_list> parse_params(std::string_view s) {
    param_list out;
    while (!s.empty()) {
        const std::size_t end = std::min(s.find(' '), s.size());
        const std::string_view p = s.substr(0, end);
        s.remove_prefix(end);
        while (!s.empty() && s.front() == ' ') s.remove_prefix(1);

        // esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
        const std::size_t eq = p.find('=');
        const std::string_view kw = p.substr(0, eq);
        if (kw.empty() || !is_alnum(kw.front())) return parsed<param_list>::fail(bad_param);
        for (char ch : kw)
            if (!is_alnum(ch) && ch != '-') return parsed<param_list>::fail(bad_param);
        std::string_view value;
        if (eq != std::string_view::npos) {
            // esmtp-value = 1*(%d33-60 / %d62-126 / UTF8-non-ascii)
            value = p.substr(eq + 1);
            if (value.empty() || !valid_utf8(value)) return parsed<param_list>::fail(bad_param);
            for (char ch : value)
                if (!is_high(ch) && (ch < 33 || ch > 126 || ch == '='))
                    return parsed<param_list>::fail(bad_param);
        }
        for (const auto& [k, v] : out)
            if (iequals(k, kw)) return parsed<param_list>::fail(bad_param);
        out.emplace_back(kw, value);
    }
    return {std::move(out), {}};
}

parsed<mail_args> parse_mail(std::string_view args, bool xoorg_enabled) {
    const auto rest = after_keyword(args, "FROM:");
    if (!rest) return parsed<mail_args>::fail({501, "5.5.4", "Syntax: MAIL FROM:<address>"});
    const auto p = parse_path(*rest, path_kind::reverse);
    if (!p) return parsed<mail_args>::fail(p.err);
    const auto ptext = params_after_path(rest->substr(p.value->consumed));
    if (!ptext) return parsed<mail_args>::fail(bad_sender);
    auto params = parse_params(*ptext);
    if (!params) return parsed<mail_args>::fail(params.err);

    mail_args out;
    out.cmd.reverse_path = std::string(p.value->address);
    out.cmd.params = std::string(*ptext);
    out.non_ascii = p.value->non_ascii;
    for (const auto& [kw, value] : *params.value) {
        if (iequals(kw, "SIZE")) {
            // RFC 1870 §3: size-value ::= 1*20DIGIT. A value beyond 2^64-1 is
            // still a number, just too large: saturate, the session says 552.
            if (value.empty() || value.size() > 20) return parsed<mail_args>::fail(bad_param);
            std::uint64_t n = 0;
            for (char ch : value) {
                if (!is_digit(ch)) return parsed<mail_args>::fail(bad_param);
                const auto d = static_cast<std::uint64_t>(ch - '0');
                n = n > (std::numeric_limits<std::uint64_t>::max() - d) / 10
                        ? std::numeric_limits<std::uint64_t>::max()
                        : n * 10 + d;
            }
            out.cmd.size = n;
        } else if (iequals(kw, "BODY")) {
            // RFC 6152 §2: BODY=7BIT / BODY=8BITMIME. BINARYMIME (RFC 3030)
            // is not offered, so it is an unsupported parameter.
            if (iequals(value, "8BITMIME")) {
                out.cmd.body_8bitmime = true;
            } else if (iequals(value, "7BIT")) {
                out.cmd.body_8bitmime = false;
            } else if (iequals(value, "BINARYMIME")) {
                return parsed<mail_args>::fail({555, "5.5.4", "BODY=BINARYMIME not supported"});
            } else {
                return parsed<mail_args>::fail(bad_param);
            }
        } else if (iequals(kw, "SMTPUTF8")) {
            // RFC 6531 §3.4: the SMTPUTF8 parameter has no value.
            if (!value.empty()) return parsed<mail_args>::fail(bad_param);
            out.cmd.smtputf8 = true;
        } else if (xoorg_enabled && iequals(kw, "XOORG")) {
            // Exchange Online's originating organization (a domain).
            if (value.empty()) return parsed<mail_args>::fail(bad_param);
            out.cmd.xoorg = std::string(value);
        } else {
            return parsed<mail_args>::fail(unknown_param);
        }
    }
    return {std::move(out), {}};
}

parsed<rcpt_args> parse_rcpt(std::string_view args) {
    const auto rest = after_keyword(args, "TO:");
    if (!rest) return parsed<rcpt_args>::fail({501, "5.5.4", "Syntax: RCPT TO:<address>"});
    const auto p = parse_path(*rest, path_kind::forward);
    if (!p) return parsed<rcpt_args>::fail(p.err);
    const auto ptext = params_after_path(rest->substr(p.value->consumed));
    if (!ptext) return parsed<rcpt_args>::fail(bad_recipient);
    const auto params = parse_params(*ptext);
    if (!params) return parsed<rcpt_args>::fail(params.err);
    if (!params.value->empty()) return parsed<rcpt_args>::fail(unknown_param);

    rcpt_args out;
    out.cmd.forward_path = std::string(p.value->address);
    out.non_ascii = p.value->non_ascii;
    return {std::move(out), {}};
}

parsed<bdat_args> parse_bdat(std::string_view args) noexcept {
    constexpr parse_error bad{501, "5.5.4", "Syntax: BDAT <size> [LAST]"};
    const std::size_t sp = std::min(args.find(' '), args.size());
    const std::string_view num = args.substr(0, sp);
    std::string_view rest = args.substr(sp);
    while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);

    if (num.empty() || num.size() > 20) return parsed<bdat_args>::fail(bad);
    std::uint64_t n = 0;
    for (char ch : num) {
        if (!is_digit(ch)) return parsed<bdat_args>::fail(bad);
        const auto d = static_cast<std::uint64_t>(ch - '0');
        if (n > (std::numeric_limits<std::uint64_t>::max() - d) / 10)
            return parsed<bdat_args>::fail(bad);
        n = n * 10 + d;
    }
    bdat_args out{n, false};
    if (!rest.empty()) {
        if (!iequals(rest, "LAST")) return parsed<bdat_args>::fail(bad);
        out.last = true;
    }
    return {out, {}};
}

}  // namespace sigrelay::smtp::detail
