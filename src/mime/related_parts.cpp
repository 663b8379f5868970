// The signature's images beside the signed HTML (docs/behaviour.md, Images).
//
// Decisions documented here:
// - The images join the multipart/related whose root holds the HTML (itself,
//   or a multipart/alternative around it, as Outlook writes it); otherwise the
//   HTML part becomes the root of a new multipart/related that takes its
//   place, so every shape keeps its other parts where they were.
// - The new related goes around the HTML part itself, never around its
//   parents: an alternative's text/plain stays a direct alternative.
// - A whole-message text/html keeps its message header fields (From, Subject,
//   Content-Class, ...) on top; only its MIME content fields (RFC 2045 §9,
//   RFC 2183, RFC 3282, RFC 2557) move down into the HTML part.
// - The images go right after the part that holds the HTML: that is still in
//   the held prefix, and the order of a related's parts other than its root
//   carries no meaning (RFC 2387 §3.1).
#include "part_signer.hpp"

#include "text_util.hpp"

#include <cstring>

namespace sigrelay::mime::detail {

namespace {

constexpr std::size_t npos = std::string_view::npos;

const part& at(const std::vector<part>& parts, int i) { return parts[static_cast<std::size_t>(i)]; }

// The child of a multipart/related that holds part `i` as its root (walking up
// through multipart/alternative only), or -1.
int related_root_holding(const std::vector<part>& parts, int i) {
    int c = i;
    for (;;) {
        const int p = at(parts, c).parent;
        if (p < 0) return -1;
        const part& parent = at(parts, p);
        if (parent.is("multipart", "related")) {
            int root = parent.children.empty() ? -1 : parent.children.front();
            if (const std::string* start = parent.param("start"))
                for (int ch : parent.children)
                    if (trim(at(parts, ch).content_id) == trim(*start)) root = ch;
            return root == c && parent.param("boundary") ? c : -1;
        }
        if (!parent.is("multipart", "alternative")) return -1;
        c = p;
    }
}

bool is_content_field(std::string_view name) {
    static constexpr std::string_view moved[] = {
        "Content-Type",     "Content-Transfer-Encoding", "Content-Disposition",
        "Content-Description", "Content-ID",             "Content-Language",
        "Content-Location", "Content-Base",              "Content-MD5"};
    for (auto m : moved)
        if (iequals(name, m)) return true;
    return false;
}

std::string hex64(std::uint64_t h) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string out(16, '0');
    for (int i = 15; i >= 0; --i, h >>= 4) out[static_cast<std::size_t>(i)] = digits[h & 0xf];
    return out;
}

bool occurs(std::string_view hay, std::string_view needle) {
    return hay.size() >= needle.size() &&
           memmem(hay.data(), hay.size(), needle.data(), needle.size()) != nullptr;
}

// A boundary no held byte and no new text contains (RFC 2046 §5.1.1: at most 70
// characters from bchars), derived from the message's unique Content-IDs.
std::string fresh_boundary(held_bytes msg, const std::vector<edit>& edits,
                           std::span<const embedded_image> images) {
    std::uint64_t h = 0xcbf29ce484222325ull;
    for (char c : images.front().content_id) {
        h ^= static_cast<unsigned char>(c);
        h *= 0x100000001b3ull;
    }
    for (unsigned n = 0;; ++n) {
        std::string b = "=_sigrelay_related_" + hex64(h + n);
        bool clash = occurs(msg.bytes, b);
        for (const auto& e : edits) clash = clash || occurs(e.text, b);
        if (!clash) return b;
    }
}

// "\r\n--B\r\n<image part>" for each image: what follows the part holding the HTML.
std::string image_parts(std::string_view boundary, std::span<const embedded_image> images) {
    std::string out;
    std::size_t size = 0;
    for (const auto& im : images) size += im.base64.size() + im.content_id.size() + 256;
    out.reserve(size);
    for (const auto& im : images) {
        out += "\r\n--";
        out += boundary;
        out += "\r\nContent-Type: ";
        out += im.content_type;
        out += ";\r\n\tname=\"";
        out += im.filename;
        out += "\"\r\nContent-Transfer-Encoding: base64\r\nContent-ID: <";
        out += im.content_id;
        out += ">\r\nContent-Disposition: inline;\r\n\tfilename=\"";
        out += im.filename;
        out += "\"\r\n\r\n";
        std::string_view b = im.base64;
        // The CRLF before the next delimiter belongs to the delimiter.
        if (b.ends_with("\r\n")) b.remove_suffix(2);
        out += b;
    }
    return out;
}

std::string related_content_type(std::string_view boundary) {
    return "Content-Type: multipart/related;\r\n\tboundary=\"" + std::string(boundary) +
           "\";\r\n\ttype=\"text/html\"\r\n";
}

// The whole message is the HTML part: its content fields (with the signer's
// edits to them) move below a new multipart/related header.
std::string wrap_root(held_bytes msg, const part& root, std::string_view boundary,
                      std::span<const embedded_image> images, std::vector<edit>& edits) {
    if (root.header_end == 0 || msg.at(root.header_end - 1) != '\n')
        return "header block without a final line end";
    std::string inner;
    std::vector<edit> kept;
    std::vector<bool> taken(edits.size(), false);
    for (const auto& f : root.fields) {
        if (!is_content_field(f.name)) continue;
        std::string text(msg.span(f.begin, f.end));
        for (std::size_t k = 0; k < edits.size(); ++k) {
            const edit& e = edits[k];
            if (e.begin == f.begin && e.end == f.end) {
                text = e.text;
                taken[k] = true;
            } else if (e.begin < f.end && e.end > f.begin) {
                return "internal: an edit overlaps a moved header field";
            }
        }
        if (!text.ends_with('\n')) text += "\r\n";
        inner += text;
        kept.push_back({f.begin, f.end, 0, {}});  // the field leaves the top
    }
    // Fields the signer added to the header (a Content-Transfer-Encoding).
    for (std::size_t k = 0; k < edits.size(); ++k) {
        edit& e = edits[k];
        if (taken[k] || e.begin != root.header_end || e.end != root.header_end) continue;
        std::string_view t = e.text;
        if (t.starts_with("\r\n")) t.remove_prefix(2);
        if (t.size() < 8 || !istarts_with(t, "content-")) continue;
        inner += t;
        taken[k] = true;
    }
    std::vector<edit> out;
    for (std::size_t k = 0; k < edits.size(); ++k)
        if (!taken[k]) out.push_back(std::move(edits[k]));
    for (auto& e : kept) out.push_back(std::move(e));
    bool mime_version = root.field("MIME-Version") != nullptr;
    for (const auto& e : out) mime_version = mime_version || istarts_with(e.text, "mime-version:");
    std::string top = related_content_type(boundary);
    if (!mime_version) top = "MIME-Version: 1.0\r\n" + top;
    out.push_back({root.header_end, root.header_end, 45, std::move(top)});
    out.push_back({root.body_begin, root.body_begin, -1000,
                   "--" + std::string(boundary) + "\r\n" + inner + "\r\n"});
    std::string tail = image_parts(boundary, images);
    tail += "\r\n--";
    tail += boundary;
    tail += "--\r\n";
    out.push_back({root.body_end, root.body_end, 1000, std::move(tail)});
    edits = std::move(out);
    return {};
}

}  // namespace

std::string add_images(held_bytes msg, const std::vector<part>& parts, int html,
                       std::span<const embedded_image> images, std::vector<edit>& edits) {
    if (images.empty()) return {};
    const int holder = related_root_holding(parts, html);
    if (holder >= 0) {
        const part& related = at(parts, at(parts, holder).parent);
        const std::string& b = *related.param("boundary");
        const std::size_t where = at(parts, holder).body_end;
        edits.push_back({where, where, 1000, image_parts(b, images)});
        return {};
    }
    const std::string boundary = fresh_boundary(msg, edits, images);
    const part& p = at(parts, html);
    if (p.parent < 0) return wrap_root(msg, p, boundary, images, edits);
    // A nested HTML part: a related header and delimiter go in front of it,
    // the images and the close delimiter after it.
    edits.push_back({p.begin, p.begin, -1000, related_content_type(boundary) + "\r\n--" + boundary + "\r\n"});
    std::string tail = image_parts(boundary, images);
    tail += "\r\n--";
    tail += boundary;
    tail += "--";
    edits.push_back({p.body_end, p.body_end, 1000, std::move(tail)});
    return {};
}

}  // namespace sigrelay::mime::detail
