// PROXY protocol v1 and v2 headers (HAProxy's proxy-protocol.txt).
#include <doctest/doctest.h>

#include <sigrelay/proxy_protocol.hpp>

#include <string>

using namespace sigrelay;
using namespace sigrelay::inbound;

namespace {
proxy_status parse(const std::string& s, proxy_header& h, std::string& err) {
    return parse_proxy_header(std::span<const char>(s.data(), s.size()), h, err);
}

std::string v2(unsigned char ver_cmd, unsigned char fam, const std::string& addr) {
    std::string s("\x0D\x0A\x0D\x0A\x00\x0D\x0A\x51\x55\x49\x54\x0A", 12);
    s += static_cast<char>(ver_cmd);
    s += static_cast<char>(fam);
    s += static_cast<char>(addr.size() >> 8);
    s += static_cast<char>(addr.size() & 0xFF);
    return s + addr;
}
}  // namespace

TEST_CASE("v1 TCP4 and TCP6") {
    proxy_header h;
    std::string err;
    std::string line = "PROXY TCP4 40.107.1.2 192.0.2.25 56324 25\r\nEHLO x\r\n";
    REQUIRE(parse(line, h, err) == proxy_status::done);
    CHECK(h.length == line.find("EHLO"));
    CHECK_FALSE(h.local);
    CHECK(h.source.to_string() == "40.107.1.2:56324");
    CHECK(h.destination.to_string() == "192.0.2.25:25");
    REQUIRE(parse("PROXY TCP6 2a01:111:f400::1 2001:db8::25 40000 25\r\n", h, err) == proxy_status::done);
    CHECK(h.source.to_string() == "[2a01:111:f400::1]:40000");
    REQUIRE(parse("PROXY UNKNOWN\r\n", h, err) == proxy_status::done);
    CHECK(h.local);
}

TEST_CASE("v1 incomplete, then complete, at every split") {
    std::string line = "PROXY TCP4 40.107.1.2 192.0.2.25 56324 25\r\n";
    for (std::size_t cut = 0; cut < line.size(); ++cut) {
        proxy_header h;
        std::string err;
        CHECK_MESSAGE(parse(line.substr(0, cut), h, err) == proxy_status::need_more, cut);
    }
}

TEST_CASE("v1 malformed headers are invalid") {
    const char* bad[] = {
        "PROXY TCP4 40.107.1.2 192.0.2.25 56324\r\n",       "PROXY TCP4 1.2.3 192.0.2.25 1 25\r\n",
        "PROXY TCP4 40.107.1.2 192.0.2.25 65536 25\r\n",    "PROXY TCP4 40.107.1.2 192.0.2.25 -1 25\r\n",
        "PROXY TCP4 ::1 ::1 1 25\r\n",                      "PROXY UDP4 1.2.3.4 1.2.3.4 1 2\r\n",
        "PROXY TCP4 1.2.3.4 1.2.3.4 1 2 extra\r\n",         "EHLO example.com\r\n",
        "PROXY TCP4 40.107.1.2 192.0.2.25 056324 25\r\n",
    };
    for (const char* b : bad) {
        proxy_header h;
        std::string err;
        CHECK_MESSAGE(parse(b, h, err) == proxy_status::invalid, b);
        CHECK_FALSE(err.empty());
    }
    proxy_header h;
    std::string err;
    CHECK(parse("PROXY " + std::string(200, 'x'), h, err) == proxy_status::invalid);
}

TEST_CASE("v2 PROXY over IPv4 and IPv6, LOCAL, TLVs skipped") {
    proxy_header h;
    std::string err;
    std::string a4("\x28\x6B\x01\x02\xC0\x00\x02\x19\xDC\x04\x00\x19", 12);  // 40.107.1.2:56324 → 192.0.2.25:25
    std::string hdr = v2(0x21, 0x11, a4 + std::string("\x03\x00\x04\x01\x02\x03\x04", 7));
    REQUIRE(parse(hdr + "EHLO", h, err) == proxy_status::done);
    CHECK(h.length == hdr.size());
    CHECK(h.source.to_string() == "40.107.1.2:56324");
    CHECK(h.destination.to_string() == "192.0.2.25:25");

    std::string a6(36, '\0');
    a6[0] = '\x2a', a6[1] = '\x01', a6[2] = '\x01', a6[3] = '\x11', a6[4] = '\xf4', a6[15] = '\x01';
    a6[32] = '\x9c', a6[33] = '\x40', a6[35] = '\x19';
    REQUIRE(parse(v2(0x21, 0x21, a6), h, err) == proxy_status::done);
    CHECK(h.source.to_string() == "[2a01:111:f400::1]:40000");

    REQUIRE(parse(v2(0x20, 0x00, ""), h, err) == proxy_status::done);
    CHECK(h.local);
}

TEST_CASE("v2 incomplete and invalid") {
    proxy_header h;
    std::string err;
    std::string a4(12, '\x01');
    std::string full = v2(0x21, 0x11, a4);
    for (std::size_t cut = 0; cut < full.size(); ++cut)
        CHECK_MESSAGE(parse(full.substr(0, cut), h, err) == proxy_status::need_more, cut);
    CHECK(parse(v2(0x11, 0x11, a4), h, err) == proxy_status::invalid);  // version 1 in a v2 header
    CHECK(parse(v2(0x22, 0x11, a4), h, err) == proxy_status::invalid);  // command 2
    CHECK(parse(v2(0x21, 0x11, std::string(4, '\0')), h, err) == proxy_status::invalid);  // too short
    CHECK(parse(v2(0x21, 0x31, a4), h, err) == proxy_status::invalid);  // AF_UNIX
}
