// The streaming injector: every split of a message gives the bytes inject()
// gives for the whole of it; what it holds stays bounded; what follows the
// signed part flows through as views of the input; the decision rests on the
// prefix up to the end of the signed part.
#include <doctest/doctest.h>
#include <sigrelay/mime.hpp>
#include <sigrelay/mime/scanner.hpp>
#include <sigrelay/text.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

using namespace sigrelay::mime;

namespace {

const char* const kToken = "SIGTOKEN-42";

rendered_signature test_sig(placement where) {
    rendered_signature s;
    s.html = "<p>Jos\xc3\xa9 \xe2\x80\x94 <b>SIGTOKEN-42</b></p>";
    s.text = "Jos\xc3\xa9 \xe2\x80\x94\nSIGTOKEN-42";
    s.where = where;
    return s;
}

inject_options test_opts() {
    inject_options o;
    o.processed_header_name = "SignatureContoso";
    o.processed_header_value = "true";
    o.received_header = "Received: from exo.test by relay.test with ESMTPS id Q1;\r\n\tThu, 1 Jan 2026 00:00:00 +0000";
    o.sender = "jane@contoso.example";
    o.marker_id = "m-4c1d";
    return o;
}

struct streamed {
    std::string out;
    outcome result;
    std::string reason;
    std::size_t max_held = 0;
};

// Feeds `msg` in pieces whose sizes come from `next_size`.
template <class F>
streamed stream(const std::string& msg, const rendered_signature& sig, const inject_options& o,
                F next_size) {
    stream_injector s(o, [&sig](const part&) { return &sig; });
    std::vector<output_piece> pieces;
    streamed r;
    std::size_t at = 0;
    while (at < msg.size()) {
        std::size_t n = std::min(next_size(), msg.size() - at);
        s.feed(std::span<const char>(msg.data() + at, n), pieces);
        for (const auto& p : pieces) r.out.append(p.bytes);
        r.max_held = std::max(r.max_held, s.held_bytes());
        at += n;
    }
    s.finish(pieces);
    for (const auto& p : pieces) r.out.append(p.bytes);
    r.result = s.result();
    r.reason = s.reason();
    return r;
}

streamed whole(const std::string& msg, const rendered_signature& sig, const inject_options& o) {
    auto r = inject(std::span<const char>(msg.data(), msg.size()), sig, o);
    REQUIRE(r.ok());
    return {r->flatten(std::span<const char>(msg.data(), msg.size())), r->result, r->reason, 0};
}

// Every message of the folders in SIGRELAY_MIME_DIRS (':'-separated): the
// project's generated fixtures and, when present, the shared corpus.
std::vector<std::pair<std::string, std::string>> folder_messages() {
    std::vector<std::pair<std::string, std::string>> out;
    const char* dirs = std::getenv("SIGRELAY_MIME_DIRS");
    std::string all = dirs ? dirs : "";
    if (const char* corpus = std::getenv("SIGRELAY_CORPUS")) all += std::string(":") + corpus;
    std::size_t start = 0;
    while (start <= all.size()) {
        std::size_t colon = all.find(':', start);
        std::string dir = all.substr(start, colon == std::string::npos ? std::string::npos : colon - start);
        start = colon == std::string::npos ? all.size() + 1 : colon + 1;
        if (dir.empty() || !std::filesystem::is_directory(dir)) continue;
        for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
            if (!e.is_regular_file() || e.path().extension() != ".eml") continue;
            std::ifstream in(e.path(), std::ios::binary);
            std::string raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
            out.emplace_back(e.path().string(), sigrelay::text::to_crlf(raw));
        }
    }
    return out;
}

const std::string kMixed =
    "From: Jane <jane@contoso.example>\r\nSubject: report\r\nMIME-Version: 1.0\r\n"
    "Content-Type: multipart/mixed; boundary=\"m\"\r\n\r\npreamble\r\n"
    "--m\r\nContent-Type: multipart/alternative; boundary=\"a\"\r\n\r\n"
    "--a\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    "Hi Bob,=0D=0A=C3=A9t=C3=A9\r\n"
    "--a\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    "PGh0bWw+PGJvZHk+PHA+SGkgQm9iPC9wPjwvYm9keT48L2h0bWw+\r\n"
    "--a--\r\n"
    "--m\r\nContent-Type: application/pdf; name=r.pdf\r\nContent-Disposition: attachment; filename=r.pdf\r\n"
    "Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQKJcfs\r\n--m--\r\n";

