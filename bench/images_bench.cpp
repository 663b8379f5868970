// Signing with an embedded image (Google Benchmark). The image is encoded
// once, when the tenants file is loaded: a message copies its base64 text
// into the output and never encodes it. The figures to compare:
//  - BM_sign_no_image vs BM_sign_image/N: what embedding an N-byte image costs
//    per message (copying ~4/3 N bytes of ready base64, plus the related part);
//  - BM_base64_encode/N: what encoding the image for every message would
//    have cost on top of that.
// (tests/tenants_test.cpp checks that a decision points at the snapshot's
// base64 text rather than a copy or a new encoding.)
#include <sigrelay/mime/codec.hpp>
#include <sigrelay/signing.hpp>
#include <sigrelay/tenants.hpp>

#include <benchmark/benchmark.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>

using namespace sigrelay;

namespace {

// A tenant whose template shows one image of `image_bytes` (a PNG header
// followed by filler), in a scratch folder.
std::shared_ptr<const tenants::snapshot> tenant_with_image(std::size_t image_bytes) {
    namespace fs = std::filesystem;
    const fs::path dir = fs::temp_directory_path() /
                         ("sigrelay-images-bench-" + std::to_string(::getpid()) + "-" + std::to_string(image_bytes));
    fs::create_directories(dir);
    {
        std::ofstream png(dir / "logo.png", std::ios::binary);
        std::string bytes("\x89PNG\r\n\x1a\n", 8);
        for (std::size_t i = 0; bytes.size() < image_bytes; ++i) bytes.push_back(static_cast<char>(i * 131));
        png << bytes;
    }
    std::ofstream(dir / "sig.html") << "<table><tr><td><img src=\"{{img:logo}}\"></td></tr>"
                                       "<tr><td><b>{{display_name}}</b><br>{{title}}</td></tr></table>";
    std::ofstream(dir / "plain.html") << "<table><tr><td><b>{{display_name}}</b><br>{{title}}</td></tr></table>";
    std::ofstream(dir / "sig.txt") << "{{display_name}}\n{{title}}";
    std::ofstream(dir / "users.ndjson") << "{\"email\": \"jose@contoso.example\", \"display_name\": \"Jos\xc3\xa9\", "
                                           "\"title\": \"Sales\"}\n";
    const std::string html = image_bytes ? "sig.html" : "plain.html";
    const std::string json =
        "{\"tenants\": [{\"id\": \"t\", \"domains\": [\"contoso.example\"], \"smart_host\": \"127.0.0.1:25\","
        "\"processed_header\": {\"name\": \"SignatureContoso\", \"value\": \"true\"}," +
        std::string(image_bytes ? "\"images\": {\"logo\": {\"file\": \"logo.png\"}}," : "") +
        "\"templates\": {\"default\": {\"html_file\": \"" + html + "\", \"text_file\": \"sig.txt\"}},"
        "\"rules\": [{\"template\": \"default\"}], \"directory_file\": \"users.ndjson\"}]}";
    auto snap = tenants::snapshot::parse(json, (dir / "tenants.json").string());
    fs::remove_all(dir);
    if (!snap) {
        std::fprintf(stderr, "%s\n", snap.err().message.c_str());
        std::abort();
    }
    return *snap;
}

const std::string kMessage =
    "From: Jose <jose@contoso.example>\r\nTo: bob@example.com\r\nSubject: report\r\nMIME-Version: 1.0\r\n"
    "Content-Type: multipart/alternative; boundary=\"a\"\r\n\r\n"
    "--a\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello Bob, the figures are attached.\r\n"
    "--a\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
    "<html><body><p>Hello Bob, the figures are attached.</p></body></html>\r\n--a--\r\n";

void sign_loop(benchmark::State& state, std::size_t image_bytes) {
    static std::map<std::size_t, std::shared_ptr<const tenants::snapshot>> cache;
    auto& snap = cache[image_bytes];
    if (!snap) snap = tenant_with_image(image_bytes);
    const tenants::tenant& t = snap->all().front();
    relay::envelope env;
    env.sender = "jose@contoso.example";
    env.recipients = {"bob@example.com"};
    env.by_host = "relay.example";
    env.when = 1767225600;
    const auto today = relay::today_utc();
    std::uint64_t n = 0, out_bytes = 0;
    for (auto _ : state) {
        env.queue_id = "Q" + std::to_string(++n);  // a new Content-ID per message
        auto r = relay::sign(t, env, kMessage, today);
        benchmark::DoNotOptimize(r);
        out_bytes += r->injection.size();
    }
    state.counters["out_bytes_per_msg"] = static_cast<double>(out_bytes) / static_cast<double>(n ? n : 1);
    state.SetItemsProcessed(static_cast<std::int64_t>(n));
}

void BM_sign_no_image(benchmark::State& state) { sign_loop(state, 0); }
void BM_sign_image(benchmark::State& state) { sign_loop(state, static_cast<std::size_t>(state.range(0))); }

void BM_base64_encode(benchmark::State& state) {
    std::string in(static_cast<std::size_t>(state.range(0)), 'x');
    std::string out;
    for (auto _ : state) {
        out.clear();
        mime::base64_encode(in, out);
        benchmark::DoNotOptimize(out.data());
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * state.range(0));
}

}  // namespace

BENCHMARK(BM_sign_no_image);
BENCHMARK(BM_sign_image)->Arg(2 << 10)->Arg(20 << 10)->Arg(100 << 10);
BENCHMARK(BM_base64_encode)->Arg(2 << 10)->Arg(20 << 10)->Arg(100 << 10);

BENCHMARK_MAIN();
