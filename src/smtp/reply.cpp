// Reply formatting (RFC 5321 §4.2, multi-line replies §4.2.1; enhanced
// status codes RFC 2034 §3) and the printable copy of peer text for logs.
#include <sigrelay/smtp.hpp>

#include <algorithm>
#include <cstdio>

namespace sigrelay::smtp {

std::string format_reply(const reply& r) {
    // A code outside 200..599 cannot be sent; the owner made a mistake.
    const int code = r.code >= 200 && r.code <= 599 ? r.code : 451;
    char digits[4];
    std::snprintf(digits, sizeof digits, "%03d", code);

    std::string out;
    std::string_view text = r.text;
    for (;;) {
        const std::size_t nl = text.find('\n');
        std::string_view line = text.substr(0, nl);
        const bool last = nl == std::string_view::npos;
        out.append(digits, 3);
        out.push_back(last ? ' ' : '-');
        if (!r.enhanced.empty()) {
            out.append(r.enhanced);
            if (!line.empty()) out.push_back(' ');
        }
        // No CR, LF or other control octets inside a reply line.
        for (char c : line) out.push_back(c == '\t' || (c >= 32 && c != 127) || c < 0 ? c : ' ');
        if (out.back() == ' ' && line.empty() && r.enhanced.empty()) out.pop_back();
        out.append("\r\n");
        if (last) break;
        text.remove_prefix(nl + 1);
    }
    return out;
}

std::string printable(std::string_view peer_text, std::size_t max) {
    static constexpr char hex[] = "0123456789abcdef";
    std::string out;
    out.reserve(std::min(peer_text.size(), max) + 3);
    for (char ch : peer_text) {
        const auto c = static_cast<unsigned char>(ch);
        const std::size_t need = (c < 0x20 || c >= 0x7f) ? 4 : (c == '\\' ? 2 : 1);
        if (out.size() + need > max) {
            out.append("...");
            return out;
        }
        if (need == 4) {
            out.append("\\x");
            out.push_back(hex[c >> 4]);
            out.push_back(hex[c & 15]);
        } else if (need == 2) {
            out.append("\\\\");
        } else {
            out.push_back(ch);
        }
    }
    return out;
}

}  // namespace sigrelay::smtp
