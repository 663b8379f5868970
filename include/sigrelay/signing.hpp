// One message's signing pipeline: tenant rules → rendering → MIME injection
// → trace and processed headers. The relay's proxy and sigrelay-inject both
// run exactly this.
#pragma once

#include <sigrelay/mime.hpp>
#include <sigrelay/result.hpp>
#include <sigrelay/signature.hpp>
#include <sigrelay/tenants.hpp>

#include <ctime>
#include <span>
#include <string>
#include <vector>

namespace sigrelay::relay {

struct envelope {
    std::string sender;  // empty: the null sender
    std::vector<std::string> recipients;
    std::string helo;       // the client's EHLO name
    std::string client_ip;  // "40.107.1.2"
    std::string by_host;    // our name
    std::string protocol = "ESMTPS";
    std::string queue_id;
    std::time_t when = 0;
};

struct signed_message {
    tenants::decision decision;
    mime::injection injection;
};

// Runs one message (CRLF line ends) through the tenant's rules, renders the
// chosen signature and injects it; always adds the processed header and a
// Received: field (unless the message already carries the processed header).
result<signed_message> sign(const tenants::tenant& t, const envelope& env,
                            std::span<const char> message, signature::date today);

signature::date today_utc();

}  // namespace sigrelay::relay
