// The streaming signature injector: a message goes in as it arrives, in any
// split, and comes out with the stamps and the signature while later bytes are
// still on their way (docs/behaviour.md, Signature injection).
//
// Only a prefix of the message is ever held in memory:
// - the top-level header block, until it is complete (then stamped and sent);
// - the header of each part on the way down to the body (the first part of
//   mixed/related, or a multipart/alternative, which is signed as a whole);
// - that body (the "unit"), until it ends.
// Once the unit has been signed (or the message found unsignable) everything
// that follows flows through untouched and is no longer even scanned. So the
// decision to sign rests on the header and on the parts up to the end of the
// unit: a malformed or signed part after it does not stop the signature, and
// is relayed byte for byte as before.
//
// The scanner is fed one line at a time while anything is held, and every
// decision is taken at a line end (or at a size limit crossed at any byte,
// which no later byte can undo), so the output is the same for every split of
// the input: inject() is this injector fed the whole message at once.
#include <sigrelay/mime.hpp>
#include <sigrelay/mime/scanner.hpp>

#include "part_signer.hpp"

#include <algorithm>
#include <cstring>
#include <deque>

namespace sigrelay::mime {

using detail::edit;

namespace {

enum class stage {
    root_header,  // holding the top-level header block
    seek,         // header sent; looking for the part to sign (its header held)
    hold,         // holding the unit until it ends
    pass,         // decided: bytes flow through
};

// A piece of output: a range of held input (absolute offsets) or a fragment.
struct piece_ref {
    bool fragment = false;
    std::size_t a = 0, b = 0;  // range, or fragment index in a
};

const rendered_signature* usable(const rendered_signature* s) {
    return s != nullptr && !(s->html.empty() && s->text.empty()) ? s : nullptr;
}

}  // namespace

struct stream_injector::impl {
    impl(const inject_options& o, header_callback cb)
        : opts(o), on_header(std::move(cb)), sc({o.max_depth, o.max_header_bytes}) {}

    const inject_options& opts;
    header_callback on_header;
    scanner sc;
    stage st = stage::root_header;
    std::string hold;          // input bytes [base, base + hold.size())
    std::size_t base = 0;      // absolute offset of hold[0]
    std::size_t emitted = 0;   // output produced for input bytes before this offset
    bool stamps_out = false;   // Received: and the processed header are in the output
    int node = -1;             // seek: the multipart being descended
    int candidate = -1;        // seek: the child whose header is being read
    int unit = -1;             // hold: the subtree to sign
    const rendered_signature* sig = nullptr;
    outcome result = outcome::stamped_only;
    std::string reason;
    std::vector<piece_ref> refs;
    std::deque<std::string> frags;  // stable addresses until the next call
    std::size_t in_size = 0, out_size = 0;
    bool finished = false;

    std::size_t pos() const noexcept { return base + hold.size(); }
    const std::vector<part>& parts() const noexcept { return sc.parts(); }
    const part& at(int i) const { return sc.parts()[static_cast<std::size_t>(i)]; }
    detail::held_bytes view() const { return {hold, base}; }

    // ---- output -------------------------------------------------------------
    void range(std::size_t a, std::size_t b) {
        if (b > a) refs.push_back({false, a, b});
    }
    void text(std::string t) {
        if (t.empty()) return;
        refs.push_back({true, frags.size(), 0});
        frags.push_back(std::move(t));
    }
    // Input [from, to) with `edits` applied; false (nothing output) on overlap.
    bool assemble(std::vector<edit>& edits, std::size_t from, std::size_t to) {
        std::stable_sort(edits.begin(), edits.end(), [](const edit& x, const edit& y) {
            return x.begin != y.begin ? x.begin < y.begin : x.order < y.order;
        });
        std::size_t cursor = from;
        for (const auto& e : edits)
            if (e.begin < cursor || e.end < e.begin || e.end > to) return false;
            else cursor = e.end;
        cursor = from;
        for (auto& e : edits) {
            range(cursor, e.begin);
            text(std::move(e.text));
            cursor = e.end;
        }
        range(cursor, to);
        emitted = to;
        return true;
    }

