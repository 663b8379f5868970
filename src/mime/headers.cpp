// Content-Type / Content-Disposition value parsing: RFC 2045 §5.1 tokens and
// quoted strings, comments, and RFC 2231 parameter continuations and
// charset'language'percent-encoded values.
#include <sigrelay/mime/scanner.hpp>
#include <sigrelay/text.hpp>

#include "text_util.hpp"

#include <algorithm>
#include <cstdlib>

namespace sigrelay::mime {
namespace {

using text::hex_value;

void skip_cfws(std::string_view v, std::size_t& i) {
    while (i < v.size()) {
        char c = v[i];
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
            ++i;
        } else if (c == '(') {  // RFC 5322 §3.2.2 comment, nested
            int level = 0;
            while (i < v.size()) {
                if (v[i] == '\\') {
                    // A quoted pair; a backslash as the last byte ends the value.
                    i = std::min(i + 2, v.size());
                    continue;
                }
                if (v[i] == '(') ++level;
                if (v[i] == ')' && --level == 0) {
                    ++i;
                    break;
                }
                ++i;
            }
        } else {
            break;
        }
    }
}

bool is_tspecial_stop(char c) {
    return c == ';' || c == ' ' || c == '\t' || c == '(' || c == '"';
}

std::string read_value(std::string_view v, std::size_t& i) {
    std::string out;
    if (i < v.size() && v[i] == '"') {
        ++i;
        while (i < v.size() && v[i] != '"') {
            if (v[i] == '\\' && i + 1 < v.size()) ++i;
            out.push_back(v[i++]);
        }
        if (i < v.size()) ++i;  // closing quote
        return out;
    }
    // Lenient token: many generators leave '=', '/', '?' unquoted.
    while (i < v.size() && !is_tspecial_stop(v[i])) out.push_back(v[i++]);
    return out;
}

std::string percent_decode(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '%' && i + 2 < s.size()) {
            int h = hex_value(s[i + 1]), l = hex_value(s[i + 2]);
            if (h >= 0 && l >= 0) {
                out.push_back(static_cast<char>(h * 16 + l));
                i += 2;
                continue;
            }
        }
        out.push_back(s[i]);
    }
    return out;
}

// RFC 2231 §4: charset'language'value; the charset is not needed to decide
// structure, so the bytes are kept as they are.
std::string strip_2231_prefix(std::string_view s) {
    auto a = s.find('\'');
    if (a == std::string_view::npos) return std::string(s);
    auto b = s.find('\'', a + 1);
    if (b == std::string_view::npos) return std::string(s);
    return std::string(s.substr(b + 1));
}

struct raw_param {
    std::string base;
    int section = -1;  // -1: no *N
    bool extended = false;
    std::string value;
};

void parse_params(std::string_view v, std::size_t i, std::vector<content_param>& params) {
    std::vector<raw_param> raw;
    while (i < v.size()) {
        skip_cfws(v, i);
        if (i < v.size() && v[i] == ';') {
            ++i;
            continue;
        }
        std::size_t name_start = i;
        while (i < v.size() && v[i] != '=' && v[i] != ';' && v[i] != ' ' && v[i] != '\t' &&
               v[i] != '(')
            ++i;
        std::string name = to_lower(v.substr(name_start, i - name_start));
        skip_cfws(v, i);
        if (i >= v.size() || v[i] != '=') {
            // A stray word: skip to the next ';'.
            while (i < v.size() && v[i] != ';') ++i;
            if (name_start == i) ++i;
            continue;
        }
        ++i;
        skip_cfws(v, i);
        std::string value = read_value(v, i);
        if (name.empty()) continue;
        raw_param p;
        if (name.back() == '*') {
            p.extended = true;
            name.pop_back();
        }
        auto star = name.find('*');
        if (star != std::string::npos) {
            std::string_view num = std::string_view(name).substr(star + 1);
            if (!num.empty() && num.size() < 5 &&
                std::all_of(num.begin(), num.end(), [](char c) { return c >= '0' && c <= '9'; })) {
                p.section = std::atoi(std::string(num).c_str());
                name.resize(star);
            }
        }
        p.base = std::move(name);
        p.value = std::move(value);
        raw.push_back(std::move(p));
    }
    // Assemble: plain values first, replaced by RFC 2231 forms when present.
    for (const auto& r : raw) {
        if (r.section >= 0) continue;
        std::string value = r.extended ? percent_decode(strip_2231_prefix(r.value)) : r.value;
        auto it = std::find_if(params.begin(), params.end(),
                               [&](const content_param& c) { return c.name == r.base; });
        if (it == params.end()) {
            params.push_back({r.base, std::move(value)});
        } else if (r.extended) {
            it->value = std::move(value);
        }
    }
    std::vector<const raw_param*> sections;
    for (const auto& r : raw)
        if (r.section >= 0) sections.push_back(&r);
    std::stable_sort(sections.begin(), sections.end(), [](const raw_param* a, const raw_param* b) {
        return a->base != b->base ? a->base < b->base : a->section < b->section;
    });
    for (std::size_t k = 0; k < sections.size();) {
        const std::string& base = sections[k]->base;
        std::string joined;
        int expect = 0;
        for (; k < sections.size() && sections[k]->base == base; ++k) {
            const raw_param& r = *sections[k];
            if (r.section != expect) continue;  // gaps and duplicates: ignored
            ++expect;
            std::string_view val = r.value;
            std::string tmp;
            if (r.extended) {
                tmp = percent_decode(r.section == 0 ? strip_2231_prefix(val) : std::string(val));
                val = tmp;
            }
            joined.append(val);
        }
        auto it = std::find_if(params.begin(), params.end(),
                               [&](const content_param& c) { return c.name == base; });
        if (it == params.end())
            params.push_back({base, std::move(joined)});
        else
            it->value = std::move(joined);
    }
}

bool is_token_char(char c) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 32 || u >= 127) return false;
    return std::string_view("()<>@,;:\\\"/[]?=").find(c) == std::string_view::npos;
}

}  // namespace

bool parse_content_type(std::string_view v, std::string& type, std::string& subtype,
                        std::vector<content_param>& params) {
    std::size_t i = 0;
    skip_cfws(v, i);
    std::size_t t0 = i;
    while (i < v.size() && is_token_char(v[i])) ++i;
    std::string t = to_lower(v.substr(t0, i - t0));
    skip_cfws(v, i);
    if (t.empty() || i >= v.size() || v[i] != '/') return false;
    ++i;
    skip_cfws(v, i);
    std::size_t s0 = i;
    while (i < v.size() && is_token_char(v[i])) ++i;
    std::string s = to_lower(v.substr(s0, i - s0));
    if (s.empty()) return false;
    type = std::move(t);
    subtype = std::move(s);
    parse_params(v, i, params);
    return true;
}

void parse_disposition(std::string_view v, std::string& disposition,
                       std::vector<content_param>& params) {
    std::size_t i = 0;
    skip_cfws(v, i);
    std::size_t d0 = i;
    while (i < v.size() && is_token_char(v[i])) ++i;
    disposition = to_lower(v.substr(d0, i - d0));
    parse_params(v, i, params);
}

bool valid_boundary(std::string_view b) noexcept {
    // RFC 2046 §5.1.1: 1*70 bchars, last one not a space.
    if (b.empty() || b.size() > 70 || b.back() == ' ') return false;
    for (char c : b) {
        bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                  std::string_view("'()+_,-./:=? ").find(c) != std::string_view::npos;
        if (!ok) return false;
    }
    return true;
}

}  // namespace sigrelay::mime
