// smtp-blaster: a load generator for SMTP servers, on the same runtime, TLS
// engine and SMTP client session as the relay's outbound leg. Prints
// messages/s, MB/s, latency percentiles and replies by code.
#include <sigrelay/cli.hpp>
#include <sigrelay/runtime.hpp>
#include <sigrelay/smtp_client.hpp>
#include <sigrelay/text.hpp>
#include <sigrelay/tls.hpp>
#include <sigrelay/transport.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

namespace {

using namespace sigrelay;
using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

struct options {
    std::string target;
    unsigned connections = 10;
    std::uint64_t messages = 1000;
    std::uint64_t size = 4096;
    std::string corpus;
    std::string from = "alice@fabrikam.com";
    std::vector<std::string> to;
    bool starttls = false;
    std::string ca, client_cert, client_key, tls_name;
    bool chunking = false;
    double rate = 0;
    double duration = 0;
    std::uint64_t new_connection_every = 0;
    bool json = false;
    unsigned threads = 1;
    std::string helo = "blaster.localhost";
    std::string message_log;
};

// What every shard shares: the messages left to send, the deadline.
struct shared_state {
    std::atomic<std::int64_t> remaining{0};
    clock_type::time_point deadline = clock_type::time_point::max();
    bool claim() {
        if (clock_type::now() >= deadline) return false;
        return remaining.fetch_sub(1, std::memory_order_relaxed) > 0;
    }
};

struct shard_stats {
    std::uint64_t sent = 0, accepted = 0, bytes = 0, errors = 0, connections = 0;
    std::map<int, std::uint64_t> replies;
    std::vector<std::uint32_t> latency_us;
    // --message-log: "<id> <code>" per message sent, written after the run so
    // that shards never contend for the file.
    std::vector<std::string> outcomes;
};

struct shard_ctx;

class blaster_connection final : public transport::stream_events, public smtp::client_events {
public:
    blaster_connection(shard_ctx& sh, unsigned slot);
    void start();

    // transport::stream_events
    void on_connected(transport::stream&, int err) override;
    void on_plain(transport::stream&, std::span<const char> b) override { client_->feed(b); }
    void on_tls_ready(transport::stream&) override { client_->tls_started(); }
    void on_closed(transport::stream&, int err, const std::string& tls_error) override;
    void on_shutdown(transport::stream& s) override { s.close(); }

    // smtp::client_events
    void send(std::string_view b) override { stream_->write(b); }
    void start_tls() override;
    void on_ready(const smtp::server_capabilities&) override { next(); }
    void on_reply(smtp::command_kind k, const smtp::reply& r) override;
    void on_failure(const smtp::reply& r) override;

private:
    void next();
    void send_message();
    void finish_message(int code);
    // The one place a sent message's outcome is counted: its reply code, or 0
    // when the connection was lost before the reply.
    void record_outcome(int code);
    // One connection that fails counts as one error, however many of its
    // callbacks (connect, TLS, session, close) see the failure.
    void count_error();

    shard_ctx& sh_;
    unsigned slot_;
    std::unique_ptr<transport::stream> stream_;
    std::optional<smtp::client_session> client_;
    clock_type::time_point started_{};
    bool in_message_ = false;
    // in_message_ is set while a --rate slot is only reserved; this one only
    // once the message went out, so a connection lost while waiting for its
    // slot does not count a message it never sent.
    bool message_sent_ = false;
    bool quitting_ = false;
    bool failed_ = false;  // this connection's error is counted already
    int first_error_code_ = 0;
    unsigned rcpt_ok_ = 0;
    std::uint64_t on_this_connection_ = 0;
    std::size_t content_index_ = 0;
    std::string message_id_;  // --message-log: X-Blaster-Id of the message in flight
    std::string message_;     // --message-log: the content with that header; data() needs it to live on
};

struct shard_ctx {
    const options* opt;
    shared_state* shared;
    runtime::reactor* reactor = nullptr;
    runtime::socket_address target;
    std::optional<tls::context> tls;
    const std::vector<std::string>* contents;
    smtp::client_config client_cfg;
    shard_stats stats;
    unsigned live = 0;
    unsigned slots = 0;
    double rate = 0;  // this shard's share, messages/s
    clock_type::time_point next_slot = clock_type::now();
    std::size_t content_cursor = 0;
    unsigned index = 0;
    std::uint64_t id_seq = 0;
    std::vector<std::unique_ptr<blaster_connection>> conns;

