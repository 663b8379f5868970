// Signing the parts of one message held in memory (docs/behaviour.md, Signature injection).
//
//
// Decisions documented here:
// - Unknown Content-Transfer-Encoding (e.g. "8bits"): RFC 2049 §2 item 6 says
//   such a part is to be treated as application/octet-stream, so it is not a
//   text body: the message is stamped only.
// - HTML in a charset that cannot hold a character of the signature gets an
//   HTML numeric character reference (&#NNNN;) for it; text/plain is
//   re-encoded as UTF-8 instead (decoded, charset parameter changed, same CTE,
//   7bit becoming quoted-printable).
// - X-Auto-Response-Suppress alone never stamps: Outlook sets it on ordinary
//   mail. Auto-Submitted other than "no", Precedence: auto_reply, X-Autoreply
//   and X-Autorespond do.
// - The loop guard matches the processed header's name (any value).
// - "Already holds this sender's signature" decodes text/plain leniently
//   (bytes invalid in the declared charset become U+FFFD): such bytes are
//   relayed as they came, so they must not hide a signature we inserted.
// - An empty body directly followed by a delimiter (the header block's empty
//   line doubling as the delimiter's CRLF) gets a CRLF after what is written
//   into it, so the delimiter stays at the start of a line.
// - Relabelling a part as UTF-8 edits its charset parameter only when the
//   edited field parses back to charset=utf-8 with the other parameters
//   unchanged (else the field is rewritten, checked the same way; else the
//   message is stamped only).
// - ISO-2022 text still in a two-byte set (or shifted out) where the
//   signature goes, which RFC 1468/1557 text never is at a line end: stamped
//   only, as the signature would be read in that set.
// - With below_reply in plain text the "-- " separator is left out: RFC 3676
//   readers would treat the whole quoted thread below it as signature.
#include "part_signer.hpp"

#include <sigrelay/mime/charset.hpp>
#include <sigrelay/mime/codec.hpp>
#include <sigrelay/mime/placement.hpp>

#include "text_util.hpp"

#include <algorithm>
#include <cstring>

namespace sigrelay::mime::detail {

namespace {

constexpr std::size_t npos = std::string_view::npos;
constexpr std::size_t kMaxLine = 998;  // RFC 5322 §2.1.1

enum class cte_kind { seven, eight, binary, qp, base64, unknown };

cte_kind classify(std::string_view cte) {
    if (cte.empty() || cte == "7bit") return cte_kind::seven;
    if (cte == "8bit") return cte_kind::eight;
    if (cte == "binary") return cte_kind::binary;
    if (cte == "quoted-printable") return cte_kind::qp;
    if (cte == "base64") return cte_kind::base64;
    return cte_kind::unknown;
}




// Signature text with every line end made `nl`, trailing line ends and NULs removed.
std::string normalize_newlines(std::string_view s, std::string_view nl) {
    std::string out;
    out.reserve(s.size() + 16);
    for (std::size_t i = 0; i < s.size(); ++i) {
        char c = s[i];
        if (c == '\r' || c == '\n') {
            if (c == '\r' && i + 1 < s.size() && s[i + 1] == '\n') ++i;
            out.append(nl);
        } else if (c != '\0') {
            out.push_back(c);
        }
    }
    while (out.size() >= nl.size() && out.ends_with(nl)) out.resize(out.size() - nl.size());
    return out;
}

std::size_t max_line_length(std::string_view s) {
    std::size_t best = 0;
    std::size_t i = 0;
    while (i <= s.size()) {
        std::size_t nl = s.find('\n', i);
        std::size_t end = nl == npos ? s.size() : nl;
        std::size_t len = end - i;
        if (len > 0 && end > 0 && s[end - 1] == '\r' && nl != npos) --len;
        best = std::max(best, len);
        if (nl == npos) break;
        i = nl + 1;
    }
    return best;
}

bool has_8bit(std::string_view s) {
    for (char c : s)
        if (static_cast<unsigned char>(c) >= 0x80) return true;
    return false;
}

// Bytes that 7bit/8bit bodies must not carry: NUL, bare CR, bare LF.
bool has_bad_control(std::string_view s) {
    for (std::size_t i = 0; i < s.size(); ++i) {
        char c = s[i];
        if (c == '\0') return true;
        if (c == '\r' && (i + 1 >= s.size() || s[i + 1] != '\n')) return true;
        if (c == '\n' && (i == 0 || s[i - 1] != '\r')) return true;
    }
    return false;
}

class part_signer {
public:
    part_signer(held_bytes msg, const std::vector<part>& parts, const rendered_signature& sig,
                const inject_options& opts)
        : msg_(msg),
          parts_(parts),
          sig_(sig),
          opts_(opts),
          marker_id_(sanitize_marker_id(opts.marker_id)) {}

