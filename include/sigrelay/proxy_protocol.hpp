// The PROXY protocol header (HAProxy's spec, versions 1 and 2) that an L4
// load balancer puts in front of the SMTP stream, so that the allow-list,
// per-IP limits and logs see the real client (docs/behaviour.md, Several hosts). Sans-I/O.
#pragma once

#include <sigrelay/runtime.hpp>

#include <cstddef>
#include <span>
#include <string>

namespace sigrelay::inbound {

struct proxy_header {
    bool local = false;  // v2 LOCAL or v1 UNKNOWN: keep the connection's own address
    runtime::socket_address source;
    runtime::socket_address destination;
    std::size_t length = 0;  // bytes the header took; the SMTP stream follows
};

enum class proxy_status { need_more, done, invalid };

// Parses the header at the start of `in`. need_more: not complete yet (at
// most 107 bytes for v1, 16 + 65535 for v2 are ever needed); invalid: `error`
// says why, and the connection must be dropped.
proxy_status parse_proxy_header(std::span<const char> in, proxy_header& out, std::string& error);

}  // namespace sigrelay::inbound