    void connection_done() {
        if (--live == 0) reactor->stop(0ms);
    }
};

blaster_connection::blaster_connection(shard_ctx& sh, unsigned slot) : sh_(sh), slot_(slot) {}

void blaster_connection::count_error() {
    if (failed_) return;
    failed_ = true;
    ++sh_.stats.errors;
}

void blaster_connection::start() {
    ++sh_.live;
    ++sh_.stats.connections;
    quitting_ = false;
    failed_ = false;
    in_message_ = false;
    message_sent_ = false;
    on_this_connection_ = 0;
    client_.emplace(sh_.client_cfg, *this);
    auto c = sh_.reactor->connect(sh_.target, nullptr, 10s);
    if (!c) {
        ++sh_.stats.errors;
        sh_.connection_done();
        return;
    }
    stream_ = std::make_unique<transport::stream>(**c, *this);
}

void blaster_connection::on_connected(transport::stream&, int err) {
    if (err < 0) count_error();
}

void blaster_connection::start_tls() {
    std::string name = sh_.opt->tls_name.empty() ? sh_.target.ip_string() : sh_.opt->tls_name;
    auto r = stream_->start_tls_client(*sh_.tls, sh_.opt->tls_name, name);
    if (!r) {
        count_error();
        stream_->abort();
    }
}

void blaster_connection::next() {
    if (quitting_) return;
    if (sh_.opt->new_connection_every && on_this_connection_ >= sh_.opt->new_connection_every) {
        quitting_ = true;
        client_->quit();
        return;
    }
    if (!sh_.shared->claim()) {
        quitting_ = true;
        client_->quit();
        return;
    }
    if (sh_.rate > 0) {
        // Pace the shard: each message takes the next free slot of 1/rate s.
        auto now = clock_type::now();
        auto step = std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(1.0 / sh_.rate));
        sh_.next_slot = std::max(sh_.next_slot + step, now);
        if (sh_.next_slot > now) {
            auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(sh_.next_slot - now);
            in_message_ = true;  // reserved
            sh_.reactor->after(wait, [this] { send_message(); });
            return;
        }
    }
    in_message_ = true;
    send_message();
}

void blaster_connection::send_message() {
    if (!client_ || client_->failed()) return;
    started_ = clock_type::now();
    first_error_code_ = 0;
    rcpt_ok_ = 0;
    ++on_this_connection_;
    ++sh_.stats.sent;
    content_index_ = sh_.content_cursor++ % sh_.contents->size();
    message_sent_ = true;
    std::string_view content = (*sh_.contents)[content_index_];
    if (!sh_.opt->message_log.empty()) {
        // Unique across runs and shards, so a test can find each message at
        // the receiving end and match it to its reply here.
        message_id_ = "b" + std::to_string(::getpid()) + "-" + std::to_string(sh_.index) + "-" +
                      std::to_string(++sh_.id_seq);
        message_ = "X-Blaster-Id: " + message_id_ + "\r\n";
        message_ += content;
        content = message_;
    }
    client_->mail(sh_.opt->from);
    for (const auto& rcpt : sh_.opt->to) client_->rcpt(rcpt);
    client_->data(content);
}

