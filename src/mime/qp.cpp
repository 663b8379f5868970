// Quoted-printable (RFC 2045 §6.7). The encoder keeps encoded lines at most
// 76 characters including the soft break '=', escapes whitespace that would
// end a line (rule 3) and treats only CRLF as a hard line break, so decoding
// gives back the exact bytes.
#include <sigrelay/mime/codec.hpp>
#include <sigrelay/text.hpp>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace sigrelay::mime {
namespace {

using text::hex_value;

constexpr char kHex[] = "0123456789ABCDEF";

// 1: written as is (printable ASCII except '='), 0: escaped. Space and tab
// are literal unless they end a line, decided at the call site.
constexpr std::array<std::uint8_t, 256> make_literal() {
    std::array<std::uint8_t, 256> t{};
    for (int c = 33; c <= 126; ++c) t[static_cast<std::size_t>(c)] = c != '=';
    t[' '] = 2;
    t['\t'] = 2;
    return t;
}
constexpr auto kLiteral = make_literal();

// Length of the run at p[0..n) of bytes written as they are whatever follows
// them (printable ASCII but '=', space and tab), 16 at a time with SSE2:
// the encoder copies such runs instead of looking at each byte.
std::size_t literal_run(const unsigned char* p, std::size_t n) {
    std::size_t i = 0;
#if defined(__SSE2__)
    const __m128i lo = _mm_set1_epi8(31), hi = _mm_set1_epi8(127);
    const __m128i eq = _mm_set1_epi8('='), tab = _mm_set1_epi8('\t');
    for (; i + 16 <= n; i += 16) {
        const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i));
        // Signed compares: bytes >= 0x80 are negative, so "> 31" rejects them.
        __m128i ok = _mm_and_si128(_mm_cmpgt_epi8(x, lo), _mm_cmplt_epi8(x, hi));
        ok = _mm_andnot_si128(_mm_cmpeq_epi8(x, eq), ok);
        ok = _mm_or_si128(ok, _mm_cmpeq_epi8(x, tab));
        const unsigned bad = ~static_cast<unsigned>(_mm_movemask_epi8(ok)) & 0xffffu;
        if (bad) return i + static_cast<std::size_t>(__builtin_ctz(bad));
    }
#endif
    for (; i < n; ++i) {
        const unsigned char c = p[i];
        if (!((c >= 32 && c <= 126 && c != '=') || c == '\t')) break;
    }
    return i;
}

}  // namespace

void qp_encode(std::string_view in, std::string& out) {
    constexpr std::size_t kMax = 75;  // characters before a soft break '='
    const auto* p = reinterpret_cast<const unsigned char*>(in.data());
    const std::size_t n = in.size();
    // Worst case: every byte escaped, plus soft breaks.
    const std::size_t start = out.size();
    out.resize(start + n * 3 + (n * 3 / kMax + 1) * 3 + 3);
    char* o = out.data() + start;
    std::size_t col = 0;
    for (std::size_t i = 0; i < n;) {
        // Fast path: bytes the loop below would write one by one, unescaped
        // and without a soft break (col stays below 75), copied at once. A
        // space or tab ending the run before a line end or the end is left to
        // the loop (rule 3 may escape it), so the output is the same.
        if (col < kMax) {
            std::size_t run = literal_run(p + i, std::min(n - i, kMax - col));
            if (run > 0) {
                const std::size_t j = i + run;
                if ((j == n || p[j] == '\r') && (p[j - 1] == ' ' || p[j - 1] == '\t')) --run;
            }
            if (run > 0) {
                std::memcpy(o, p + i, run);
                o += run;
                col += run;
                i += run;
                if (i >= n) break;
            }
        }
        const unsigned char c = p[i];
        if (c == '\r' && i + 1 < n && p[i + 1] == '\n') {
            o[0] = '\r';
            o[1] = '\n';
            o += 2;
            col = 0;
            i += 2;
            continue;
        }
        std::uint8_t kind = kLiteral[c];
        if (kind == 2) {
            // Whitespace before a hard break or the end is escaped (rule 3).
            const bool at_end = i + 1 == n || (p[i + 1] == '\r' && i + 2 < n && p[i + 2] == '\n');
            kind = at_end ? 0 : 1;
        }
        const std::size_t width = kind ? 1 : 3;
        // Keep room so that a line ends in '=' within 76 characters, unless
        // this is the last character before a hard break or the end.
        const bool last_on_line = i + 1 == n || (p[i + 1] == '\r' && i + 2 < n && p[i + 2] == '\n');
        const std::size_t limit = last_on_line ? kMax + 1 : kMax;
        if (col + width > limit) {
            o[0] = '=';
            o[1] = '\r';
            o[2] = '\n';
            o += 3;
            col = 0;
        }
        if (kind) {
            *o++ = static_cast<char>(c);
        } else {
            o[0] = '=';
            o[1] = kHex[c >> 4];
            o[2] = kHex[c & 15];
            o += 3;
        }
        col += width;
        ++i;
    }
    out.resize(static_cast<std::size_t>(o - out.data()));
}

void qp_decode(std::string_view in, std::string& out) {
    const auto* p = reinterpret_cast<const unsigned char*>(in.data());
    const std::size_t n = in.size();
    const std::size_t start = out.size();
    out.resize(start + n);
    char* const base = out.data();
    char* o = base + start;
    std::size_t i = 0;
    while (i < n) {
        // Copy a run of ordinary bytes.
        std::size_t j = i;
        while (j < n && p[j] != '=' && p[j] != '\r' && p[j] != '\n') ++j;
        if (j > i) {
            std::memcpy(o, p + i, j - i);
            o += j - i;
            i = j;
            if (i >= n) break;
        }
        const unsigned char c = p[i];
        if (c == '=') {
            if (i + 2 < n && hex_value(p[i + 1]) >= 0 && hex_value(p[i + 2]) >= 0) {
                *o++ = static_cast<char>(hex_value(p[i + 1]) * 16 + hex_value(p[i + 2]));
                i += 3;
                continue;
            }
            // Soft line break: '=' then optional whitespace then the line end.
            std::size_t k = i + 1;
            while (k < n && (p[k] == ' ' || p[k] == '\t')) ++k;
            if (k == n) {  // '=' at the very end: a soft break without line end
                i = n;
                break;
            }
            if (p[k] == '\n' || (p[k] == '\r' && k + 1 < n && p[k + 1] == '\n')) {
                i = k + (p[k] == '\r' ? 2 : 1);
                continue;
            }
            *o++ = '=';  // not an escape: kept literally
            ++i;
            continue;
        }
        // A hard line break.
        if (c == '\n' || (c == '\r' && i + 1 < n && p[i + 1] == '\n')) {
            const std::size_t len = c == '\r' ? 2 : 1;
            std::memcpy(o, p + i, len);
            o += len;
            i += len;
            continue;
        }
        *o++ = static_cast<char>(c);  // bare CR
        ++i;
    }
    out.resize(static_cast<std::size_t>(o - base));
}

}  // namespace sigrelay::mime
