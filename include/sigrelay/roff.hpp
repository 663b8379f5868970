// Text made safe for roff, the input language of man pages: the generated
// OPTIONS sections (cli::parser::man) carry help strings that were written
// for a terminal, and roff would read some of their characters as markup.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace sigrelay::roff {

// One piece of running text. A backslash would start an escape; a plain '-'
// may be typeset as a hyphen (U+2010), which breaks copy and paste of
// "--flag", so every one becomes \- (the ASCII minus). A word that starts
// with '-' (or "[-", "(-") is a flag and gets \% so it is never hyphenated
// across lines.
// Non-ASCII characters become \[uXXXX], which every groff device knows,
// whatever the locale the page is rendered in; a byte that is not UTF-8
// becomes U+FFFD rather than garbage.
inline std::string escape(std::string_view text) {
    std::string out;
    out.reserve(text.size() + text.size() / 4);
    for (std::size_t i = 0; i < text.size();) {
        const auto c = static_cast<unsigned char>(text[i]);
        // \% only works in front of a word: before "[--flag" too, not after the bracket.
        if ((i == 0 || text[i - 1] == ' ') &&
            (c == '-' || ((c == '[' || c == '(' || c == '"') && i + 1 < text.size() && text[i + 1] == '-')))
            out += "\\%";
        if (c == '\\') {
            out += "\\e";
            ++i;
        } else if (c == '-') {
            out += "\\-";
            ++i;
        } else if (c < 0x80) {
            out += static_cast<char>(c);
            ++i;
        } else {
            // Decodes one UTF-8 sequence (2 to 4 bytes, no overlongs or surrogates).
            std::size_t len = c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 && c < 0xE0 ? 2 : 0;
            std::uint32_t cp = len == 4 ? (c & 0x07u) : len == 3 ? (c & 0x0Fu) : (c & 0x1Fu);
            bool valid = len != 0 && i + len <= text.size();
            for (std::size_t k = 1; valid && k < len; ++k) {
                const auto cc = static_cast<unsigned char>(text[i + k]);
                if ((cc & 0xC0u) != 0x80u) valid = false;
                cp = (cp << 6) | (cc & 0x3Fu);
            }
            if (valid && ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp < 0xE000))) ||
                          (len == 4 && (cp < 0x10000 || cp > 0x10FFFF))))
                valid = false;
            if (!valid) {
                cp = 0xFFFD;
                len = 1;
            }
            char buf[16];
            std::snprintf(buf, sizeof buf, "\\[u%04X]", static_cast<unsigned>(cp));
            out += buf;
            i += len;
        }
    }
    return out;
}

// Text as input lines (a trailing newline is added when missing). A line
// that starts with '.' or '\'' would be a request, so it gets the
// zero-width \& in front; an empty line would be a blank line in the output,
// so it becomes a paragraph break.
inline std::string lines(std::string_view text) {
    std::string out;
    while (!text.empty()) {
        const auto nl = text.find('\n');
        std::string_view line = text.substr(0, nl);
        text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
        if (line.empty()) {
            out += ".PP\n";
            continue;
        }
        if (line.front() == '.' || line.front() == '\'') out += "\\&";
        out += escape(line);
        out += '\n';
    }
    return out;
}

}  // namespace sigrelay::roff
