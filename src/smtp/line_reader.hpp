// Bounded command-line splitter. A line longer than the limit is skipped up
// to its end without being buffered, then reported once, so the session
// stays in sync with the peer (RFC 5321 §4.5.3.1.4; Postfix smtpd does the
// same with its bounded reads).
#pragma once

#include <cstddef>
#include <string_view>

namespace sigrelay::smtp::detail {

class line_reader {
public:
    // `limit`: the longest line accepted, terminator included.
    explicit line_reader(std::size_t limit) noexcept : limit_(limit) {}

    enum class kind {
        line,       // `line` holds a complete line without its terminator
        too_long,   // an over-long line ended; its bytes were dropped
        need_more,  // no complete line yet; `consumed` bytes may be dropped
    };
    struct result {
        kind what;
        std::string_view line;
        std::size_t consumed;  // octets of the input this call used up
    };

    // Looks at buffered input. A line ends at LF; a CR right before the LF
    // is part of the terminator. Bare LF is accepted as a command line end
    // (RFC 5321 §2.3.8 asks for CRLF; Postfix and most servers accept LF in
    // commands, while DATA content stays strict).
    result next(std::string_view in) noexcept;

    bool skipping() const noexcept { return skipping_; }
    void reset() noexcept { skipping_ = false; }

private:
    std::size_t limit_;
    bool skipping_ = false;
};

}  // namespace sigrelay::smtp::detail
