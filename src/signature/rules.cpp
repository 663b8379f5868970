// Rules: the first rule whose conditions all hold picks the template.
#include <sigrelay/signature.hpp>

namespace sigrelay::signature {

std::optional<date> parse_date(std::string_view s) noexcept {
    if (s.size() != 10 || s[4] != '-' || s[7] != '-') return std::nullopt;
    int parts[3] = {0, 0, 0};
    const std::size_t starts[3] = {0, 5, 8};
    const std::size_t lengths[3] = {4, 2, 2};
    for (int p = 0; p < 3; ++p)
        for (std::size_t i = starts[p]; i < starts[p] + lengths[p]; ++i) {
            if (s[i] < '0' || s[i] > '9') return std::nullopt;
            parts[p] = parts[p] * 10 + (s[i] - '0');
        }
    date d{std::chrono::year{parts[0]}, std::chrono::month{static_cast<unsigned>(parts[1])},
           std::chrono::day{static_cast<unsigned>(parts[2])}};
    if (!d.ok()) return std::nullopt;
    return d;
}

bool matches(const rule& r, const message_facts& m, const directory& d, user_id u) {
    for (const auto& [name, expected] : r.attributes)
        if (!iequals(d.get(u, name), expected)) return false;
    if (r.recipients != recipients_scope::any && r.recipients != m.recipients) return false;
    if (!r.subject_contains.empty() && !icontains(m.subject, r.subject_contains)) return false;
    if (!r.sender.empty()) {
        if (r.sender.front() == '@') {
            if (!iequals(domain_of(m.sender), std::string_view(r.sender).substr(1))) return false;
        } else if (!iequals(m.sender, r.sender)) {
            return false;
        }
    }
    if (r.active && (m.today < r.active->first || r.active->second < m.today)) return false;
    return true;
}

std::optional<std::size_t> first_match(std::span<const rule> rules, const message_facts& m,
                                       const directory& d, user_id u) {
    for (std::size_t i = 0; i < rules.size(); ++i)
        if (matches(rules[i], m, d, u)) return i;
    return std::nullopt;
}

}  // namespace sigrelay::signature
