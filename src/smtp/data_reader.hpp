// DATA content reader (RFC 5321 §4.1.1.4, §4.5.2): finds the end of data,
// removes dot-stuffing and polices line ends. Plain lines are passed on in
// bulk; everything else goes through a byte-state machine, so any split of
// the input across calls gives the same result.
//
// End of data is only the raw octets <CRLF>.<CRLF>, where the first CRLF may
// be the one that ended the DATA command. A bare CR or bare LF is never a
// line end for that purpose (the SMTP smuggling family: CVE-2023-51764,
// -51765, -51766). Under `reject` the content stops at the first bare CR/LF
// and the message is refused at its end; under `normalize` it becomes CRLF
// in the output and the next byte is mid-line, so a dot after it is plain
// content and never an end-of-data marker.
#pragma once

#include <sigrelay/smtp.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace sigrelay::smtp::detail {

enum class data_error : std::uint8_t {
    none,
    bare_newline,   // 550 5.6.0
    line_too_long,  // 500 5.5.2
};

class data_reader {
public:
    // RFC 5321 §4.5.3.1.6: a text line is at most 1000 octets with its CRLF.
    static constexpr std::size_t max_line = 1000;

    explicit data_reader(bare_newline_policy policy) noexcept : policy_(policy) {}

    // Starts a message: the next byte begins a line.
    void reset() noexcept;

    struct result {
        std::size_t consumed;  // octets used; after the final LF when done
        bool done;             // <CRLF>.<CRLF> seen
    };
    // Appends unstuffed content (CRLF line ends) to `out` while no error has
    // been seen; consumes up to and including the end-of-data marker.
    result consume(std::string_view in, std::string& out);

    data_error error() const noexcept { return error_; }

private:
    enum class state : std::uint8_t {
        bol,     // at the start of a line (after a raw CRLF)
        mid,     // inside a line
        cr,      // a CR seen, its LF not yet
        dot,     // "<CRLF>." seen
        dot_cr,  // "<CRLF>.<CR>" seen
    };
    std::size_t step(std::string_view in, std::size_t i, std::string& out, bool& done);
    void bare_newline(std::string& out, std::string_view line_before);
    void count(std::size_t n) noexcept;
    void fail(data_error e) noexcept {
        if (error_ == data_error::none) error_ = e;
    }
    bool emitting() const noexcept { return error_ == data_error::none; }

    bare_newline_policy policy_;
    state state_ = state::bol;
    std::size_t line_len_ = 0;  // octets of the current line before its end
    data_error error_ = data_error::none;
};

}  // namespace sigrelay::smtp::detail
