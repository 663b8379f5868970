// The relay's transaction proxy, which binds an inbound transaction to a
// pooled outbound connection (docs/behaviour.md, Delivery) and signs each message on the way
// (sigrelay/signing.hpp).
#pragma once

#include <sigrelay/inbound.hpp>
#include <sigrelay/mime.hpp>
#include <sigrelay/outbound.hpp>
#include <sigrelay/resolve.hpp>
#include <sigrelay/result.hpp>
#include <sigrelay/signature.hpp>
#include <sigrelay/signing.hpp>
#include <sigrelay/tenants.hpp>

#include <ctime>
#include <deque>
#include <functional>
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
    // The part to sign (with the headers on the way to it) is held in memory
    // until it ends; a larger one is relayed stamped only (--max-signed-part).
    std::size_t max_signed_part = 8u << 20;
    // Message bytes the shard's transactions may hold at once (--memory-budget).
    // When they hold more, every transaction but the oldest holder stops
    // reading content until memory is given back (back-pressure, never a
    // refusal); the oldest always goes on, so the shard cannot deadlock.
    std::size_t memory_budget = 128u << 20;
    // Above this many bytes written to the smart host and not yet sent, the
    // client's content is not read until they are (per transaction).
    std::size_t outbound_high_water = 1u << 20;
    // A unique name of this host for queue ids (default: the host name).
    std::string queue_id_host;
};

struct relay_stats {
    std::uint64_t transactions = 0, relayed = 0, signed_messages = 0, stamped = 0, untouched = 0;
    std::uint64_t rejected_tenant = 0, rejected_requirements = 0;
    std::uint64_t smart_host_4xx = 0, smart_host_5xx = 0, outbound_failures = 0;
    std::uint64_t abandoned = 0;  // messages given up before their end (client gone, bad content)
    std::uint64_t bytes_in = 0, bytes_out = 0;
    std::uint64_t budget_waits = 0;  // times a transaction waited for the memory budget
    std::uint64_t retries = 0;       // MAILs sent again on a new connection (a pooled one was dead)
    std::uint64_t recipients_deferred = 0;  // RCPTs answered 452 4.5.3 by split_recipients
};

// One tenant's counters on one shard (docs/operations.md, Metrics). A shard
// keeps them for the tenants of its snapshot; a reload drops the others.
struct tenant_stats {
    enum outcome : unsigned { signed_message, stamped, untouched, refused, deferred, outcome_count };
    static constexpr const char* outcome_names[outcome_count] = {"signed", "stamped", "untouched", "refused",
                                                                 "deferred"};
    std::uint64_t messages[outcome_count] = {};
    std::uint64_t replies[3] = {};  // the smart host's replies: 2yz, 4yz, 5yz
    // Seconds from the end of a message sent to the smart host's reply.
    static constexpr double latency_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                0.1,   0.25,   0.5,   1,    2.5,   10};
    static constexpr std::size_t bucket_count = sizeof latency_bounds / sizeof latency_bounds[0] + 1;
    std::uint64_t latency_buckets[bucket_count] = {};  // per bucket (not cumulative); last: +Inf
    double latency_sum = 0;
    std::uint64_t latency_count = 0;

    void reply(int code) {
        if (code >= 200 && code < 600) ++replies[code < 300 ? 0 : code < 500 ? 1 : 2];
    }
    void latency(double seconds) {
        std::size_t b = 0;
        while (b + 1 < bucket_count && seconds > latency_bounds[b]) ++b;
        ++latency_buckets[b];
        latency_sum += seconds;
        ++latency_count;
    }
    tenant_stats& operator+=(const tenant_stats& o) {
        for (unsigned i = 0; i < outcome_count; ++i) messages[i] += o.messages[i];
        for (unsigned i = 0; i < 3; ++i) replies[i] += o.replies[i];
        for (std::size_t i = 0; i < bucket_count; ++i) latency_buckets[i] += o.latency_buckets[i];
        latency_sum += o.latency_sum;
        latency_count += o.latency_count;
        return *this;
    }
};