std::vector<std::string> own_messages() {
    return {
        kMixed,
        "From: a@contoso.example\r\nSubject: plain\r\n\r\nHello\r\n.leading dot\r\n\r\n",
        "From: a@contoso.example\r\nContent-Type: text/html\r\n\r\n<html><body><p>x</p></body></html>\r\n",
        "From: a@contoso.example\r\nSignatureContoso: true\r\n\r\nalready processed\r\n",
        "From: a@contoso.example\r\nAuto-Submitted: auto-replied\r\n\r\nAway\r\n",
        "From: a@contoso.example\r\nSubject: no body",
        "From a@b Thu Jan  1 00:00:00 2026\r\nFrom: a@contoso.example\r\n\r\nmbox\r\n",
        "From: a@contoso.example\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n"
        "Content-Type: image/png\r\n\r\nPNG\r\n--x--\r\n",
        "From: a@contoso.example\r\nContent-Type: multipart/related; boundary=r; start=\"<h@x>\"\r\n\r\n"
        "--r\r\nContent-Type: image/png\r\nContent-ID: <i@x>\r\n\r\nPNG\r\n--r\r\n"
        "Content-Type: text/html\r\nContent-ID: <h@x>\r\n\r\n<p>root</p>\r\n--r--\r\n",
        "From: a@contoso.example\r\nContent-Type: multipart/alternative; boundary=a\r\n\r\n--a\r\n\r\nplain\r\n"
        "--a\r\nContent-Type: text/html\r\n\r\n<p>html</p>\r\n--a--\r\nepilogue\r\n",
    };
}

// A signature with an embedded image (docs/behaviour.md, Images): the
// multipart/related it builds must not depend on the split either.
const std::string& image_base64() {
    static const std::string b64 =
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9\r\n"
        "awAAAABJRU5ErkJggg==\r\n";
    return b64;
}

void check_all_splits(const std::string& name, const std::string& msg) {
    for (int variant = 0; variant < 3; ++variant) {
        const placement where = variant == 1 ? placement::below_reply : placement::bottom;
        auto sig = test_sig(where);
        if (variant == 2) {
            sig.html += "<img src=\"cid:logo.Q1@relay.test\">";
            sig.images.push_back({"logo.Q1@relay.test", "image/png", "logo.png", image_base64()});
        }
        CAPTURE(variant);
        const auto opts = test_opts();
        const streamed want = whole(msg, sig, opts);
        for (std::size_t chunk : {1, 7, 512, 4096, 65536}) {
            CAPTURE(name);
            CAPTURE(chunk);
            const streamed got = stream(msg, sig, opts, [chunk] { return chunk; });
            CHECK(got.out == want.out);
            CHECK(got.result == want.result);
            CHECK(got.reason == want.reason);
        }
        std::mt19937 rng(static_cast<unsigned>(msg.size()));
        std::uniform_int_distribution<std::size_t> size(1, 300);
        const streamed got = stream(msg, sig, opts, [&] { return size(rng); });
        CAPTURE(name);
        CHECK(got.out == want.out);
    }
}

std::string attachment_message(std::size_t attachment_bytes) {
    std::string b64;
    b64.reserve(attachment_bytes + attachment_bytes / 76 * 2 + 4);
    while (b64.size() < attachment_bytes) b64 += std::string(76, 'Q') + "\r\n";
    return "From: a@contoso.example\r\nContent-Type: multipart/mixed; boundary=m\r\n\r\n"
           "--m\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n"
           "--m\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
           b64 + "--m--\r\n";
}

}  // namespace

TEST_CASE("every split gives the whole-message bytes: the project's own messages") {
    for (const auto& m : own_messages()) check_all_splits(m.substr(0, 60), m);
}

TEST_CASE("every split gives the whole-message bytes: fixtures and corpus") {
    const auto msgs = folder_messages();
    if (msgs.empty()) MESSAGE("SIGRELAY_MIME_DIRS names no folder with messages");
    for (const auto& [name, msg] : msgs) check_all_splits(name, msg);
}

TEST_CASE("after the signed part, input flows through as views of the input") {
    const std::string msg = attachment_message(2 << 20);
    const auto sig = test_sig(placement::bottom);
    const auto opts = test_opts();
    stream_injector s(opts, [&sig](const part&) { return &sig; });
    std::vector<output_piece> pieces;
    std::string out;
    std::size_t viewed = 0, held_max = 0;
    for (std::size_t at = 0; at < msg.size(); at += 16384) {
        std::span<const char> chunk(msg.data() + at, std::min<std::size_t>(16384, msg.size() - at));
        s.feed(chunk, pieces);
        for (const auto& p : pieces) {
            out.append(p.bytes);
            if (p.bytes.data() >= chunk.data() && p.bytes.data() + p.bytes.size() <= chunk.data() + chunk.size()) {
                viewed += p.bytes.size();
                CHECK(p.input_offset == static_cast<std::size_t>(p.bytes.data() - msg.data()));
            }
        }
        held_max = std::max(held_max, s.held_bytes());
    }
    s.finish(pieces);
    for (const auto& p : pieces) out.append(p.bytes);
    CHECK(s.result() == outcome::signed_message);
    CHECK(out.find(kToken) != std::string::npos);
    CHECK(out.ends_with(msg.substr(msg.size() - 1000)));
    // The attachment (2 MiB) was never copied; the injector held a few KiB.
    CHECK(viewed > msg.size() - 32768);
    CHECK(held_max < 64 * 1024);
    CHECK(s.held_bytes() == 0);
}

