// Small ASCII helpers shared by the mime sources (not public).
#pragma once

#include <sigrelay/text.hpp>

#include <cstddef>
#include <string>
#include <string_view>

namespace sigrelay::mime {

using text::ascii_lower;
using text::iequals;
using text::to_lower;

inline bool istarts_with(std::string_view s, std::string_view prefix) noexcept {
    return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

inline bool iends_with(std::string_view s, std::string_view suffix) noexcept {
    return s.size() >= suffix.size() && iequals(s.substr(s.size() - suffix.size()), suffix);
}

inline std::string_view trim(std::string_view s) noexcept {
    while (!s.empty() &&
           (s.front() == ' ' || s.front() == '\t' || s.front() == '\r' || s.front() == '\n'))
        s.remove_prefix(1);
    while (!s.empty() &&
           (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n'))
        s.remove_suffix(1);
    return s;
}

// First ASCII case-insensitive occurrence of `needle` (lowercase) at or after `from`.
inline std::size_t ifind(std::string_view hay, std::string_view needle_lower,
                         std::size_t from = 0) noexcept {
    if (needle_lower.empty()) return from <= hay.size() ? from : std::string_view::npos;
    if (hay.size() < needle_lower.size()) return std::string_view::npos;
    const char first = needle_lower[0];
    const char first_upper = (first >= 'a' && first <= 'z') ? char(first - 32) : first;
    for (std::size_t i = from; i + needle_lower.size() <= hay.size(); ++i) {
        if (hay[i] != first && hay[i] != first_upper) continue;
        std::size_t k = 1;
        while (k < needle_lower.size() && ascii_lower(hay[i + k]) == needle_lower[k]) ++k;
        if (k == needle_lower.size()) return i;
    }
    return std::string_view::npos;
}

// Last ASCII case-insensitive occurrence of `needle` (lowercase).
inline std::size_t irfind(std::string_view hay, std::string_view needle_lower) noexcept {
    if (hay.size() < needle_lower.size() || needle_lower.empty()) return std::string_view::npos;
    for (std::size_t i = hay.size() - needle_lower.size() + 1; i-- > 0;) {
        std::size_t k = 0;
        while (k < needle_lower.size() && ascii_lower(hay[i + k]) == needle_lower[k]) ++k;
        if (k == needle_lower.size()) return i;
    }
    return std::string_view::npos;
}

}  // namespace sigrelay::mime
