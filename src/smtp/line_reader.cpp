// Bounded command-line splitter that resynchronises at the next line end.
#include "line_reader.hpp"

#include <algorithm>

namespace sigrelay::smtp::detail {

line_reader::result line_reader::next(std::string_view in) noexcept {
    if (skipping_) {
        const std::size_t lf = in.find('\n');
        if (lf == std::string_view::npos) return {kind::need_more, {}, in.size()};
        skipping_ = false;
        return {kind::too_long, {}, lf + 1};
    }
    // Only the first `limit_` octets can hold an acceptable terminator.
    const std::string_view window = in.substr(0, std::min(in.size(), limit_));
    const std::size_t lf = window.find('\n');
    if (lf != std::string_view::npos) {
        std::string_view line = in.substr(0, lf);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        return {kind::line, line, lf + 1};
    }
    if (in.size() < limit_) return {kind::need_more, {}, 0};
    // Too long: drop what we have and everything up to the next LF.
    skipping_ = true;
    const std::size_t rest_lf = in.find('\n', limit_);
    if (rest_lf == std::string_view::npos) return {kind::need_more, {}, in.size()};
    skipping_ = false;
    return {kind::too_long, {}, rest_lf + 1};
}

}  // namespace sigrelay::smtp::detail
