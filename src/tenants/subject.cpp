// The message's Subject for `subject_contains` rules: a tiny header reader
// (RFC 5322 §2.2.3 unfolding) and an RFC 2047 encoded-word decoder.
#include <sigrelay/tenants.hpp>
#include <sigrelay/text.hpp>

#include <array>
#include <cstdint>

namespace sigrelay::tenants {

namespace {

using text::hex_value;

constexpr std::size_t max_header_bytes = 1 << 20;

void append_utf8(std::string& out, std::uint32_t cp) {
    if (cp < 0x80) {
        out += static_cast<char>(cp);
    } else if (cp < 0x800) {
        out += static_cast<char>(0xc0 | (cp >> 6));
        out += static_cast<char>(0x80 | (cp & 0x3f));
    } else {
        out += static_cast<char>(0xe0 | (cp >> 12));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
        out += static_cast<char>(0x80 | (cp & 0x3f));
    }
}

// Windows-1252's 0x80-0x9F; the rest of the range is ISO-8859-1.
constexpr std::array<std::uint16_t, 32> cp1252_high = {
    0x20ac, 0x0081, 0x201a, 0x0192, 0x201e, 0x2026, 0x2020, 0x2021, 0x02c6, 0x2030, 0x0160,
    0x2039, 0x0152, 0x008d, 0x017d, 0x008f, 0x0090, 0x2018, 0x2019, 0x201c, 0x201d, 0x2022,
    0x2013, 0x2014, 0x02dc, 0x2122, 0x0161, 0x203a, 0x0153, 0x009d, 0x017e, 0x0178};

int b64_value(char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

bool decode_b(std::string_view in, std::string& out) {
    std::uint32_t acc = 0;
    int bits = 0;
    for (char c : in) {
        if (c == '=') break;
        int v = b64_value(c);
        if (v < 0) return false;
        acc = (acc << 6) | static_cast<std::uint32_t>(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out += static_cast<char>((acc >> bits) & 0xff);
        }
    }
    return true;
}

bool decode_q(std::string_view in, std::string& out) {
    for (std::size_t i = 0; i < in.size(); ++i) {
        char c = in[i];
        if (c == '_') {
            out += ' ';
        } else if (c == '=') {
            if (i + 2 >= in.size()) return false;
            int hi = hex_value(in[i + 1]), lo = hex_value(in[i + 2]);
            if (hi < 0 || lo < 0) return false;
            out += static_cast<char>(hi * 16 + lo);
            i += 2;
        } else {
            out += c;
        }
    }
    return true;
}

// Decodes one encoded-word's payload into UTF-8; false: leave it as written.
bool decode_word(std::string_view charset, char encoding, std::string_view text, std::string& out) {
    if (auto star = charset.find('*'); star != std::string_view::npos)  // RFC 2231 language
        charset = charset.substr(0, star);
    std::string bytes;
    bool good = (encoding == 'b' || encoding == 'B')   ? decode_b(text, bytes)
                : (encoding == 'q' || encoding == 'Q') ? decode_q(text, bytes)
                                                       : false;
    if (!good) return false;
    if (signature::iequals(charset, "utf-8") || signature::iequals(charset, "us-ascii") ||
        signature::iequals(charset, "utf8")) {
        out += bytes;
        return true;
    }
    bool latin1 =
        signature::iequals(charset, "iso-8859-1") || signature::iequals(charset, "latin1");
    bool cp1252 =
        signature::iequals(charset, "windows-1252") || signature::iequals(charset, "cp1252");
    if (!latin1 && !cp1252) return false;
    for (char ch : bytes) {
        auto c = static_cast<unsigned char>(ch);
        if (cp1252 && c >= 0x80 && c < 0xa0)
            append_utf8(out, cp1252_high[c - 0x80]);
        else
            append_utf8(out, c);
    }
    return true;
}

// RFC 2047 §6: decode encoded-words; white space between two adjacent
// encoded-words is dropped.
std::string decode_2047(std::string_view v) {
    std::string out;
    std::size_t pending_ws_start = std::string::npos;  // blanks after an encoded-word
    bool last_was_word = false;
    std::size_t i = 0;
    while (i < v.size()) {
        if (v[i] == '=' && i + 1 < v.size() && v[i + 1] == '?') {
            // =?charset?e?text?=
            std::size_t q1 = v.find('?', i + 2);
            std::size_t q2 = q1 == std::string_view::npos ? q1 : v.find('?', q1 + 1);
            std::size_t end = q2 == std::string_view::npos ? q2 : v.find("?=", q2 + 1);
            if (end != std::string_view::npos && q2 == q1 + 2) {
                std::string_view charset = v.substr(i + 2, q1 - i - 2);
                char enc = v[q1 + 1];
                std::string_view text = v.substr(q2 + 1, end - q2 - 1);
                std::string decoded;
                if (text.find(' ') == std::string_view::npos &&
                    decode_word(charset, enc, text, decoded)) {
                    if (last_was_word && pending_ws_start != std::string::npos)
                        out.resize(pending_ws_start);
                    out += decoded;
                    last_was_word = true;
                    pending_ws_start = std::string::npos;
                    i = end + 2;
                    continue;
                }
            }
        }
        char c = v[i];
        if (c == ' ' || c == '\t') {
            if (pending_ws_start == std::string::npos) pending_ws_start = out.size();
        } else {
            last_was_word = false;
            pending_ws_start = std::string::npos;
        }
        out += c;
        ++i;
    }
    return out;
}

}  // namespace

std::string header_value(std::string_view message, std::string_view field) {
    if (message.size() > max_header_bytes) message = message.substr(0, max_header_bytes);
    std::size_t pos = 0;
    while (pos < message.size()) {
        std::size_t nl = message.find('\n', pos);
        std::size_t end = nl == std::string_view::npos ? message.size() : nl;
        std::string_view line = message.substr(pos, end - pos);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (line.empty()) break;  // end of the header block
        std::size_t next = nl == std::string_view::npos ? message.size() : nl + 1;
        auto colon = line.find(':');
        if (line.front() != ' ' && line.front() != '\t' && colon != std::string_view::npos) {
            std::string_view name = line.substr(0, colon);
            while (!name.empty() && (name.back() == ' ' || name.back() == '\t'))
                name.remove_suffix(1);
            if (signature::iequals(name, field)) {
                std::string value(line.substr(colon + 1));
                // Continuation lines: unfolding removes only the line break.
                while (next < message.size() && (message[next] == ' ' || message[next] == '\t')) {
                    std::size_t nl2 = message.find('\n', next);
                    std::size_t end2 = nl2 == std::string_view::npos ? message.size() : nl2;
                    std::string_view cont = message.substr(next, end2 - next);
                    if (!cont.empty() && cont.back() == '\r') cont.remove_suffix(1);
                    value += cont;
                    next = nl2 == std::string_view::npos ? message.size() : nl2 + 1;
                }
                std::string_view v = value;
                while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
                while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
                return std::string(v);
            }
        }
        pos = next;
    }
    return {};
}

std::string message_subject(std::string_view message) {
    return decode_2047(header_value(message, "subject"));
}

std::string decode_subject(std::string_view value) {
    return decode_2047(std::string(value));
}

}  // namespace sigrelay::tenants
