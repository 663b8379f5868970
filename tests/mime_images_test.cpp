// The signature's images (docs/behaviour.md, Images): for each body shape the
// output tree, the cid: references resolving to parts with the image's exact
// bytes, and the cases that get no images.
#include <sigrelay/mime.hpp>
#include <sigrelay/mime/codec.hpp>
#include <sigrelay/mime/scanner.hpp>

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace sigrelay::mime;

namespace {

// A 1x1 PNG's bytes stand in for any image: what matters is that they come
// back exactly.
const std::string kPng = std::string("\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0", 29) +
                         std::string(200, '\x7f') + std::string("\xff\x00\x0d\x0a--x", 7);

struct image_data {
    std::string base64;  // encoded once, as the tenant snapshot does
    image_data() { base64_encode(kPng, base64); }
};
const image_data& png() {
    static const image_data d;
    return d;
}

rendered_signature sig_with_images(std::string cid = "logo.Q1@relay.example") {
    rendered_signature s;
    s.html = "<p>Alice<br><img src=\"cid:" + cid + "\" alt=\"logo\"></p>";
    s.text = "Alice";
    s.images.push_back({cid, "image/png", "logo.png", png().base64});
    return s;
}

inject_options opts() {
    inject_options o;
    o.processed_header_name = "SignatureContoso";
    o.processed_header_value = "true";
    o.sender = "alice@contoso.example";
    o.marker_id = "alice-1";
    return o;
}

std::string run(std::string_view msg, const rendered_signature& sig, outcome* res = nullptr) {
    auto r = inject(std::span<const char>(msg.data(), msg.size()), sig, opts());
    REQUIRE(r.ok());
    if (res) *res = r->result;
    return r->flatten(std::span<const char>(msg.data(), msg.size()));
}

std::vector<part> parts_of(std::string_view m, std::uint32_t* defects) {
    return scan(std::span<const char>(m.data(), m.size()), {}, defects);
}

// "multipart/mixed(multipart/related(text/html,image/png),application/pdf)"
std::string tree(const std::vector<part>& ps, int i = 0) {
    const part& p = ps[static_cast<std::size_t>(i)];
    std::string out = p.type + "/" + p.subtype;
    if (!p.children.empty()) {
        out += "(";
        for (std::size_t k = 0; k < p.children.size(); ++k)
            out += (k ? "," : "") + tree(ps, p.children[k]);
        out += ")";
    }
    return out;
}

std::string body_of(std::string_view m, const part& p) {
    std::string_view raw = m.substr(p.body_begin, p.body_end - p.body_begin);
    std::string out;
    if (p.cte == "base64") base64_decode(raw, out);
    else if (p.cte == "quoted-printable") qp_decode(raw, out);
    else out = raw;
    return out;
}

// Every part with a Content-ID: it is unique, and the image part's bytes are
// exactly the image.
void check_images(std::string_view out, std::size_t expected) {
    std::uint32_t defects = 0;
    auto ps = parts_of(out, &defects);
    REQUIRE(defects == 0);
    std::size_t found = 0;
    for (const auto& p : ps) {
        if (p.type != "image" || p.content_id.find("logo.") == std::string::npos) continue;
        ++found;
        CHECK(p.content_id == "<logo.Q1@relay.example>");
        CHECK(p.disposition == "inline");
        CHECK(p.filename == "logo.png");
        CHECK(p.cte == "base64");
        CHECK(body_of(out, p) == kPng);
        std::string_view raw = out.substr(p.body_begin, p.body_end - p.body_begin);
        for (std::size_t s = 0; s < raw.size();) {
            std::size_t nl = raw.find("\r\n", s);
            if (nl == std::string_view::npos) nl = raw.size();
            CHECK(nl - s <= 76);
            s = nl + 2;
        }
    }
    CHECK(found == expected);
}

const std::string kHead = "From: Alice <alice@contoso.example>\r\nTo: bob@example.com\r\nSubject: hi\r\n";

}  // namespace

