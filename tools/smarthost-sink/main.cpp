// smarthost-sink: the stand-in for Exchange Online's smart host in tests,
// benchmarks and quickstart. Same runtime, TLS engine and SMTP session as the
// relay; it accepts (or fails, on request) every message and can save each one
// byte-exact.
#include <sigrelay/cli.hpp>
#include <sigrelay/inbound.hpp>
#include <sigrelay/runtime.hpp>
#include <sigrelay/smtp.hpp>
#include <sigrelay/tls.hpp>
#include <sigrelay/transport.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

namespace {

using namespace sigrelay;
using namespace std::chrono_literals;

struct options {
    std::string listen = "127.0.0.1:2526";
    inbound::tls_flags tls;
    std::string save_dir;
    double fail_rate = 0;
    int fail_code = 451;
    double disconnect_rate = 0;
    unsigned delay_ms = 0;
    bool json = false;
    unsigned threads = 1;
    std::string hostname = "sink.localhost";
    bool quiet = false;
    inbound::server_flags server;
};

// Counters of one shard; summed after the shards have stopped.
struct counters {
    // From the inbound listener (summed at exit): connections, TLS, messages, bytes.
    std::uint64_t connections = 0, tls_handshakes = 0, tls_failures = 0, messages = 0, bytes = 0;
    std::uint64_t accepted = 0, failed = 0, disconnects = 0;
    std::uint64_t recipients = 0, saved = 0, save_errors = 0;
};

struct shard_state {
    const options* opt = nullptr;
    unsigned shard = 0;
    std::optional<tls::context> tls;
    std::unique_ptr<inbound::listener> listener;
    counters count;
    std::mt19937_64 rng{std::random_device{}()};
    std::uint64_t saved_seq = 0;

    bool roll(double rate) {
        if (rate <= 0) return false;
        return std::uniform_real_distribution<double>(0, 1)(rng) < rate;
    }
};

// The sink's side of each transaction: accept (or fail on request), count,
// and save the content byte-exact.
class sink_transaction final : public inbound::transaction_handler {
public:
    explicit sink_transaction(shard_state& st) : st_(st) {}

    void on_mail(inbound::session& s, const smtp::mail_command&) override {
        message_.clear();
        s.answer({250, "2.1.0", "Sender OK"});
    }
    void on_rcpt(inbound::session& s, const smtp::rcpt_command&) override {
        ++st_.count.recipients;
        s.answer({250, "2.1.5", "Recipient OK"});
    }
    void on_content(inbound::session&, std::span<const char> bytes) override {
        if (!st_.opt->save_dir.empty()) message_.append(bytes.data(), bytes.size());
    }
    void on_message(inbound::session& s) override {
        if (st_.roll(st_.opt->disconnect_rate)) {
            ++st_.count.disconnects;
            s.stream().abort();
            return;
        }
        if (st_.opt->delay_ms == 0) {
            finish(s);
            return;
        }
        std::weak_ptr<void> alive = s.alive();
        s.reactor().after(std::chrono::milliseconds(st_.opt->delay_ms), [this, &s, alive] {
            if (alive.expired()) return;
            finish(s);
        });
    }
    void on_reset(inbound::session&) override { message_.clear(); }

private:
    void finish(inbound::session& s) {
        if (st_.roll(st_.opt->fail_rate)) {
            ++st_.count.failed;
            int code = st_.opt->fail_code;
            s.answer({code, code >= 500 ? "5.3.0" : "4.3.0", "Simulated failure (--fail-rate)"});
            return;
        }
        if (!st_.opt->save_dir.empty() && !save(s)) {
            s.answer({451, "4.3.0", "Could not save the message"});
            return;
        }
        ++st_.count.accepted;
        s.answer({250, "2.0.0", "OK queued as sink-" + std::to_string(st_.shard) + "-" +
                                    std::to_string(st_.count.accepted)});
    }

