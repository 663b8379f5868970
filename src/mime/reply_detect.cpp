// Plain-text reply detection for below_reply placement, and detection of a
// signature already present in a quoted thread (once per conversation).
#include <sigrelay/mime/placement.hpp>

#include "text_util.hpp"

#include <cstring>

#include <algorithm>

namespace sigrelay::mime {
namespace {

struct line {
    std::size_t begin;
    std::string_view text;  // without the line end
};

std::vector<line> split_lines(std::string_view s) {
    std::vector<line> out;
    std::size_t i = 0;
    while (i < s.size()) {
        std::size_t nl = s.find('\n', i);
        std::size_t end = nl == std::string_view::npos ? s.size() : nl;
        std::string_view t = s.substr(i, end - i);
        if (!t.empty() && t.back() == '\r') t.remove_suffix(1);
        out.push_back({i, t});
        i = nl == std::string_view::npos ? s.size() : nl + 1;
    }
    return out;
}

bool all_underscores(std::string_view t) {
    return t.size() >= 10 && std::all_of(t.begin(), t.end(), [](char c) { return c == '_'; });
}

}  // namespace

std::size_t text_reply_offset(std::string_view text, const std::vector<std::string>& extra) {
    const auto lines = split_lines(text);
    std::vector<std::string> markers;
    for (const auto& m : extra)
        if (!trim(m).empty()) markers.push_back(to_lower(trim(m)));
    auto next_nonblank = [&](std::size_t k, std::size_t skip) -> std::string_view {
        for (std::size_t j = k + 1; j < lines.size(); ++j) {
            std::string_view t = trim(lines[j].text);
            if (t.empty()) continue;
            if (skip-- == 0) return t;
        }
        return {};
    };
    std::size_t prev = std::string_view::npos;  // previous non-blank line
    for (std::size_t k = 0; k < lines.size(); ++k) {
        std::string_view t = trim(lines[k].text);
        if (t.empty()) continue;
        // Outlook / Outlook Express / Gmail forwards.
        if (t.starts_with("-----") && (ifind(t, "original message") != std::string_view::npos ||
                                       ifind(t, "forwarded message") != std::string_view::npos))
            return lines[k].begin;
        // Outlook: a rule of underscores, then the From: block.
        if (all_underscores(t) && (istarts_with(next_nonblank(k, 0), "from:") ||
                                   istarts_with(next_nonblank(k, 1), "from:")))
            return lines[k].begin;
        // Outlook plain text without the rule.
        if (istarts_with(t, "from:") && (istarts_with(next_nonblank(k, 0), "sent:") ||
                                         istarts_with(next_nonblank(k, 0), "date:")))
            return lines[k].begin;
        // "On <date>, <name> wrote:", possibly wrapped onto a second line.
        if (istarts_with(t, "on ") &&
            (iends_with(t, "wrote:") || iends_with(next_nonblank(k, 0), "wrote:")))
            return lines[k].begin;
        // A quoted block after an attribution line.
        if (t.front() == '>' && prev != std::string_view::npos &&
            trim(lines[prev].text).ends_with(':'))
            return lines[prev].begin;
        for (const auto& m : markers)
            if (ifind(t, m) != std::string_view::npos) return lines[k].begin;
        prev = k;
    }
    return std::string_view::npos;
}

bool text_has_signature(std::string_view text, std::string_view signature) {
    // Normalise both: per line, drop leading quote marks and whitespace, then
    // drop all whitespace (clients re-wrap and re-indent quoted text).
    auto normalise = [](std::string_view s) {
        std::string out;
        out.reserve(s.size());
        for (const auto& l : split_lines(s)) {
            std::string_view t = l.text;
            while (!t.empty() && (t.front() == '>' || t.front() == ' ' || t.front() == '\t'))
                t.remove_prefix(1);
            for (char c : t)
                if (c != ' ' && c != '\t' && c != '\r' && c != '\n') out.push_back(c);
        }
        return out;
    };
    std::string sig = normalise(signature);
    if (sig.empty()) return false;
    if (sig.size() < 12) {
        // Short signatures: only an exact line-for-line match counts.
        std::string_view s = trim(signature);
        return text.find(s) != std::string_view::npos;
    }
    // Most messages do not hold the signature: a word of it that re-wrapping
    // and quoting cannot break (no blank inside, not so long that a client
    // would hard-wrap it) is looked for first, with memmem, in the text as
    // it is; only when it is there is the text normalised and searched.
    std::string_view probe;
    for (const auto& l : split_lines(signature)) {
        std::string_view t = l.text;
        std::size_t k = 0;
        while (k < t.size()) {
            while (k < t.size() && (t[k] == ' ' || t[k] == '\t' || t[k] == '>' || t[k] == '\r')) ++k;
            std::size_t e = k;
            while (e < t.size() && t[e] != ' ' && t[e] != '\t' && t[e] != '\r') ++e;
            std::string_view w = t.substr(k, e - k);
            if (w.size() <= 40 && w.size() > probe.size()) probe = w;
            k = e;
        }
    }
    if (probe.size() >= 4 && memmem(text.data(), text.size(), probe.data(), probe.size()) == nullptr)
        return false;
    return normalise(text).find(sig) != std::string::npos;
}

}  // namespace sigrelay::mime