    // Empty: signed (edits_ hold the changes); else why the message is stamped only.
    std::string run(int unit) {
        std::vector<int> targets;
        select(static_cast<std::size_t>(unit), targets);
        if (targets.empty()) return "no text body to sign";
        for (int t : targets)
            if (!sign(static_cast<std::size_t>(t))) return fail_;
        if (kinds_.empty()) return "empty signature";
        return {};
    }

    std::vector<edit>& edits() { return edits_; }
    // The text/html parts that got the template's HTML, in order.
    const std::vector<int>& signed_html() const { return signed_html_; }
    std::string signed_kinds() const {
        std::string out;
        for (const auto& k : kinds_) out += (out.empty() ? "" : "+") + k;
        return out;
    }

private:
    const part& at(std::size_t i) const { return parts_[i]; }

    static bool is_text_body(const part& p) {
        return p.type == "text" && (p.subtype == "plain" || p.subtype == "html");
    }

    // docs/behaviour.md, Signature injection: every text alternative of multipart/alternative; the
    // first (root) body part of any other multipart; never attachments.
    void select(std::size_t i, std::vector<int>& out) const {
        const part& p = at(i);
        if (p.disposition == "attachment") return;
        if (!p.is_multipart()) {
            if (is_text_body(p)) out.push_back(static_cast<int>(i));
            return;
        }
        if (p.children.empty()) return;
        if (p.subtype == "alternative") {
            for (int c : p.children) {
                const part& ch = at(static_cast<std::size_t>(c));
                if (ch.disposition == "attachment") continue;
                if (ch.is_multipart() || is_text_body(ch)) select(static_cast<std::size_t>(c), out);
            }
            return;
        }
        int root = p.children.front();
        // RFC 2387 §3.2: multipart/related's root may be named by "start".
        if (p.subtype == "related")
            if (const std::string* start = p.param("start"))
                for (int c : p.children)
                    if (trim(at(static_cast<std::size_t>(c)).content_id) == trim(*start)) root = c;
        select(static_cast<std::size_t>(root), out);
    }

    bool fail(std::string reason) {
        fail_ = std::move(reason);
        return false;
    }

    // Boundaries of the multiparts enclosing part i, with their leading "--".
    std::vector<std::string> delimiters_above(std::size_t i) const {
        std::vector<std::string> out;
        for (int p = at(i).parent; p >= 0; p = at(static_cast<std::size_t>(p)).parent)
            if (const std::string* b = at(static_cast<std::size_t>(p)).param("boundary"))
                out.push_back("--" + *b);
        return out;
    }

    static bool collides(std::string_view body, const std::vector<std::string>& delims) {
        std::size_t i = 0;
        while (i < body.size()) {
            std::size_t nl = body.find('\n', i);
            std::string_view line = body.substr(i, (nl == npos ? body.size() : nl) - i);
            if (line.starts_with("--"))
                for (const auto& d : delims)
                    if (line.starts_with(d)) return true;
            if (nl == npos) break;
            i = nl + 1;
        }
        return false;
    }