    // One file per message, exactly the content received; written under a
    // temporary name and renamed so a reader never sees a partial file.
    bool save(inbound::session& s) {
        auto now = std::chrono::system_clock::now().time_since_epoch();
        std::string name = std::to_string(std::chrono::duration_cast<std::chrono::microseconds>(now).count()) +
                           "-" + std::to_string(st_.shard) + "-" + std::to_string(++st_.saved_seq) + ".eml";
        const std::string& dir = st_.opt->save_dir;
        std::string tmp = dir + "/." + name + ".tmp", final_path = dir + "/" + name;
        int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0) {
            ++st_.count.save_errors;
            s.log("cannot write " + tmp);
            return false;
        }
        std::size_t off = 0;
        while (off < message_.size()) {
            ssize_t n = ::write(fd, message_.data() + off, message_.size() - off);
            if (n <= 0) break;
            off += static_cast<std::size_t>(n);
        }
        bool ok = off == message_.size();
        ok = (::close(fd) == 0) && ok;
        ok = ok && ::rename(tmp.c_str(), final_path.c_str()) == 0;
        if (!ok) {
            ++st_.count.save_errors;
            s.log("cannot write " + final_path);
            ::unlink(tmp.c_str());
            return false;
        }
        ++st_.count.saved;
        message_.clear();
        return true;
    }

    shard_state& st_;
    std::string message_;
};

std::string json_counters(const counters& c, double seconds) {
    char buf[1024];
    std::snprintf(buf, sizeof buf,
                  "{\"connections\": %llu, \"tls_handshakes\": %llu, \"tls_failures\": %llu, "
                  "\"messages\": %llu, \"accepted\": %llu, \"failed\": %llu, \"disconnects\": %llu, "
                  "\"recipients\": %llu, \"bytes\": %llu, \"saved\": %llu, \"save_errors\": %llu, "
                  "\"seconds\": %.3f}",
                  (unsigned long long)c.connections, (unsigned long long)c.tls_handshakes,
                  (unsigned long long)c.tls_failures, (unsigned long long)c.messages,
                  (unsigned long long)c.accepted, (unsigned long long)c.failed,
                  (unsigned long long)c.disconnects, (unsigned long long)c.recipients,
                  (unsigned long long)c.bytes, (unsigned long long)c.saved,
                  (unsigned long long)c.save_errors, seconds);
    return buf;
}

}  // namespace