// The shard's byte budget for message content held in memory. Not shared
// across threads. A holder is anything that keeps bytes (a transaction's
// undecided prefix); holders are served oldest first.
class memory_budget {
public:
    class holder {
    public:
        virtual ~holder() = default;
        // The budget has room again (or this holder became the oldest): read on.
        virtual void budget_available() = 0;

    private:
        friend class memory_budget;  // the budget keeps its own bookkeeping here
        std::size_t charged_ = 0;
        bool holding_ = false, waiting_ = false;
    };

    explicit memory_budget(std::size_t limit) : limit_(limit) {}
    // Sets what `h` holds now. False when the holder must wait (the budget is
    // spent and `h` is not the oldest holder): it is told budget_available().
    bool set(holder& h, std::size_t bytes);
    // `h` holds nothing any more and waits for nothing (also from its destructor).
    void forget(holder& h);

    std::size_t used() const noexcept { return used_; }
    std::size_t limit() const noexcept { return limit_; }

private:
    void wake();
    std::size_t limit_;
    std::size_t used_ = 0;
    std::deque<holder*> holders_;  // oldest first
    std::deque<holder*> waiters_;
};

// One shard's relay: the tenants snapshot it serves, its outbound pool and
// the tenants' client TLS contexts. Not shared across threads.
class shard {
public:
    // `resolver` is the process's (names are resolved on its thread, cached
    // per shard); it must outlive the shard.
    shard(runtime::reactor& r, const relay_options& opts,
          std::shared_ptr<const tenants::snapshot> snap, unsigned index, resolve::resolver& resolver);

    // The handler factory for inbound::listener.
    inbound::handler_factory handlers();

    // SIGHUP: a new snapshot (on this shard's thread). Transactions in flight
    // keep the one they started with.
    void replace_snapshot(std::shared_ptr<const tenants::snapshot> snap);

    const relay_stats& stats() const noexcept { return stats_; }
    // Per tenant id, for the tenants of the current snapshot.
    const std::unordered_map<std::string, tenant_stats>& tenant_counters() const noexcept { return by_tenant_; }
    tenant_stats& tenant_counters(const std::string& id) { return by_tenant_[id]; }
    outbound::pool& pool() noexcept { return pool_; }
    void shutdown() { pool_.shutdown(); }

    // ---- for the transactions of this shard ----------------------------------------
    const relay_options& options() const noexcept { return opts_; }
    const std::shared_ptr<const tenants::snapshot>& snapshot() const noexcept { return snap_; }
    relay_stats& counters() noexcept { return stats_; }
    memory_budget& budget() noexcept { return budget_; }
    std::size_t budget_used() const noexcept { return budget_.used(); }
    // The tenant's smart host with every address DNS gives for it and the
    // client TLS context (built on first use, per shard: no TLS context is
    // shared between threads). The answer always comes later, never inside
    // the call.
    using destination_callback = std::function<void(result<outbound::destination>)>;
    void destination_for(const tenants::tenant& t, destination_callback cb);
    // Unique across hosts, restarts and shards: host, start time, shard, sequence.
    std::string next_queue_id();

private:
    runtime::reactor& reactor_;
    const relay_options& opts_;
    std::shared_ptr<const tenants::snapshot> snap_;
    outbound::pool pool_;
    memory_budget budget_;
    resolve::cache dns_;
    // What a destination is built from: when none of it changed across a
    // reload, the destination (its TLS context, session cache and pooled
    // connections) stays. Settings are compared, not pointers.
    struct destination_settings {
        std::string smart_host, tls_domain, ca_file, ca_pem, cert_file, cert_pem, key_pem;
        static destination_settings of(const tenants::tenant& t) {
            return {t.smart_host,    t.tls_domain,      t.smart_host_ca, t.smart_host_ca_pem,
                    t.client_cert,   t.client_cert_pem, t.client_key_pem};
        }
        bool operator==(const destination_settings&) const = default;
    };
    struct destination_entry {
        outbound::destination dest;
        destination_settings settings;  // what it was built from
    };
    std::unordered_map<std::string, destination_entry> destinations_;
    relay_stats stats_;
    std::unordered_map<std::string, tenant_stats> by_tenant_;
    unsigned index_;
    std::uint64_t queue_seq_ = 0;
    std::string queue_prefix_;
};

}  // namespace sigrelay::relay