    bool sign(std::size_t i) {
        const part& p = at(i);
        const bool html = p.subtype == "html";
        if (html ? (sig_.html.empty() && sig_.text.empty()) : sig_.text.empty()) return true;

        const cte_kind kind = classify(p.cte);
        if (kind == cte_kind::unknown)
            return fail("unknown Content-Transfer-Encoding \"" + sanitize_value(p.cte) + "\"");
        const std::string_view raw = msg_.span(p.body_begin, p.body_end);
        std::string decoded_store;
        std::string_view decoded = raw;
        if (kind == cte_kind::qp) {
            qp_decode(raw, decoded_store);
            decoded = decoded_store;
        } else if (kind == cte_kind::base64) {
            if (!base64_decode(raw, decoded_store)) return fail("invalid base64 body");
            decoded = decoded_store;
        }

        std::string charset;
        if (const std::string* cs = p.param("charset")) charset = std::string(trim(*cs));
        if (charset.empty() && !html) charset = "us-ascii";  // RFC 2045 §5.2
        if (is_ascii_incompatible_label(charset)) return fail("unsupported charset " + charset);
        const bool known_charset = charset.empty() || !iconv_name(charset).empty();
        if (!html && !known_charset) return fail("unknown charset " + sanitize_value(charset));

        std::string view_store;
        std::string_view view = decoded;
        if (is_stateful_label(charset)) {
            view_store = ascii_search_view(decoded);
            view = view_store;
        }
        if (has_pgp_armor(view)) return fail("inline PGP");

        // Once per conversation: this sender's signature already in the thread.
        if (html) {
            if (html_has_marker(view, marker_id_))
                return fail("thread already holds this sender's signature");
        } else {
            // Lossy: a byte the charset does not define (windows-1250 has no
            // 0x90) must not hide a signature elsewhere in the body.
            std::optional<std::string> utf8;
            if (!is_utf8_label(charset) && !is_ascii_label(charset))
                utf8 = to_utf8_lossy(charset, decoded);
            if (text_has_signature(utf8 ? std::string_view(*utf8) : decoded, sig_.text))
                return fail("thread already holds this sender's signature");
        }

        std::size_t off = npos;
        if (sig_.where == placement::below_reply) {
            std::vector<std::string> markers;
            for (const auto& m : opts_.reply_markers) {
                if (!has_8bit(m) || is_utf8_label(charset)) {
                    markers.push_back(m);
                } else if (known_charset && !charset.empty() && !is_stateful_label(charset)) {
                    if (auto c = convert("utf-8", charset, m)) markers.push_back(*c);
                }
            }
            off = html ? html_reply_offset(view, markers) : text_reply_offset(view, markers);
        }
        const bool at_reply = off != npos;
        if (!at_reply) off = html ? html_bottom_offset(view) : decoded.size();
        // The signature is written in ASCII state: text left in a two-byte
        // set there (RFC 1468 wants ASCII again at each line end) would make
        // it unreadable and hide it from the next pass.
        if (is_stateful_label(charset) && !iso2022_ascii_at(decoded, off))
            return fail("ISO-2022 text not in ASCII where the signature goes");

        // The newline convention of the decoded text (base64 text may use LF).
        std::string_view nl = "\r\n";
        if (decoded.find("\r\n") == npos && decoded.find('\n') != npos) nl = "\n";

        std::string block;  // UTF-8
        if (html) {
            std::string body = sig_.html.empty() ? text_as_html(sig_.text) : sig_.html;
            block = marker_open_tag(marker_id_) + normalize_newlines(body, nl) + "</div>";
        } else {
            std::string text = normalize_newlines(sig_.text, nl);
            if (at_reply) {
                block = text + std::string(nl) + std::string(nl);
            } else if (decoded.empty() || decoded.ends_with('\n')) {
                block = "-- " + std::string(nl) + text + std::string(nl);  // RFC 3676 §4.3
            } else {
                block = std::string(nl) + "-- " + std::string(nl) + text;
            }
        }

        std::string ins;       // the block in the part's charset
        std::string new_body;  // whole decoded body when the charset changes
        bool to_utf8 = false;
        bool relabel = false;  // the part becomes UTF-8 with its bytes as they are
        if (html) {
            if (charset.empty() || !known_charset)
                ins = utf8_to_ascii_ncr(block);  // safe in any ASCII-compatible charset
            else
                ins = utf8_to_charset_ncr(charset, block).value_or(utf8_to_ascii_ncr(block));
        } else if (is_utf8_label(charset)) {
            ins = block;
        } else if (auto c = convert("utf-8", charset, block)) {
            ins = std::move(*c);
        } else if (is_ascii_label(charset) && all_ascii(decoded)) {
            // An ASCII body is UTF-8 already: relabelled, it only takes the
            // block; nothing of it is converted or copied.
            ins = block;
            relabel = true;
        } else {
            // The charset cannot hold the signature: the part becomes UTF-8.
            auto a = convert(charset, "utf-8", decoded.substr(0, off));
            auto b = convert(charset, "utf-8", decoded.substr(off));
            if (!a || !b) return fail("body not valid in its charset " + sanitize_value(charset));
            new_body = std::move(*a);
            new_body += block;
            new_body += *b;
            to_utf8 = true;
        }

        // An empty body right before a delimiter: the header block's empty
        // line was also the delimiter's CRLF (RFC 2046 §5.1.1), so what we
        // write there must end with its own CRLF or it swallows the delimiter.
        const bool delimiter_at_end = p.parent >= 0 && msg_.from(p.body_end).starts_with("--");
        if (!to_utf8 && delimiter_at_end && off == decoded.size() && !ins.ends_with('\n') &&
            (kind == cte_kind::seven || kind == cte_kind::eight || kind == cte_kind::binary))
            ins += "\r\n";

        // Choose the output encoding.
        const auto delims = delimiters_above(i);
        std::string encoded;
        bool replace_body = true;
        bool switch_to_qp = false;
        bool switch_to_8bit = false;
        if (kind == cte_kind::seven || kind == cte_kind::eight || kind == cte_kind::binary) {
            std::string_view check = to_utf8 ? std::string_view(new_body) : std::string_view(ins);
            // 8-bit text in a 7bit part: quoted-printable, unless the smart
            // host takes 8BITMIME (opts_.allow_8bit), when the part is
            // relabelled 8bit instead and keeps its bytes (RFC 6152).
            const bool eight_bit = kind == cte_kind::seven && has_8bit(check);
            bool needs_qp = has_bad_control(check) || (eight_bit && !opts_.allow_8bit);
            if (eight_bit && !needs_qp) switch_to_8bit = true;
            if (!to_utf8 && !needs_qp) {
                // Lines around the insertion point stay within 998 octets?
                std::size_t ls = decoded.rfind('\n', off == 0 ? 0 : off - 1);
                ls = (ls == npos || off == 0) ? 0 : ls + 1;
                std::size_t le = decoded.find('\n', off);
                le = le == npos ? decoded.size() : le;
                std::string region(decoded.substr(ls, off - ls));
                region += ins;
                region += decoded.substr(off, le - off);
                needs_qp = max_line_length(region) > kMaxLine;
            } else if (to_utf8 && !needs_qp) {
                needs_qp = max_line_length(new_body) > kMaxLine;
            }
            if (needs_qp) {
                switch_to_8bit = false;
                if (!to_utf8) {
                    new_body.assign(decoded.substr(0, off));
                    new_body += ins;
                    new_body += decoded.substr(off);
                }
                qp_encode(new_body, encoded);
                switch_to_qp = true;
            } else if (to_utf8) {
                encoded = std::move(new_body);
            } else {
                // Same bytes around the insertion: only the block is new.
                replace_body = false;
                if (collides(ins, delims)) return fail("signature collides with a boundary");
                edits_.push_back({p.body_begin + off, p.body_begin + off, 10, std::move(ins)});
            }
        } else {
            if (!to_utf8) {
                new_body.assign(decoded.substr(0, off));
                new_body += ins;
                new_body += decoded.substr(off);
            }
            if (kind == cte_kind::qp) {
                qp_encode(new_body, encoded);
            } else {
                base64_encode(new_body, encoded);
                if (raw.ends_with('\n')) encoded += "\r\n";
            }
        }
        if (replace_body && delimiter_at_end && !encoded.empty() && !encoded.ends_with('\n'))
            encoded += "\r\n";
        if (replace_body) {
            if (collides(encoded, delims)) return fail("signature collides with a boundary");
            edits_.push_back({p.body_begin, p.body_end, 10, std::move(encoded)});
        }
        if ((to_utf8 || relabel) && !set_charset_utf8(i))
            return fail("cannot relabel the Content-Type as UTF-8");
        if (switch_to_qp) set_cte(i, "quoted-printable");
        else if (switch_to_8bit) set_cte(i, "8bit");
        kinds_.push_back(p.type + "/" + p.subtype);
        if (html && !sig_.html.empty()) signed_html_.push_back(static_cast<int>(i));
        return true;
    }

