// Socket addresses ("host:port" parsing and formatting) and CIDR ranges for
// the allow-list. IPv4 ranges also match IPv4-mapped IPv6 peers.
#include <sigrelay/runtime.hpp>

#include <arpa/inet.h>
#include <netdb.h>

#include <charconv>
#include <cstring>

namespace sigrelay::runtime {
namespace {

bool parse_port(std::string_view s, std::uint16_t& port) {
    if (s.empty() || s.size() > 5) return false;
    unsigned v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size() || v > 65535) return false;
    port = static_cast<std::uint16_t>(v);
    return true;
}

socket_address make_v4(const in_addr& a, std::uint16_t port) {
    socket_address out;
    auto* sin = reinterpret_cast<sockaddr_in*>(&out.storage);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    sin->sin_addr = a;
    out.length = sizeof(sockaddr_in);
    return out;
}

socket_address make_v6(const in6_addr& a, std::uint16_t port) {
    socket_address out;
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&out.storage);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(port);
    sin6->sin6_addr = a;
    out.length = sizeof(sockaddr_in6);
    return out;
}

bool is_v4_mapped(const in6_addr& a) {
    static constexpr std::uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return std::memcmp(a.s6_addr, prefix, 12) == 0;
}

// The peer's address as 4 or 16 bytes; IPv4-mapped IPv6 becomes IPv4.
int address_bytes(const socket_address& addr, std::uint8_t out[16]) {
    if (addr.family() == AF_INET) {
        auto* sin = reinterpret_cast<const sockaddr_in*>(&addr.storage);
        std::memcpy(out, &sin->sin_addr, 4);
        return AF_INET;
    }
    if (addr.family() == AF_INET6) {
        auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&addr.storage);
        if (is_v4_mapped(sin6->sin6_addr)) {
            std::memcpy(out, sin6->sin6_addr.s6_addr + 12, 4);
            return AF_INET;
        }
        std::memcpy(out, sin6->sin6_addr.s6_addr, 16);
        return AF_INET6;
    }
    return 0;
}

bool prefix_equal(const std::uint8_t* a, const std::uint8_t* b, unsigned bits) {
    unsigned whole = bits / 8;
    if (std::memcmp(a, b, whole) != 0) return false;
    unsigned rest = bits % 8;
    if (rest == 0) return true;
    auto mask = static_cast<std::uint8_t>(0xff << (8 - rest));
    return (a[whole] & mask) == (b[whole] & mask);
}

}  // namespace

result<socket_address> socket_address::parse(std::string_view text) {
    std::string_view host;
    std::string_view port_text;
    bool bracketed = false;
    if (!text.empty() && text.front() == '[') {
        auto close = text.find(']');
        if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
            return make_error("bad address '" + std::string(text) + "': expected [IPv6]:port",
                              -EINVAL);
        }
        host = text.substr(1, close - 1);
        port_text = text.substr(close + 2);
        bracketed = true;
    } else {
        auto colon = text.rfind(':');
        if (colon == std::string_view::npos) {
            return make_error("bad address '" + std::string(text) + "': expected host:port",
                              -EINVAL);
        }
        host = text.substr(0, colon);
        port_text = text.substr(colon + 1);
        if (host.find(':') != std::string_view::npos) {
            return make_error(
                "bad address '" + std::string(text) + "': IPv6 addresses go in brackets, [::1]:25",
                -EINVAL);
        }
    }
    std::uint16_t port = 0;
    if (!parse_port(port_text, port)) {
        return make_error("bad port in '" + std::string(text) + "'", -EINVAL);
    }
    std::string h(host);
    if (h.empty() || h == "*") {
        if (bracketed) return make_error("bad address '" + std::string(text) + "'", -EINVAL);
        in_addr any{};
        any.s_addr = htonl(INADDR_ANY);
        return make_v4(any, port);
    }
    if (bracketed) {
        in6_addr a6{};
        if (inet_pton(AF_INET6, h.c_str(), &a6) != 1) {
            return make_error("bad IPv6 address in '" + std::string(text) + "'", -EINVAL);
        }
        return make_v6(a6, port);
    }
    in_addr a4{};
    if (inet_pton(AF_INET, h.c_str(), &a4) == 1) return make_v4(a4, port);

    // A host name: resolved once, at start-up.
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    int rc = getaddrinfo(h.c_str(), nullptr, &hints, &res);
    if (rc != 0 || res == nullptr) {
        return make_error("cannot resolve '" + h + "': " + gai_strerror(rc), -EHOSTUNREACH);
    }
    // Prefer IPv4 when the name has both (localhost: 127.0.0.1 before ::1).
    const addrinfo* pick = res;
    for (const addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
        if (ai->ai_family == AF_INET) {
            pick = ai;
            break;
        }
    }
    socket_address out = from(pick->ai_addr, pick->ai_addrlen);
    freeaddrinfo(res);
    if (out.family() == AF_INET) {
        reinterpret_cast<sockaddr_in*>(&out.storage)->sin_port = htons(port);
    } else if (out.family() == AF_INET6) {
        reinterpret_cast<sockaddr_in6*>(&out.storage)->sin6_port = htons(port);
    } else {
        return make_error("cannot resolve '" + h + "' to an IP address", -EHOSTUNREACH);
    }
    return out;
}