void blaster_connection::on_reply(smtp::command_kind k, const smtp::reply& r) {
    switch (k) {
        case smtp::command_kind::mail:
            if (r.code >= 300 && !first_error_code_) first_error_code_ = r.code;
            return;
        case smtp::command_kind::rcpt:
            if (r.code < 300) ++rcpt_ok_;
            else if (!first_error_code_) first_error_code_ = r.code;
            return;
        case smtp::command_kind::data:
            // The message's outcome is the reply to its content, unless MAIL
            // or every RCPT failed first (the data reply is then a 503/554).
            finish_message(r.code < 300 ? r.code : (first_error_code_ && !rcpt_ok_ ? first_error_code_ : r.code));
            return;
        case smtp::command_kind::quit:
            stream_->close();
            return;
        default:
            return;
    }
}

void blaster_connection::record_outcome(int code) {
    in_message_ = false;
    if (!message_sent_) return;
    message_sent_ = false;
    ++sh_.stats.replies[code];
    if (!sh_.opt->message_log.empty()) sh_.stats.outcomes.push_back(message_id_ + " " + std::to_string(code));
}

void blaster_connection::finish_message(int code) {
    record_outcome(code);
    if (code >= 200 && code < 300) {
        ++sh_.stats.accepted;
        sh_.stats.bytes += (*sh_.contents)[content_index_].size();
        auto us = std::chrono::duration_cast<std::chrono::microseconds>(clock_type::now() - started_).count();
        sh_.stats.latency_us.push_back(static_cast<std::uint32_t>(std::min<long long>(us, UINT32_MAX)));
    }
    next();
}

void blaster_connection::on_failure(const smtp::reply& r) {
    count_error();
    if (in_message_) record_outcome(r.code);
    if (stream_) stream_->abort();
}

void blaster_connection::on_closed(transport::stream&, int err, const std::string& tls_error) {
    if (!tls_error.empty() || (err < 0 && !quitting_)) count_error();
    if (in_message_) record_outcome(0);  // lost: no reply
    bool again = quitting_ && sh_.opt->new_connection_every &&
                 on_this_connection_ >= sh_.opt->new_connection_every &&
                 sh_.shared->remaining.load(std::memory_order_relaxed) > 0 && clock_type::now() < sh_.shared->deadline;
    // This runs inside the stream's own last callback: the stream may be
    // destroyed here as long as nothing touches it after we return.
    auto dead = std::move(stream_);
    client_.reset();
    if (again) start();  // before connection_done(), so the shard stays up
    sh_.connection_done();
}

std::string generate_message(const options& o, std::uint64_t size) {
    std::string m = "From: Blaster <" + o.from + ">\r\nTo: <" + o.to.front() +
                    ">\r\nSubject: smtp-blaster test message\r\nMessage-ID: <blaster@localhost>\r\n"
                    "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n";
    const std::string line = "The quick brown fox jumps over the lazy dog; 0123456789 abcdefghijklmnop.\r\n";
    while (m.size() + line.size() <= size) m += line;
    if (m.size() < size) m += std::string(size - m.size() > 2 ? size - m.size() - 2 : 0, 'x') + "\r\n";
    return m;
}


double percentile(const std::vector<std::uint32_t>& sorted, double p) {
    if (sorted.empty()) return 0;
    std::size_t i = static_cast<std::size_t>(p * static_cast<double>(sorted.size() - 1) + 0.5);
    return sorted[std::min(i, sorted.size() - 1)] / 1000.0;
}

}  // namespace