    static std::string text_as_html(std::string_view text) {
        std::string out;
        for (char c : text) {
            switch (c) {
                case '<':
                    out += "&lt;";
                    break;
                case '>':
                    out += "&gt;";
                    break;
                case '&':
                    out += "&amp;";
                    break;
                case '"':
                    out += "&quot;";
                    break;
                case '\r':
                    break;
                case '\n':
                    out += "<br>\n";
                    break;
                default:
                    out.push_back(c);
            }
        }
        return out;
    }

    void add_field(std::size_t i, std::string field, int order) {
        const part& p = at(i);
        std::string text;
        if (p.header_end > 0 && msg_.at(p.header_end - 1) != '\n') text = "\r\n";
        text += field;
        text += "\r\n";
        edits_.push_back({p.header_end, p.header_end, order, std::move(text)});
        if (i == 0 && !p.field("MIME-Version") && !mime_version_added_) {
            mime_version_added_ = true;
            edits_.push_back({p.header_end, p.header_end, order - 1, "MIME-Version: 1.0\r\n"});
        }
    }

    void set_cte(std::size_t i, std::string_view value) {
        const part& p = at(i);
        std::string field = "Content-Transfer-Encoding: " + std::string(value);
        if (const header_field* f = p.field("Content-Transfer-Encoding"))
            edits_.push_back({f->begin, f->end, 0, field + "\r\n"});
        else
            add_field(i, std::move(field), 51);
    }

