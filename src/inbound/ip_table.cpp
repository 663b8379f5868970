// Lock-free per-IP connection counts shared by all shards.
#include <sigrelay/inbound.hpp>

#include <cstring>

namespace sigrelay::inbound {

std::size_t ip_table::slot(const runtime::socket_address& peer) noexcept {
    // FNV-1a over the address bytes only (not the port): every connection of
    // one client lands in the same slot. IPv4-mapped IPv6 hashes as IPv4.
    const unsigned char* p = nullptr;
    std::size_t n = 0;
    if (peer.family() == AF_INET) {
        p = reinterpret_cast<const unsigned char*>(
            &reinterpret_cast<const sockaddr_in*>(&peer.storage)->sin_addr);
        n = 4;
    } else if (peer.family() == AF_INET6) {
        const auto* a = &reinterpret_cast<const sockaddr_in6*>(&peer.storage)->sin6_addr;
        p = reinterpret_cast<const unsigned char*>(a);
        n = 16;
        if (IN6_IS_ADDR_V4MAPPED(a)) {
            p += 12;
            n = 4;
        }
    }
    std::uint64_t h = 1469598103934665603ull;
    for (std::size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
    return static_cast<std::size_t>(h ^ (h >> 29)) & (slots - 1);
}

bool ip_table::try_acquire(const runtime::socket_address& peer, unsigned limit) noexcept {
    auto& c = counts_[slot(peer)];
    std::uint32_t cur = c.load(std::memory_order_relaxed);
    do {
        if (limit != 0 && cur >= limit) return false;
    } while (!c.compare_exchange_weak(cur, cur + 1, std::memory_order_relaxed));
    return true;
}

void ip_table::release(const runtime::socket_address& peer) noexcept {
    counts_[slot(peer)].fetch_sub(1, std::memory_order_relaxed);
}

unsigned ip_table::count(const runtime::socket_address& peer) const noexcept {
    return counts_[slot(peer)].load(std::memory_order_relaxed);
}

}  // namespace sigrelay::inbound