socket_address socket_address::from(const sockaddr* sa, socklen_t len) {
    socket_address out;
    if (sa == nullptr || len == 0) return out;
    if (len > sizeof(out.storage)) len = sizeof(out.storage);
    std::memcpy(&out.storage, sa, len);
    out.length = len;
    return out;
}

std::uint16_t socket_address::port() const noexcept {
    if (family() == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&storage)->sin_port);
    if (family() == AF_INET6) {
        return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_port);
    }
    return 0;
}

std::string socket_address::ip_string() const {
    std::uint8_t bytes[16];
    int fam = address_bytes(*this, bytes);
    if (fam == 0) return "?";
    char buf[INET6_ADDRSTRLEN] = {};
    inet_ntop(fam, bytes, buf, sizeof buf);
    return buf;
}

std::string socket_address::to_string() const {
    std::string ip = ip_string();
    if (ip.find(':') != std::string::npos) ip = "[" + ip + "]";
    return ip + ":" + std::to_string(port());
}

// ---- cidr ---------------------------------------------------------------------

result<cidr> cidr::parse(std::string_view text) {
    std::string_view addr_text = text;
    std::string_view prefix_text;
    bool has_prefix = false;
    if (auto slash = text.find('/'); slash != std::string_view::npos) {
        addr_text = text.substr(0, slash);
        prefix_text = text.substr(slash + 1);
        has_prefix = true;
    }
    cidr out;
    std::string a(addr_text);
    if (inet_pton(AF_INET, a.c_str(), out.bytes_) == 1) {
        out.family_ = AF_INET;
        out.prefix_ = 32;
    } else if (inet_pton(AF_INET6, a.c_str(), out.bytes_) == 1) {
        out.family_ = AF_INET6;
        out.prefix_ = 128;
    } else {
        return make_error("bad CIDR '" + std::string(text) + "': not an IP address", -EINVAL);
    }
    if (has_prefix) {
        unsigned p = 0;
        auto [end, ec] =
            std::from_chars(prefix_text.data(), prefix_text.data() + prefix_text.size(), p);
        if (prefix_text.empty() || prefix_text.size() > 3 || ec != std::errc() ||
            end != prefix_text.data() + prefix_text.size() || p > out.prefix_) {
            return make_error("bad CIDR '" + std::string(text) + "': bad prefix length", -EINVAL);
        }
        out.prefix_ = p;
    }
    // Host bits are cleared, so "10.1.2.3/8" means 10.0.0.0/8.
    unsigned len = out.family_ == AF_INET ? 4 : 16;
    for (unsigned i = 0; i < len; ++i) {
        unsigned bit = i * 8;
        if (bit >= out.prefix_) {
            out.bytes_[i] = 0;
        } else if (out.prefix_ - bit < 8) {
            out.bytes_[i] &= static_cast<std::uint8_t>(0xff << (8 - (out.prefix_ - bit)));
        }
    }
    return out;
}

bool cidr::contains(const socket_address& addr) const noexcept {
    std::uint8_t peer[16];
    int fam = address_bytes(addr, peer);
    if (fam == 0 || family_ == 0) return false;
    if (fam == family_) return prefix_equal(peer, bytes_, prefix_);
    if (fam == AF_INET && family_ == AF_INET6) {
        // An IPv6 range written over ::ffff:0:0/96 also covers IPv4 peers.
        std::uint8_t mapped[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        std::memcpy(mapped + 12, peer, 4);
        return prefix_equal(mapped, bytes_, prefix_);
    }
    return false;
}

std::string cidr::to_string() const {
    char buf[INET6_ADDRSTRLEN] = {};
    if (family_ == 0) return "?";
    inet_ntop(family_, bytes_, buf, sizeof buf);
    return std::string(buf) + "/" + std::to_string(prefix_);
}

}  // namespace sigrelay::runtime