TEST_CASE("a part to sign over max_signed_bytes is relayed stamped, memory bounded") {
    std::string body;
    while (body.size() < 300000) body += "a fairly ordinary line of a very long plain text message\r\n";
    const std::string msg = "From: a@contoso.example\r\nSubject: long\r\n\r\n" + body;
    const auto sig = test_sig(placement::bottom);
    auto opts = test_opts();
    opts.max_signed_bytes = 100000;
    const streamed got = stream(msg, sig, opts, [] { return std::size_t{4096}; });
    CHECK(got.result == outcome::stamped_only);
    CHECK(got.reason.find("larger than 100000") != std::string::npos);
    CHECK(got.out.find(kToken) == std::string::npos);
    CHECK(got.max_held < 100000 + 8192);
    CHECK(got.out.ends_with(body));
    CHECK(got.out == whole(msg, sig, opts).out);
}

TEST_CASE("the decision rests on the prefix up to the end of the signed part") {
    const auto sig = test_sig(placement::bottom);
    const auto opts = test_opts();
    const std::string head =
        "From: a@contoso.example\r\nContent-Type: multipart/mixed; boundary=m\r\n\r\n"
        "--m\r\nContent-Type: text/plain\r\n\r\nhello\r\n";
    struct row {
        const char* name;
        std::string tail;
    } rows[] = {
        {"a calendar attachment after the body", "--m\r\nContent-Type: text/calendar\r\n\r\nBEGIN:VCALENDAR\r\n--m--\r\n"},
        {"a signed part after the body",
         "--m\r\nContent-Type: multipart/signed; boundary=s\r\n\r\n--s\r\n\r\nx\r\n--s--\r\n--m--\r\n"},
        {"no close delimiter", "--m\r\nContent-Type: application/pdf\r\n\r\nJVBER\r\n"},
        {"an invalid boundary further down",
         "--m\r\nContent-Type: multipart/mixed; boundary=\"bad boundary \"\r\n\r\nx\r\n--m--\r\n"},
    };
    for (const auto& rw : rows) {
        CAPTURE(rw.name);
        const std::string msg = head + rw.tail;
        const streamed got = whole(msg, sig, opts);
        CHECK(got.result == outcome::signed_message);
        CHECK(got.out.ends_with(rw.tail));  // relayed byte for byte
    }
    // The same defects inside the signed unit still stamp it.
    const std::string inside =
        "From: a@contoso.example\r\nContent-Type: multipart/alternative; boundary=a\r\n\r\n"
        "--a\r\nContent-Type: text/plain\r\n\r\nhello\r\n--a\r\nContent-Type: text/calendar\r\n\r\n"
        "BEGIN:VCALENDAR\r\n--a--\r\n";
    CHECK(whole(inside, sig, opts).result == outcome::stamped_only);
}

TEST_CASE("a header block that never ends is stamped on top within bounded memory") {
    std::string msg = "From: a@contoso.example\r\n";
    while (msg.size() < 200000) msg += "X-Filler: " + std::string(80, 'x') + "\r\n";
    const auto sig = test_sig(placement::bottom);
    auto opts = test_opts();
    opts.max_header_bytes = 65536;
    const streamed got = stream(msg, sig, opts, [] { return std::size_t{1000}; });
    CHECK(got.result == outcome::stamped_only);
    CHECK(got.out.starts_with("Received: from exo.test"));
    CHECK(got.out.find("SignatureContoso: true\r\nFrom: a@contoso.example") != std::string::npos);
    CHECK(got.max_held < 65536 + 4096);
    CHECK(got.out == whole(msg, sig, opts).out);
}

TEST_CASE("the header callback sees the complete top-level header; null means stamp only") {
    const auto opts = test_opts();
    std::string seen_subject;
    stream_injector s(opts, [&](const part& root) -> const rendered_signature* {
        if (const auto* f = root.field("Subject")) seen_subject = f->value;
        return nullptr;
    });
    std::vector<output_piece> pieces;
    const std::string msg = "Subject: folded\r\n subject\r\nFrom: a@contoso.example\r\n\r\nbody\r\n";
    std::string out;
    s.feed(std::span<const char>(msg.data(), 20), pieces);
    CHECK_FALSE(s.header_complete());
    CHECK(pieces.empty());  // nothing leaves before the header decision
    s.feed(std::span<const char>(msg.data() + 20, msg.size() - 20), pieces);
    for (const auto& p : pieces) out.append(p.bytes);
    CHECK(s.header_complete());
    CHECK(s.decided());
    CHECK(seen_subject == "folded subject");
    CHECK(s.result() == outcome::stamped_only);
    CHECK(out.find("SignatureContoso: true\r\n\r\nbody") != std::string::npos);
}
