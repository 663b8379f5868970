// Streaming MIME scanner and signature injector (RFC 5322, RFC 2045-2049).
// Pure functions over byte spans: no I/O. The injector's output is a list of
// slices of the input plus new fragments, so untouched bytes are never copied.
#pragma once

#include <sigrelay/result.hpp>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace sigrelay::mime {

enum class placement { bottom, below_reply };

// An image the HTML signature shows as cid:content_id (RFC 2392). The bytes
// were base64-encoded once, when the tenants file was loaded: a message only
// copies them (docs/configuration.md, Images).
struct embedded_image {
    std::string content_id;         // without <>: "logo.Q1a2b3c@relay.example"
    std::string_view content_type;  // "image/png"
    std::string_view filename;      // printable ASCII, no quotes or backslashes
    std::string_view base64;        // 76-column lines, each ending in CRLF
};

// A signature already rendered for one sender, UTF-8.
struct rendered_signature {
    std::string html;  // inserted into text/html parts
    std::string text;  // appended to text/plain parts after "-- " (RFC 3676 §4.3)
    placement where = placement::bottom;
    // Parts to add beside the signed HTML in a multipart/related; the
    // viewed data must outlive the injector.
    std::vector<embedded_image> images;
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
    // The part to sign (with the headers on the way to it) is held in memory
    // until it ends; a larger one is relayed stamped only.
    std::size_t max_signed_bytes = 8u << 20;
    // The way out carries 8-bit content (the smart host offers 8BITMIME and
    // gets BODY=8BITMIME): a 7bit text part that must take 8-bit signature
    // text is relabelled 8bit and keeps its bytes, instead of being re-encoded
    // whole as quoted-printable.
    bool allow_8bit = false;
};

enum class outcome {
    signed_message,  // the signature went into one or more parts
    stamped_only,    // headers added, body untouched (see reason)
    untouched,       // already carried the processed header: relayed as is
};

// A piece of a stream injector's output.
struct output_piece {
    static constexpr std::size_t new_text = ~std::size_t{0};
    std::string_view bytes;
    std::size_t input_offset = new_text;  // where `bytes` are in the input, or new_text
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
    // Appends a stream injector's output: input bytes as slices, new text as fragments.
    void add(std::span<const output_piece> pieces);
};

struct part;

// The top-level header block is complete: which signature to add (nullptr or
// an empty one: stamp only). Called at most once, inside feed() or finish().
using header_callback = std::function<const rendered_signature*(const part& root)>;

// The injector for a message that arrives in pieces. Output comes out as soon
// as it can no longer change: the stamped header block once it is complete,
// the signed part once it has ended, and everything after that as views of
// the input itself. What the injector holds is only the prefix it still has
// to decide about (docs/behaviour.md, Signature injection); every split of a
// message gives the same bytes as inject() on the whole of it.
class stream_injector {
public:
    // `opts` must outlive the injector (and be valid: see check_options()).
    stream_injector(const inject_options& opts, header_callback on_header);
    ~stream_injector();
    stream_injector(stream_injector&&) noexcept;
    stream_injector& operator=(stream_injector&&) noexcept;

    // The next bytes of the message (CRLF line ends). `out` is replaced by the
    // output they release, in order: views into `bytes` or into the injector,
    // valid until the next call (and while `bytes` are).
    void feed(std::span<const char> bytes, std::vector<output_piece>& out);
    // The end of the message: the rest of the output.
    void finish(std::vector<output_piece>& out);

    bool header_complete() const noexcept;
    const part* root() const noexcept;  // the top-level part, once its header is complete
    // From now on input flows through untouched; result() and reason() are final.
    bool decided() const noexcept;
    outcome result() const noexcept;
    const std::string& reason() const noexcept;
    std::size_t held_bytes() const noexcept;  // memory holding undecided input
    std::size_t bytes_in() const noexcept;
    std::size_t bytes_out() const noexcept;

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

// Errors only for impossible options (a processed header name that is no
// field name, a Received: value that is no field).
result<void> check_options(const inject_options& opts);

// Runs the injector over a complete message (CRLF line ends, as received over
// SMTP). Never fails on malformed MIME: what it does not understand is relayed
// unchanged but stamped. Errors only for impossible options.
result<injection> inject(std::span<const char> message, const rendered_signature& sig,
                         const inject_options& opts);

}  // namespace sigrelay::mime
