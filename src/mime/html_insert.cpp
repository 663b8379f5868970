// HTML placement: bottom (before </body> or </html>), the quoted-thread
// markers of common clients for below_reply, and the signature marker.
#include <sigrelay/mime/placement.hpp>

#include "text_util.hpp"

namespace sigrelay::mime {
namespace {

bool is_id_char(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
           c == '-' || c == '.';
}

// The '<' of the tag enclosing `pos`, or npos when `pos` is in text.
std::size_t enclosing_tag(std::string_view html, std::size_t pos) {
    std::size_t lt = html.rfind('<', pos);
    if (lt == std::string_view::npos) return lt;
    std::size_t gt = html.find('>', lt);
    return (gt == std::string_view::npos || gt >= pos) ? lt : std::string_view::npos;
}

std::size_t first_in_tag(std::string_view html, std::string_view needle) {
    for (std::size_t at = ifind(html, needle); at != std::string_view::npos;
         at = ifind(html, needle, at + 1)) {
        std::size_t lt = enclosing_tag(html, at);
        if (lt != std::string_view::npos) return lt;
    }
    return std::string_view::npos;
}

}  // namespace

std::size_t html_bottom_offset(std::string_view html) noexcept {
    std::size_t at = irfind(html, "</body");
    if (at != std::string_view::npos) return at;
    at = irfind(html, "</html");
    if (at != std::string_view::npos) return at;
    return html.size();
}

namespace {

// Outlook draws its reply separator as an <hr> right before <div
// id="divRplyFwdMsg"> (desktop puts <div id="appendonsend"> before both, the
// mobile apps do not): the quoted part starts at the rule.
std::size_t rule_before(std::string_view html, std::size_t div) {
    std::size_t j = div;
    while (j > 0 && (html[j - 1] == ' ' || html[j - 1] == '\t' || html[j - 1] == '\r' ||
                     html[j - 1] == '\n'))
        --j;
    if (j == 0 || html[j - 1] != '>') return div;
    std::size_t lt = html.rfind('<', j - 1);
    if (lt == std::string_view::npos || lt + 3 >= html.size()) return div;
    const char after = html[lt + 3];
    if (!istarts_with(html.substr(lt), "<hr") ||
        !(after == ' ' || after == '>' || after == '/' || after == '\t' || after == '\r' || after == '\n'))
        return div;
    return lt;
}

}  // namespace

std::size_t html_reply_offset(std::string_view html, const std::vector<std::string>& extra) {
    static constexpr std::string_view kBuiltin[] = {
        "divrplyfwdmsg",             // Outlook desktop: <div id="divRplyFwdMsg">
        "appendonsend",              // OWA: <div id="appendonsend">
        "border-top:solid #e1e1e1",  // Outlook 2013+: header separator
        "border-top:solid #b5c4df",  // Outlook 2007/2010
        "gmail_quote",               // Gmail: <div class="gmail_quote">
        "moz-cite-prefix",           // Thunderbird attribution line
        "type=\"cite\"",             // Thunderbird/Apple: <blockquote type="cite">
        "type=cite",
    };
    std::size_t best = std::string_view::npos;
    for (auto needle : kBuiltin) {
        std::size_t at = first_in_tag(html, needle);
        if (at != std::string_view::npos && needle == kBuiltin[0]) at = rule_before(html, at);
        if (at < best) best = at;
    }
    for (const auto& m : extra) {
        if (m.empty()) continue;
        std::string lower = to_lower(m);
        std::size_t at = ifind(html, lower);
        if (at == std::string_view::npos) continue;
        std::size_t lt = enclosing_tag(html, at);
        if (lt == std::string_view::npos) {
            // In text: before the element holding it.
            lt = html.rfind('<', at);
            if (lt == std::string_view::npos) lt = at;
        }
        if (lt < best) best = lt;
    }
    return best;
}

std::string sanitize_marker_id(std::string_view id) {
    std::string out(id.substr(0, 128));
    for (auto& c : out)
        if (!is_id_char(c)) c = '_';
    return out;
}

std::string marker_open_tag(std::string_view marker_id) {
    std::string id = sanitize_marker_id(marker_id);
    if (id.empty()) return "<div>";
    return "<div class=\"sigrelay-" + id + "\" data-sigrelay=\"" + id + "\">";
}

bool html_has_marker(std::string_view html, std::string_view marker_id) noexcept {
    if (marker_id.empty()) return false;
    std::string needle = "sigrelay-" + to_lower(marker_id);
    for (std::size_t at = ifind(html, needle); at != std::string_view::npos;
         at = ifind(html, needle, at + 1)) {
        std::size_t after = at + needle.size();
        if (after >= html.size() || !is_id_char(html[after])) return true;
    }
    return false;
}

bool has_pgp_armor(std::string_view text) noexcept {
    return text.find("-----BEGIN PGP SIGNED MESSAGE-----") != std::string_view::npos ||
           text.find("-----BEGIN PGP MESSAGE-----") != std::string_view::npos;
}

namespace {

// The shift state of ISO-2022 text, byte by byte: false once a non-ASCII set
// is in use. Returns whether byte `i` (not an escape or shift) is ASCII.
struct iso2022_state {
    bool ascii = true;
    void step(std::string_view s, std::size_t i) noexcept {
        char c = s[i];
        if (c == '\x1b' && i + 2 < s.size()) {
            // ESC ( B / ESC ( J: ASCII or JIS-Roman; ESC $ ...: two-byte sets,
            // except ESC $ ) / * / + which only designate G1-G3 (ISO-2022-KR's
            // ESC $ ) C announcement): SO shifts to those.
            if (s[i + 1] == '(') ascii = s[i + 2] == 'B' || s[i + 2] == 'J';
            if (s[i + 1] == '$' && s[i + 2] != ')' && s[i + 2] != '*' && s[i + 2] != '+')
                ascii = false;
        }
        if (c == '\x0e') ascii = false;  // SO (ISO-2022-KR/CN)
        if (c == '\x0f') ascii = true;   // SI
    }
};

}  // namespace

std::string ascii_search_view(std::string_view s) {
    std::string out(s);
    iso2022_state st;
    for (std::size_t i = 0; i < out.size(); ++i) {
        st.step(s, i);
        if (s[i] == '\x1b' || s[i] == '\r' || s[i] == '\n') continue;
        if (!st.ascii) out[i] = '\x01';
    }
    return out;
}

bool iso2022_ascii_at(std::string_view s, std::size_t offset) noexcept {
    iso2022_state st;
    for (std::size_t i = 0; i < offset && i < s.size(); ++i) st.step(s, i);
    return st.ascii;
}

}  // namespace sigrelay::mime
