// Injector and codec throughput (Google Benchmark). Untouched attachment
// bytes are slices of the input, so the 5 MiB case should run far above the
// decode/re-encode path; a signed base64 or QP part goes through decode,
// insert and encode.
#include <sigrelay/mime.hpp>
#include <sigrelay/mime/codec.hpp>

#include <benchmark/benchmark.h>

#include <random>
#include <string>

using namespace sigrelay::mime;

namespace {

rendered_signature sig() {
    rendered_signature s;
    s.html =
        "<table><tr><td><b>Jos\xc3\xa9 Example</b><br>Sales \xe2\x80\x94 Contoso<br>"
        "+1 555 0100</td></tr></table>";
    s.text = "Jos\xc3\xa9 Example\nSales \xe2\x80\x94 Contoso\n+1 555 0100";
    return s;
}

inject_options opts() {
    inject_options o;
    o.processed_header_name = "SignatureContoso";
    o.processed_header_value = "true";
    o.received_header = "Received: from exo by relay; Thu, 1 Jan 2026 00:00:00 +0000";
    o.sender = "jose@contoso.example";
    o.marker_id = "jose";
    return o;
}

std::string words(std::size_t n, unsigned seed) {
    static const char* w[] = {"the",    "quarterly",   "report",  "is",     "attached", "please",
                              "review", "caf\xc3\xa9", "numbers", "before", "Friday",   "and"};
    std::mt19937 rng(seed);
    std::string s;
    while (s.size() < n) {
        s += w[rng() % 12];
        s += (rng() % 12 == 0) ? "\r\n" : " ";
    }
    return s;
}

const std::string kHeaders =
    "From: Jose <jose@contoso.example>\r\nTo: bob@example.com\r\nSubject: report\r\n"
    "Date: Thu, 1 Jan 2026 00:00:00 +0000\r\nMessage-ID: <1@contoso.example>\r\n"
    "MIME-Version: 1.0\r\n";

std::string plain_qp_4k() {
    std::string body;
    qp_encode(words(4000, 1) + "\r\n", body);
    return kHeaders +
           "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: "
           "quoted-printable\r\n\r\n" +
           body;
}

std::string outlook_alternative_60k() {
    std::string html = "<html><head><style>p{margin:0}</style></head><body><div>" +
                       words(45000, 2) + "</div></body></html>";
    std::string plain, b64;
    qp_encode(words(12000, 3), plain);
    base64_encode(html, b64);
    return kHeaders +
           "Content-Type: multipart/alternative; boundary=\"_000_outlook_\"\r\n\r\n"
           "--_000_outlook_\r\nContent-Type: text/plain; charset=\"utf-8\"\r\n"
           "Content-Transfer-Encoding: quoted-printable\r\n\r\n" +
           plain +
           "\r\n--_000_outlook_\r\nContent-Type: text/html; charset=\"utf-8\"\r\n"
           "Content-Transfer-Encoding: base64\r\n\r\n" +
           b64 + "\r\n--_000_outlook_--\r\n";
}

std::string with_attachment_5m() {
    std::mt19937 rng(4);
    std::string pdf(5 << 20, '\0');
    for (auto& c : pdf) c = static_cast<char>(rng());
    std::string b64, plain;
    base64_encode(pdf, b64);
    qp_encode(words(2000, 5), plain);
    return kHeaders +
           "Content-Type: multipart/mixed; boundary=\"mix\"\r\n\r\n--mix\r\n"
           "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: "
           "quoted-printable\r\n\r\n" +
           plain +
           "\r\n--mix\r\nContent-Type: application/pdf; name=\"report.pdf\"\r\n"
           "Content-Disposition: attachment; filename=\"report.pdf\"\r\n"
           "Content-Transfer-Encoding: base64\r\n\r\n" +
           b64 + "\r\n--mix--\r\n";
}

std::string big_base64_html(std::size_t n) {
    std::string html = "<html><body>" + words(n, 6) + "</body></html>", b64;
    base64_encode(html, b64);
    return kHeaders +
           "Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
           b64 + "\r\n";
}

void run_inject(benchmark::State& state, const std::string& msg) {
    const auto s = sig();
    const auto o = opts();
    for (auto _ : state) {
        auto r = inject(std::span<const char>(msg.data(), msg.size()), s, o);
        if (!r || r->result != outcome::signed_message) state.SkipWithError("not signed");
        benchmark::DoNotOptimize(r);
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * msg.size()));
}

void BM_inject_plain_qp_4k(benchmark::State& state) {
    static const std::string m = plain_qp_4k();
    run_inject(state, m);
}
void BM_inject_outlook_alternative_60k(benchmark::State& state) {
    static const std::string m = outlook_alternative_60k();
    run_inject(state, m);
}
void BM_inject_attachment_5m(benchmark::State& state) {
    static const std::string m = with_attachment_5m();
    run_inject(state, m);
}
// A 4 MiB signed part: decode, insert, re-encode.
void BM_inject_base64_html_4m(benchmark::State& state) {
    static const std::string m = big_base64_html(3 << 20);
    run_inject(state, m);
}

const std::string& sample(std::size_t n) {
    static const std::string s = words(n, 7);
    return s;
}

void BM_base64_encode(benchmark::State& state) {
    const std::string& in = sample(1 << 20);
    std::string out;
    for (auto _ : state) {
        out.clear();
        base64_encode(in, out);
        benchmark::DoNotOptimize(out.data());
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * in.size()));
}
void BM_base64_decode(benchmark::State& state) {
    std::string enc, out;
    base64_encode(sample(1 << 20), enc);
    for (auto _ : state) {
        out.clear();
        base64_decode(enc, out);
        benchmark::DoNotOptimize(out.data());
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * enc.size()));
}
void BM_qp_encode(benchmark::State& state) {
    const std::string& in = sample(1 << 20);
    std::string out;
    for (auto _ : state) {
        out.clear();
        qp_encode(in, out);
        benchmark::DoNotOptimize(out.data());
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * in.size()));
}
void BM_qp_decode(benchmark::State& state) {
    std::string enc, out;
    qp_encode(sample(1 << 20), enc);
    for (auto _ : state) {
        out.clear();
        qp_decode(enc, out);
        benchmark::DoNotOptimize(out.data());
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * enc.size()));
}

}  // namespace

BENCHMARK(BM_inject_plain_qp_4k);
BENCHMARK(BM_inject_outlook_alternative_60k);
BENCHMARK(BM_inject_attachment_5m);
BENCHMARK(BM_inject_base64_html_4m);
BENCHMARK(BM_base64_encode);
BENCHMARK(BM_base64_decode);
BENCHMARK(BM_qp_encode);
BENCHMARK(BM_qp_decode);

BENCHMARK_MAIN();
