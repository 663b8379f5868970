// Shared between the resolver thread (resolver.cpp) and the per-shard caches (cache.cpp).
#pragma once

#include <sigrelay/resolve.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace sigrelay::resolve::detail {

// What one query found: addresses with port 0, A before AAAA, and the clamped TTL.
struct found {
    std::vector<runtime::socket_address> addresses;
    std::chrono::seconds ttl{0};
};

// Where the resolver thread delivers a cache's outcomes. The cache clears `to` (under the
// mutex) when it is destroyed, so the resolver never posts to a reactor that may be gone.
struct sink {
    std::mutex m;
    runtime::reactor* to = nullptr;
    std::weak_ptr<cache::impl> owner;
};

// Called on the owner's reactor thread with the outcome for `name`.
void deliver_outcome(const std::weak_ptr<cache::impl>& owner, const std::string& name,
                     result<found> outcome);

// Hand a query to the resolver thread (any thread). Its outcome is posted to `to`; when the
// resolver is stopped, errc::stopped is posted at once.
void submit(resolver::core& c, std::string name, std::shared_ptr<sink> to);
const options& config_of(const resolver::core& c) noexcept;

// "host:port" split. `literal` is set when host is an IP literal (then `address` holds it,
// with the port); otherwise `name` is the normalized host name (lowercase, no trailing dot).
struct host_port {
    std::string name;
    std::uint16_t port = 0;
    bool literal = false;
    runtime::socket_address address;
};
// default_port: used when the text has no ":port" (0: a port is required).
result<host_port> parse_host_port(std::string_view text, std::uint16_t default_port = 0);

inline error make(errc c, std::string message) {
    return error{static_cast<int>(c), std::move(message)};
}

}  // namespace sigrelay::resolve::detail
