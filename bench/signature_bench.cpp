// Signature micro-benchmarks: rendering a typical HTML/text signature (target
// ≤ 200 ns), loading a directory of 1,000,000 users (target ≤ 2 s) and
// looking senders up.
//   meson setup build-rel --buildtype=release && ninja -C build-rel src/signature/signature_bench
//   build-rel/src/signature/signature_bench
#include <sigrelay/signature.hpp>

#include <benchmark/benchmark.h>

#include <unistd.h>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

using namespace sigrelay::signature;

namespace {

const char* const html_source =
    R"(<table role="presentation" cellpadding="0" cellspacing="0" style="font-family:Segoe UI,Arial,sans-serif;font-size:13px;color:#333333;margin-top:12px">
  <tr><td style="padding-bottom:4px"><strong style="font-size:14px;color:#1f3864">{{display_name}}</strong></td></tr>
{{#title}}
  <tr><td>{{title}}{{#department}}, {{department}}{{/department}}</td></tr>
{{/title}}
  <tr><td>Fabrikam, Inc. &middot; One Microsoft Way &middot; Redmond, WA 98052</td></tr>
  <tr><td>{{#phone}}Tel. {{phone}}{{/phone}}{{#mobile}}{{#phone}} &middot; {{/phone}}Mobile {{mobile}}{{/mobile}}</td></tr>
  <tr><td><a href="mailto:{{email}}" style="color:#2e74b5">{{email}}</a> &middot; <a href="https://www.fabrikam.com" style="color:#2e74b5">www.fabrikam.com</a></td></tr>
  <tr><td style="padding-top:8px;font-size:10px;color:#888888">This e-mail may contain confidential information. If you received it by mistake, please tell the sender and delete it.</td></tr>
</table>
)";

const char* const text_source = R"({{display_name}}
{{#title}}
{{title}}{{#department}}, {{department}}{{/department}}
{{/title}}
Fabrikam, Inc. - One Microsoft Way - Redmond, WA 98052
{{#phone}}
Tel. {{phone}}
{{/phone}}
{{#mobile}}
Mobile {{mobile}}
{{/mobile}}
{{email}} - https://www.fabrikam.com

This e-mail may contain confidential information. If you received it by
mistake, please tell the sender and delete it.
)";

std::string user_line(std::size_t i) {
    std::string n = std::to_string(i);
    return "{\"email\": \"user" + n + ".name@fabrikam.com\", \"display_name\": \"User " + n +
           " Name\", \"title\": \"Senior Account Executive\", \"department\": \"Sales & "
           "Marketing\", "
           "\"phone\": \"+1 425 555 " +
           n.substr(0, 4) + "\", \"mobile\": \"+1 206 555 " + n.substr(0, 4) +
           "\", \"office\": \"Redmond B" + std::to_string(i % 40) +
           "\", \"company\": \"Fabrikam, Inc.\"}\n";
}

const directory& small_directory() {
    static directory d = [] {
        std::string s;
        for (std::size_t i = 0; i < 100; ++i) s += user_line(i);
        return std::move(directory::parse(s, "bench").value());
    }();
    return d;
}

// One NDJSON file with a million users, written once per process.
const std::string& million_file() {
    static std::string path = [] {
        char tmpl[] = "/tmp/sigrelay-bench-XXXXXX";
        int fd = mkstemp(tmpl);
        if (fd < 0) std::abort();
        close(fd);
        std::ofstream out(tmpl, std::ios::binary);
        std::string chunk;
        for (std::size_t i = 0; i < 1000000; ++i) {
            chunk += user_line(i);
            if (chunk.size() > (1 << 20)) {
                out << chunk;
                chunk.clear();
            }
        }
        out << chunk;
        std::atexit([] { std::remove(million_file().c_str()); });
        return std::string(tmpl);
    }();
    return path;
}

const directory& million_directory() {
    static directory d = std::move(directory::load(million_file()).value());
    return d;
}

void render_bench(benchmark::State& state, const char* src, escape mode) {
    auto t = compiled_template::compile(src, mode).value();
    const directory& d = small_directory();
    binding b(t, d);
    user_id u = *d.find("user42.name@fabrikam.com");
    std::string out;
    out.reserve(4096);
    for (auto _ : state) {
        out.clear();
        b.render(t, d, u, out);
        benchmark::DoNotOptimize(out.data());
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * out.size()));
}

void BM_render_html(benchmark::State& state) {
    render_bench(state, html_source, escape::html);
}
void BM_render_text(benchmark::State& state) {
    render_bench(state, text_source, escape::text);
}

void BM_compile_html(benchmark::State& state) {
    for (auto _ : state)
        benchmark::DoNotOptimize(compiled_template::compile(html_source, escape::html));
}

void BM_directory_load_1m(benchmark::State& state) {
    const std::string& path = million_file();
    std::size_t users = 0, bytes = 0;
    for (auto _ : state) {
        auto d = directory::load(path);
        if (!d) state.SkipWithError(d.err().message.c_str());
        users = d->size();
        bytes = d->memory_bytes();
    }
    state.counters["users"] = static_cast<double>(users);
    state.counters["MiB_held"] = static_cast<double>(bytes) / (1 << 20);
}

void BM_lookup_1m(benchmark::State& state) {
    const directory& d = million_directory();
    std::vector<std::string> keys;
    for (std::size_t i = 0; i < 4096; ++i)
        keys.push_back("User" + std::to_string((i * 7919) % 1000000) + ".Name@Fabrikam.COM");
    std::size_t i = 0, found = 0;
    for (auto _ : state) {
        auto u = d.find(keys[i++ & 4095]);
        found += u.has_value();
        benchmark::DoNotOptimize(u);
    }
    if (static_cast<std::int64_t>(found) != state.iterations())
        state.SkipWithError("lookup missed");
}

void BM_lookup_miss_1m(benchmark::State& state) {
    const directory& d = million_directory();
    for (auto _ : state) benchmark::DoNotOptimize(d.find("nobody.here@fabrikam.com"));
}

}  // namespace

BENCHMARK(BM_render_html);
BENCHMARK(BM_render_text);
BENCHMARK(BM_compile_html);
BENCHMARK(BM_directory_load_1m)->Unit(benchmark::kMillisecond)->Iterations(3);
BENCHMARK(BM_lookup_1m);
BENCHMARK(BM_lookup_miss_1m);

BENCHMARK_MAIN();
