// Where a signature goes in a decoded body, and whether a body already holds
// one (docs/behaviour.md, Signature injection). All searches are ASCII case-insensitive over bytes
// in the part's own charset; callers convert tenant markers to that charset first.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace sigrelay::mime {

// Before the last </body>, else before the last </html>, else the end.
std::size_t html_bottom_offset(std::string_view html) noexcept;
// Start of the quoted thread in HTML, or npos: the earliest of Outlook desktop
// (divRplyFwdMsg, the #E1E1E1 / #B5C4DF border-top separator), OWA
// (appendonsend), Gmail (gmail_quote), Thunderbird (moz-cite-prefix),
// Thunderbird/Apple (blockquote type="cite") and `extra` markers. A marker
// inside a tag gives that tag's '<'.
std::size_t html_reply_offset(std::string_view html, const std::vector<std::string>& extra);
// Start of the line where the quoted thread begins in plain text, or npos:
// "-----Original Message-----", a "____" rule followed by "From:", "From:"
// followed by "Sent:"/"Date:", "On ... wrote:" (also over two lines), a '>'
// block after a line ending in ':', and lines containing an `extra` marker.
std::size_t text_reply_offset(std::string_view text, const std::vector<std::string>& extra);

// The HTML marker wrapping every signature: <div class="sigrelay-ID"
// data-sigrelay="ID">. A class survives Outlook desktop and OWA quoting
// (OWA prefixes it with "x_"); HTML comments do not.
std::string marker_open_tag(std::string_view marker_id);
// Keeps [A-Za-z0-9._-]; anything else becomes '_'.
std::string sanitize_marker_id(std::string_view id);
bool html_has_marker(std::string_view html, std::string_view marker_id) noexcept;
// The rendered text signature anywhere in `text`, ignoring whitespace and
// '>' quote prefixes (short signatures must match exactly).
bool text_has_signature(std::string_view text, std::string_view signature);
// Inline OpenPGP armor (RFC 4880 §6.2, §7).
bool has_pgp_armor(std::string_view text) noexcept;
// ISO-2022 text with bytes of non-ASCII shift states replaced by 0x01, so
// ASCII searches cannot match inside two-byte runs; offsets are unchanged.
std::string ascii_search_view(std::string_view iso2022);
// Whether ISO-2022 text is in ASCII (no two-byte set, not shifted out) at
// `offset`: what goes there is written in ASCII.
bool iso2022_ascii_at(std::string_view iso2022, std::size_t offset) noexcept;

}  // namespace sigrelay::mime