    // ---- the stamps -----------------------------------------------------------
    // Each stamp field starts a line: after an mbox From_ line or a last field
    // without a line end (end of input), and the processed header may land
    // where the Received field already went (no header fields at all).
    std::vector<edit> stamp_edits(bool processed_on_top) const {
        const part& root = at(0);
        std::vector<edit> out;
        const bool received = !opts.received_header.empty();
        // A field starts a line: after a byte that ends none, a line end
        // first (only its LF when the byte is a lone CR, so that the line
        // does not grow).
        auto line_end_after = [&](std::size_t at) -> std::string {
            if (at == 0) return {};
            const char c = hold[at - 1 - base];
            return c == '\n' ? std::string() : c == '\r' ? std::string("\n") : std::string("\r\n");
        };
        if (received) {
            std::string t = line_end_after(root.begin);
            t += detail::sanitize_field(opts.received_header) + "\r\n";
            out.push_back({root.begin, root.begin, 0, std::move(t)});
        }
        const std::size_t at_ = processed_on_top ? root.begin : root.header_end;
        std::string t;
        if (!(received && at_ == root.begin)) t = line_end_after(at_);
        t += opts.processed_header_name + ": " + detail::sanitize_value(opts.processed_header_value) +
             "\r\n";
        out.push_back({at_, at_, 100, std::move(t)});
        return out;
    }

    // ---- decisions --------------------------------------------------------------
    void go_pass(outcome o, std::string why) {
        result = o;
        reason = std::move(why);
        st = stage::pass;
    }

    // Everything held so far goes out as it came, stamped.
    void stamped(std::string why, bool processed_on_top = false) {
        if (!stamps_out) {
            auto e = stamp_edits(processed_on_top);
            assemble(e, emitted, pos());  // stamps never overlap
            stamps_out = true;
        } else {
            range(emitted, pos());
            emitted = pos();
        }
        go_pass(outcome::stamped_only, std::move(why));
    }

    void on_root_header() {
        const part& root = at(0);
        // Loop guard: the tenant's processed header is already there.
        if (root.field(opts.processed_header_name)) {
            range(emitted, pos());
            emitted = pos();
            go_pass(outcome::untouched, "already carries " + opts.processed_header_name);
            return;
        }
        sig = usable(on_header ? on_header(root) : nullptr);
        std::string why = detail::header_reason(root, opts);
        if (why.empty()) why = detail::structure_reason(parts(), sc.defects());
        if (why.empty() && sig == nullptr) why = "no signature for this sender";
        if (!why.empty()) return stamped(std::move(why));
        if (root.disposition == "attachment") return stamped("no text body to sign");
        const bool text_body = root.type == "text" && (root.subtype == "plain" || root.subtype == "html");
        if (text_body || signed_whole(root)) {
            unit = 0;
            st = stage::hold;
            return;
        }
        if (!root.is_multipart()) return stamped("no text body to sign");
        auto e = stamp_edits(false);
        assemble(e, emitted, root.header_end);
        stamps_out = true;
        node = 0;
        candidate = -1;
        st = stage::seek;
    }

    // Multiparts signed as one unit: every alternative gets the signature, and
    // related's root may be any child ("start", RFC 2387 §3.2), found once the
    // whole part is held.
    static bool signed_whole(const part& p) {
        return p.is("multipart", "alternative") ||
               (p.is("multipart", "related") && p.param("start") != nullptr);
    }

    // seek: one step down the tree; true when something changed.
    bool seek_step() {
        if (candidate < 0) {
            const part& n = at(node);
            if (!n.children.empty()) {
                candidate = n.children.front();
                return true;
            }
            if (n.closed) {
                std::string why = detail::structure_reason(parts(), sc.defects());
                stamped(why.empty() ? "no text body to sign" : why);
                return true;
            }
            return false;
        }
        const part& c = at(candidate);
        if (!c.header_complete) return false;
        if (c.disposition == "attachment") {
            stamped("no text body to sign");
            return true;
        }
        const bool text_body = c.type == "text" && (c.subtype == "plain" || c.subtype == "html");
        if (text_body || signed_whole(c)) {
            unit = candidate;
            st = stage::hold;
            return true;
        }
        std::string why = detail::structure_reason(parts(), sc.defects());
        if (!why.empty() || !c.is_multipart()) {
            stamped(why.empty() ? "no text body to sign" : why);
            return true;
        }
        // mixed, related, digest...: its first part is the body.
        node = candidate;
        candidate = -1;
        return true;
    }

