// Streaming MIME scanner: lines in, part tree with byte offsets out.
// Delimiters follow RFC 2046 §5.1.1: "--" boundary, optional "--" for the
// close delimiter, optional transport padding (SP/HT), then the line end; the
// line end before a delimiter belongs to the delimiter. A delimiter of an
// enclosing multipart ends every part nested inside it.
#include <sigrelay/mime/scanner.hpp>

#include "text_util.hpp"

#include <algorithm>
#include <cstring>

namespace sigrelay::mime {
namespace {

// Body lines are only inspected for delimiters: a boundary has at most 70
// characters (longer ones are a defect), so the first bytes are enough. Lines
// longer than this are never delimiters.
constexpr std::size_t kKeep = 1024;

bool field_line(const char* p, std::size_t len) {
    // RFC 5322 §2.2 field name: printable ASCII except ':', then ':'.
    std::size_t i = 0;
    while (i < len && p[i] >= 33 && p[i] <= 126 && p[i] != ':') ++i;
    return i > 0 && i < len && p[i] == ':';
}

}  // namespace

std::string_view defect_name(std::uint32_t d) noexcept {
    static constexpr std::string_view names[] = {
        "bare CR or LF",
        "no empty line after header",
        "header starts with folded line",
        "header block too large",
        "multipart without boundary",
        "invalid boundary",
        "ambiguous nested boundary",
        "multipart without parts",
        "unterminated multipart",
        "multipart nesting too deep",
        "duplicate MIME header",
        "invalid Content-Type",
    };
    for (std::size_t i = 0; i < std::size(names); ++i)
        if (d & (1u << i)) return names[i];
    return {};
}

const std::string* part::param(std::string_view lower_name) const noexcept {
    for (const auto& p : params)
        if (p.name == lower_name) return &p.value;
    return nullptr;
}

const header_field* part::field(std::string_view n) const noexcept {
    for (const auto& f : fields)
        if (iequals(f.name, n)) return &f;
    return nullptr;
}

scanner::scanner(scan_limits limits) : limits_(limits) {
    parts_.emplace_back();
    open_.push_back(open_part{});
}

std::uint32_t scanner::defects() const noexcept {
    std::uint32_t d = global_defects_;
    for (const auto& p : parts_) d |= p.defects;
    return d;
}

std::size_t scanner::keep_limit() const noexcept {
    if (!open_.empty() && open_.back().in_headers) return limits_.max_header_bytes + 1;
    return kKeep;
}

void scanner::feed(std::span<const char> bytes) {
    if (finished_) return;
    const char* p = bytes.data();
    std::size_t n = bytes.size();
    while (n > 0) {
        const char* nl = static_cast<const char*>(std::memchr(p, '\n', n));
        std::size_t take = nl ? static_cast<std::size_t>(nl - p) + 1 : n;
        if (nl && line_len_ == 0) {
            // The whole line is in this span: no copy.
            std::size_t len = take - 1, eol = 1;
            if (len > 0 && p[len - 1] == '\r') {
                --len;
                eol = 2;
            } else {
                global_defects_ |= defect_bare_newline;
            }
            if (len > 0 && std::memchr(p, '\r', len)) global_defects_ |= defect_bare_newline;
            pos_ += take;
            on_line(p, len, len, eol);
        } else {
            std::size_t content = nl ? take - 1 : take;  // without the LF
            std::size_t room = keep_limit();
            if (line_.size() < room) line_.append(p, std::min(content, room - line_.size()));
            for (std::size_t i = 0; i < content; ++i) line_cr_ += p[i] == '\r';
            if (content > 0) line_last_ = p[content - 1];
            line_len_ += content;
            pos_ += take;
            if (nl) {
                std::size_t len = line_len_, eol = 1;
                if (len > 0 && line_last_ == '\r') {
                    --len;
                    eol = 2;
                    --line_cr_;
                } else {
                    global_defects_ |= defect_bare_newline;
                }
                if (line_cr_ > 0) global_defects_ |= defect_bare_newline;
                std::size_t kept = std::min(line_.size(), len);
                on_line(line_.data(), kept, len, eol);
                line_.clear();
                line_len_ = 0;
                line_cr_ = 0;
                line_last_ = 0;
            }
        }
        p += take;
        n -= take;
    }
}

void scanner::finish() {
    if (finished_) return;
    if (line_len_ > 0) {
        if (line_cr_ > 0) global_defects_ |= defect_bare_newline;
        on_line(line_.data(), std::min(line_.size(), line_len_), line_len_, 0);
        line_.clear();
        line_len_ = 0;
    }
    while (!open_.empty()) close_top(pos_);
    finished_ = true;
}

void scanner::on_line(const char* p, std::size_t kept, std::size_t len, std::size_t eol) {
    if (open_.back().in_headers)
        header_line(p, kept, len, eol);
    else
        body_line(p, kept, len, eol);
    line_start_ += len + eol;
    prev_eol_ = eol;
}

void scanner::header_line(const char* p, std::size_t kept, std::size_t len, std::size_t eol) {
    part& pt = parts_[static_cast<std::size_t>(open_.back().index)];
    const bool was_oversized = header_bytes_ > limits_.max_header_bytes;
    header_bytes_ += len + eol;
    if (header_bytes_ > limits_.max_header_bytes) pt.defects |= defect_header_too_big;
    if (len == 0) {  // the empty line ending the header block
        flush_field();
        end_headers(line_start_, line_start_ + eol, true);
        return;
    }
    if (p[0] == ' ' || p[0] == '\t') {  // RFC 5322 §2.2.3 folding
        if (field_open_) {
            if (!was_oversized) field_value_.append(p, kept);
            field_end_ = line_start_ + len + eol;
        } else {
            pt.defects |= defect_continuation_first;
        }
        return;
    }
    // A delimiter cutting a header block short.
    if (kept >= 2 && p[0] == '-' && p[1] == '-' && open_.size() > 1) {
        for (std::size_t k = open_.size() - 1; k-- > 0;) {
            const auto& o = open_[k];
            if (o.multipart && !o.closed && kept >= o.delimiter.size() &&
                std::memcmp(p, o.delimiter.data(), o.delimiter.size()) == 0) {
                flush_field();
                pt.defects |= defect_no_header_separator;
                end_headers(line_start_, line_start_, true);
                body_line(p, kept, len, eol);
                return;
            }
        }
    }
    if (field_line(p, kept)) {
        flush_field();
        field_open_ = true;
        field_begin_ = line_start_;
        field_end_ = line_start_ + len + eol;
        const char* colon = static_cast<const char*>(std::memchr(p, ':', kept));
        field_name_.assign(p, static_cast<std::size_t>(colon - p));
        if (!was_oversized)
            field_value_.assign(colon + 1, kept - static_cast<std::size_t>(colon + 1 - p));
        return;
    }
    // mbox "From " envelope line before the message's first field.
    if (open_.size() == 1 && pt.fields.empty() && !field_open_ && kept >= 5 &&
        std::memcmp(p, "From ", 5) == 0) {
        pt.begin = line_start_ + len + eol;
        return;
    }
    // Not a header line: the body starts here (no separating empty line).
    flush_field();
    pt.defects |= defect_no_header_separator;
    end_headers(line_start_, line_start_, true);
    body_line(p, kept, len, eol);
}

void scanner::flush_field() {
    if (!field_open_) return;
    field_open_ = false;
    part& pt = parts_[static_cast<std::size_t>(open_.back().index)];
    if (header_bytes_ > limits_.max_header_bytes && pt.fields.size() > 0 && field_value_.empty())
        return;
    header_field f;
    f.begin = field_begin_;
    f.end = field_end_;
    f.name = std::move(field_name_);
    f.value = std::string(trim(field_value_));
    field_name_.clear();
    field_value_.clear();
    if (pt.fields.size() < 10000) pt.fields.push_back(std::move(f));
}

void scanner::end_headers(std::size_t header_end, std::size_t body_begin, bool open_body) {
    open_part& o = open_.back();
    part& pt = parts_[static_cast<std::size_t>(o.index)];
    o.in_headers = false;
    pt.header_complete = true;
    pt.header_end = std::max(header_end, pt.begin);
    pt.body_begin = std::max(body_begin, pt.header_end);
    pt.body_end = pt.body_begin;
    header_bytes_ = 0;

    // Defaults: RFC 2045 §5.2, and message/rfc822 inside multipart/digest (RFC 2046 §5.1.5).
    if (pt.parent >= 0 && parts_[static_cast<std::size_t>(pt.parent)].is("multipart", "digest")) {
        pt.type = "message";
        pt.subtype = "rfc822";
    }
    int n_ct = 0, n_cte = 0;
    for (const auto& f : pt.fields) {
        if (iequals(f.name, "Content-Type")) {
            if (n_ct++ > 0) continue;
            std::string t, s;
            std::vector<content_param> params;
            if (parse_content_type(f.value, t, s, params)) {
                pt.type = std::move(t);
                pt.subtype = std::move(s);
                pt.params = std::move(params);
                pt.has_content_type = true;
            } else {
                // RFC 2045 §5.2: an invalid Content-Type means text/plain.
                pt.type = "text";
                pt.subtype = "plain";
                pt.defects |= defect_bad_content_type;
            }
        } else if (iequals(f.name, "Content-Transfer-Encoding")) {
            if (n_cte++ > 0) continue;
            pt.cte = to_lower(trim(f.value));
            auto sp = pt.cte.find_first_of(" \t(;");
            if (sp != std::string::npos) pt.cte.resize(sp);
        } else if (iequals(f.name, "Content-Disposition")) {
            std::vector<content_param> params;
            parse_disposition(f.value, pt.disposition, params);
            for (auto& prm : params)
                if (prm.name == "filename") pt.filename = std::move(prm.value);
        } else if (iequals(f.name, "Content-ID")) {
            pt.content_id = f.value;
        }
    }
    if (n_ct > 1 || n_cte > 1) pt.defects |= defect_duplicate_header;
    if (pt.filename.empty())
        if (const auto* name = pt.param("name")) pt.filename = *name;

    if (!open_body || !pt.is_multipart()) return;
    const std::string* b = pt.param("boundary");
    if (!b) {
        pt.defects |= defect_missing_boundary;
        return;
    }
    if (!valid_boundary(*b)) {
        pt.defects |= defect_bad_boundary;
        return;
    }
    if (pt.depth >= limits_.max_depth) {
        pt.defects |= defect_too_deep;
        return;
    }
    // Only an exact equality, or one boundary being the other plus "--", makes
    // a delimiter line ambiguous (§5.1.1 allows nothing but padding after it).
    for (std::size_t k = 0; k + 1 < open_.size(); ++k) {
        const auto& up = open_[k];
        if (!up.multipart) continue;
        std::string_view a = std::string_view(up.delimiter).substr(2), c = *b;
        if (a == c ||
            (c.size() == a.size() + 2 && c.substr(0, a.size()) == a && c.ends_with("--")) ||
            (a.size() == c.size() + 2 && a.substr(0, c.size()) == c && a.ends_with("--"))) {
            pt.defects |= defect_boundary_overlap;
            return;
        }
    }
    o.multipart = true;
    o.delimiter = "--" + *b;
}

void scanner::body_line(const char* p, std::size_t kept, std::size_t len, std::size_t eol) {
    if (kept >= 2 && p[0] == '-' && p[1] == '-') try_delimiter(p, kept, len, eol);
}

bool scanner::try_delimiter(const char* p, std::size_t kept, std::size_t len, std::size_t eol) {
    for (std::size_t k = open_.size(); k-- > 0;) {
        open_part& o = open_[k];
        if (!o.multipart || o.closed || o.in_headers) continue;
        const std::string& d = o.delimiter;
        if (kept < d.size() || std::memcmp(p, d.data(), d.size()) != 0) continue;
        std::size_t i = d.size();
        bool close = false;
        if (i + 2 <= kept && p[i] == '-' && p[i + 1] == '-') {
            close = true;
            i += 2;
        }
        bool padding_only = kept == len;
        for (; padding_only && i < kept; ++i)
            if (p[i] != ' ' && p[i] != '\t') padding_only = false;
        if (!padding_only) continue;

        const std::size_t before = line_start_ >= prev_eol_ ? line_start_ - prev_eol_ : 0;
        while (open_.size() > k + 1) close_top(before);
        open_part& m = open_[k];
        if (close) {
            m.closed = true;
            if (!m.any_child) parts_[static_cast<std::size_t>(m.index)].defects |= defect_no_parts;
        } else {
            m.any_child = true;
            start_child(m.index, line_start_ + len + eol);
        }
        return true;
    }
    return false;
}

void scanner::start_child(int parent, std::size_t begin) {
    part child;
    child.begin = child.header_end = child.body_begin = child.body_end = begin;
    child.parent = parent;
    child.depth = parts_[static_cast<std::size_t>(parent)].depth + 1;
    int index = static_cast<int>(parts_.size());
    parts_[static_cast<std::size_t>(parent)].children.push_back(index);
    parts_.push_back(std::move(child));
    open_part o;
    o.index = index;
    open_.push_back(std::move(o));
    header_bytes_ = 0;
    field_open_ = false;
    field_name_.clear();
    field_value_.clear();
}

void scanner::close_top(std::size_t end) {
    open_part& o = open_.back();
    part& pt = parts_[static_cast<std::size_t>(o.index)];
    if (o.in_headers) {
        flush_field();
        // Header block cut short by a delimiter or the end of input.
        std::size_t at = std::max(pt.begin, std::min(line_start_, pos_));
        pt.defects |= defect_no_header_separator;
        end_headers(at, at, false);
    }
    if (o.multipart) {
        if (!o.any_child) pt.defects |= defect_no_parts;
        if (!o.closed) pt.defects |= defect_unterminated;
    }
    pt.body_end = std::max(pt.body_begin, end);
    pt.closed = true;
    open_.pop_back();
}

std::vector<part> scan(std::span<const char> message, scan_limits limits, std::uint32_t* defects) {
    scanner s(limits);
    s.feed(message);
    s.finish();
    if (defects) *defects = s.defects();
    return s.parts();
}

}  // namespace sigrelay::mime
