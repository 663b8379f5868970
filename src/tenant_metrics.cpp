#include "tenant_metrics.hpp"

namespace sigrelay::metrics {

tenant_samples sample_tenants(relay::shard& s) {
    tenant_samples out;
    const auto& counters = s.tenant_counters();
    for (const auto& t : s.snapshot()->all()) {
        tenant_sample& x = out[t.id];
        if (auto it = counters.find(t.id); it != counters.end()) x.counts = it->second;
        x.pool = s.pool().load_of(t.id);  // destinations are keyed by tenant id
    }
    return out;
}

void add(tenant_samples& into, const tenant_samples& from) {
    for (const auto& [id, x] : from) {
        tenant_sample& y = into[id];
        y.counts += x.counts;
        y.pool.open += x.pool.open;
        y.pool.idle += x.pool.idle;
        y.pool.waiting += x.pool.waiting;
    }
}

namespace {

// A tenant id is letters, digits, '-', '_' and '.' (the tenants file says
// so): nothing in it needs escaping in a label value.
std::string label(const std::string& id) { return "tenant=\"" + id + "\""; }

}  // namespace

void render(const tenant_samples& all, observe::prometheus_text& out) {
    using K = observe::prometheus_text::kind;
    using relay::tenant_stats;
    out.family("sigrelay_messages_total", K::counter,
               "Messages of a tenant by outcome: signed, stamped, untouched (relayed), refused (5yz), deferred (4yz).");
    for (const auto& [id, x] : all)
        for (unsigned o = 0; o < tenant_stats::outcome_count; ++o)
            out.sample("sigrelay_messages_total",
                       label(id) + ",outcome=\"" + tenant_stats::outcome_names[o] + "\"", x.counts.messages[o]);
    out.family("sigrelay_smart_host_replies_total", K::counter,
               "Replies of a tenant's smart host to MAIL, RCPT and the message, by class (2xx, 4xx, 5xx).");
    static const char* const classes[] = {"2xx", "4xx", "5xx"};
    for (const auto& [id, x] : all)
        for (unsigned c = 0; c < 3; ++c)
            out.sample("sigrelay_smart_host_replies_total", label(id) + ",class=\"" + classes[c] + "\"",
                       x.counts.replies[c]);
    out.family("sigrelay_smart_host_latency_seconds", K::histogram,
               "Seconds from the end of a message sent to the tenant's smart host to its reply.");
    for (const auto& [id, x] : all)
        out.histogram("sigrelay_smart_host_latency_seconds", label(id), tenant_stats::latency_bounds,
                      x.counts.latency_buckets, x.counts.latency_sum);
    out.family("sigrelay_pool_connections", K::gauge,
               "Outbound connections to a tenant's smart host now: open (counted against --pool-max-connections), idle.");
    for (const auto& [id, x] : all) {
        out.sample("sigrelay_pool_connections", label(id) + ",state=\"open\"", std::uint64_t{x.pool.open});
        out.sample("sigrelay_pool_connections", label(id) + ",state=\"idle\"", std::uint64_t{x.pool.idle});
    }
    out.family("sigrelay_pool_waiting", K::gauge, "Transactions waiting for a connection to a tenant's smart host.");
    for (const auto& [id, x] : all)
        out.sample("sigrelay_pool_waiting", label(id), std::uint64_t{x.pool.waiting});
}

}  // namespace sigrelay::metrics
