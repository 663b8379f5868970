// BDAT chunk reader (RFC 3030 §2): chunk bytes are length-delimited and
// taken byte-exact: no dot-unstuffing, no end-of-data search, no line-end
// policing. The count comes from the peer, so nothing is allocated from it;
// bytes are passed on as they arrive.
#pragma once

#include <cstdint>
#include <string_view>

namespace sigrelay::smtp::detail {

class bdat_reader {
public:
    // Starts a chunk of `size` octets; `deliver` false when the chunk is
    // refused and its bytes are only consumed (RFC 3030 §2 / docs/behaviour.md, SMTP server rules).
    void start(std::uint64_t size, bool last, bool deliver) noexcept {
        remaining_ = size;
        size_ = size;
        last_ = last;
        deliver_ = deliver;
    }
    // The part of `in` that belongs to the chunk.
    std::string_view take(std::string_view in) noexcept;

    bool done() const noexcept { return remaining_ == 0; }
    std::uint64_t size() const noexcept { return size_; }
    bool last() const noexcept { return last_; }
    bool delivering() const noexcept { return deliver_; }
    void stop_delivering() noexcept { deliver_ = false; }

private:
    std::uint64_t remaining_ = 0;
    std::uint64_t size_ = 0;
    bool last_ = false;
    bool deliver_ = false;
};

}  // namespace sigrelay::smtp::detail