int main(int argc, char** argv) {
    options o;
    cli::parser p("smarthost-sink",
                  "Stand-in for Exchange Online's smart host: accepts mail over SMTP/STARTTLS,\n"
                  "optionally requiring the tenant's client certificate, and saves or counts it.");
    p.add("--listen", &o.listen, "HOST:PORT to listen on (default 127.0.0.1:2526)");
    o.tls.add_to(p, "certificate chain (PEM) for STARTTLS");
    p.add("--save-dir", &o.save_dir, "write each message, byte-exact, to a file in DIR");
    p.add("--fail-rate", &o.fail_rate, "fraction 0..1 of messages answered with --fail-code");
    p.add("--fail-code", &o.fail_code, "reply code for simulated failures (default 451)");
    p.add("--disconnect-rate", &o.disconnect_rate, "fraction 0..1 of messages answered by disconnecting");
    p.add("--delay-ms", &o.delay_ms, "delay before answering the end of each message");
    p.add("--threads", &o.threads, "shards (default 1; 0 = one per CPU)");
    p.add("--hostname", &o.hostname, "name in the greeting (default sink.localhost)");
    o.server.add_to(p);
    p.add_bool("--json", &o.json, "print counters as one JSON object on exit");
    p.add_bool("--quiet", &o.quiet, "no per-connection log lines");
    if (auto r = p.parse(argc, argv); !r) {
        std::fprintf(stderr, "smarthost-sink: %s\n", r.err().message.c_str());
        return 64;
    }
    if (p.help_requested()) {
        std::fputs(p.requested_help().c_str(), stdout);
        return 0;
    }
    if (auto r = o.tls.validate(); !r) {
        std::fprintf(stderr, "smarthost-sink: %s\n", r.err().message.c_str());
        return 64;
    }
    if (!o.save_dir.empty()) {
        std::error_code ec;
        std::filesystem::create_directories(o.save_dir, ec);
        if (ec) {
            std::fprintf(stderr, "smarthost-sink: --save-dir %s: %s\n", o.save_dir.c_str(), ec.message().c_str());
            return 73;
        }
    }
    if (auto r = runtime::probe_kernel(); !r) {
        std::fprintf(stderr, "smarthost-sink: %s\n", r.err().message.c_str());
        return 71;
    }
    auto addr = runtime::socket_address::parse(o.listen);
    if (!addr) {
        std::fprintf(stderr, "smarthost-sink: --listen %s: %s\n", o.listen.c_str(), addr.err().message.c_str());
        return 64;
    }

    inbound::server_options io;
    io.smtp.hostname = o.hostname;
    io.smtp.greeting_text = "ESMTP smarthost-sink";
    io.smtp.advertise_xoorg = false;
    io.smtp.require_tls = !o.tls.require_client_cert.empty();
    if (auto r = o.server.apply(io); !r) {
        std::fprintf(stderr, "smarthost-sink: %s\n", r.err().message.c_str());
        return 64;
    }
    if (o.server.min_data_rate) io.rate_window = std::chrono::seconds(2);
    io.log_prefix = "smarthost-sink";
    io.quiet = o.quiet;
    inbound::ip_table ips;

    runtime::shard_options so;
    so.threads = o.threads;
    so.drain_timeout = 10s;
    runtime::shard_group group(so);
    std::vector<std::unique_ptr<shard_state>> states(group.size());
    for (unsigned i = 0; i < group.size(); ++i) {
        auto st = std::make_unique<shard_state>();
        st->opt = &o;
        st->shard = i;
        if (o.tls.enabled()) {
            auto ctx = o.tls.make_context();
            if (!ctx) {
                std::fprintf(stderr, "smarthost-sink: TLS: %s\n", ctx.err().message.c_str());
                return 78;
            }
            st->tls.emplace(std::move(ctx).value());
        }
        shard_state* raw = st.get();
        st->listener = std::make_unique<inbound::listener>(
            io, ips, st->tls ? &*st->tls : nullptr,
            [raw](inbound::session&) { return std::make_unique<sink_transaction>(*raw); });
        states[i] = std::move(st);
    }

    runtime::shard_group::block_signals();
    auto started = group.start([&](runtime::reactor& r, unsigned shard) -> result<void> {
        return r.listen(*addr, states[shard]->listener->accept());
    });
    if (!started) {
        std::fprintf(stderr, "smarthost-sink: %s\n", started.err().message.c_str());
        return 71;
    }
    auto t0 = std::chrono::steady_clock::now();
    if (!o.quiet)
        std::fprintf(stderr, "smarthost-sink: listening on %s (%u shard%s%s%s)\n", addr->to_string().c_str(),
                     group.size(), group.size() == 1 ? "" : "s", !o.tls.enabled() ? "" : ", STARTTLS",
                     o.tls.require_client_cert.empty() ? "" : (", client certificate " + o.tls.require_client_cert).c_str());
    int rc = group.run_until_signal();
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    counters total;
    for (auto& st : states) {
        const counters& c = st->count;
        total.connections += st->listener->stats().connections;
        total.tls_handshakes += st->listener->stats().tls_handshakes;
        total.tls_failures += st->listener->stats().tls_failures;
        total.messages += st->listener->stats().messages;
        total.bytes += st->listener->stats().content_bytes;
        total.accepted += c.accepted;
        total.failed += c.failed; total.disconnects += c.disconnects; total.recipients += c.recipients;
        total.saved += c.saved; total.save_errors += c.save_errors;
    }
    if (o.json) std::printf("%s\n", json_counters(total, secs).c_str());
    else if (!o.quiet)
        std::fprintf(stderr, "smarthost-sink: %llu messages accepted of %llu, %llu connections\n",
                     (unsigned long long)total.accepted, (unsigned long long)total.messages,
                     (unsigned long long)total.connections);
    return rc;
}
