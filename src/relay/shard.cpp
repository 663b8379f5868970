// One shard's relay: the snapshot it serves, its destinations (smart host
// address and client TLS context per tenant), queue ids, and the memory budget
// its transactions share.
#include <sigrelay/relay.hpp>

#include <algorithm>
#include <cstdio>
#include <vector>

namespace sigrelay::relay {

// ---- memory budget ----------------------------------------------------------------

bool memory_budget::set(holder& h, std::size_t bytes) {
    used_ = used_ - h.charged_ + bytes;
    const bool less = bytes < h.charged_;
    h.charged_ = bytes;
    if (bytes > 0 && !h.holding_) {
        h.holding_ = true;
        holders_.push_back(&h);
    } else if (bytes == 0 && h.holding_) {
        h.holding_ = false;
        std::erase(holders_, &h);
    }
    if (less || bytes == 0) wake();
    if (used_ <= limit_ || (!holders_.empty() && holders_.front() == &h) || !h.holding_) return true;
    if (!h.waiting_) {
        h.waiting_ = true;
        waiters_.push_back(&h);
    }
    return false;
}

void memory_budget::forget(holder& h) {
    if (h.waiting_) {
        h.waiting_ = false;
        std::erase(waiters_, &h);
    }
    set(h, 0);
}

void memory_budget::wake() {
    // Under budget every waiter goes on; over it, only the oldest holder does:
    // it is the one that gives memory back soonest. Each re-checks after its
    // next read, so the overshoot is a read per waiter at most.
    std::vector<holder*> go;
    for (auto it = waiters_.begin(); it != waiters_.end();) {
        holder* w = *it;
        if (used_ <= limit_ || (!holders_.empty() && holders_.front() == w)) {
            w->waiting_ = false;
            go.push_back(w);
            it = waiters_.erase(it);
        } else {
            ++it;
        }
    }
    for (holder* w : go) w->budget_available();
}

// ---- shard --------------------------------------------------------------------------

namespace {
// 24 bits of FNV-1a of the host name: queue ids of different hosts differ.
unsigned host_tag(std::string_view host) {
    std::uint32_t h = 2166136261u;
    for (unsigned char c : host) {
        h ^= c;
        h *= 16777619u;
    }
    return (h ^ (h >> 24)) & 0xFFFFFFu;
}
}  // namespace

shard::shard(runtime::reactor& r, const relay_options& opts, std::shared_ptr<const tenants::snapshot> snap,
             unsigned index, resolve::resolver& resolver)
    : reactor_(r),
      opts_(opts),
      snap_(std::move(snap)),
      pool_(r, opts.pool),
      budget_(opts.memory_budget),
      dns_(resolver, r),
      index_(index) {
    static const auto boot = static_cast<unsigned long long>(std::time(nullptr));
    char buf[32];
    std::snprintf(buf, sizeof buf, "%06X%06llX%02X",
                  host_tag(opts.queue_id_host.empty() ? opts.hostname : opts.queue_id_host),
                  boot & 0xFFFFFFull, index_ & 0xFF);
    queue_prefix_ = buf;
}

void shard::replace_snapshot(std::shared_ptr<const tenants::snapshot> snap) {
    snap_ = std::move(snap);
    // A tenant the reload removed takes its series with it.
    for (auto it = by_tenant_.begin(); it != by_tenant_.end();)
        it = snap_->find_by_id(it->first) ? std::next(it) : by_tenant_.erase(it);
    for (auto it = destinations_.begin(); it != destinations_.end();) {
        const tenants::tenant* t = snap_->find_by_id(it->first);
        if (t != nullptr && destination_settings::of(*t) == it->second.settings)
            ++it;
        else
            it = destinations_.erase(it);  // gone or changed: built anew at next use
    }
}

void shard::destination_for(const tenants::tenant& t, destination_callback cb) {
    auto it = destinations_.find(t.id);
    if (it == destinations_.end()) {
        auto ctx = tls::context::client(tenants::tls_client_options(t));  // no file I/O here
        if (!ctx) {
            reactor_.post([cb = std::move(cb), e = ctx.err()] { cb(make_error("TLS client context: " + e.message)); });
            return;
        }
        outbound::destination d;
        d.key = t.id;
        d.tls_domain = t.tls_domain;
        d.tls = std::make_shared<const tls::context>(std::move(ctx).value());
        it = destinations_.emplace(t.id, destination_entry{d, destination_settings::of(t)}).first;
    }
    // The cache answers from memory while the TTL lasts (through post(), so
    // never inside this call) and asks the resolver thread otherwise.
    dns_.lookup(t.smart_host, [d = it->second.dest, name = t.smart_host,
                               cb = std::move(cb)](result<resolve::answer> a) mutable {
        if (!a) return cb(make_error(name + ": " + a.err().message));
        d.addresses = std::move(a->addresses);
        cb(std::move(d));
    });
}

std::string shard::next_queue_id() {
    char buf[16];
    std::snprintf(buf, sizeof buf, "%06llX", static_cast<unsigned long long>(++queue_seq_ & 0xFFFFFFull));
    return queue_prefix_ + buf;
}

}  // namespace sigrelay::relay
