// Charset conversion with glibc iconv for MIME charset labels (RFC 2046 §4.1.2).
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace sigrelay::mime {

// iconv name for a MIME charset label ("" when iconv does not know it). Labels
// mail clients misuse are mapped to their supersets for decoding:
// ks_c_5601-1987/euc-kr → CP949, gb2312 → GBK, iso-2022-jp → ISO-2022-JP-2,
// shift_jis → CP932. `for_encoding` keeps the strict charset where it matters.
std::string iconv_name(std::string_view label, bool for_encoding = false);
bool is_utf8_label(std::string_view label) noexcept;
bool is_ascii_label(std::string_view label) noexcept;  // us-ascii and aliases
// Every byte below 0x80 (8 bytes at a time).
bool all_ascii(std::string_view bytes) noexcept;
// ISO-2022-*: bytes below 0x80 are not always ASCII (RFC 1468).
bool is_stateful_label(std::string_view label) noexcept;
// UTF-16/32, UCS-2/4, UTF-7 (also as iconv reads the label: "utf-[7"), and any
// charset iconv knows that does not write ASCII text as is (EBCDIC): not
// ASCII-compatible; never edited.
bool is_ascii_incompatible_label(std::string_view label) noexcept;

// Strict conversion: nullopt on an invalid or unrepresentable sequence or an
// unknown charset.
std::optional<std::string> convert(std::string_view from_label, std::string_view to_label,
                                   std::string_view bytes);
// For searching only: `bytes` in a charset decoded to UTF-8, each invalid or
// unconvertible byte becoming U+FFFD, so one stray byte does not hide the
// rest of the text. nullopt only for an unknown charset.
std::optional<std::string> to_utf8_lossy(std::string_view from_label, std::string_view bytes);
// UTF-8 to a charset, writing characters it cannot hold as HTML numeric
// character references (&#NNNN;). nullopt only for an unknown charset.
std::optional<std::string> utf8_to_charset_ncr(std::string_view to_label, std::string_view utf8);
// Replaces every non-ASCII character of UTF-8 text with an &#NNNN; reference.
std::string utf8_to_ascii_ncr(std::string_view utf8);

}  // namespace sigrelay::mime
