// BDAT chunk reader: counts length-delimited chunk bytes.
#include "bdat_reader.hpp"

namespace sigrelay::smtp::detail {

std::string_view bdat_reader::take(std::string_view in) noexcept {
    const std::uint64_t n = remaining_ < in.size() ? remaining_ : in.size();
    remaining_ -= n;
    return in.substr(0, static_cast<std::size_t>(n));
}

}  // namespace sigrelay::smtp::detail
