// Template compiler and renderer: {{attr}}, {{#attr}}…{{/attr}},
// {{^attr}}…{{/attr}}, {{! comment}}, compiled once into a flat list of ops
// so that rendering is a walk that copies literal segments and values.
#include <sigrelay/signature.hpp>

#include <simdjson.h>

#include <array>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#include <cassert>

namespace sigrelay::signature {

namespace {

// Bytes that need work when a value is written: control characters become a
// space in both modes; HTML also escapes & < > " '.
constexpr std::array<std::uint8_t, 256> make_class(bool html) {
    std::array<std::uint8_t, 256> t{};
    for (int c = 0; c < 0x20; ++c) t[c] = (c == '\t') ? 0 : 1;
    t[0x7f] = 1;
    if (html) t['&'] = t['<'] = t['>'] = t['"'] = t['\''] = 1;
    return t;
}
constexpr auto html_class = make_class(true);
constexpr auto text_class = make_class(false);

#if defined(__SSE2__)
// Where the next byte needing work is, 16 bytes at a time: control bytes
// (< 0x20 except TAB, and DEL) always, & < > " ' in HTML mode.
const char* next_special(const char* p, const char* end, escape mode) {
    const __m128i tab = _mm_set1_epi8('\t');
    const __m128i space = _mm_set1_epi8(0x20);
    const __m128i del = _mm_set1_epi8(0x7f);
    const __m128i bias = _mm_set1_epi8(static_cast<char>(0x80));
    const __m128i space_biased = _mm_xor_si128(space, bias);
    const bool html = mode == escape::html;
    while (end - p >= 16) {
        __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
        // Unsigned x < 0x20 via a signed compare of biased bytes.
        __m128i ctl = _mm_cmplt_epi8(_mm_xor_si128(x, bias), space_biased);
        ctl = _mm_andnot_si128(_mm_cmpeq_epi8(x, tab), ctl);
        __m128i hit = _mm_or_si128(ctl, _mm_cmpeq_epi8(x, del));
        if (html) {
            hit = _mm_or_si128(hit, _mm_cmpeq_epi8(x, _mm_set1_epi8('&')));
            hit = _mm_or_si128(hit, _mm_cmpeq_epi8(x, _mm_set1_epi8('<')));
            hit = _mm_or_si128(hit, _mm_cmpeq_epi8(x, _mm_set1_epi8('>')));
            hit = _mm_or_si128(hit, _mm_cmpeq_epi8(x, _mm_set1_epi8('"')));
            hit = _mm_or_si128(hit, _mm_cmpeq_epi8(x, _mm_set1_epi8('\'')));
        }
        if (int m = _mm_movemask_epi8(hit)) return p + __builtin_ctz(static_cast<unsigned>(m));
        p += 16;
    }
    return p;  // fewer than 16 bytes left: the byte loop finishes
}
#endif

void append_value(std::string& out, std::string_view v, escape mode) {
    const auto& cls = mode == escape::html ? html_class : text_class;
    const char* p = v.data();
    const char* end = p + v.size();
    const char* run = p;
    for (; p != end; ++p) {
#if defined(__SSE2__)
        p = next_special(p, end, mode);
        if (p == end) break;
#endif
        auto c = static_cast<unsigned char>(*p);
        if (!cls[c]) [[likely]]
            continue;
        out.append(run, p);
        switch (c) {
            case '&':
                out += "&amp;";
                break;
            case '<':
                out += "&lt;";
                break;
            case '>':
                out += "&gt;";
                break;
            case '"':
                out += "&quot;";
                break;
            case '\'':
                out += "&#39;";
                break;
            default:
                out += ' ';
                break;  // a control character
        }
        run = p + 1;
    }
    out.append(run, end);
}

bool is_name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
}

bool is_blank(char c) {
    return c == ' ' || c == '\t';
}

}  // namespace

// Builds a compiled_template; a struct so it can be the class's friend.
struct compiler {
    std::string_view src;
    std::string_view origin;
    compiled_template t;

    struct open_section {
        std::size_t op_index;
        std::size_t tag_offset;
        std::string name;
    };
    std::vector<open_section> stack;
    bool merge_ok = false;  // the last op is a literal no section boundary follows

    error fail(std::size_t offset, const std::string& what) const {
        std::size_t line = 1, col = 1;
        for (std::size_t i = 0; i < offset && i < src.size(); ++i) {
            if (src[i] == '\n') {
                ++line;
                col = 1;
            } else {
                ++col;
            }
        }
        return make_error(std::string(origin) + ":" + std::to_string(line) + ":" +
                          std::to_string(col) + ": " + what);
    }

    std::string position(std::size_t offset) const {
        std::size_t line = 1, col = 1;
        for (std::size_t i = 0; i < offset; ++i) {
            if (src[i] == '\n') {
                ++line;
                col = 1;
            } else {
                ++col;
            }
        }
        return std::to_string(line) + ":" + std::to_string(col);
    }

