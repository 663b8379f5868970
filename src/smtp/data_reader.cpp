// DATA content reader: end-of-data detection, dot-unstuffing, bare CR/LF.
#include "data_reader.hpp"

#include <algorithm>

namespace sigrelay::smtp::detail {

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

data_reader::result data_reader::consume(std::string_view in, std::string& out) {
    std::size_t i = 0;
    while (i < in.size()) {
        const char c = in[i];
        switch (state_) {
            case state::bol:
                if (c == '.') {
                    count(1);
                    state_ = state::dot;
                    ++i;
                    break;
                }
                state_ = state::mid;
                break;  // the byte is handled as mid-line
            case state::mid: {
                // Fast path: copy the run up to the next CR or LF at once.
                std::size_t j = i;
                while (j < in.size() && in[j] != '\r' && in[j] != '\n') ++j;
                if (j > i) {
                    // Up to the line limit only, so the output does not
                    // depend on how the input was split.
                    const std::size_t room =
                        line_len_ < max_line - 2 ? max_line - 2 - line_len_ : 0;
                    if (emitting()) out.append(in.data() + i, std::min(j - i, room));
                    count(j - i);
                    i = j;
                    break;
                }
                if (c == '\r') {
                    state_ = state::cr;
                } else {
                    bare_newline(out, {});  // bare LF
                }
                ++i;
                break;
            }
            case state::cr:
                if (c == '\n') {
                    if (emitting()) out.append("\r\n");
                    line_len_ = 0;
                    state_ = state::bol;
                    ++i;
                } else {
                    bare_newline(out, {});  // bare CR; `c` is re-read mid-line
                }
                break;
            case state::dot:
                if (c == '\r') {
                    state_ = state::dot_cr;
                    ++i;
                } else if (c == '\n') {
                    // "<CRLF>.<LF>": a "." line ended by a bare LF, not the end.
                    bare_newline(out, ".");
                    ++i;
                } else {
                    // RFC 5321 §4.5.2: a leading period with more characters
                    // on the line is deleted; `c` is re-read mid-line.
                    state_ = state::mid;
                }
                break;
            case state::dot_cr:
                if (c == '\n') {
                    state_ = state::bol;
                    return {i + 1, true};
                }
                // "<CRLF>.<CR>x": a "." line ended by a bare CR, not the end.
                bare_newline(out, ".");
                break;
        }
    }
    return {i, false};
}

}  // namespace sigrelay::smtp::detail