TEST_CASE("a bare text/html message becomes related{html, image} and keeps its header on top") {
    const std::string msg = kHead +
                            "MIME-Version: 1.0\r\nContent-Class: urn:content-classes:message\r\n"
                            "Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
                            "<html><body><p>Hello</p></body></html>\r\n";
    outcome res{};
    std::string out = run(msg, sig_with_images(), &res);
    CHECK(res == outcome::signed_message);
    auto ps = parts_of(out, nullptr);
    CHECK(tree(ps) == "multipart/related(text/html,image/png)");
    CHECK(ps[0].param("type") != nullptr);
    CHECK(ps[0].field("Subject") != nullptr);
    CHECK(ps[0].field("Content-Class") != nullptr);  // a message field, not moved
    CHECK(ps[0].field("Content-Transfer-Encoding") == nullptr);
    const part& html = ps[1];
    CHECK(html.field("Content-Transfer-Encoding") != nullptr);
    CHECK(*html.param("charset") == "utf-8");
    CHECK(body_of(out, html).find("cid:logo.Q1@relay.example") != std::string::npos);
    check_images(out, 1);
}

TEST_CASE("a bare text/html whose CTE the signer changes carries the new CTE inside") {
    // 7bit with an 8-bit signature: the signer switches the part to QP, and
    // that field must move down with the others.
    const std::string msg = kHead + "MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
                                    "<html><body><p>Hello</p></body></html>\r\n";
    rendered_signature s = sig_with_images();
    s.html += "<p>Jos\xc3\xa9</p>";
    std::string out = run(msg, s);
    auto ps = parts_of(out, nullptr);
    REQUIRE(tree(ps) == "multipart/related(text/html,image/png)");
    CHECK(ps[0].cte.empty());
    CHECK(ps[1].cte == "quoted-printable");
    CHECK(body_of(out, ps[1]).find("Jos\xc3\xa9") != std::string::npos);
    check_images(out, 1);
}

TEST_CASE("a bare text/html without MIME-Version gets one") {
    const std::string msg = kHead + "Content-Type: text/html\r\n\r\n<p>Hello</p>\r\n";
    std::string out = run(msg, sig_with_images());
    auto ps = parts_of(out, nullptr);
    CHECK(tree(ps) == "multipart/related(text/html,image/png)");
    CHECK(ps[0].field("MIME-Version") != nullptr);
    check_images(out, 1);
}

TEST_CASE("alternative{plain, html} becomes alternative{plain, related{html, image}}") {
    const std::string msg = kHead +
                            "MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n"
                            "--alt\r\nContent-Type: text/plain\r\n\r\nHello\r\n"
                            "--alt\r\nContent-Type: text/html; charset=us-ascii\r\n\r\n<p>Hello</p>\r\n"
                            "--alt--\r\n";
    std::string out = run(msg, sig_with_images());
    auto ps = parts_of(out, nullptr);
    CHECK(tree(ps) == "multipart/alternative(text/plain,multipart/related(text/html,image/png))");
    CHECK(body_of(out, ps[1]).find("Alice") != std::string::npos);
    CHECK(body_of(out, ps[1]).find("cid:") == std::string::npos);  // text gets no image
    check_images(out, 1);
}

TEST_CASE("an existing related with an HTML root gets the image added to it") {
    const std::string msg = kHead +
                            "MIME-Version: 1.0\r\nContent-Type: multipart/related; boundary=\"rel\"\r\n\r\n"
                            "--rel\r\nContent-Type: text/html\r\n\r\n<p>Hi <img src=\"cid:pic@x\"></p>\r\n"
                            "--rel\r\nContent-Type: image/gif\r\nContent-ID: <pic@x>\r\n"
                            "Content-Transfer-Encoding: base64\r\n\r\nR0lGODlhAQABAAAAACw=\r\n"
                            "--rel--\r\n";
    std::string out = run(msg, sig_with_images());
    auto ps = parts_of(out, nullptr);
    CHECK(tree(ps) == "multipart/related(text/html,image/png,image/gif)");
    check_images(out, 1);
}

TEST_CASE("Outlook's related{alternative{plain, html}, image} gets the image in the related") {
    const std::string msg = kHead +
                            "MIME-Version: 1.0\r\nContent-Type: multipart/related; boundary=\"rel\";\r\n"
                            "\ttype=\"multipart/alternative\"\r\n\r\n"
                            "--rel\r\nContent-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n"
                            "--alt\r\nContent-Type: text/plain\r\n\r\nHi\r\n"
                            "--alt\r\nContent-Type: text/html\r\n\r\n<p>Hi</p>\r\n--alt--\r\n\r\n"
                            "--rel\r\nContent-Type: image/gif\r\nContent-ID: <pic@x>\r\n\r\nGIF\r\n"
                            "--rel--\r\n";
    std::string out = run(msg, sig_with_images());
    auto ps = parts_of(out, nullptr);
    CHECK(tree(ps) ==
          "multipart/related(multipart/alternative(text/plain,text/html),image/png,image/gif)");
    check_images(out, 1);
}

