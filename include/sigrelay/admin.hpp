// The read-only admin pages on the metrics listener (docs/operations.md,
// Admin pages): /preview shows the signature a sender would get, /tenants
// what the loaded tenants file says. Pure functions of a snapshot and a
// request, so the pages are tested without a socket.
#pragma once

#include <sigrelay/observe.hpp>
#include <sigrelay/signature.hpp>
#include <sigrelay/tenants.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sigrelay::admin {

// An application/x-www-form-urlencoded query ("from=a%40b.com&to=c"), in
// order: '+' is a space, %XX a byte (a malformed escape is kept as written),
// a name without '=' has an empty value.
std::vector<std::pair<std::string, std::string>> parse_query(std::string_view query);

// Text for HTML element content or a quoted attribute: & < > " ' escaped,
// everything else (line ends included) kept.
std::string html_escape(std::string_view text);

// GET /preview?from=ADDR[&to=ADDR…][&subject=S]: 200 with the page, 400
// without from=, 404 when no tenant has the sender's domain or the sender is
// not in its directory.
observe::http_endpoint::route preview(const tenants::snapshot& snap, std::string_view query,
                                      signature::date today);

// GET /tenants: every tenant, its domains, smart host, certificates,
// templates, rules in order and directory.
observe::http_endpoint::route tenants_page(const tenants::snapshot& snap);

// The route for `path` (the two pages above), or nullopt for another path.
std::optional<observe::http_endpoint::route> serve(const tenants::snapshot& snap, std::string_view path,
                                                   std::string_view query, signature::date today);

// What every admin page is sent with: no script at all, images only from
// data: and https:, never framed by another site, no referrer.
inline constexpr std::string_view page_headers =
    "Content-Security-Policy: default-src 'none'; img-src data: https:; style-src 'unsafe-inline'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'\r\n"
    "X-Content-Type-Options: nosniff\r\n"
    "Referrer-Policy: no-referrer\r\n"
    "Cache-Control: no-store\r\n";

}  // namespace sigrelay::admin
