// Runs one corpus message through the injector for tests/mime_corpus_check.py:
// every bare CR or LF becomes CRLF (SMTP line ends), a fixed test signature is
// injected, the result goes to stdout and "outcome<TAB>reason" to stderr.
// Usage: mime_corpus_driver FILE [bottom|below_reply] [IMAGE.png]
// With IMAGE the HTML signature shows it as cid:logo.TEST@sigrelay.test and
// the injector embeds it (docs/behaviour.md, Images).
#include <sigrelay/mime.hpp>
#include <sigrelay/mime/codec.hpp>
#include <sigrelay/text.hpp>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s MESSAGE [bottom|below_reply] [IMAGE.png]\n", argv[0]);
        return 2;
    }
    std::ifstream in(argv[1], std::ios::binary);
    if (!in) {
        std::fprintf(stderr, "cannot read %s\n", argv[1]);
        return 66;
    }
    std::string raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const std::string msg = sigrelay::text::to_crlf(raw);

    sigrelay::mime::rendered_signature sig;
    sig.html = "<p>Jos\xc3\xa9 Example \xe2\x80\x94 Contoso<br>SIGTOKEN-7f3a</p>";
    sig.text = "Jos\xc3\xa9 Example \xe2\x80\x94 Contoso\nSIGTOKEN-7f3a";
    if (argc > 2 && std::string(argv[2]) == "below_reply")
        sig.where = sigrelay::mime::placement::below_reply;
    std::string image_base64;
    if (argc > 3) {
        std::ifstream img(argv[3], std::ios::binary);
        if (!img) {
            std::fprintf(stderr, "cannot read %s\n", argv[3]);
            return 66;
        }
        std::string bytes((std::istreambuf_iterator<char>(img)), std::istreambuf_iterator<char>());
        sigrelay::mime::base64_encode(bytes, image_base64);
        image_base64 += "\r\n";
        sig.html += "<img src=\"cid:logo.TEST@sigrelay.test\" alt=\"logo\">";
        sig.images.push_back({"logo.TEST@sigrelay.test", "image/png", "logo.png", image_base64});
    }
    sigrelay::mime::inject_options opts;
    opts.processed_header_name = "X-Sigrelay-Test";
    opts.processed_header_value = "true";
    opts.received_header =
        "Received: from corpus.test by sigrelay.test with ESMTPS id TEST;\r\n"
        "\tThu, 1 Jan 2026 00:00:00 +0000";
    opts.sender = "jose@contoso.example";
    opts.marker_id = "m-4c1d";

    auto r = sigrelay::mime::inject(msg, sig, opts);
    if (!r) {
        std::fprintf(stderr, "error\t%s\n", r.err().message.c_str());
        return 1;
    }
    std::string out = r->flatten(msg);
    std::fwrite(out.data(), 1, out.size(), stdout);
    const char* outcome = r->result == sigrelay::mime::outcome::signed_message ? "signed"
                          : r->result == sigrelay::mime::outcome::stamped_only ? "stamped"
                                                                               : "untouched";
    std::fprintf(stderr, "%s\t%s\n", outcome, r->reason.c_str());
    return 0;
}
