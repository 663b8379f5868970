// The relay's transaction proxy, which binds an inbound transaction to a
// pooled outbound connection (docs/behaviour.md, Delivery) and signs each message on the way
// (sigrelay/signing.hpp).
#pragma once

#include <sigrelay/inbound.hpp>
#include <sigrelay/mime.hpp>
#include <sigrelay/outbound.hpp>
#include <sigrelay/result.hpp>
#include <sigrelay/signature.hpp>
#include <sigrelay/signing.hpp>
#include <sigrelay/tenants.hpp>

#include <ctime>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

namespace sigrelay::relay {

// ---- the transaction proxy -----------------------------------------------------

struct relay_options {
    std::string hostname = "localhost";  // Received: by
    outbound::pool_options pool;
    bool log_messages = true;
    bool json_logs = false;
};

struct relay_stats {
    std::uint64_t transactions = 0, relayed = 0, signed_messages = 0, stamped = 0, untouched = 0;
    std::uint64_t rejected_tenant = 0, rejected_requirements = 0;
    std::uint64_t smart_host_4xx = 0, smart_host_5xx = 0, outbound_failures = 0;
    std::uint64_t bytes_in = 0, bytes_out = 0;
};

// One shard's relay: the tenants snapshot it serves, its outbound pool and
// the tenants' client TLS contexts. Not shared across threads.
class shard {
public:
    shard(runtime::reactor& r, const relay_options& opts,
          std::shared_ptr<const tenants::snapshot> snap, unsigned index);

    // The handler factory for inbound::listener.
    inbound::handler_factory handlers();

    // SIGHUP: a new snapshot (on this shard's thread). Transactions in flight
    // keep the one they started with.
    void replace_snapshot(std::shared_ptr<const tenants::snapshot> snap);

    const relay_stats& stats() const noexcept { return stats_; }
    outbound::pool& pool() noexcept { return pool_; }
    void shutdown() { pool_.shutdown(); }

private:
    friend class proxy;
    // The tenant's smart host, resolved and with its client context (built on
    // first use, per shard: no TLS context is shared between threads).
    result<outbound::destination> destination_for(const tenants::tenant& t);
    std::string next_queue_id();

    runtime::reactor& reactor_;
    const relay_options& opts_;
    std::shared_ptr<const tenants::snapshot> snap_;
    outbound::pool pool_;
    std::unordered_map<std::string, outbound::destination> destinations_;
    relay_stats stats_;
    unsigned index_;
    std::uint64_t queue_seq_ = 0;
};

}  // namespace sigrelay::relay
