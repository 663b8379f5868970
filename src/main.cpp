// sigrelay: flags → configuration → shards. Each shard listens on the same
// address (SO_REUSEPORT), runs its own SMTP sessions, outbound pool and TLS
// contexts, and shares nothing but the per-IP connection table.
#include <sigrelay/admin.hpp>
#include <sigrelay/cli.hpp>
#include <sigrelay/inbound.hpp>
#include <sigrelay/notify.hpp>
#include <sigrelay/observe.hpp>

#include "tenant_metrics.hpp"
#include <sigrelay/relay.hpp>
#include <sigrelay/resolve.hpp>
#include <sigrelay/runtime.hpp>
#include <sigrelay/tenants.hpp>
#include <sigrelay/tls.hpp>

#include <unistd.h>
#include <cerrno>
#include <cstring>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

// jemalloc (every release build's allocator) gives freed pages back to the
// system only while it allocates; with a background thread it also does so
// when the relay is idle after a burst of large messages. Unused under the
// sanitizers, whose allocator is their own.
extern "C" const char* malloc_conf;
const char* malloc_conf = "background_thread:true";

namespace {

using namespace sigrelay;
using namespace std::chrono_literals;

// Exchange Online's sending ranges (docs/behaviour.md, SMTP server rules) plus loopback.
const char* const default_allow[] = {"127.0.0.0/8",    "::1/128",           "40.92.0.0/15",
                                     "40.107.0.0/16",  "52.100.0.0/14",     "104.47.0.0/17",
                                     "2a01:111:f400::/48", "2a01:111:f403::/48"};

struct options {
    std::string listen = "0.0.0.0:25";
    inbound::tls_flags tls;
    std::string tenants;
    std::string hostname;
    unsigned threads = 0;
    unsigned drain_timeout = 30;
    inbound::server_flags server;
    bool require_tls = true;
    unsigned pool_size = 8, pool_max_connections = 50, pool_max_messages = 100, pool_idle_timeout = 30;
    unsigned connect_timeout = 10;
    std::uint64_t max_signed_part = 8ull << 20, memory_budget = 128ull << 20;
    std::string log_format = "text";
    bool quiet = false;
    std::string spool_dir, metrics_listen, pid_file;
    bool proxy_protocol = false;
    std::vector<std::string> proxy_trusted;
    std::vector<std::string> dns_servers;
};

std::string host_name() {
    char buf[256] = {};
    if (gethostname(buf, sizeof buf - 1) != 0 || buf[0] == 0) return "localhost";
    return buf;
}

int fail(int code, const std::string& msg) {
    std::fprintf(stderr, "sigrelay: %s\n", msg.c_str());
    return code;
}

struct shard_state {
    runtime::reactor* reactor = nullptr;
    std::optional<tls::context> tls;
    std::unique_ptr<relay::shard> relay;
    std::unique_ptr<inbound::listener> listener;
    std::unique_ptr<observe::http_endpoint> metrics;  // shard 0 only
};

// What /metrics exposes, one row per family; each shard's values are read on
// that shard's own thread (shards share no counters and take no locks).
struct metric {
    const char* name;
    observe::prometheus_text::kind kind;
    const char* help;
    std::uint64_t (*read)(const shard_state&);
};

using K = observe::prometheus_text::kind;
const metric metrics_table[] = {
    {"sigrelay_connections_total", K::counter, "Inbound connections accepted.",
     [](const shard_state& s) { return s.listener->stats().connections; }},
    {"sigrelay_connections_refused_allowlist_total", K::counter, "Connections refused by --allow-cidr.",
     [](const shard_state& s) { return s.listener->stats().refused_allowlist; }},
    {"sigrelay_connections_refused_limits_total", K::counter, "Connections refused by connection limits.",
     [](const shard_state& s) { return s.listener->stats().refused_limits; }},
    {"sigrelay_connections_refused_proxy_untrusted_total", K::counter,
     "Connections refused: --proxy-protocol is on and the peer is not in --proxy-trusted.",
     [](const shard_state& s) { return s.listener->stats().proxy_untrusted; }},
    {"sigrelay_proxy_header_errors_total", K::counter, "Connections dropped for a bad or missing PROXY header.",
     [](const shard_state& s) { return s.listener->stats().proxy_errors; }},
    {"sigrelay_connections_active", K::gauge, "Inbound connections open now.",
     [](const shard_state& s) { return std::uint64_t{s.listener->active()}; }},
    {"sigrelay_tls_handshakes_total", K::counter, "Inbound TLS handshakes completed.",
     [](const shard_state& s) { return s.listener->stats().tls_handshakes; }},
    {"sigrelay_tls_resumed_total", K::counter, "Inbound TLS handshakes that resumed a session.",
     [](const shard_state& s) { return s.listener->stats().tls_resumed; }},
    {"sigrelay_tls_failures_total", K::counter, "Inbound TLS handshakes or records that failed.",
     [](const shard_state& s) { return s.listener->stats().tls_failures; }},
    {"sigrelay_timeouts_total", K::counter, "Inbound sessions ended by a timeout or --min-data-rate.",
     [](const shard_state& s) { return s.listener->stats().timeouts; }},
    {"sigrelay_messages_received_total", K::counter, "Messages received completely from clients.",
     [](const shard_state& s) { return s.listener->stats().messages; }},
    {"sigrelay_received_bytes_total", K::counter, "Message content bytes received from clients.",
     [](const shard_state& s) { return s.listener->stats().content_bytes; }},
    {"sigrelay_transactions_total", K::counter, "Transactions bound to a tenant.",
     [](const shard_state& s) { return s.relay->stats().transactions; }},
    {"sigrelay_relayed_total", K::counter, "Messages the smart host accepted.",
     [](const shard_state& s) { return s.relay->stats().relayed; }},
    {"sigrelay_signed_total", K::counter, "Relayed messages that got a signature.",
     [](const shard_state& s) { return s.relay->stats().signed_messages; }},
    {"sigrelay_stamped_total", K::counter, "Relayed messages only stamped (no signature).",
     [](const shard_state& s) { return s.relay->stats().stamped; }},
    {"sigrelay_untouched_total", K::counter, "Relayed messages that already carried the processed header.",
     [](const shard_state& s) { return s.relay->stats().untouched; }},
    {"sigrelay_rejected_no_tenant_total", K::counter, "MAIL FROM refused: no tenant (550 5.7.1).",
     [](const shard_state& s) { return s.relay->stats().rejected_tenant; }},
    {"sigrelay_rejected_requirements_total", K::counter, "Refused by a tenant's SNI or tenant id requirement.",
     [](const shard_state& s) { return s.relay->stats().rejected_requirements; }},
    {"sigrelay_smart_host_4xx_total", K::counter, "Messages the smart host deferred.",
     [](const shard_state& s) { return s.relay->stats().smart_host_4xx; }},
    {"sigrelay_smart_host_5xx_total", K::counter, "Messages the smart host rejected.",
     [](const shard_state& s) { return s.relay->stats().smart_host_5xx; }},
    {"sigrelay_outbound_failures_total", K::counter, "Transactions that could not reach the smart host.",
     [](const shard_state& s) { return s.relay->stats().outbound_failures; }},
    {"sigrelay_abandoned_total", K::counter,
     "Messages given up before their end (client gone, refused content); nothing was delivered.",
     [](const shard_state& s) { return s.relay->stats().abandoned; }},
    {"sigrelay_memory_budget_waits_total", K::counter,
     "Times a transaction stopped reading content until the shard's --memory-budget had room.",
     [](const shard_state& s) { return s.relay->stats().budget_waits; }},
    {"sigrelay_memory_held_bytes", K::gauge, "Message bytes the shard's transactions hold now.",
     [](const shard_state& s) { return std::uint64_t{s.relay->budget_used()}; }},
    {"sigrelay_outbound_retries_total", K::counter,
     "MAILs sent again on a new connection because a pooled one was found dead (EOF, reset, 421).",
     [](const shard_state& s) { return s.relay->stats().retries; }},
    {"sigrelay_recipients_deferred_total", K::counter,
     "RCPTs answered 452 4.5.3 because they belong to the other recipient group (split_recipients).",
     [](const shard_state& s) { return s.relay->stats().recipients_deferred; }},
    {"sigrelay_outbound_connects_total", K::counter, "Outbound connections attempted.",
     [](const shard_state& s) { return s.relay->pool().stats().connects; }},
    {"sigrelay_outbound_connect_failures_total", K::counter, "Outbound connections that failed to set up.",
     [](const shard_state& s) { return s.relay->pool().stats().connect_failures; }},
    {"sigrelay_outbound_tls_resumed_total", K::counter, "Outbound TLS handshakes that resumed a session.",
     [](const shard_state& s) { return s.relay->pool().stats().tls_resumed; }},
    {"sigrelay_outbound_reuses_total", K::counter, "Outbound connections reused for another transaction.",
     [](const shard_state& s) { return s.relay->pool().stats().reuses; }},
    {"sigrelay_outbound_open", K::gauge, "Outbound connections open now.",
     [](const shard_state& s) { return std::uint64_t{s.relay->pool().stats().open}; }},
    {"sigrelay_outbound_idle", K::gauge, "Outbound connections idle in the pool now.",
     [](const shard_state& s) { return std::uint64_t{s.relay->pool().stats().idle}; }},
    {"sigrelay_socket_sends_total", K::counter,
     "sendmsg operations submitted, both legs (what one turn queues for a connection is one).",
     [](const shard_state& s) { return s.reactor->sends_submitted(); }},
};
constexpr std::size_t metric_count = sizeof metrics_table / sizeof metrics_table[0];

// Gathers every shard's values on its own thread, then answers on the
// endpoint's shard.
void gather_metrics(runtime::shard_group& group, std::vector<shard_state>& shards,
                    std::function<void(std::string)> respond) {
    struct pending {
        std::vector<std::array<std::uint64_t, metric_count>> values;
        std::vector<metrics::tenant_samples> tenants;
        std::atomic<unsigned> left{0};
        std::function<void(std::string)> respond;
        runtime::reactor* home = nullptr;
    };
    auto p = std::make_shared<pending>();
    p->values.resize(group.size());
    p->tenants.resize(group.size());
    p->left = group.size();
    p->respond = std::move(respond);
    p->home = &group.shard(0);
    for (unsigned i = 0; i < group.size(); ++i) {
        const shard_state* st = &shards[i];
        group.shard(i).post([p, i, st] {
            for (std::size_t m = 0; m < metric_count; ++m) p->values[i][m] = metrics_table[m].read(*st);
            p->tenants[i] = metrics::sample_tenants(*st->relay);
            if (p->left.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
            p->home->post([p] {
                observe::prometheus_text out;
                for (std::size_t m = 0; m < metric_count; ++m) {
                    out.family(metrics_table[m].name, metrics_table[m].kind, metrics_table[m].help);
                    for (std::size_t sh = 0; sh < p->values.size(); ++sh)
                        out.sample(metrics_table[m].name, "shard=\"" + std::to_string(sh) + "\"",
                                   p->values[sh][m]);
                }
                // Per tenant: summed over shards (a tenant's traffic spreads over all of them).
                metrics::tenant_samples all;
                for (const auto& t : p->tenants) metrics::add(all, t);
                metrics::render(all, out);
                p->respond(out.take());
            });
        });
    }
}

// What systemd hears between events: STATUS= counts and WATCHDOG=1. The main
// thread pings every shard; each answers on its own thread with its counters
// (nothing of a shard is read elsewhere). A shard that has not answered its
// last ping by the next round has a loop that does not turn, and the watchdog
// keep-alive is withheld until it answers.
class shard_pulse {
public:
    shard_pulse(runtime::shard_group& group, const std::vector<shard_state>& shards)
        : group_(group), shards_(shards), slots_(group.size()) {}

    // Whether every shard has answered its last ping.
    bool all_answered() const {
        for (const auto& s : slots_) {
            if (s.answered.load(std::memory_order_acquire) != s.asked) return false;
        }
        return true;
    }

    // A new ping to every shard that answered its last one (a stuck shard's
    // queue does not grow with pings).
    void ping() {
        for (unsigned i = 0; i < slots_.size(); ++i) {
            slot& sl = slots_[i];
            if (sl.answered.load(std::memory_order_acquire) != sl.asked) continue;
            const std::uint64_t n = ++sl.asked;
            const shard_state* st = &shards_[i];
            group_.shard(i).post([&sl, st, n] {
                const auto& rs = st->relay->stats();
                sl.connections.store(st->listener->active(), std::memory_order_relaxed);
                sl.relayed.store(rs.relayed, std::memory_order_relaxed);
                sl.signed_messages.store(rs.signed_messages, std::memory_order_relaxed);
                sl.deferred.store(rs.smart_host_4xx + rs.outbound_failures, std::memory_order_relaxed);
                sl.answered.store(n, std::memory_order_release);
            });
        }
    }

    // The sum of the latest answers.
    notify::counts totals() const {
        notify::counts c;
        for (const auto& s : slots_) {
            c.connections += s.connections.load(std::memory_order_relaxed);
            c.relayed += s.relayed.load(std::memory_order_relaxed);
            c.signed_messages += s.signed_messages.load(std::memory_order_relaxed);
            c.deferred += s.deferred.load(std::memory_order_relaxed);
        }
        return c;
    }

private:
    struct slot {
        std::uint64_t asked = 0;  // main thread only
        std::atomic<std::uint64_t> answered{0};
        std::atomic<std::uint64_t> connections{0}, relayed{0}, signed_messages{0}, deferred{0};
    };
    runtime::shard_group& group_;
    const std::vector<shard_state>& shards_;
    std::vector<slot> slots_;
};

// Runs fn on every shard and returns once all have run it, or after `limit`
// (a shard that does not turn is the watchdog's business, not a reason to hang).
void on_every_shard(runtime::shard_group& group, const std::function<void(unsigned)>& fn,
                    std::chrono::milliseconds limit) {
    struct pending {
        std::mutex m;
        std::condition_variable cv;
        unsigned left = 0;
    };
    auto p = std::make_shared<pending>();
    p->left = group.size();
    for (unsigned i = 0; i < group.size(); ++i) {
        group.shard(i).post([p, fn, i] {
            fn(i);
            std::lock_guard lk(p->m);
            if (--p->left == 0) p->cv.notify_all();
        });
    }
    std::unique_lock lk(p->m);
    p->cv.wait_for(lk, limit, [&] { return p->left == 0; });
}

std::string plural(std::size_t n, const char* one, const char* many) {
    return std::to_string(n) + " " + (n == 1 ? one : many);
}

}  // namespace

int main(int argc, char** argv) {
    options o;
    o.server.default_allow.assign(std::begin(default_allow), std::end(default_allow));
    o.server.max_connections = 10000;
    // Like Postfix's smtpd_min_data_rate: a client trickling content holds a
    // connection to the smart host, so it must keep some pace.
    o.server.min_data_rate = 500;
    cli::parser p("sigrelay",
                  "SMTP relay that adds each sender's email signature for Exchange Online tenants\n"
                  "and hands the message back to the tenant's smart host. Reference: docs/configuration.md.");
    p.add("--listen", &o.listen, "HOST:PORT to accept mail on (default 0.0.0.0:25)");
    o.tls.add_to(p, "certificate chain (PEM) with the relay's public name, for STARTTLS");
    p.add("--tenants", &o.tenants, "tenants file (JSON, docs/configuration.md); SIGHUP reloads it");
    p.add("--hostname", &o.hostname, "name in the greeting and Received: (default: the host name)");
    p.add("--threads", &o.threads, "shards, one per core (default: online CPUs)");
    p.add("--drain-timeout", &o.drain_timeout, "seconds to let transactions finish on SIGTERM (default 30)");
    p.add_bool("--require-tls", &o.require_tls, "MAIL before STARTTLS gets 530 5.7.0 (default on)");
    o.server.add_to(p);
    p.add("--pool-size", &o.pool_size, "idle outbound connections kept per smart host per shard (default 8)");
    p.add("--pool-max-connections", &o.pool_max_connections,
          "outbound connections open at once per smart host per shard (default 50)");
    p.add("--pool-max-messages", &o.pool_max_messages, "messages per outbound connection (default 100)");
    p.add("--pool-idle-timeout", &o.pool_idle_timeout, "seconds an idle outbound connection is kept (default 30)");
    p.add("--connect-timeout", &o.connect_timeout, "seconds to reach a smart host (default 10)");
    p.add("--max-signed-part", &o.max_signed_part,
          "bytes of a body held to sign it; a larger one is relayed stamped, unsigned (default 8 MiB)");
    p.add("--memory-budget", &o.memory_budget,
          "bytes of message content a shard holds at once; beyond, content is read more slowly (default 128 MiB)");
    p.add("--log-format", &o.log_format, "text|json (default text)");
    p.add_bool("--quiet", &o.quiet, "no per-connection log lines");
    p.add("--spool-dir", &o.spool_dir, "spool mode (docs/behaviour.md, Delivery): not implemented yet");
    p.add("--pid-file", &o.pid_file,
          "write the process id here once listening, remove it on exit (for SIGHUP from scripts)");
    p.add("--metrics-listen", &o.metrics_listen,
          "[HOST:]PORT serving Prometheus /metrics, /healthz and the read-only admin pages /preview and "
          "/tenants; a bare PORT binds 127.0.0.1 only (name a HOST to serve a management network)");
    p.add_bool("--proxy-protocol", &o.proxy_protocol,
               "expect a PROXY v1/v2 header from a load balancer before SMTP; needs --proxy-trusted");
    p.add("--dns-server", &o.dns_servers,
          "HOST:PORT of a DNS server for smart host names (repeatable; default: /etc/resolv.conf)");
    p.add("--proxy-trusted", &o.proxy_trusted,
          "balancer CIDR whose PROXY header is believed (repeatable; others: 554 5.7.1)");
    if (auto r = p.parse(argc, argv); !r) return fail(64, r.err().message);
    if (p.help_requested()) {
        std::fputs(p.requested_help().c_str(), stdout);
        return 0;
    }
    if (!o.spool_dir.empty()) return fail(64, "--spool-dir: spool mode is not implemented yet");
    if (o.tenants.empty()) return fail(64, "--tenants FILE is required");
    if (auto r = o.tls.validate(); !r) return fail(64, r.err().message);
    if (!o.tls.enabled() && o.require_tls)
        return fail(64, "--require-tls (the default) needs --tls-cert and --tls-key; or say --no-require-tls");
    if (o.log_format != "text" && o.log_format != "json") return fail(64, "--log-format must be text or json");
    if (o.hostname.empty()) o.hostname = host_name();

    auto snap = tenants::snapshot::load(o.tenants);
    if (!snap) return fail(78, snap.err().message);
    if (auto r = runtime::probe_kernel(); !r) return fail(71, r.err().message);
    auto addr = runtime::socket_address::parse(o.listen);
    if (!addr) return fail(64, "--listen " + o.listen + ": " + addr.err().message);
    std::optional<runtime::socket_address> metrics_addr;
    if (!o.metrics_listen.empty()) {
        // The admin pages show the directory: loopback unless a host is named.
        if (o.metrics_listen.find_first_not_of("0123456789") == std::string::npos)
            o.metrics_listen = "127.0.0.1:" + o.metrics_listen;
        auto m = runtime::socket_address::parse(o.metrics_listen);
        if (!m) return fail(64, "--metrics-listen " + o.metrics_listen + ": " + m.err().message);
        metrics_addr = *m;
    }

    inbound::server_options io;
    io.smtp.hostname = o.hostname;
    io.smtp.greeting_text = "ESMTP sigrelay";
    io.smtp.require_tls = o.require_tls;
    io.smtp.advertise_xoorg = true;
    if (auto r = o.server.apply(io); !r) return fail(64, r.err().message);
    io.proxy_protocol = o.proxy_protocol;
    if (o.proxy_protocol && o.proxy_trusted.empty())
        return fail(64, "--proxy-protocol needs --proxy-trusted CIDR: the load balancers allowed to name the client");
    if (!o.proxy_protocol && !o.proxy_trusted.empty())
        return fail(64, "--proxy-trusted is only used with --proxy-protocol");
    for (const auto& c : o.proxy_trusted) {
        auto range = runtime::cidr::parse(c);
        if (!range) return fail(64, "--proxy-trusted " + c + ": " + range.err().message);
        io.proxy_trusted.push_back(*range);
    }
    io.log_prefix = "sigrelay";
    io.quiet = o.quiet;

    relay::relay_options ro;
    ro.hostname = o.hostname;
    ro.json_logs = o.log_format == "json";
    ro.log_messages = !o.quiet;
    ro.pool.max_idle = o.pool_size;
    ro.pool.max_connections = o.pool_max_connections;
    ro.pool.max_messages = o.pool_max_messages;
    ro.pool.idle_timeout = std::chrono::seconds(o.pool_idle_timeout);
    ro.pool.connect_timeout = std::chrono::seconds(o.connect_timeout);
    ro.pool.command_timeout = std::chrono::seconds(o.server.command_timeout);
    ro.pool.data_timeout = std::chrono::seconds(o.server.data_timeout);
    ro.pool.helo_name = o.hostname;
    ro.max_signed_part = o.max_signed_part;
    ro.memory_budget = o.memory_budget;
    ro.queue_id_host = o.hostname;
    if (o.max_signed_part == 0 || o.memory_budget == 0)
        return fail(64, "--max-signed-part and --memory-budget must be at least 1");

    // Smart host names are resolved on the resolver's own thread and cached
    // per shard; it outlives the shards (declared before them).
    resolve::options dns;
    dns.servers = o.dns_servers;
    auto resolver = resolve::resolver::create(dns);
    if (!resolver) return fail(64, "--dns-server: " + resolver.err().message);

    inbound::ip_table ips;
    runtime::shard_options so;
    so.threads = o.threads;
    so.drain_timeout = std::chrono::seconds(o.drain_timeout);
    runtime::shard_group group(so);
    std::vector<shard_state> shards(group.size());
    for (auto& st : shards) {
        if (!o.tls.enabled()) continue;
        auto ctx = o.tls.make_context();
        if (!ctx) return fail(78, "TLS: " + ctx.err().message);
        st.tls.emplace(std::move(ctx).value());
    }

    runtime::shard_group::block_signals();
    std::shared_ptr<const tenants::snapshot> current = *snap;
    auto started = group.start([&](runtime::reactor& r, unsigned i) -> result<void> {
        shard_state& st = shards[i];
        st.reactor = &r;
        st.relay = std::make_unique<relay::shard>(r, ro, current, i, **resolver);
        st.listener = std::make_unique<inbound::listener>(io, ips, st.tls ? &*st.tls : nullptr,
                                                          st.relay->handlers());
        SIGRELAY_TRY(r.listen(*addr, st.listener->accept()));
        if (i == 0 && metrics_addr) {
            // The admin pages read shard 0's snapshot, on shard 0's thread.
            relay::shard& pages_shard = *st.relay;
            st.metrics = std::make_unique<observe::http_endpoint>(
                r, [&](std::function<void(std::string)> respond) { gather_metrics(group, shards, std::move(respond)); },
                [&pages_shard](std::string_view path, std::string_view query) {
                    return admin::serve(*pages_shard.snapshot(), path, query, relay::today_utc());
                });
            SIGRELAY_TRY(st.metrics->listen(*metrics_addr));
        }
        return ok();
    });
    if (!started) return fail(71, started.err().message);
    if (!o.pid_file.empty()) {
        // Written atomically: a reader never sees a half-written number.
        const std::string tmp = o.pid_file + ".tmp";
        FILE* f = std::fopen(tmp.c_str(), "w");
        if (f == nullptr || std::fprintf(f, "%ld\n", static_cast<long>(::getpid())) < 0 || std::fclose(f) != 0 ||
            std::rename(tmp.c_str(), o.pid_file.c_str()) != 0) {
            const int e = errno;
            group.request_stop();
            group.wait();
            errno = e;
            return fail(73, "--pid-file " + o.pid_file + ": " + std::strerror(errno));
        }
    }
    if (!o.quiet)
        std::fprintf(stderr, "sigrelay: listening on %s, %u shard%s, %zu tenant%s from %s\n",
                     addr->to_string().c_str(), group.size(), group.size() == 1 ? "" : "s",
                     current->all().size(), current->all().size() == 1 ? "" : "s", o.tenants.c_str());

    // systemd (Type=notify; every call a no-op without NOTIFY_SOCKET): ready
    // now that every shard listens, the tenants are loaded and the pid file
    // exists; STATUS= and WATCHDOG=1 from the periodic round below.
    shard_pulse pulse(group, shards);
    pulse.ping();
    std::string status_sent = "listening on " + addr->to_string() + ", " +
                              plural(group.size(), "shard", "shards") + ", " +
                              plural(current->all().size(), "tenant", "tenants") + " from " + o.tenants;
    notify::ready(status_sent);
    std::string reload_refused;  // why the last reload was refused; empty once one succeeds
    const std::chrono::microseconds watchdog = notify::watchdog_interval();
    // Keep-alives at half the watchdog interval (systemd's advice), counts at
    // least every 5 s: one round serves both.
    std::chrono::milliseconds round = 5s;
    if (watchdog.count() > 0)
        round = std::clamp(std::chrono::duration_cast<std::chrono::milliseconds>(watchdog / 2),
                           std::chrono::milliseconds(1), round);
    auto periodic = [&] {
        const bool alive = pulse.all_answered();
        std::string text = notify::counts_text(pulse.totals());
        if (!reload_refused.empty()) text += "; last reload refused, serving the previous tenants: " + reload_refused;
        pulse.ping();
        if (text != status_sent) {
            notify::status(text);
            status_sent = std::move(text);
        }
        if (watchdog.count() > 0 && alive) notify::watchdog();
    };

    int rc = group.run_until_signal(
        [&] {
            // SIGHUP: a bad file keeps the previous snapshot serving (docs/configuration.md).
            notify::reloading("reloading " + o.tenants);
            auto next = tenants::snapshot::load(o.tenants);
            if (!next) {
                std::fprintf(stderr, "sigrelay: reload refused, keeping the previous tenants: %s\n",
                             next.err().message.c_str());
                reload_refused = next.err().message;
                status_sent = "reload refused, serving the previous tenants: " + reload_refused;
                notify::ready(status_sent);
                return;
            }
            std::shared_ptr<const tenants::snapshot> fresh = *next;
            // READY=1 once every shard serves the new tenants (systemd 253's
            // Type=notify-reload lets systemctl reload return then), or after 5 s at most.
            on_every_shard(group, [&shards, fresh](unsigned i) { shards[i].relay->replace_snapshot(fresh); }, 5s);
            std::fprintf(stderr, "sigrelay: reloaded %s: %zu tenant%s\n", o.tenants.c_str(), fresh->all().size(),
                         fresh->all().size() == 1 ? "" : "s");
            reload_refused.clear();
            status_sent = "reloaded " + o.tenants + ": " + plural(fresh->all().size(), "tenant", "tenants");
            notify::ready(status_sent);
        },
        [&] {
            notify::stopping("stopping: draining connections (at most " + std::to_string(o.drain_timeout) + " s)");
        },
        periodic, round);

    if (!o.quiet) {
        relay::relay_stats t;
        for (auto& st : shards) {
            const auto& s = st.relay->stats();
            t.transactions += s.transactions;
            t.relayed += s.relayed;
            t.signed_messages += s.signed_messages;
            t.stamped += s.stamped;
            t.outbound_failures += s.outbound_failures;
        }
        std::fprintf(stderr, "sigrelay: stopped; %llu relayed (%llu signed, %llu stamped), %llu outbound failures\n",
                     (unsigned long long)t.relayed, (unsigned long long)t.signed_messages,
                     (unsigned long long)t.stamped, (unsigned long long)t.outbound_failures);
    }
    if (!o.pid_file.empty()) std::remove(o.pid_file.c_str());
    // Pools and listeners belong to their shard threads, which have exited:
    // destroy them here, in order, before the reactors go.
    for (auto& st : shards) {
        st.metrics.reset();
        st.listener.reset();
        st.relay.reset();
    }
    return rc;
}
