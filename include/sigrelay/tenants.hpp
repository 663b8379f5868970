// Tenants: the tenants file (docs/configuration.md) loaded into an immutable snapshot
// (templates compiled, directories loaded), tenant resolution (XOORG or the
// sender's domain; docs/behaviour.md, Tenants and trust), the signature decision for one message,
// and the small header helpers the relay and sigrelay-inject share.
#pragma once

#include <sigrelay/mime.hpp>
#include <sigrelay/tls.hpp>
#include <sigrelay/result.hpp>
#include <sigrelay/signature.hpp>

#include <cstdint>
#include <ctime>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace sigrelay::tenants {

struct header_field {
    std::string name;
    std::string value;
};

// How {{img:name}} reaches the reader (docs/configuration.md, Images):
// embed sends the image inside each message (multipart/related, cid:), link
// points at its URL.
enum class image_mode { embed, link };
std::string_view image_mode_name(image_mode m) noexcept;
// "bottom" or "below_reply", as the tenants file writes a template's placement.
std::string_view placement_name(mime::placement p) noexcept;

// An image a tenant's HTML templates may show, read, checked and
// base64-encoded once when the snapshot is built.
struct image {
    std::string name;          // as in {{img:name}}
    std::string file;          // resolved path
    std::string url;           // as written; empty when not given
    std::string url_html;      // the URL escaped for an HTML attribute
    std::string content_type;  // "image/png", "image/jpeg" or "image/gif", from the bytes
    std::string filename;      // the file's name, made safe for a MIME parameter
    std::size_t size = 0;      // bytes of the image
    std::string base64;        // 76-column lines, each ending in CRLF
};

// The largest image a tenant may declare: each is sent with every message.
inline constexpr std::size_t max_image_bytes = 512 * 1024;

// What an image file is, by its first bytes: "image/png", "image/jpeg",
// "image/gif", or empty for anything else.
std::string_view sniff_image_type(std::string_view bytes) noexcept;
// The image, checked (type, size) and encoded; errors say what is wrong
// with the bytes ("not a PNG, JPEG or GIF image").
result<image> make_image(std::string name, std::string file, std::string_view bytes);

struct template_set {
    std::string name;
    std::string html_file;  // resolved paths
    std::string text_file;
    signature::compiled_template html;
    signature::compiled_template text;
    signature::binding html_binding;  // against the tenant's directory
    signature::binding text_binding;
    mime::placement where = mime::placement::bottom;
    image_mode images = image_mode::embed;  // the tenant's, unless the template says
    std::vector<std::size_t> image_index;   // html.images()[i] is tenant::images[image_index[i]]
};

// What a tenant demands of the inbound session beyond its domain (docs/behaviour.md, Tenants and
// trust); empty = not required.
struct requirements {
    std::string sni;          // TLS SNI the client used (case-insensitive)
    std::string tenant_guid;  // X-MS-Exchange-CrossTenant-Id (case-insensitive)
};

struct tenant {
    std::string id;
    std::vector<std::string> domains;  // lowercase, no trailing dot
    // Domains below are lowercase unless noted.
    std::string smart_host;       // "host:port" as written
    std::string smart_host_name;  // host part (no brackets for IPv6)
    std::uint16_t smart_host_port = 25;
    std::string tls_domain;          // default: smart_host_name
    std::string smart_host_ca;       // resolved path; empty: system CAs
    std::string certificate_domain;  // as written; empty when not given
    std::string client_cert;         // resolved paths; both or neither
    std::string client_key;
    // Their contents, read and checked when the snapshot is built (on the main
    // thread: shards build their TLS contexts from these, with no file I/O).
    std::string smart_host_ca_pem, client_cert_pem, client_key_pem;
    header_field processed_header;
    std::vector<template_set> templates;
    std::vector<signature::rule> rules;
    std::string directory_file;  // resolved path
    signature::directory directory;
    requirements require;
    std::vector<std::string> reply_markers;
    std::vector<image> images;
    image_mode images_by_default = image_mode::embed;
    // One recipient group (internal or external) per transaction, so that
    // rules testing `recipients` always see one (docs/behaviour.md, Recipient
    // groups). Defaults to whether any rule tests recipients.
    bool split_recipients = false;

    bool owns_domain(std::string_view domain) const noexcept;
    const template_set* find_template(std::string_view name) const noexcept;
};

// The client TLS options of a tenant's smart-host connections, from what the
// snapshot read (no file is opened again).
tls::client_options tls_client_options(const tenant& t);

// An immutable view of one tenants file. Share it as
// std::shared_ptr<const snapshot>; a reload builds a new one and swaps it in,
// a bad file leaves the old one serving.
class snapshot {
public:
    // Loads and validates everything: the JSON, every template and directory.
    // Errors read "tenants.json:14: tenants[0].smart_host: expected \"host:port\"".
    static result<std::shared_ptr<const snapshot>> load(const std::string& path);
    // The same from memory; `path` names the file in errors and relative
    // paths are resolved against its folder.
    static result<std::shared_ptr<const snapshot>> parse(std::string_view json,
                                                         const std::string& path);

