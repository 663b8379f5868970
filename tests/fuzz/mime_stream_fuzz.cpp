// libFuzzer target: the streaming injector fed in fuzzer-chosen pieces must
// give exactly the bytes, outcome and reason of inject() on the whole input,
// and hold no more than its limits allow.
#include <sigrelay/mime.hpp>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

using namespace sigrelay::mime;

namespace {
void trap(bool ok) {
    if (!ok) std::abort();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 3) return 0;
    rendered_signature sig;
    sig.html = "<p>Jos\xc3\xa9 \xe2\x80\x94 FUZZSIG</p>";
    sig.text = "Jos\xc3\xa9 \xe2\x80\x94\nFUZZSIG Example Corp";
    sig.where = (data[0] & 1) ? placement::below_reply : placement::bottom;
    // Half the inputs embed an image: the multipart/related edits get fuzzed too.
    if (data[0] & 16) {
        sig.html += "<img src=\"cid:logo.F@fuzz\">";
        sig.images.push_back({"logo.F@fuzz", "image/png", "logo.png", "iVBORw0KGgo=\r\n"});
    }
    inject_options opts;
    opts.processed_header_name = "X-Processed";
    opts.processed_header_value = "true";
    opts.received_header = "Received: from fuzz by fuzz; Thu, 1 Jan 2026 00:00:00 +0000";
    opts.sender = (data[0] & 2) ? "" : "a@example.com";
    opts.marker_id = "fz";
    opts.reply_markers = {"--reply--"};
    opts.max_depth = 8;
    // Small limits now and then, so the size rules are crossed mid-line too.
    opts.max_header_bytes = (data[0] & 4) ? 300 : 4096;
    opts.max_signed_bytes = (data[0] & 8) ? 500 : 65536;

    const std::string_view msg(reinterpret_cast<const char*>(data) + 3, size - 3);
    auto whole = inject(std::span<const char>(msg.data(), msg.size()), sig, opts);
    trap(whole.ok());
    const std::string want = whole->flatten(std::span<const char>(msg.data(), msg.size()));

    stream_injector s(opts, [&sig](const part&) { return &sig; });
    std::vector<output_piece> pieces;
    std::string got;
    std::uint32_t state = (std::uint32_t{data[1]} << 8 | data[2]) * 2654435761u + 1;
    std::size_t at = 0;
    while (at < msg.size()) {
        state = state * 1103515245u + 12345u;
        std::size_t n = 1 + (state >> 16) % ((data[1] & 0x80) ? 7 : 300);
        n = std::min(n, msg.size() - at);
        // Each piece is its own buffer, freed right after the call: a view
        // kept too long would show up under ASan.
        std::vector<char> chunk(msg.begin() + static_cast<std::ptrdiff_t>(at),
                                msg.begin() + static_cast<std::ptrdiff_t>(at + n));
        s.feed(std::span<const char>(chunk.data(), chunk.size()), pieces);
        for (const auto& p : pieces) got.append(p.bytes);
        trap(s.held_bytes() <= n + opts.max_signed_bytes + opts.max_header_bytes + 1024);
        at += n;
    }
    s.finish(pieces);
    for (const auto& p : pieces) got.append(p.bytes);
    trap(got == want);
    trap(s.result() == whole->result);
    trap(s.reason() == whole->reason);
    return 0;
}
