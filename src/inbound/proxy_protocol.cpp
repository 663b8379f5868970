// PROXY protocol v1 (text) and v2 (binary) header parser.
#include <sigrelay/proxy_protocol.hpp>

#include <arpa/inet.h>

#include <charconv>
#include <cstring>
#include <string_view>

namespace sigrelay::inbound {

namespace {

constexpr unsigned char v2_signature[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                            0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
constexpr std::size_t v1_max = 107;  // spec §2.1: the longest valid v1 line, CRLF included

bool make_v4(const unsigned char* addr, std::uint16_t port_be, runtime::socket_address& out) {
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    std::memcpy(&sa.sin_addr, addr, 4);
    sa.sin_port = port_be;
    out = runtime::socket_address::from(reinterpret_cast<const sockaddr*>(&sa), sizeof sa);
    return true;
}

bool make_v6(const unsigned char* addr, std::uint16_t port_be, runtime::socket_address& out) {
    sockaddr_in6 sa{};
    sa.sin6_family = AF_INET6;
    std::memcpy(&sa.sin6_addr, addr, 16);
    sa.sin6_port = port_be;
    out = runtime::socket_address::from(reinterpret_cast<const sockaddr*>(&sa), sizeof sa);
    return true;
}

// A port as it sits in the header: network byte order, kept that way.
std::uint16_t port_at(const unsigned char* p) {
    std::uint16_t v;
    std::memcpy(&v, p, 2);
    return v;
}

bool parse_port(std::string_view s, std::uint16_t& port_be) {
    unsigned v = 0;
    if (s.empty() || s.size() > 5 || (s.size() > 1 && s[0] == '0')) return false;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc{} || p != s.data() + s.size() || v > 65535) return false;
    port_be = htons(static_cast<std::uint16_t>(v));
    return true;
}

proxy_status parse_v1(std::string_view in, proxy_header& out, std::string& error) {
    std::size_t eol = in.find("\r\n");
    if (eol == std::string_view::npos) {
        if (in.size() >= v1_max) {
            error = "PROXY v1 header longer than 107 bytes";
            return proxy_status::invalid;
        }
        return proxy_status::need_more;
    }
    if (eol + 2 > v1_max) {
        error = "PROXY v1 header longer than 107 bytes";
        return proxy_status::invalid;
    }
    std::string_view line = in.substr(0, eol);
    std::string_view parts[6];
    std::size_t n = 0, pos = 0;
    while (pos <= line.size() && n < 6) {
        std::size_t sp = line.find(' ', pos);
        if (sp == std::string_view::npos) sp = line.size();
        parts[n++] = line.substr(pos, sp - pos);
        pos = sp + 1;
    }
    out.length = eol + 2;
    if (n >= 2 && parts[1] == "UNKNOWN") {
        out.local = true;
        return proxy_status::done;
    }
    if (n != 6 || pos <= line.size() || (parts[1] != "TCP4" && parts[1] != "TCP6")) {
        error = "malformed PROXY v1 header";
        return proxy_status::invalid;
    }
    bool v6 = parts[1] == "TCP6";
    unsigned char src[16], dst[16];
    std::uint16_t sport = 0, dport = 0;
    std::string s(parts[2]), d(parts[3]);
    if (inet_pton(v6 ? AF_INET6 : AF_INET, s.c_str(), src) != 1 ||
        inet_pton(v6 ? AF_INET6 : AF_INET, d.c_str(), dst) != 1 || !parse_port(parts[4], sport) ||
        !parse_port(parts[5], dport)) {
        error = "malformed address or port in PROXY v1 header";
        return proxy_status::invalid;
    }
    if (v6) {
        make_v6(src, sport, out.source);
        make_v6(dst, dport, out.destination);
    } else {
        make_v4(src, sport, out.source);
        make_v4(dst, dport, out.destination);
    }
    return proxy_status::done;
}

proxy_status parse_v2(std::span<const unsigned char> in, proxy_header& out, std::string& error) {
    if (in.size() < 16) return proxy_status::need_more;
    unsigned ver_cmd = in[12], fam = in[13];
    std::size_t len = (static_cast<std::size_t>(in[14]) << 8) | in[15];
    if ((ver_cmd & 0xF0) != 0x20) {
        error = "PROXY v2 header with an unknown version";
        return proxy_status::invalid;
    }
    unsigned cmd = ver_cmd & 0x0F;
    if (cmd > 1) {
        error = "PROXY v2 header with an unknown command";
        return proxy_status::invalid;
    }
    if (in.size() < 16 + len) return proxy_status::need_more;
    out.length = 16 + len;
    const unsigned char* a = in.data() + 16;
    if (cmd == 0) {  // LOCAL: health checks from the balancer itself
        out.local = true;
        return proxy_status::done;
    }
    switch (fam) {
        case 0x11:  // TCP over IPv4
            if (len < 12) break;
            make_v4(a, port_at(a + 8), out.source);
            make_v4(a + 4, port_at(a + 10), out.destination);
            return proxy_status::done;
        case 0x21:  // TCP over IPv6
            if (len < 36) break;
            make_v6(a, port_at(a + 32), out.source);
            make_v6(a + 16, port_at(a + 34), out.destination);
            return proxy_status::done;
        case 0x00:  // UNSPEC
            out.local = true;
            return proxy_status::done;
        default:
            error = "PROXY v2 header for an unsupported address family";
            return proxy_status::invalid;
    }
    error = "PROXY v2 address block too short";
    return proxy_status::invalid;
}

}  // namespace

proxy_status parse_proxy_header(std::span<const char> in, proxy_header& out, std::string& error) {
    out = proxy_header{};
    auto bytes = std::span<const unsigned char>(reinterpret_cast<const unsigned char*>(in.data()), in.size());
    std::size_t sig = std::min<std::size_t>(bytes.size(), sizeof v2_signature);
    if (sig > 0 && std::memcmp(bytes.data(), v2_signature, sig) == 0) {
        if (sig < sizeof v2_signature) return proxy_status::need_more;
        return parse_v2(bytes, out, error);
    }
    std::string_view text(in.data(), in.size());
    std::string_view prefix = "PROXY ";
    std::size_t p = std::min(text.size(), prefix.size());
    if (text.substr(0, p) != prefix.substr(0, p)) {
        error = "no PROXY protocol header (is --proxy-protocol meant to be on?)";
        return proxy_status::invalid;
    }
    if (text.size() < prefix.size()) return proxy_status::need_more;
    return parse_v1(text, out, error);
}

}  // namespace sigrelay::inbound
