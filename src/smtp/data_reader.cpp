// DATA content reader: end-of-data detection, dot-unstuffing, bare CR/LF.
//
// The common case runs in bulk: plain text up to a CRLF is passed on as it
// is, so consume() finds line ends with a 16-octet scan and appends whole
// runs of lines at once. Only what changes the output or the state beyond
// "inside a line" / "at a line start" (a leading dot, a bare CR or LF, a CR
// at the end of the input, the line limit) goes through step(), the exact
// one-state-at-a-time machine.
#include "data_reader.hpp"

#include <algorithm>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace sigrelay::smtp::detail {

namespace {

// The first CR or LF in [p, end), or end.
const char* find_line_end(const char* p, const char* end) noexcept {
#if defined(__SSE2__)
    const __m128i cr = _mm_set1_epi8('\r');
    const __m128i lf = _mm_set1_epi8('\n');
    while (end - p >= 16) {
        const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
        const int hits =
            _mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(v, cr), _mm_cmpeq_epi8(v, lf)));
        if (hits != 0) return p + __builtin_ctz(static_cast<unsigned>(hits));
        p += 16;
    }
#endif
    while (p != end && *p != '\r' && *p != '\n') ++p;
    return p;
}

}  // namespace

void data_reader::reset() noexcept {
    state_ = state::bol;
    line_len_ = 0;
    error_ = data_error::none;
}

void data_reader::count(std::size_t n) noexcept {
    line_len_ += n;
    // 1000 octets including CRLF leaves 998 for the rest of the line.
    if (line_len_ > max_line - 2) fail(data_error::line_too_long);
}

// A bare CR or LF ends the line `line_before` (already unstuffed). Under
// normalize it becomes CRLF; under reject the message is refused.
void data_reader::bare_newline(std::string& out, std::string_view line_before) {
    if (policy_ == bare_newline_policy::reject) fail(data_error::bare_newline);
    if (emitting()) {
        out.append(line_before);
        out.append("\r\n");
    }
    line_len_ = 0;
    state_ = state::mid;
}

// One transition of the byte state machine at in[i]; returns the new
// position (unchanged when the byte is re-read in the new state).
std::size_t data_reader::step(std::string_view in, std::size_t i, std::string& out, bool& done) {
    const char c = in[i];
    switch (state_) {
        case state::bol:
            if (c == '.') {
                count(1);
                state_ = state::dot;
                return i + 1;
            }
            state_ = state::mid;
            return i;  // the byte is handled as mid-line
        case state::mid: {
            const std::size_t j =
                static_cast<std::size_t>(find_line_end(in.data() + i, in.data() + in.size()) - in.data());
            if (j > i) {
                // Up to the line limit only, so the output does not depend
                // on how the input was split.
                const std::size_t room = line_len_ < max_line - 2 ? max_line - 2 - line_len_ : 0;
                if (emitting()) out.append(in.data() + i, std::min(j - i, room));
                count(j - i);
                return j;
            }
            if (c == '\r') {
                state_ = state::cr;
            } else {
                bare_newline(out, {});  // bare LF
            }
            return i + 1;
        }
        case state::cr:
            if (c == '\n') {
                if (emitting()) out.append("\r\n");
                line_len_ = 0;
                state_ = state::bol;
                return i + 1;
            }
            bare_newline(out, {});  // bare CR; `c` is re-read mid-line
            return i;
        case state::dot:
            if (c == '\r') {
                state_ = state::dot_cr;
                return i + 1;
            }
            if (c == '\n') {
                // "<CRLF>.<LF>": a "." line ended by a bare LF, not the end.
                bare_newline(out, ".");
                return i + 1;
            }
            // RFC 5321 §4.5.2: a leading period with more characters on the
            // line is deleted; `c` is re-read mid-line.
            state_ = state::mid;
            return i;
        case state::dot_cr:
            if (c == '\n') {
                state_ = state::bol;
                done = true;
                return i + 1;
            }
            // "<CRLF>.<CR>x": a "." line ended by a bare CR, not the end.
            bare_newline(out, ".");
            return i;
    }
    return i + 1;  // not reached
}

data_reader::result data_reader::consume(std::string_view in, std::string& out) {
    const char* const p = in.data();
    const std::size_t n = in.size();
    std::size_t i = 0;
    // in[run, i) is output still to be appended: content that passes through
    // unchanged (whole lines with their CRLF, or a line's start). Nothing
    // else is appended while it is pending; it is flushed before step().
    std::size_t run = 0;
    bool done = false;
    while (i < n) {
        if (state_ == state::bol && p[i] != '.') state_ = state::mid;
        if (state_ == state::mid) {
            const std::size_t j = static_cast<std::size_t>(find_line_end(p + i, p + n) - p);
            if (line_len_ + (j - i) <= max_line - 2) {
                line_len_ += j - i;
                i = j;
                if (i == n) break;
                if (p[i] == '\r' && i + 1 < n && p[i + 1] == '\n') {
                    // A raw CRLF: passed on as it is, the next line starts.
                    i += 2;
                    line_len_ = 0;
                    state_ = state::bol;
                    continue;
                }
            }
        }
        // Anything else: the exact machine, one transition.
        if (emitting() && i > run) out.append(p + run, i - run);
        i = step(in, i, out, done);
        run = i;
        if (done) return {i, true};
    }
    if (emitting() && i > run) out.append(p + run, i - run);
    return {i, false};
}

}  // namespace sigrelay::smtp::detail
