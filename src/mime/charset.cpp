// MIME charset labels → glibc iconv, strict conversion, and UTF-8 → charset
// with HTML numeric character references for what the charset cannot hold.
#include <sigrelay/mime/charset.hpp>

#include "text_util.hpp"

#include <iconv.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

namespace sigrelay::mime {
namespace {

// iconv descriptors kept per thread (each shard is one thread): every
// iconv_open takes glibc's global gconv lock and loads tables, which under
// load cost more than the conversions themselves. A handle borrows a cached
// descriptor, reset to its initial state, or opens one (and caches it).
class iconv_handle {
public:
    iconv_handle(const std::string& to, const std::string& from) : cd_(acquire(to, from)) {}
    iconv_handle(const iconv_handle&) = delete;
    iconv_handle& operator=(const iconv_handle&) = delete;
    bool ok() const noexcept { return cd_ != bad(); }
    iconv_t get() const noexcept { return cd_; }

private:
    static iconv_t bad() noexcept { return reinterpret_cast<iconv_t>(-1); }

    struct entry {
        std::string to, from;
        iconv_t cd;
        std::uint64_t used;
    };
    struct cache {
        std::vector<entry> entries;
        std::uint64_t clock = 0;
        ~cache() {
            for (auto& e : entries)
                if (e.cd != bad()) iconv_close(e.cd);
        }
    };

    static iconv_t acquire(const std::string& to, const std::string& from) {
        static thread_local cache c;
        constexpr std::size_t kMax = 32;  // charsets a shard sees at once are few
        for (auto& e : c.entries)
            if (e.to == to && e.from == from) {
                e.used = ++c.clock;
                if (e.cd != bad()) iconv(e.cd, nullptr, nullptr, nullptr, nullptr);  // initial state
                return e.cd;
            }
        iconv_t cd = iconv_open(to.c_str(), from.c_str());  // failures are cached too
        if (c.entries.size() >= kMax) {
            auto oldest = std::min_element(c.entries.begin(), c.entries.end(),
                                           [](const entry& a, const entry& b) { return a.used < b.used; });
            if (oldest->cd != bad()) iconv_close(oldest->cd);
            c.entries.erase(oldest);
        }
        c.entries.push_back({to, from, cd, ++c.clock});
        return cd;
    }