TEST_CASE("inside mixed: html and alternative bodies, attachments stay where they were") {
    const std::string html_mixed = kHead +
                                   "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"mix\"\r\n\r\n"
                                   "--mix\r\nContent-Type: text/html\r\n\r\n<p>Hi</p>\r\n"
                                   "--mix\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment\r\n\r\nPDF\r\n"
                                   "--mix--\r\n";
    std::string out = run(html_mixed, sig_with_images());
    CHECK(tree(parts_of(out, nullptr)) ==
          "multipart/mixed(multipart/related(text/html,image/png),application/pdf)");
    check_images(out, 1);

    const std::string alt_mixed = kHead +
                                  "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"mix\"\r\n\r\n"
                                  "--mix\r\nContent-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n"
                                  "--alt\r\nContent-Type: text/plain\r\n\r\nHi\r\n"
                                  "--alt\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
                                  "<p>Hi=3D</p>\r\n--alt--\r\n"
                                  "--mix\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment\r\n\r\nPDF\r\n"
                                  "--mix--\r\n";
    out = run(alt_mixed, sig_with_images());
    CHECK(tree(parts_of(out, nullptr)) ==
          "multipart/mixed(multipart/alternative(text/plain,multipart/related(text/html,image/png)),"
          "application/pdf)");
    check_images(out, 1);
}

TEST_CASE("no images in text-only mail, stamped mail, or when the HTML came from the text") {
    const std::string plain = kHead + "MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nHi\r\n";
    std::string out = run(plain, sig_with_images());
    CHECK(tree(parts_of(out, nullptr)) == "text/plain");
    CHECK(out.find("image/png") == std::string::npos);

    const std::string auto_reply = kHead +
                                   "Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
                                   "Content-Type: text/html\r\n\r\n<p>Away</p>\r\n";
    outcome res{};
    out = run(auto_reply, sig_with_images(), &res);
    CHECK(res == outcome::stamped_only);
    CHECK(out.find("image/png") == std::string::npos);

    rendered_signature text_only = sig_with_images();
    text_only.html.clear();  // the HTML part gets the text, escaped: no cid
    const std::string html = kHead + "MIME-Version: 1.0\r\nContent-Type: text/html\r\n\r\n<p>Hi</p>\r\n";
    out = run(html, text_only);
    CHECK(tree(parts_of(out, nullptr)) == "text/html");
}

TEST_CASE("every split of the input gives the same output with images") {
    const std::string msg = kHead +
                            "MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n"
                            "--alt\r\nContent-Type: text/plain\r\n\r\nHello\r\n"
                            "--alt\r\nContent-Type: text/html\r\n\r\n<p>Hello</p>\r\n--alt--\r\n";
    const rendered_signature sig = sig_with_images();
    const std::string whole = run(msg, sig);
    const inject_options o = opts();
    for (std::size_t chunk : {1u, 3u, 17u, 64u}) {
        stream_injector s(o, [&](const part&) { return &sig; });
        std::vector<output_piece> pieces;
        std::string out;
        for (std::size_t i = 0; i < msg.size(); i += chunk) {
            s.feed(std::span<const char>(msg.data() + i, std::min(chunk, msg.size() - i)), pieces);
            for (const auto& p : pieces) out += p.bytes;
        }
        s.finish(pieces);
        for (const auto& p : pieces) out += p.bytes;
        CHECK(out == whole);
    }
}

TEST_CASE("the new boundary avoids text already in the message") {
    // The message quotes the boundary the injector would choose first.
    const rendered_signature sig = sig_with_images();
    const std::string first = run(kHead + "MIME-Version: 1.0\r\nContent-Type: text/html\r\n\r\n<p>x</p>\r\n", sig);
    auto ps = parts_of(first, nullptr);
    const std::string b = *ps[0].param("boundary");
    const std::string msg = kHead + "MIME-Version: 1.0\r\nContent-Type: text/html\r\n\r\n<p>--" + b + "</p>\r\n";
    std::string out = run(msg, sig);
    auto ps2 = parts_of(out, nullptr);
    CHECK(tree(ps2) == "multipart/related(text/html,image/png)");
    CHECK(*ps2[0].param("boundary") != b);
    check_images(out, 1);
}