    const std::string& path() const noexcept { return path_; }
    const std::vector<tenant>& all() const noexcept { return tenants_; }

    const tenant* find_by_id(std::string_view id) const noexcept;
    // Exact domain, ASCII case-insensitive, a trailing dot ignored; no
    // subdomain matching.
    const tenant* find_by_domain(std::string_view domain) const noexcept;
    // By the domain after the last '@'.
    const tenant* find_by_address(std::string_view address) const noexcept;
    // XOORG= carries the tenant's initial domain (fabrikam.onmicrosoft.com):
    // matched against every tenant's domains.
    const tenant* find_by_xoorg(std::string_view xoorg) const noexcept {
        return find_by_domain(xoorg);
    }
    // Tenants and trust (docs/behaviour.md): XOORG when present (authoritative: an unknown XOORG is
    // no tenant, never a fall-back to the sender), else the sender's domain. The null sender
    // without XOORG belongs to no tenant.
    const tenant* resolve(std::string_view xoorg, std::string_view sender) const noexcept;

private:
    std::string path_;
    std::vector<tenant> tenants_;
    std::unordered_map<std::string, std::size_t> by_domain_;  // lowercase domain → index

    friend struct tenants_loader;
};

// internal when every recipient's domain belongs to the tenant (also for no
// recipients), external when at least one is outside.
signature::recipients_scope classify_recipients(const tenant& t,
                                                std::span<const std::string> recipients);
// One recipient's group: internal when its domain is the tenant's.
signature::recipients_scope recipient_group(const tenant& t, std::string_view recipient);
std::string_view scope_name(signature::recipients_scope s) noexcept;
// A rule's conditions for people: "department = Sales, recipients external";
// "always" for a rule without any.
std::string describe_conditions(const signature::rule& r);

enum class verdict {
    signature,       // `signature` holds the rendered html/text and placement
    no_signature,    // a rule chose "template": null, or no rule matched, or null sender
    unknown_sender,  // the sender is not in the tenant's directory
};

struct decision {
    verdict kind = verdict::no_signature;
    std::string reason;               // for logs: "rule 2 (template null)", ...
    std::optional<std::size_t> rule;  // the rule that matched
    std::string template_name;
    signature::recipients_scope group = signature::recipients_scope::internal;
    std::optional<image_mode> images;  // when the template shows images
    mime::rendered_signature signature;
};

// Runs the tenant's rules for one message and renders the chosen template.
// Decision for senders missing from the directory: unknown_sender, and the
// message is still stamped (processed header, Received:) but not signed —
// rules are not consulted, since their attribute tests have nothing to test.
// Embedded images are named "<image>.<content_id_suffix>" (RFC 2392): pass
// something unique per message, "<queue id>@<host>".
decision decide(const tenant& t, std::string_view sender, std::span<const std::string> recipients,
                std::string_view subject, signature::date today,
                std::string_view content_id_suffix = "sigrelay.invalid");

// A stable id for the sender's signature marker (mime::inject_options::
// marker_id): 16 hex digits of a 64-bit FNV-1a hash of the lowercase address.
std::string marker_id(std::string_view sender);

// The decoded Subject of a message (CRLF or LF line ends): unfolded, RFC 2047
// encoded-words decoded for UTF-8, US-ASCII and ISO-8859-1/Windows-1252
// (→ UTF-8); other charsets are kept as written. Empty when there is none.
std::string message_subject(std::string_view message);
// The same for a Subject value already unfolded (a scanned header field).
std::string decode_subject(std::string_view value);

// The value of the first header field named `field` (ASCII case-insensitive)
// in the message's header block: unfolded, surrounding blanks trimmed, not
// decoded. Empty when there is none.
std::string header_value(std::string_view message, std::string_view field);

// A Received: trace field (RFC 5321 §4.4, RFC 5322 §3.6.7):
//   Received: from <helo> (<rdns> [<ip>])
//   \tby <host> (sigrelay) with ESMTPS id <queue-id>
//   \tfor <rcpt>; <RFC 5322 date>
// folded with CRLF TAB at those points and without the final CRLF (as
// mime::inject_options::received_header wants). Peer-controlled text is
// sanitised: every byte outside printable ASCII, and ( ) < > ; \ " , becomes
// '_', so no CR, LF or NUL can appear except in the folds, and each piece is
// truncated so that no line exceeds 998 octets.
struct received_fields {
    std::string_view helo;
    std::string_view reverse_dns;  // empty: unknown
    std::string_view ip;
    std::string_view by_host;
    std::string_view protocol = "ESMTPS";  // ESMTP, ESMTPS, ESMTPSA ... (RFC 3848)
    std::string_view queue_id;
    std::string_view recipient;  // empty: no "for" clause
    std::time_t when = 0;
};
std::string received_header(const received_fields& f);
// "Sat, 29 Nov 2025 10:54:00 +0000" (RFC 5322 §3.3), always UTC.
std::string rfc5322_date(std::time_t when);

}  // namespace sigrelay::tenants