    iconv_t cd_;
};

}  // namespace

bool all_ascii(std::string_view s) noexcept {
    const char* p = s.data();
    std::size_t n = s.size();
    std::uint64_t acc = 0;
    for (; n >= 8; p += 8, n -= 8) {
        std::uint64_t w;
        std::memcpy(&w, p, 8);
        acc |= w;
    }
    for (; n > 0; ++p, --n) acc |= static_cast<unsigned char>(*p);
    return (acc & 0x8080808080808080ull) == 0;
}

namespace {

// Converts `in`, appending to `out`. Returns false at an invalid or
// unconvertible sequence, leaving `consumed` at its offset.
bool run(iconv_t cd, std::string_view in, std::string& out, std::size_t& consumed) {
    char* src = const_cast<char*>(in.data());
    std::size_t src_left = in.size();
    bool ok = true;
    while (src_left > 0) {
        char buf[4096];
        char* dst = buf;
        std::size_t dst_left = sizeof buf;
        std::size_t r = iconv(cd, &src, &src_left, &dst, &dst_left);
        out.append(buf, sizeof buf - dst_left);
        if (r == static_cast<std::size_t>(-1) && errno != E2BIG) {
            ok = false;
            break;
        }
    }
    consumed = in.size() - src_left;
    return ok;
}

// Returns the shift state to the initial one (ISO-2022-JP: ESC ( B).
void flush(iconv_t cd, std::string& out) {
    char buf[64];
    char* dst = buf;
    std::size_t dst_left = sizeof buf;
    iconv(cd, nullptr, nullptr, &dst, &dst_left);
    out.append(buf, sizeof buf - dst_left);
}

// One UTF-8 sequence at `s`: its length (1 for an invalid byte) and code point.
std::pair<std::size_t, std::uint32_t> utf8_next(std::string_view s) {
    auto b = [&](std::size_t i) { return static_cast<unsigned char>(s[i]); };
    unsigned char c = b(0);
    if (c < 0x80) return {1, c};
    std::size_t len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 0;
    if (len == 0 || len > s.size()) return {1, 0xFFFD};
    std::uint32_t cp = c & (0x7F >> len);
    for (std::size_t i = 1; i < len; ++i) {
        if ((b(i) & 0xC0) != 0x80) return {1, 0xFFFD};
        cp = (cp << 6) | (b(i) & 0x3F);
    }
    return {len, cp};
}

void append_ncr(std::string& out, std::uint32_t cp) {
    out += "&#";
    out += std::to_string(cp);
    out += ';';
}

// What glibc's iconv_open keeps of a name: letters, digits and "_-.,:"; it
// drops the rest ("utf-[7" opens UTF-7) and reads "//" as a suffix.
bool iconv_keeps(char c) noexcept {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
           c == '-' || c == '.' || c == ',' || c == ':';
}

// `label` starts with `prefix` (lowercase) once the characters iconv drops are skipped.
bool iconv_starts_with(std::string_view label, std::string_view prefix) noexcept {
    std::size_t k = 0;
    for (char c : label) {
        if (k == prefix.size()) return true;
        if (!iconv_keeps(c)) continue;
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
        if (c != prefix[k++]) return false;
    }
    return k == prefix.size();
}

// UTF-16/32, UCS-2/4, UTF-7 by name, compared as iconv reads the label, so
// "utf-[7" counts as UTF-7.
bool incompatible_name(std::string_view label) noexcept {
    auto l = trim(label);
    for (std::string_view p :
         {"utf-16", "utf-32", "utf16", "utf32", "ucs", "utf-7", "utf7", "unicode"})
        if (iconv_starts_with(l, p)) return true;
    return false;
}

}  // namespace

bool is_utf8_label(std::string_view label) noexcept {
    auto l = trim(label);
    return iequals(l, "utf-8") || iequals(l, "utf8");
}

bool is_ascii_label(std::string_view label) noexcept {
    auto l = trim(label);
    return iequals(l, "us-ascii") || iequals(l, "ascii") || iequals(l, "ansi_x3.4-1968") ||
           iequals(l, "iso646-us") || iequals(l, "us");
}

bool is_stateful_label(std::string_view label) noexcept {
    return istarts_with(trim(label), "iso-2022-") || istarts_with(trim(label), "iso2022");
}

bool is_ascii_incompatible_label(std::string_view label) noexcept {
    if (incompatible_name(label)) return true;
    auto l = trim(label);
    // Other names iconv knows for such charsets ("10646-1:1993" is UCS-4,
    // EBCDIC code pages): ASCII text must come out as the same bytes.
    try {
        std::string name = iconv_name(l, true);
        if (name.empty() || name == "UTF-8" || name == "ASCII") return false;
        // ISO-2022 starts in ASCII; ISO-2022-KR announces its set first.
        if (is_stateful_label(l)) return false;
        std::string probe = "\t\r\n";
        for (char c = 0x20; c < 0x7f; ++c) probe.push_back(c);
        auto out = convert("utf-8", l, probe);
        return !out || *out != probe;
    } catch (...) {
        return true;
    }
}

std::string iconv_name(std::string_view label, bool for_encoding) {
    std::string l = to_lower(trim(label));
    if (l.empty()) return {};
    if (is_ascii_label(l)) return "ASCII";
    if (is_utf8_label(l)) return "UTF-8";
    if (incompatible_name(l)) return {};
    // Microsoft's labels for its code pages (Outlook writes them).
    if (l == "ks_c_5601-1987" || l == "ks_c_5601" || l == "korean" || l == "cp949" ||
        l == "windows-949" || l == "ks_c_5601-1989")
        return "CP949";
    if (l == "euc-kr") return for_encoding ? "EUC-KR" : "CP949";
    if (l == "gb2312" || l == "gb_2312-80" || l == "euc-cn" || l == "x-gbk" || l == "gbk" ||
        l == "cp936")
        return "GBK";
    if (l == "iso-2022-jp") return for_encoding ? "ISO-2022-JP" : "ISO-2022-JP-2";
    if (l == "shift_jis" || l == "shift-jis" || l == "x-sjis" || l == "sjis" ||
        l == "windows-31j" || l == "cp932")
        return "CP932";
    if (l.starts_with("windows-125") && l.size() == 12) return "CP125" + l.substr(11);
    if (l == "latin1" || l == "l1") return "ISO-8859-1";
    // A label iconv would read as another name (dropped characters, "//"
    // suffixes) is not one it knows: "utf-[8" is not UTF-8.
    if (!std::all_of(l.begin(), l.end(), iconv_keeps)) return {};
    std::string upper;
    for (char c : l) upper.push_back((c >= 'a' && c <= 'z') ? char(c - 32) : c);
    iconv_handle probe("UTF-8", upper);
    return probe.ok() ? upper : std::string();
}

std::optional<std::string> convert(std::string_view from_label, std::string_view to_label,
                                   std::string_view bytes) {
    std::string from = iconv_name(from_label, false), to = iconv_name(to_label, true);
    if (from.empty() || to.empty()) return std::nullopt;
    // ASCII is UTF-8 already: only validate (the common case: a us-ascii
    // body relabelled to take a signature with non-ASCII characters).
    if (from == "ASCII" && (to == "ASCII" || to == "UTF-8")) {
        if (!all_ascii(bytes)) return std::nullopt;
        return std::string(bytes);
    }
    iconv_handle cd(to, from);
    if (!cd.ok()) return std::nullopt;
    std::string out;
    out.reserve(bytes.size() + bytes.size() / 4 + 8);
    std::size_t consumed = 0;
    if (!run(cd.get(), bytes, out, consumed)) return std::nullopt;
    flush(cd.get(), out);
    return out;
}

std::optional<std::string> to_utf8_lossy(std::string_view from_label, std::string_view bytes) {
    std::string from = iconv_name(from_label, false);
    if (from.empty()) return std::nullopt;
    if (from == "ASCII" && all_ascii(bytes)) return std::string(bytes);
    iconv_handle cd("UTF-8", from);
    if (!cd.ok()) return std::nullopt;
    std::string out;
    out.reserve(bytes.size() + bytes.size() / 4 + 8);
    std::string_view rest = bytes;
    while (!rest.empty()) {
        std::size_t consumed = 0;
        if (run(cd.get(), rest, out, consumed)) break;
        // An invalid, unconvertible or truncated sequence: one replacement
        // character for its first byte, then on with the next.
        out += "\xEF\xBF\xBD";
        rest.remove_prefix(std::min(consumed + 1, rest.size()));
    }
    flush(cd.get(), out);
    return out;
}

std::string utf8_to_ascii_ncr(std::string_view utf8) {
    std::string out;
    out.reserve(utf8.size());
    for (std::size_t i = 0; i < utf8.size();) {
        auto [len, cp] = utf8_next(utf8.substr(i));
        if (cp < 0x80)
            out.push_back(static_cast<char>(cp));
        else
            append_ncr(out, cp);
        i += len;
    }
    return out;
}

std::optional<std::string> utf8_to_charset_ncr(std::string_view to_label, std::string_view utf8) {
    std::string to = iconv_name(to_label, true);
    if (to.empty()) return std::nullopt;
    if (to == "UTF-8") return std::string(utf8);
    if (to == "ASCII") return utf8_to_ascii_ncr(utf8);
    iconv_handle cd(to, "UTF-8");
    if (!cd.ok()) return std::nullopt;
    std::string out;
    out.reserve(utf8.size() + 16);
    std::string_view rest = utf8;
    while (!rest.empty()) {
        std::size_t consumed = 0;
        if (run(cd.get(), rest, out, consumed)) break;
        // An unconvertible (or invalid) character: back to the initial shift
        // state, then a reference, which is plain ASCII in every
        // ASCII-compatible charset.
        flush(cd.get(), out);
        rest.remove_prefix(consumed);
        auto [len, cp] = utf8_next(rest);
        append_ncr(out, cp);
        rest.remove_prefix(len);
    }
    flush(cd.get(), out);
    return out;
}

}  // namespace sigrelay::mime
