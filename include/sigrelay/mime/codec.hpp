// Content-Transfer-Encoding codecs (RFC 2045 §6.7 quoted-printable, §6.8
// base64). Table-driven; each appends to `out`. Encoders emit CRLF line ends
// and never a line over 76 characters.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace sigrelay::mime {

// Lines of `line_len` characters (a multiple of 4) joined by CRLF, no final CRLF.
void base64_encode(std::string_view in, std::string& out, std::size_t line_len = 76);
// Skips whitespace; false when other non-alphabet bytes or a broken final
// quantum were met (what could be decoded is still appended).
bool base64_decode(std::string_view in, std::string& out);

// CRLF in `in` becomes a hard line break; bare CR/LF, '=', controls, 8-bit
// bytes and whitespace before a line end are escaped; soft breaks keep lines
// at most 76 characters.
void qp_encode(std::string_view in, std::string& out);
// Lenient decoder: invalid escapes are kept literally. Trailing whitespace is
// kept (as Python's and most clients' decoders do) rather than dropped per
// RFC 2045 §6.7 rule 3, so that re-encoding never loses a byte.
void qp_decode(std::string_view in, std::string& out);

}  // namespace sigrelay::mime
