// Small text helpers shared across modules: ASCII case folding (mail
// protocols compare keywords, domains and header names ASCII
// case-insensitively), hex digits, and line-end normalisation for tools that
// read files.
#pragma once

#include <span>
#include <string>
#include <string_view>

namespace sigrelay::text {

constexpr char ascii_lower(char c) noexcept {
    return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + ('a' - 'A')) : c;
}

inline std::string to_lower(std::string_view s) {
    std::string out(s);
    for (char& c : out) c = ascii_lower(c);
    return out;
}

// A hex digit's value (either case), or -1: percent-encoding (RFC 3986,
// RFC 2231), quoted-printable and RFC 2047 Q all decode with it.
constexpr int hex_value(char c) noexcept {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

constexpr bool iequals(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
    return true;
}

// "a, b, c" from {"a", "b", "c"} and ", ".
inline std::string join(std::span<const std::string> parts, std::string_view sep) {
    std::string out;
    for (std::size_t i = 0; i < parts.size(); ++i) {
        if (i > 0) out += sep;
        out += parts[i];
    }
    return out;
}

// Every bare CR, bare LF and CRLF becomes CRLF: files on disk (LF) into the
// canonical form SMTP carries (RFC 5322 §2.3).
inline std::string to_crlf(std::string_view in) {
    std::string out;
    out.reserve(in.size() + in.size() / 32);
    for (std::size_t i = 0; i < in.size(); ++i) {
        char c = in[i];
        if (c == '\r') {
            out += "\r\n";
            if (i + 1 < in.size() && in[i + 1] == '\n') ++i;
        } else if (c == '\n') {
            out += "\r\n";
        } else {
            out += c;
        }
    }
    return out;
}

}  // namespace sigrelay::text
