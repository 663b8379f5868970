// Streaming MIME scanner and signature injector (RFC 5322, RFC 2045-2049).
// Pure functions over byte spans: no I/O. The injector's output is a list of
// slices of the input plus new fragments, so untouched bytes are never copied.
#pragma once

#include <sigrelay/result.hpp>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace sigrelay::mime {

enum class placement { bottom, below_reply };

// A signature already rendered for one sender, UTF-8.
struct rendered_signature {
    std::string html;  // inserted into text/html parts
    std::string text;  // appended to text/plain parts after "-- " (RFC 3676 §4.3)
    placement where = placement::bottom;
};

struct inject_options {
    // The tenant's processed header, e.g. {"SignatureContoso", "true"}: always
    // added; a message already carrying it passes untouched (loop guard).
    std::string processed_header_name;
    std::string processed_header_value;
    // The complete Received: header field to prepend, without the final CRLF
    // (folded by the caller if long). Empty: none.
    std::string received_header;
    // Envelope sender; empty = null sender (stamp only, never signed).
    std::string sender;
    // Identifies this sender's signature in HTML (an invisible marker the
    // injector adds and later detects: once per conversation).
    std::string marker_id;
    // Extra reply markers for below_reply (per tenant), besides the built-in
    // Outlook/OWA/"-----Original Message-----"/"On ... wrote:" ones.
    std::vector<std::string> reply_markers;
    unsigned max_depth = 16;                // multipart nesting limit
    std::size_t max_header_bytes = 1 << 20;  // a larger header block: not understood
};

enum class outcome {
    signed_message,  // the signature went into one or more parts
    stamped_only,    // headers added, body untouched (see reason)
    untouched,       // already carried the processed header: relayed as is
};

// One piece of the output: either bytes of the input or one of the fragments.
struct slice {
    bool from_input = true;
    std::size_t offset = 0;  // input offset, or index into fragments
    std::size_t length = 0;
};

struct injection {
    outcome result = outcome::stamped_only;
    std::string reason;  // why stamped only / what was signed ("text/plain+text/html")
    std::vector<slice> slices;
    std::deque<std::string> fragments;  // stable addresses

    std::size_t size() const noexcept;
    // Concatenates the output (tests, sigrelay-inject; the relay sends slices).
    std::string flatten(std::span<const char> input) const;
};

// Runs the injector over a complete message (CRLF line ends, as received over
// SMTP). Never fails on malformed MIME: what it does not understand is relayed
// unchanged but stamped. Errors only for impossible options.
result<injection> inject(std::span<const char> message, const rendered_signature& sig,
                         const inject_options& opts);

}  // namespace sigrelay::mime
