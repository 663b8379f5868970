// Per-tenant series on /metrics (docs/operations.md, Metrics): each shard's
// tenant counters and pool loads, read on that shard's thread, summed over
// shards and written as Prometheus families labelled tenant="id".
#pragma once

#include <sigrelay/observe.hpp>
#include <sigrelay/outbound.hpp>
#include <sigrelay/relay.hpp>

#include <map>
#include <string>

namespace sigrelay::metrics {

struct tenant_sample {
    relay::tenant_stats counts;
    outbound::pool::load pool;
};
using tenant_samples = std::map<std::string, tenant_sample>;  // by tenant id, in order

// On the shard's own thread: every tenant of its current snapshot (a tenant
// without traffic yet shows zeros; one a reload removed is gone).
tenant_samples sample_tenants(relay::shard& s);
void add(tenant_samples& into, const tenant_samples& from);
void render(const tenant_samples& all, observe::prometheus_text& out);

}  // namespace sigrelay::metrics