    std::uint32_t slot_of(std::string_view name) {
        for (std::size_t i = 0; i < t.attributes_.size(); ++i)
            if (t.attributes_[i] == name) return static_cast<std::uint32_t>(i);
        t.attributes_.emplace_back(name);
        return static_cast<std::uint32_t>(t.attributes_.size() - 1);
    }

    std::uint32_t image_slot(std::string_view name, std::size_t offset) {
        for (std::size_t i = 0; i < t.images_.size(); ++i)
            if (t.images_[i] == name) return static_cast<std::uint32_t>(i);
        t.images_.emplace_back(name);
        t.image_positions_.push_back(position(offset));
        return static_cast<std::uint32_t>(t.images_.size() - 1);
    }

    // Appends literal source text with line breaks normalised to CRLF,
    // merging with a literal op just before it.
    void literal(std::size_t from, std::size_t to) {
        if (from >= to) return;
        std::size_t start = t.text_.size();
        for (std::size_t i = from; i < to; ++i) {
            char c = src[i];
            if (c == '\r') {
                t.text_ += "\r\n";
                if (i + 1 < to && src[i + 1] == '\n') ++i;
            } else if (c == '\n') {
                t.text_ += "\r\n";
            } else {
                t.text_ += c;
            }
        }
        auto len = static_cast<std::uint32_t>(t.text_.size() - start);
        if (merge_ok && !t.ops_.empty() && t.ops_.back().kind == compiled_template::op::literal &&
            t.ops_.back().offset + t.ops_.back().length == start) {
            t.ops_.back().length += len;
        } else {
            compiled_template::op o;
            o.kind = compiled_template::op::literal;
            o.offset = static_cast<std::uint32_t>(start);
            o.length = len;
            t.ops_.push_back(o);
        }
        merge_ok = true;
    }

    result<void> run() {
        if (src.size() > (std::size_t{1} << 30))
            return make_error(std::string(origin) + ": too large");
        if (auto nul = src.find('\0'); nul != std::string_view::npos)
            return fail(nul, "NUL byte in template");
        if (!simdjson::validate_utf8(src.data(), src.size()))
            return make_error(std::string(origin) + ": not valid UTF-8");

        std::size_t lit = 0;      // start of pending literal text
        std::size_t tag_end = 0;  // end of the previous tag (standalone test)
        std::size_t pos = 0;
        while (true) {
            std::size_t open = src.find("{{", pos);
            if (open == std::string_view::npos) break;
            std::size_t close = src.find("}}", open + 2);
            if (close == std::string_view::npos) return fail(open, "unterminated tag: no '}}'");
            std::size_t after = close + 2;
            std::string_view inner = src.substr(open + 2, close - open - 2);
            char sigil = inner.empty() ? '\0' : inner.front();
            if (sigil == '{') return fail(open, "'{{{' is not supported; use {{attr}}");
            bool has_sigil = sigil == '#' || sigil == '^' || sigil == '/' || sigil == '!';
            std::string_view name;
            bool image = false;
            if (sigil != '!') {
                std::string_view probe = inner;
                while (!probe.empty() && is_blank(probe.front())) probe.remove_prefix(1);
                if (!has_sigil && probe.starts_with("img:")) {
                    if (t.mode_ != escape::html)
                        return fail(open, "{{img:...}} is for HTML templates only");
                    image = true;
                    inner = probe.substr(4);
                }

                name = has_sigil ? inner.substr(1) : inner;
                while (!name.empty() && is_blank(name.front())) name.remove_prefix(1);
                while (!name.empty() && is_blank(name.back())) name.remove_suffix(1);
                if (name.empty()) return fail(open, "empty tag");
                for (char c : name)
                    if (!is_name_char(c))
                        return fail(open, std::string(image ? "bad image name '" : "bad attribute name '") +
                                              std::string(inner) + "' (allowed: letters, digits, _ . -)");
            }

            // A section or comment tag alone on its line takes the line with it.
            std::size_t lit_end = open;
            if (has_sigil) {
                std::size_t line_start = 0;
                if (open > 0) {
                    std::size_t nl = src.rfind('\n', open - 1);
                    if (nl != std::string_view::npos) line_start = nl + 1;
                }
                bool before_blank = line_start >= tag_end;
                for (std::size_t i = line_start; before_blank && i < open; ++i)
                    before_blank = is_blank(src[i]);
                std::size_t j = after;
                while (j < src.size() && is_blank(src[j])) ++j;
                bool line_end = false;
                if (j == src.size()) {
                    line_end = true;
                } else if (src[j] == '\n') {
                    line_end = true;
                    ++j;
                } else if (src[j] == '\r') {
                    line_end = true;
                    ++j;
                    if (j < src.size() && src[j] == '\n') ++j;
                }
                if (before_blank && line_end) {
                    lit_end = line_start;
                    after = j;
                }
            }
            literal(lit, lit_end);

            compiled_template::op o;
            if (sigil != '!') merge_ok = false;
            switch (sigil) {
                case '!':
                    break;
                case '#':
                case '^':
                    o.kind = sigil == '#' ? compiled_template::op::section
                                          : compiled_template::op::inverted;
                    o.slot = slot_of(name);
                    stack.push_back({t.ops_.size(), open, std::string(name)});
                    t.ops_.push_back(o);
                    break;
                case '/': {
                    if (stack.empty())
                        return fail(open, "{{/" + std::string(name) + "}} has no open section");
                    if (stack.back().name != name)
                        return fail(open, "{{/" + std::string(name) + "}} closes {{" +
                                              (t.ops_[stack.back().op_index].kind ==
                                                       compiled_template::op::section
                                                   ? "#"
                                                   : "^") +
                                              stack.back().name + "}} opened at " +
                                              position(stack.back().tag_offset));
                    t.ops_[stack.back().op_index].offset =
                        static_cast<std::uint32_t>(t.ops_.size());
                    stack.pop_back();
                    break;
                }
                default:
                    if (image) {
                        o.kind = compiled_template::op::image;
                        o.slot = image_slot(name, open);
                    } else {
                        o.kind = compiled_template::op::value;
                        o.slot = slot_of(name);
                    }
                    t.ops_.push_back(o);
                    break;
            }
            pos = lit = tag_end = after;
        }
        literal(lit, src.size());
        if (!stack.empty()) {
            const auto& s = stack.back();
            return fail(
                s.tag_offset,
                "{{" +
                    std::string(t.ops_[s.op_index].kind == compiled_template::op::section ? "#"
                                                                                          : "^") +
                    s.name + "}} is never closed");
        }
        return ok();
    }
};

