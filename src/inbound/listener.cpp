// Admission of inbound connections: allow-list, per-shard and per-IP limits.
#include <sigrelay/inbound.hpp>

#include <cstdio>

namespace sigrelay::inbound {

listener::listener(const server_options& opts, ip_table& ips, const tls::context* tls,
                   handler_factory make_handler)
    : opts_(opts), ips_(ips), tls_(tls), make_handler_(std::move(make_handler)), smtp_(opts.smtp) {
    smtp_.tls_available = tls_ != nullptr;
}

runtime::accept_fn listener::accept() {
    return [this](runtime::connection& c) { return admit(c); };
}

namespace {
void refuse(runtime::connection& c, const smtp::reply& r) {
    c.send(smtp::format_reply(r));
    c.close();
}
}  // namespace

runtime::connection_handler* listener::admit(runtime::connection& c) {
    const auto& peer = c.peer();
    if (!opts_.allow.empty()) {
        bool allowed = false;
        for (const auto& range : opts_.allow) {
            if (range.contains(peer)) {
                allowed = true;
                break;
            }
        }
        if (!allowed) {
            ++stats_.refused_allowlist;
            if (!opts_.quiet)
                std::fprintf(stderr, "%s[%u] refused %s: not in --allow-cidr\n", opts_.log_prefix.c_str(),
                             c.owner().shard(), peer.to_string().c_str());
            refuse(c, {554, "5.7.1", "Access denied: " + peer.ip_string() + " is not an allowed client"});
            return nullptr;
        }
    }
    if (opts_.max_connections != 0 && active_ >= opts_.max_connections) {
        ++stats_.refused_limits;
        if (!opts_.quiet)
            std::fprintf(stderr, "%s[%u] refused %s: --max-connections %u reached\n", opts_.log_prefix.c_str(),
                         c.owner().shard(), peer.to_string().c_str(), opts_.max_connections);
        refuse(c, {421, "4.7.0", "Too many connections, try again later"});
        return nullptr;
    }
    if (!ips_.try_acquire(peer, opts_.max_connections_per_ip)) {
        ++stats_.refused_limits;
        if (!opts_.quiet)
            std::fprintf(stderr, "%s[%u] refused %s: --max-connections-per-ip %u reached\n",
                         opts_.log_prefix.c_str(), c.owner().shard(), peer.to_string().c_str(),
                         opts_.max_connections_per_ip);
        refuse(c, {421, "4.7.0", "Too many connections from " + peer.ip_string() + ", try again later"});
        return nullptr;
    }
    ++active_;
    ++stats_.connections;
    auto* s = new session(*this, c);
    s->set_handler(make_handler_(*s));
    s->start();
    return &s->stream();
}

}  // namespace sigrelay::inbound
