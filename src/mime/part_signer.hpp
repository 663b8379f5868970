// Signing the parts of one message held in memory: which parts are signed, the
// stamp-only reasons, and the edits (decode, place, convert, re-encode) that put
// the signature in. Internal to the mime module; the stream injector drives it.
#pragma once

#include <sigrelay/mime.hpp>
#include <sigrelay/mime/scanner.hpp>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace sigrelay::mime::detail {

// A change to the input: bytes [begin, end) (absolute input offsets) become `text`.
struct edit {
    std::size_t begin = 0;
    std::size_t end = 0;
    int order = 0;  // among edits at the same offset
    std::string text;
};

// Input bytes held in memory: the bytes of absolute offsets [base, base + bytes.size()).
struct held_bytes {
    std::string_view bytes;
    std::size_t base = 0;

    std::string_view span(std::size_t b, std::size_t e) const noexcept {
        return bytes.substr(b - base, e - b);
    }
    std::string_view from(std::size_t b) const noexcept { return bytes.substr(b - base); }
    // A byte before the held range is only ever asked for as "does a line
    // end there": the held part starts right after its delimiter line.
    char at(std::size_t off) const noexcept { return off < base ? '\n' : bytes[off - base]; }
};

// A header value we write: no CR, LF or NUL (docs/behaviour.md, SMTP server rules).
std::string sanitize_value(std::string_view v);
// A complete field the caller may have folded: CRLF + WSP folds stay, every
// other CR, LF or NUL becomes a space.
std::string sanitize_field(std::string_view v);
bool valid_field_name(std::string_view n);

// Why a message is stamped only, judged on its top-level header fields alone
// (null sender, automatic replies, TNEF); empty when it may be signed.
std::string header_reason(const part& root, const inject_options& opts);
// Why the parts seen so far forbid signing (structure defects, signed, encrypted,
// report, calendar, TNEF parts); empty when they allow it.
std::string structure_reason(const std::vector<part>& parts, std::uint32_t defects);

// What signing one subtree of the message gave.
struct unit_result {
    std::string reason;  // empty: signed, `edits` hold the changes; else why stamped only
    std::vector<edit> edits;
    std::string kinds;  // what was signed, "text/plain+text/html"
    std::size_t images = 0;  // image parts added beside the HTML
};

// Signs the text bodies of the subtree rooted at part `unit` (every text
// alternative of multipart/alternative, the root part of other multiparts,
// never attachments). `msg` must hold every byte of that subtree and of the
// delimiter line that ended it.
// Adds the signature's images beside the signed text/html part `html`
// (docs/behaviour.md, Images): into the multipart/related whose root holds
// it, else into a new multipart/related in its place. Appends to `edits`
// (for a whole-message HTML part also rewrites the ones on its header);
// empty on success, else why the message cannot carry them.
std::string add_images(held_bytes msg, const std::vector<part>& parts, int html,
                       std::span<const embedded_image> images, std::vector<edit>& edits);

unit_result sign_unit(held_bytes msg, const std::vector<part>& parts, int unit,
                      const rendered_signature& sig, const inject_options& opts);

}  // namespace sigrelay::mime::detail
