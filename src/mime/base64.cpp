// Base64 (RFC 2045 §6.8): table-driven. The encoder turns 12 input bits into
// two output characters per lookup; the decoder maps four characters to 24
// bits with four tables whose invalid entries set bits above bit 23, so a
// whole quantum is checked with one test.
#include <sigrelay/mime/codec.hpp>

#include <array>
#include <cstdint>
#include <cstring>

namespace sigrelay::mime {
namespace {

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

struct tables {
    std::array<std::uint16_t, 4096> pair{};  // 12 bits → 2 characters (little-endian)
    std::array<std::uint32_t, 256> d0{}, d1{}, d2{}, d3{};
    std::array<std::uint8_t, 256> value{};  // 0-63, 64 = not in the alphabet
};

const tables& t() {
    static const tables tb = [] {
        tables x;
        for (unsigned i = 0; i < 4096; ++i) {
            auto a = static_cast<unsigned char>(kAlphabet[i >> 6]);
            auto b = static_cast<unsigned char>(kAlphabet[i & 63]);
            x.pair[i] = static_cast<std::uint16_t>(a | (b << 8));
        }
        constexpr std::uint32_t bad = 0xFF000000u;
        x.value.fill(64);
        x.d0.fill(bad);
        x.d1.fill(bad);
        x.d2.fill(bad);
        x.d3.fill(bad);
        for (std::uint32_t i = 0; i < 64; ++i) {
            auto c = static_cast<unsigned char>(kAlphabet[i]);
            x.value[c] = static_cast<std::uint8_t>(i);
            x.d0[c] = i << 18;
            x.d1[c] = i << 12;
            x.d2[c] = i << 6;
            x.d3[c] = i;
        }
        return x;
    }();
    return tb;
}

}  // namespace

void base64_encode(std::string_view in, std::string& out, std::size_t line_len) {
    if (line_len < 4) line_len = 76;
    line_len -= line_len % 4;
    const tables& tb = t();
    const std::size_t quads = (in.size() + 2) / 3;
    const std::size_t chars = quads * 4;
    const std::size_t lines = chars == 0 ? 0 : (chars + line_len - 1) / line_len;
    const std::size_t start = out.size();
    out.resize(start + chars + (lines > 0 ? (lines - 1) * 2 : 0));
    char* o = out.data() + start;
    const auto* p = reinterpret_cast<const unsigned char*>(in.data());
    const std::size_t per_line = line_len / 4 * 3;
    const std::size_t full = in.size() / 3 * 3;
    for (std::size_t i = 0; i < full;) {
        if (i > 0) {  // every chunk but the last fills a line
            o[0] = '\r';
            o[1] = '\n';
            o += 2;
        }
        std::size_t n = full - i < per_line ? full - i : per_line;
        const unsigned char* end = p + n;
        for (; p < end; p += 3, o += 4) {
            std::uint32_t v = (std::uint32_t(p[0]) << 16) | (std::uint32_t(p[1]) << 8) | p[2];
            std::uint16_t a = tb.pair[v >> 12], b = tb.pair[v & 0xFFF];
            std::memcpy(o, &a, 2);
            std::memcpy(o + 2, &b, 2);
        }
        i += n;
    }
    const std::size_t left = in.size() - full;
    if (left > 0) {
        if (full > 0 && full % per_line == 0) {
            o[0] = '\r';
            o[1] = '\n';
            o += 2;
        }
        std::uint32_t v = std::uint32_t(p[0]) << 16;
        if (left == 2) v |= std::uint32_t(p[1]) << 8;
        o[0] = kAlphabet[(v >> 18) & 63];
        o[1] = kAlphabet[(v >> 12) & 63];
        o[2] = left == 2 ? kAlphabet[(v >> 6) & 63] : '=';
        o[3] = '=';
        o += 4;
    }
    out.resize(static_cast<std::size_t>(o - out.data()));
}

bool base64_decode(std::string_view in, std::string& out) {
    const tables& tb = t();
    const std::size_t start = out.size();
    out.resize(start + in.size() / 4 * 3 + 3);
    char* o = out.data() + start;
    const auto* p = reinterpret_cast<const unsigned char*>(in.data());
    const auto* e = p + in.size();
    std::uint32_t acc = 0;
    int n = 0;
    bool ok = true;
    while (p < e) {
        if (n == 0) {
            while (e - p >= 4) {
                std::uint32_t x = tb.d0[p[0]] | tb.d1[p[1]] | tb.d2[p[2]] | tb.d3[p[3]];
                if (x >> 24) break;
                o[0] = static_cast<char>(x >> 16);
                o[1] = static_cast<char>(x >> 8);
                o[2] = static_cast<char>(x);
                o += 3;
                p += 4;
            }
            if (p >= e) break;
        }
        unsigned char c = *p++;
        std::uint8_t v = tb.value[c];
        if (v < 64) {
            acc = (acc << 6) | v;
            if (++n == 4) {
                o[0] = static_cast<char>(acc >> 16);
                o[1] = static_cast<char>(acc >> 8);
                o[2] = static_cast<char>(acc);
                o += 3;
                n = 0;
                acc = 0;
            }
        } else if (c == '=') {
            // Padding ends the quantum; anything after starts a new one.
            if (n == 2) {
                *o++ = static_cast<char>(acc >> 4);
            } else if (n == 3) {
                *o++ = static_cast<char>(acc >> 10);
                *o++ = static_cast<char>(acc >> 2);
            } else if (n == 1) {
                ok = false;
            }
            n = 0;
            acc = 0;
        } else if (c != '\r' && c != '\n' && c != ' ' && c != '\t') {
            ok = false;
        }
    }
    if (n == 2) {
        *o++ = static_cast<char>(acc >> 4);
    } else if (n == 3) {
        *o++ = static_cast<char>(acc >> 10);
        *o++ = static_cast<char>(acc >> 2);
    } else if (n == 1) {
        ok = false;
    }
    out.resize(static_cast<std::size_t>(o - out.data()));
    return ok;
}

}  // namespace sigrelay::mime