    void decide_unit() {
        std::string why = detail::structure_reason(parts(), sc.defects());
        if (!why.empty()) return stamped(std::move(why));
        auto r = detail::sign_unit(view(), parts(), unit, *sig, opts);
        if (!r.reason.empty()) return stamped(std::move(r.reason));
        std::vector<edit> all;
        if (!stamps_out) all = stamp_edits(false);
        all.insert(all.end(), std::make_move_iterator(r.edits.begin()),
                   std::make_move_iterator(r.edits.end()));
        if (!assemble(all, emitted, pos())) return stamped("internal: overlapping edits");
        stamps_out = true;
        if (r.images > 0)
            r.kinds += " with " + std::to_string(r.images) + (r.images == 1 ? " image" : " images");
        go_pass(outcome::signed_message, std::move(r.kinds));
    }

    std::string too_large() const {
        return "part to sign is larger than " + std::to_string(opts.max_signed_bytes) + " bytes";
    }

    // The size limits, checked as each piece of input is added and before the
    // scanner sees it: crossing a limit at any byte means the final extent is
    // over it too, and the scanner's state is then the one after the last
    // complete line, whatever the split. True when the limit decided.
    bool over_limit() {
        switch (st) {
            case stage::root_header:
                if (pos() <= opts.max_header_bytes) return false;
                // No end of the header block in sight: the stamp cannot go
                // after it, so it goes on top.
                stamped("header block larger than " + std::to_string(opts.max_header_bytes) + " bytes",
                        true);
                return true;
            case stage::seek:
                if (candidate < 0 || pos() - at(candidate).begin <= opts.max_signed_bytes) return false;
                stamped(too_large());
                return true;
            case stage::hold:
                if (pos() - at(unit).begin <= opts.max_signed_bytes) return false;
                stamped(too_large());
                return true;
            case stage::pass:
                return true;
        }
        return false;
    }

    // After a complete line: its events, as many steps as they allow.
    void on_line_end() {
        for (;;) {
            bool changed = false;
            switch (st) {
                case stage::root_header:
                    if (at(0).header_complete) {
                        on_root_header();
                        changed = true;
                    }
                    break;
                case stage::seek:
                    changed = seek_step();
                    break;
                case stage::hold:
                    if (at(unit).closed) decide_unit();
                    return;
                case stage::pass:
                    return;
            }
            if (!changed) return;
        }
    }

    // In seek, flush what can no longer change: everything before the part
    // being examined (or everything, when none is).
    void flush_seek() {
        if (st != stage::seek) return;
        std::size_t safe = candidate >= 0 ? at(candidate).begin : pos();
        if (safe > emitted) {
            range(emitted, safe);
            emitted = safe;
        }
    }

    void begin_call(std::vector<output_piece>& out) {
        out.clear();
        refs.clear();
        frags.clear();
        if (st == stage::pass) {
            // Nothing is held any more: give the memory back (a large unit
            // must not stay pinned for the rest of the message). The views of
            // the previous call are gone now.
            if (!hold.empty() || hold.capacity() > 0) {
                base += hold.size();
                std::string().swap(hold);
            }
            base += passed_through;
            emitted = base;
            passed_through = 0;
        } else if (emitted > base) {
            hold.erase(0, emitted - base);
            base = emitted;
        }
    }

    void end_call(std::vector<output_piece>& out, std::string_view rest) {
        flush_seek();
        if (st == stage::pass && emitted < pos()) {  // decided earlier in this call
            range(emitted, pos());
            emitted = pos();
        }
        for (const auto& r : refs) {
            if (r.fragment) {
                out.push_back({frags[r.a], output_piece::new_text});
                out_size += frags[r.a].size();
            } else {
                out.push_back({std::string_view(hold).substr(r.a - base, r.b - r.a), r.a});
                out_size += r.b - r.a;
            }
        }
        if (!rest.empty()) {
            out.push_back({rest, pos()});
            out_size += rest.size();
        }
        if (st == stage::pass) passed_through += rest.size();
    }
    std::size_t passed_through = 0;  // input after the hold, never copied

    // Doubling would let a held part just under the limit cost twice the
    // limit: growth stops at what the limits allow (plus a read's worth).
    void grow_hold(std::size_t more) {
        if (hold.size() + more <= hold.capacity()) return;
        const std::size_t bound = opts.max_signed_bytes + opts.max_header_bytes + (64u << 10);
        std::size_t want = std::max(hold.capacity() * 2, std::size_t{4096});
        want = std::min(want, std::max(bound, hold.size() + more));
        hold.reserve(std::max(want, hold.size() + more));
    }