    // Whether a Content-Type field we wrote reads as part i's type with
    // charset=utf-8 and every other parameter as it was.
    bool relabelled(std::size_t i, std::string_view field) const {
        const part& p = at(i);
        auto colon = field.find(':');
        if (colon == npos) return false;
        std::string value;
        for (char c : field.substr(colon + 1))
            if (c != '\r' && c != '\n') value.push_back(c);
        std::string type, subtype;
        std::vector<content_param> params;
        if (!parse_content_type(trim(value), type, subtype, params)) return false;
        if (type != p.type || subtype != p.subtype) return false;
        std::vector<content_param> before, after;
        const std::string* charset = nullptr;
        for (const auto& prm : params) {
            if (prm.name == "charset") {
                if (!charset) charset = &prm.value;
            } else {
                after.push_back(prm);
            }
        }
        for (const auto& prm : p.params)
            if (prm.name != "charset") before.push_back(prm);
        if (!charset || *charset != "utf-8" || before.size() != after.size()) return false;
        for (std::size_t k = 0; k < before.size(); ++k)
            if (before[k].name != after[k].name || before[k].value != after[k].value) return false;
        return true;
    }

    // False when no rewrite of the field reads back as intended (the parser
    // took another "charset" than a textual search finds, e.g. one inside a
    // quoted value): the message is then stamped only.
    bool set_charset_utf8(std::size_t i) {
        const part& p = at(i);
        const header_field* f = p.field("Content-Type");
        if (!f) {
            add_field(i, "Content-Type: " + p.type + "/" + p.subtype + "; charset=utf-8", 50);
            return true;
        }
        std::string_view raw = msg_.span(f->begin, f->end);
        // Replace the value of a plain charset= parameter in place.
        for (std::size_t at_ = ifind(raw, "charset"); at_ != npos;
             at_ = ifind(raw, "charset", at_ + 1)) {
            std::size_t b = at_;
            while (b > 0 && (raw[b - 1] == ' ' || raw[b - 1] == '\t' || raw[b - 1] == '\r' ||
                             raw[b - 1] == '\n'))
                --b;
            if (b == 0 || raw[b - 1] != ';') continue;
            std::size_t k = at_ + 7;
            while (k < raw.size() && (raw[k] == ' ' || raw[k] == '\t')) ++k;
            if (k >= raw.size() || raw[k] != '=') continue;
            ++k;
            while (k < raw.size() && (raw[k] == ' ' || raw[k] == '\t')) ++k;
            std::size_t v0 = k, v1 = k;
            if (k < raw.size() && raw[k] == '"') {
                v1 = raw.find('"', k + 1);
                if (v1 == npos) break;
                ++v1;
            } else {
                while (v1 < raw.size() && raw[v1] != ';' && raw[v1] != ' ' && raw[v1] != '\t' &&
                       raw[v1] != '\r' && raw[v1] != '\n' && raw[v1] != '(')
                    ++v1;
            }
            std::string text(raw.substr(0, v0));
            text += "utf-8";
            text += raw.substr(v1);
            if (!relabelled(i, text)) continue;
            edits_.push_back({f->begin, f->end, 0, std::move(text)});
            return true;
        }
        // No plain charset parameter (absent, or RFC 2231 form): rewrite the field.
        std::string text = "Content-Type: " + p.type + "/" + p.subtype;
        for (const auto& prm : p.params) {
            if (prm.name == "charset") continue;
            std::string v;
            for (char c : sanitize_value(prm.value)) {
                if (c == '"' || c == '\\') v.push_back('\\');
                v.push_back(c);
            }
            text += ";\r\n\t" + prm.name + "=\"" + v + "\"";
        }
        text += ";\r\n\tcharset=utf-8\r\n";
        if (!relabelled(i, text)) return false;
        edits_.push_back({f->begin, f->end, 0, std::move(text)});
        return true;
    }

