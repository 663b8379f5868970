// SMTP server session throughput (Google Benchmark): a 5 MiB DATA
// transaction fed in 16 KiB socket-sized chunks (the DATA reader's hot path),
// and a small 4 KiB message end to end, one session per iteration.
#include <sigrelay/smtp.hpp>

#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <string_view>

using namespace sigrelay::smtp;

namespace {

// Answers every decision at once and keeps a cheap digest of the content so
// the work cannot be optimised away.
struct sink : session_events {
    server_session* s = nullptr;
    std::uint64_t bytes = 0;
    std::uint64_t digest = 0;
    std::uint64_t messages = 0;

    void send(std::string_view r) override { digest += r.size(); }
    void start_tls() override {}
    void on_mail(const mail_command&) override { s->answer({250, "2.1.0", "Ok"}); }
    void on_rcpt(const rcpt_command&) override { s->answer({250, "2.1.5", "Ok"}); }
    void on_content(std::span<const char> b) override {
        bytes += b.size();
        digest += static_cast<unsigned char>(b.back());
    }
    void on_message() override {
        ++messages;
        s->answer({250, "2.0.0", "Ok: queued"});
    }
    void on_close() override {}
};

server_config bench_config() {
    server_config c;
    c.hostname = "mx.bench";
    c.require_tls = false;
    return c;
}

// DATA content: 76-character lines of printable text (like base64 or
// quoted-printable bodies), about one line in 40 starting with a dot (sent
// stuffed), then the end-of-data marker.
std::string message(std::size_t size, unsigned seed) {
    static constexpr std::string_view alphabet =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/ ";
    std::mt19937 rng(seed);
    std::string m =
        "From: a@bench.example\r\nTo: b@bench.example\r\nSubject: bench\r\n"
        "Message-ID: <1@bench.example>\r\n\r\n";
    while (m.size() < size) {
        if (rng() % 40 == 0) m += "..";  // a line starting with a dot, stuffed
        for (int i = 0; i < 76; ++i) m += alphabet[rng() % alphabet.size()];
        m += "\r\n";
    }
    return m + ".\r\n";
}

void feed(server_session& s, std::string_view bytes) { s.feed(std::span(bytes.data(), bytes.size())); }

// EHLO and DATA must each end a pipelined group (RFC 2920 §3.1).
constexpr std::string_view kEhlo = "EHLO client.bench.example\r\n";
constexpr std::string_view kEnvelope =
    "MAIL FROM:<a@bench.example>\r\nRCPT TO:<b@bench.example>\r\nDATA\r\n";

void BM_data_5mib(benchmark::State& state) {
    const std::string msg = message(5u << 20, 1);
    const std::size_t chunk = 16 * 1024;
    const server_config cfg = bench_config();
    std::uint64_t total = 0;
    for (auto _ : state) {
        sink ev;
        server_session s(cfg, ev);
        ev.s = &s;
        s.greet();
        feed(s, kEhlo);
        feed(s, kEnvelope);
        for (std::size_t off = 0; off < msg.size(); off += chunk)
            feed(s, std::string_view(msg).substr(off, chunk));
        if (ev.messages != 1) state.SkipWithError("message not accepted");
        total += msg.size();
        benchmark::DoNotOptimize(ev.digest);
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(total));
}
BENCHMARK(BM_data_5mib)->Unit(benchmark::kMillisecond);

void BM_session_4k(benchmark::State& state) {
    const std::string msg = message(4096, 2);
    const server_config cfg = bench_config();
    std::uint64_t total = 0;
    for (auto _ : state) {
        sink ev;
        server_session s(cfg, ev);
        ev.s = &s;
        s.greet();
        feed(s, kEhlo);
        feed(s, kEnvelope);
        feed(s, msg);
        feed(s, "QUIT\r\n");
        if (ev.messages != 1) state.SkipWithError("message not accepted");
        total += msg.size();
        benchmark::DoNotOptimize(ev.digest);
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(total));
}
BENCHMARK(BM_session_4k);

}  // namespace

BENCHMARK_MAIN();