int main(int argc, char** argv) {
    options o;
    cli::parser p("smtp-blaster", "Load generator for SMTP servers (loopback benchmarks of sigrelay).");
    p.add("--target", &o.target, "HOST:PORT of the server");
    p.add("--connections", &o.connections, "concurrent connections (default 10)");
    p.add("--messages", &o.messages, "messages to send in all (default 1000; 0 with --duration: unlimited)");
    p.add("--size", &o.size, "generated message size in bytes (default 4096)");
    p.add("--corpus", &o.corpus, "send the files of DIR (LF made CRLF) in turn instead");
    p.add("--from", &o.from, "envelope sender (default alice@fabrikam.com)");
    p.add("--to", &o.to, "envelope recipient (repeatable; default bob@example.net)");
    p.add_bool("--starttls", &o.starttls, "require STARTTLS");
    p.add("--ca", &o.ca, "verify the server certificate against this CA (else not verified)");
    p.add("--client-cert", &o.client_cert, "client certificate (PEM)");
    p.add("--client-key", &o.client_key, "client key (PEM)");
    p.add("--tls-name", &o.tls_name, "SNI and the name to verify (default: the target's address)");
    p.add_bool("--chunking", &o.chunking, "use BDAT when the server offers CHUNKING");
    p.add("--rate", &o.rate, "messages per second in all (default: as fast as possible)");
    p.add("--duration", &o.duration, "stop starting messages after S seconds");
    p.add("--new-connection-every", &o.new_connection_every, "reconnect after N messages per connection");
    p.add("--threads", &o.threads, "shards (default 1)");
    p.add("--helo", &o.helo, "EHLO name");
    p.add_bool("--json", &o.json, "print one JSON object");
    p.add("--message-log", &o.message_log,
          "give each message an X-Blaster-Id: header and write \"<id> <reply code>\" per message to FILE "
          "(0: connection lost before the reply)");
    if (auto r = p.parse(argc, argv); !r) {
        std::fprintf(stderr, "smtp-blaster: %s\n", r.err().message.c_str());
        return 64;
    }
    if (p.help_requested()) {
        std::fputs(p.requested_help().c_str(), stdout);
        return 0;
    }
    if (o.target.empty()) {
        std::fprintf(stderr, "smtp-blaster: --target HOST:PORT is required\n");
        return 64;
    }
    if (o.to.empty()) o.to.push_back("bob@example.net");
    if (o.messages == 0 && o.duration <= 0) {
        std::fprintf(stderr, "smtp-blaster: --messages 0 needs --duration\n");
        return 64;
    }
    if (o.connections == 0) o.connections = 1;
    auto target = runtime::socket_address::parse(o.target);
    if (!target) {
        std::fprintf(stderr, "smtp-blaster: --target %s: %s\n", o.target.c_str(), target.err().message.c_str());
        return 64;
    }
    if (auto r = runtime::probe_kernel(); !r) {
        std::fprintf(stderr, "smtp-blaster: %s\n", r.err().message.c_str());
        return 71;
    }

    std::vector<std::string> contents;
    if (!o.corpus.empty()) {
        std::error_code ec;
        for (auto& e : std::filesystem::recursive_directory_iterator(o.corpus, ec)) {
            if (!e.is_regular_file()) continue;
            std::ifstream f(e.path(), std::ios::binary);
            std::stringstream ss;
            ss << f.rdbuf();
            contents.push_back(text::to_crlf(ss.str()));
        }
        if (contents.empty()) {
            std::fprintf(stderr, "smtp-blaster: --corpus %s: no files\n", o.corpus.c_str());
            return 66;
        }
        std::sort(contents.begin(), contents.end());
    } else {
        contents.push_back(generate_message(o, o.size));
    }

    shared_state shared;
    shared.remaining = o.messages ? static_cast<std::int64_t>(o.messages) : INT64_MAX;
    runtime::shard_options so;
    so.threads = std::max(1u, std::min(o.threads, o.connections));
    so.pin = false;
    so.drain_timeout = 5s;
    runtime::shard_group group(so);
    std::vector<std::unique_ptr<shard_ctx>> shards;
    for (unsigned i = 0; i < group.size(); ++i) {
        auto sh = std::make_unique<shard_ctx>();
        sh->opt = &o;
        sh->index = i;
        sh->shared = &shared;
        sh->target = *target;
        sh->contents = &contents;
        sh->client_cfg.helo_name = o.helo;
        sh->client_cfg.tls = o.starttls ? smtp::tls_mode::required : smtp::tls_mode::none;
        sh->client_cfg.use_chunking = o.chunking;
        sh->slots = o.connections / group.size() + (i < o.connections % group.size() ? 1 : 0);
        sh->rate = o.rate > 0 ? o.rate / group.size() : 0;
        if (o.starttls) {
            tls::client_options co;
            co.ca_file = o.ca;
            co.verify_peer = !o.ca.empty();
            co.cert_file = o.client_cert;
            co.key_file = o.client_key;
            auto ctx = tls::context::client(co);
            if (!ctx) {
                std::fprintf(stderr, "smtp-blaster: TLS: %s\n", ctx.err().message.c_str());
                return 78;
            }
            sh->tls.emplace(std::move(ctx).value());
        }
        shards.push_back(std::move(sh));
    }

    auto t0 = clock_type::now();
    if (o.duration > 0)
        shared.deadline = t0 + std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(o.duration));
    auto started = group.start([&](runtime::reactor& r, unsigned i) -> result<void> {
        shard_ctx& sh = *shards[i];
        sh.reactor = &r;
        r.post([&sh] {
            for (unsigned s = 0; s < sh.slots; ++s) {
                sh.conns.push_back(std::make_unique<blaster_connection>(sh, s));
                sh.conns.back()->start();
            }
            if (sh.live == 0) sh.reactor->stop(0ms);
        });
        return {};
    });
    if (!started) {
        std::fprintf(stderr, "smtp-blaster: %s\n", started.err().message.c_str());
        return 71;
    }
    group.wait();
    double secs = std::chrono::duration<double>(clock_type::now() - t0).count();

    shard_stats total;
    for (auto& sh : shards) {
        total.sent += sh->stats.sent;
        total.accepted += sh->stats.accepted;
        total.bytes += sh->stats.bytes;
        total.errors += sh->stats.errors;
        total.connections += sh->stats.connections;
        for (auto& [code, n] : sh->stats.replies) total.replies[code] += n;
        total.latency_us.insert(total.latency_us.end(), sh->stats.latency_us.begin(), sh->stats.latency_us.end());
    }
    std::sort(total.latency_us.begin(), total.latency_us.end());
    if (!o.message_log.empty()) {
        std::ofstream f(o.message_log, std::ios::trunc);
        for (auto& sh : shards)
            for (const auto& line : sh->stats.outcomes) f << line << '\n';
        f.flush();
        if (!f) {
            std::fprintf(stderr, "smtp-blaster: --message-log %s: cannot write\n", o.message_log.c_str());
            return 73;
        }
    }
    double mps = secs > 0 ? total.accepted / secs : 0;
    double mbps = secs > 0 ? total.bytes / secs / 1e6 : 0;
    double p50 = percentile(total.latency_us, 0.50), p90 = percentile(total.latency_us, 0.90);
    double p99 = percentile(total.latency_us, 0.99), p999 = percentile(total.latency_us, 0.999);
    std::string replies;
    for (auto& [code, n] : total.replies) {
        if (!replies.empty()) replies += ", ";
        replies += "\"" + std::to_string(code) + "\": " + std::to_string(n);
    }
    if (o.json) {
        std::printf("{\"messages\": %llu, \"accepted\": %llu, \"seconds\": %.3f, \"messages_per_second\": %.1f, "
                    "\"mb_per_second\": %.2f, \"latency_ms\": {\"p50\": %.3f, \"p90\": %.3f, \"p99\": %.3f, "
                    "\"p999\": %.3f}, \"replies\": {%s}, \"errors\": %llu, \"connections\": %llu}\n",
                    (unsigned long long)total.sent, (unsigned long long)total.accepted, secs, mps, mbps, p50, p90,
                    p99, p999, replies.c_str(), (unsigned long long)total.errors,
                    (unsigned long long)total.connections);
    } else {
        std::printf("messages %llu, accepted %llu in %.2f s: %.0f messages/s, %.2f MB/s\n",
                    (unsigned long long)total.sent, (unsigned long long)total.accepted, secs, mps, mbps);
        std::printf("latency ms: p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f\n", p50, p90, p99, p999);
        std::printf("replies: {%s}  errors: %llu  connections: %llu\n", replies.c_str(),
                    (unsigned long long)total.errors, (unsigned long long)total.connections);
    }
    return total.accepted == total.sent && total.errors == 0 ? 0 : 1;
}