    void feed(std::span<const char> bytes, std::vector<output_piece>& out) {
        begin_call(out);
        in_size += bytes.size();
        const char* p = bytes.data();
        const char* const end = p + bytes.size();
        while (p < end && st != stage::pass) {
            const char* nl = static_cast<const char*>(std::memchr(p, '\n', static_cast<std::size_t>(end - p)));
            const std::size_t take = nl ? static_cast<std::size_t>(nl - p) + 1 : static_cast<std::size_t>(end - p);
            grow_hold(take);
            hold.append(p, take);
            const char* const piece = p;
            p += take;
            if (over_limit()) break;
            sc.feed(std::span<const char>(piece, take));
            if (nl != nullptr) on_line_end();
        }
        end_call(out, std::string_view(p, static_cast<std::size_t>(end - p)));
    }

    void finish(std::vector<output_piece>& out) {
        begin_call(out);
        if (!finished && st != stage::pass) {
            finished = true;
            sc.finish();
            on_line_end();
            if (st == stage::seek) {
                // The message ended before a body to sign was found.
                std::string why = detail::structure_reason(parts(), sc.defects());
                stamped(why.empty() ? "no text body to sign" : why);
            } else if (st != stage::pass) {
                stamped("message ended early");  // unreachable: finish() closes every part
            }
        }
        finished = true;
        end_call(out, {});
    }
};

stream_injector::stream_injector(const inject_options& opts, header_callback on_header)
    : impl_(std::make_unique<impl>(opts, std::move(on_header))) {}
stream_injector::~stream_injector() = default;
stream_injector::stream_injector(stream_injector&&) noexcept = default;
stream_injector& stream_injector::operator=(stream_injector&&) noexcept = default;

void stream_injector::feed(std::span<const char> bytes, std::vector<output_piece>& out) {
    impl_->feed(bytes, out);
}
void stream_injector::finish(std::vector<output_piece>& out) { impl_->finish(out); }

bool stream_injector::header_complete() const noexcept {
    return impl_->st != stage::root_header;
}
const part* stream_injector::root() const noexcept {
    return header_complete() ? &impl_->sc.parts()[0] : nullptr;
}
bool stream_injector::decided() const noexcept { return impl_->st == stage::pass; }
outcome stream_injector::result() const noexcept { return impl_->result; }
const std::string& stream_injector::reason() const noexcept { return impl_->reason; }
std::size_t stream_injector::held_bytes() const noexcept { return impl_->hold.size(); }
std::size_t stream_injector::bytes_in() const noexcept { return impl_->in_size; }
std::size_t stream_injector::bytes_out() const noexcept { return impl_->out_size; }

// ---- whole messages -------------------------------------------------------------

std::size_t injection::size() const noexcept {
    std::size_t n = 0;
    for (const auto& s : slices) n += s.length;
    return n;
}

std::string injection::flatten(std::span<const char> input) const {
    std::string out;
    out.reserve(size());
    for (const auto& s : slices) {
        if (s.from_input)
            out.append(input.data() + s.offset, s.length);
        else
            out.append(fragments[s.offset].data(), s.length);
    }
    return out;
}

void injection::add(std::span<const output_piece> pieces) {
    for (const auto& p : pieces) {
        if (p.bytes.empty()) continue;
        // Input bytes are slices of the caller's message; only new text
        // becomes a fragment.
        if (p.input_offset != output_piece::new_text) {
            slices.push_back({true, p.input_offset, p.bytes.size()});
        } else {
            slices.push_back({false, fragments.size(), p.bytes.size()});
            fragments.emplace_back(p.bytes);
        }
    }
}

result<void> check_options(const inject_options& opts) {
    if (!detail::valid_field_name(opts.processed_header_name))
        return make_error("processed header name must be printable ASCII without ':'", EINVAL);
    if (!opts.received_header.empty()) {
        std::string_view r = opts.received_header;
        auto colon = r.find(':');
        if (colon == std::string_view::npos || !detail::valid_field_name(r.substr(0, colon)))
            return make_error("received_header must be a complete header field", EINVAL);
    }
    return {};
}

result<injection> inject(std::span<const char> message, const rendered_signature& sig,
                         const inject_options& opts) {
    SIGRELAY_TRY(check_options(opts));
    stream_injector s(opts, [&sig](const part&) { return &sig; });
    injection out;
    std::vector<output_piece> pieces;
    s.feed(message, pieces);
    out.add(pieces);
    s.finish(pieces);
    out.add(pieces);
    out.result = s.result();
    out.reason = s.reason();
    return out;
}

}  // namespace sigrelay::mime
