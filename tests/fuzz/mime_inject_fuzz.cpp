// libFuzzer target: scan → inject → flatten, then check what must always hold:
// the output re-parses with the same structure, has no bare CR/LF and no line
// over 998 octets unless the input had them, and a second pass is stopped by
// the loop guard (processed header) and by the signature marker.
#include <sigrelay/mime.hpp>
#include <sigrelay/mime/scanner.hpp>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

using namespace sigrelay::mime;

namespace {

bool clean_newlines(std::string_view s) {
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r')) return false;
        if (s[i] == '\r' && (i + 1 >= s.size() || s[i + 1] != '\n')) return false;
    }
    return true;
}

std::size_t longest_line(std::string_view s) {
    std::size_t best = 0, start = 0;
    for (std::size_t i = 0; i <= s.size(); ++i)
        if (i == s.size() || s[i] == '\n') {
            best = std::max(best, i - start);
            start = i + 1;
        }
    return best;  // includes the CR
}

std::string shape(const std::vector<part>& parts) {
    std::string out;
    for (const auto& p : parts) {
        out += p.type + "/" + p.subtype + ":";
        for (int c : p.children) out += std::to_string(c) + ",";
        out += ";";
    }
    return out;
}

void trap(bool ok) {
    if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    rendered_signature sig;
    sig.html = "<p>Jos\xc3\xa9 \xe2\x80\x94 FUZZSIG</p>";
    sig.text = "Jos\xc3\xa9 \xe2\x80\x94\nFUZZSIG Example Corp";
    sig.where = (data[0] & 1) ? placement::below_reply : placement::bottom;
    inject_options opts;
    opts.processed_header_name = "X-Processed";
    opts.processed_header_value = "true";
    opts.received_header = "Received: from fuzz by fuzz; Thu, 1 Jan 2026 00:00:00 +0000";
    opts.sender = "a@example.com";
    opts.marker_id = "fz";
    opts.reply_markers = {"--reply--"};
    opts.max_depth = 8;
    opts.max_header_bytes = 4096;

    std::string_view msg(reinterpret_cast<const char*>(data) + 1, size - 1);
    auto r = inject(std::span<const char>(msg.data(), msg.size()), sig, opts);
    trap(r.ok());
    const std::string out = r->flatten(std::span<const char>(msg.data(), msg.size()));
    trap(out.size() == r->size());

    std::uint32_t in_defects = 0;
    auto in_parts = scan(std::span<const char>(msg.data(), msg.size()), {8, 4096}, &in_defects);
    std::uint32_t out_defects = 0;
    auto out_parts = scan(std::span<const char>(out.data(), out.size()), {8, 4096}, &out_defects);

    if (r->result == outcome::untouched) {
        trap(out == msg);
        return 0;
    }
    if (clean_newlines(msg)) trap(clean_newlines(out));
    if (longest_line(msg) <= 999) trap(longest_line(out) <= 999);
    if (r->result == outcome::signed_message) {
        // The decision rests on the prefix up to the end of the signed part:
        // a defect after it may be there, and stays exactly as it was.
        trap(out_defects == in_defects);
        trap(shape(in_parts) == shape(out_parts));
    } else if (in_defects == 0) {
        trap(shape(in_parts) == shape(out_parts));
    }

    // Second pass: the processed header stops it.
    auto again = inject(std::span<const char>(out.data(), out.size()), sig, opts);
    trap(again.ok() && again->result == outcome::untouched);
    trap(again->flatten(std::span<const char>(out.data(), out.size())) == out);

    // Second pass through another tenant: the signature is already there.
    if (r->result == outcome::signed_message) {
        inject_options other = opts;
        other.processed_header_name = "X-Other";
        auto third = inject(std::span<const char>(out.data(), out.size()), sig, other);
        trap(third.ok() && third->result != outcome::signed_message);
    }
    return 0;
}
