// SMTP command-line parsing (RFC 5321 §4.1): the verb split, paths, ESMTP
// parameters (RFC 1870 SIZE, RFC 6152 8BITMIME, RFC 6531 SMTPUTF8, XOORG) and
// BDAT arguments (RFC 3030). Pure functions over one command line; the
// session decides what is allowed when.
#pragma once

#include <sigrelay/text.hpp>

#include <sigrelay/smtp.hpp>

#include <cstdint>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

namespace sigrelay::smtp::detail {

// Why a line was refused, as the reply the session will send.
struct parse_error {
    int code = 501;
    std::string_view enhanced = "5.5.4";
    std::string_view text = "Syntax error";
};

template <class T>
struct parsed {
    std::optional<T> value;
    parse_error err;
    static parsed fail(parse_error e) { return parsed{std::nullopt, e}; }
    explicit operator bool() const noexcept { return value.has_value(); }
};

// "VERB args": the verb up to the first SP, the arguments after it with
// surrounding blanks removed (RFC 5321 §4.1.1: verbs are case-insensitive).
struct command_line {
    std::string_view verb;
    std::string_view args;
};
command_line split_command(std::string_view line) noexcept;

using text::iequals;
// `s` starts with `prefix`, ignoring ASCII case.
bool istarts_with(std::string_view s, std::string_view prefix) noexcept;

// Well-formed UTF-8 (RFC 3629: no overlongs, no surrogates, ≤ U+10FFFF).
bool valid_utf8(std::string_view s) noexcept;

enum class path_kind { reverse, forward };

struct path {
    std::string_view address;  // between < and >, verbatim (source route kept)
    bool non_ascii = false;    // holds UTF-8 (needs SMTPUTF8, RFC 6531 §3.3)
    std::size_t consumed = 0;  // octets of the input used, incl. '>'
};
// Path = "<" [ A-d-l ":" ] Mailbox ">" (RFC 5321 §4.1.2); "<>" only for the
// reverse path; "<postmaster>" only for the forward path (§4.5.1).
parsed<path> parse_path(std::string_view s, path_kind kind) noexcept;

// esmtp-param *(SP esmtp-param), RFC 5321 §4.1.2 (values may hold UTF-8,
// RFC 6531 §3.3). Keywords repeated → error.
using param_list = std::vector<std::pair<std::string_view, std::string_view>>;
parsed<param_list> parse_params(std::string_view s);

struct mail_args {
    mail_command cmd;
    bool non_ascii = false;
};
// The arguments of MAIL: `FROM:<path> [params]`.
parsed<mail_args> parse_mail(std::string_view args, bool xoorg_enabled);

struct rcpt_args {
    rcpt_command cmd;
    bool non_ascii = false;
};
// The arguments of RCPT: `TO:<path> [params]`. No RCPT parameter is offered
// (no DSN), so any is 555 (RFC 5321 §4.1.1.11).
parsed<rcpt_args> parse_rcpt(std::string_view args);

struct bdat_args {
    std::uint64_t size = 0;
    bool last = false;
};
// `<chunk-size> [SP "LAST"]`, chunk-size = 1*DIGIT (RFC 3030 §2); at most 20
// digits and no overflow.
parsed<bdat_args> parse_bdat(std::string_view args) noexcept;

}  // namespace sigrelay::smtp::detail