result<compiled_template> compiled_template::compile(std::string_view source, escape mode,
                                                     std::string_view origin) {
    compiler c{source, origin, {}, {}};
    c.t.mode_ = mode;
    if (auto r = c.run(); !r) return std::move(r).err();
    return std::move(c.t);
}

void compiled_template::render(std::span<const std::string_view> values, std::string& out,
                               std::span<const std::string_view> image_urls) const {
    const std::size_t n = ops_.size();
    const op* ops = ops_.data();
    std::size_t i = 0;
    while (i < n) {
        const op& o = ops[i];
        switch (o.kind) {
            case op::literal:
                out.append(text_.data() + o.offset, o.length);
                ++i;
                break;
            case op::value:
                if (o.slot < values.size()) append_value(out, values[o.slot], mode_);
                ++i;
                break;
            case op::image:
                if (o.slot < image_urls.size()) out.append(image_urls[o.slot]);
                ++i;
                break;
            case op::section: {
                bool empty = o.slot >= values.size() || values[o.slot].empty();
                i = empty ? o.offset : i + 1;
                break;
            }
            case op::inverted: {
                bool empty = o.slot >= values.size() || values[o.slot].empty();
                i = empty ? i + 1 : o.offset;
                break;
            }
        }
    }
}

std::string compiled_template::render(std::span<const std::string_view> values) const {
    std::string out;
    out.reserve(text_.size() + 64 * attributes_.size());
    render(values, out);
    return out;
}

std::string compiled_template::render_with(
    const std::vector<std::pair<std::string, std::string>>& values) const {
    std::vector<std::string_view> v(attributes_.size());
    for (std::size_t i = 0; i < attributes_.size(); ++i)
        for (const auto& [k, val] : values)
            if (k == attributes_[i]) {
                v[i] = val;
                break;
            }
    return render(v);
}

binding::binding(const compiled_template& t, const directory& d) : slots_(t.attributes().size()) {
    slot_of_.assign(d.names_.size(), no_slot);
    for (std::size_t i = 0; i < t.attributes().size() && i < no_slot; ++i) {
        std::uint32_t id = d.attribute_id(t.attributes()[i]);
        if (id != directory::no_attribute) slot_of_[id] = static_cast<std::uint16_t>(i);
    }
}

void binding::render(const compiled_template& t, const directory& d, user_id u, std::string& out,
                     std::span<const std::string_view> image_urls) const {
    constexpr std::size_t inline_slots = 32;
    std::array<std::string_view, inline_slots> small{};
    std::vector<std::string_view> large;
    std::span<std::string_view> values;
    if (slots_ <= inline_slots) {
        values = std::span<std::string_view>(small.data(), slots_);
    } else {
        large.resize(slots_);
        values = large;
    }
    // One walk over the user's attributes fills every slot (the first value
    // of a repeated name wins, as in directory::get).
    const char* p = d.arena_.data() + d.users_[u].offset;
    for (std::uint32_t i = d.users_[u].first_attr, end = d.users_[u + 1].first_attr; i < end; ++i) {
        const auto& a = d.attrs_[i];
        if (a.name < slot_of_.size()) {
            std::uint16_t slot = slot_of_[a.name];
            if (slot != no_slot && values[slot].data() == nullptr) values[slot] = {p, a.length};
        }
        p += a.length;
    }
    t.render(values, out, image_urls);
}

}  // namespace sigrelay::signature