    held_bytes msg_;
    const std::vector<part>& parts_;
    const rendered_signature& sig_;
    const inject_options& opts_;
    std::string marker_id_;
    std::vector<edit> edits_;
    std::vector<std::string> kinds_;
    std::vector<int> signed_html_;
    std::string fail_;
    bool mime_version_added_ = false;
};

}  // namespace

// A header value we write: no CR, LF or NUL (docs/behaviour.md, SMTP server rules).
std::string sanitize_value(std::string_view v) {
    std::string out(v);
    for (auto& c : out)
        if (c == '\r' || c == '\n' || c == '\0') c = ' ';
    return out;
}

// A complete field the caller may have folded: CRLF + WSP folds stay, every
// other CR, LF or NUL becomes a space.
std::string sanitize_field(std::string_view v) {
    while (!v.empty() && (v.back() == '\r' || v.back() == '\n')) v.remove_suffix(1);
    std::string out;
    out.reserve(v.size());
    for (std::size_t i = 0; i < v.size(); ++i) {
        char c = v[i];
        if (c == '\r' && i + 2 < v.size() && v[i + 1] == '\n' &&
            (v[i + 2] == ' ' || v[i + 2] == '\t')) {
            out += "\r\n";
            ++i;
            continue;
        }
        out.push_back((c == '\r' || c == '\n' || c == '\0') ? ' ' : c);
    }
    return out;
}

bool valid_field_name(std::string_view n) {
    if (n.empty()) return false;
    for (char c : n)
        if (c < 33 || c > 126 || c == ':') return false;
    return true;
}

std::string header_reason(const part& root, const inject_options& opts) {
    if (opts.sender.empty() || opts.sender == "<>") return "null sender";
    for (const auto& f : root.fields) {
        std::string v = to_lower(trim(f.value));
        auto cut = v.find_first_of(" \t;(");
        std::string_view token = std::string_view(v).substr(0, cut);
        // RFC 3834 §5: anything but "no" is automatic.
        if (iequals(f.name, "Auto-Submitted") && token != "no") return "auto-submitted";
        if (iequals(f.name, "Precedence") && token == "auto_reply") return "auto-reply";
        if ((iequals(f.name, "X-Autoreply") || iequals(f.name, "X-Autorespond")) &&
            token != "no" && token != "false")
            return "auto-reply";
        // Exchange names the TNEF attachment of a message here (it sends the
        // field empty on every other message): Outlook shows the TNEF body,
        // never a signature put into the MIME text.
        if (iequals(f.name, "X-MS-TNEF-Correlator") && !v.empty()) return "TNEF (X-MS-TNEF-Correlator)";
    }
    return {};
}

std::string structure_reason(const std::vector<part>& parts, std::uint32_t defects) {
    if (defects) return std::string("malformed MIME: ") + std::string(defect_name(defects));
    for (const auto& p : parts) {
        if (p.is("multipart", "signed")) return "multipart/signed";
        if (p.is("multipart", "encrypted")) return "multipart/encrypted";
        if (p.type == "application" && (p.subtype == "pkcs7-mime" || p.subtype == "x-pkcs7-mime"))
            return "S/MIME (application/pkcs7-mime)";
        if (p.is("multipart", "report")) return "multipart/report";
        if (p.is("text", "calendar")) return "calendar invitation (text/calendar)";
        if (p.type == "application" && (p.subtype == "ms-tnef" || p.subtype == "vnd.ms-tnef"))
            return "TNEF (application/ms-tnef)";
    }
    return {};
}

unit_result sign_unit(held_bytes msg, const std::vector<part>& parts, int unit,
                      const rendered_signature& sig, const inject_options& opts) {
    part_signer s(msg, parts, sig, opts);
    unit_result r;
    r.reason = s.run(unit);
    if (!r.reason.empty()) return r;
    r.edits = std::move(s.edits());
    r.kinds = s.signed_kinds();
    // One set of image parts per message: a second HTML alternative refers
    // to the same Content-IDs (RFC 2392 resolves them message-wide).
    if (!sig.images.empty() && !s.signed_html().empty()) {
        r.reason = add_images(msg, parts, s.signed_html().front(), sig.images, r.edits);
        if (!r.reason.empty()) r.edits.clear();
        else r.images = sig.images.size();
    }
    return r;
}

}  // namespace sigrelay::mime::detail
