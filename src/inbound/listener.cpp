// Admission of inbound connections: allow-list, per-shard and per-IP limits.
#include <sigrelay/inbound.hpp>
#include <sigrelay/proxy_protocol.hpp>

#include <algorithm>
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

// Reads the PROXY header the balancer sends first, then admits the
// connection as coming from the client it names.
class listener::proxy_reader final : public runtime::connection_handler {
public:
    proxy_reader(listener& l, runtime::connection& c) : l_(l) { c.set_timer(0, std::chrono::seconds(10)); }

    void on_data(runtime::connection& c, std::span<const char> bytes) override {
        if (done_) return;
        buf_.append(bytes.data(), bytes.size());
        proxy_header h;
        std::string error;
        switch (parse_proxy_header(std::span<const char>(buf_.data(), buf_.size()), h, error)) {
            case proxy_status::need_more:
                return;
            case proxy_status::invalid:
                fail(c, error);
                return;
            case proxy_status::done:
                break;
        }
        done_ = true;
        c.cancel_timer(0);
        runtime::connection_handler* next = l_.admit_as(c, h.local ? c.peer() : h.source);
        if (next == nullptr) return;  // refused: a reply is queued and the connection closing
        c.set_handler(next);
        // Anything after the header is the client's: before our greeting,
        // which the SMTP session treats as a pre-greeting violation.
        if (buf_.size() > h.length)
            next->on_data(c, std::span<const char>(buf_.data() + h.length, buf_.size() - h.length));
        c.owner().post([this] { delete this; });
    }
    void on_timer(runtime::connection& c, std::uint64_t) override { fail(c, "no PROXY header within 10 s"); }
    void on_closed(runtime::connection&, int) override { delete this; }

private:
    void fail(runtime::connection& c, const std::string& why) {
        done_ = true;
        ++l_.stats_.proxy_errors;
        l_.log_refusal(c, c.peer(), "dropped: " + why);
        c.abort();
    }

    listener& l_;
    std::string buf_;
    bool done_ = false;
};

runtime::connection_handler* listener::admit(runtime::connection& c) {
    if (!opts_.proxy_protocol) return admit_as(c, c.peer());
    // Only a balancer we trust may name the client: anyone else could claim
    // an allowed address (and with it a tenant's trust). Such a peer is
    // refused before a byte of it is read, so nothing it sends is believed.
    if (std::none_of(opts_.proxy_trusted.begin(), opts_.proxy_trusted.end(),
                     [&](const runtime::cidr& r) { return r.contains(c.peer()); }))
        return refuse_with(c, c.peer(), stats_.proxy_untrusted, "not in --proxy-trusted",
                           {554, "5.7.1",
                            "Access denied: " + c.peer().ip_string() + " is not a trusted PROXY balancer"});
    return new proxy_reader(*this, c);
}

void listener::log_refusal(runtime::connection& c, const runtime::socket_address& peer,
                           std::string_view what) const {
    if (opts_.quiet) return;
    std::string out = opts_.log_prefix;
    out += '[' + std::to_string(c.owner().shard()) + "] " + peer.to_string() + ": ";
    out.append(what);
    runtime::log_line(out);
}

runtime::connection_handler* listener::refuse_with(runtime::connection& c, const runtime::socket_address& peer,
                                                   std::uint64_t& counter, std::string_view why,
                                                   const smtp::reply& r) {
    ++counter;
    log_refusal(c, peer, "refused: " + std::string(why));
    refuse(c, r);
    return nullptr;
}

runtime::connection_handler* listener::admit_as(runtime::connection& c, const runtime::socket_address& peer) {
    if (!opts_.allow.empty() &&
        std::none_of(opts_.allow.begin(), opts_.allow.end(), [&](const runtime::cidr& r) { return r.contains(peer); }))
        return refuse_with(c, peer, stats_.refused_allowlist, "not in --allow-cidr",
                           {554, "5.7.1", "Access denied: " + peer.ip_string() + " is not an allowed client"});
    if (opts_.max_connections != 0 && active_ >= opts_.max_connections)
        return refuse_with(c, peer, stats_.refused_limits,
                           "--max-connections " + std::to_string(opts_.max_connections) + " reached",
                           {421, "4.7.0", "Too many connections, try again later"});
    if (!ips_.try_acquire(peer, opts_.max_connections_per_ip))
        return refuse_with(c, peer, stats_.refused_limits,
                           "--max-connections-per-ip " + std::to_string(opts_.max_connections_per_ip) + " reached",
                           {421, "4.7.0", "Too many connections from " + peer.ip_string() + ", try again later"});
    ++active_;
    ++stats_.connections;
    auto* s = new session(*this, c, peer);
    s->set_handler(make_handler_(*s));
    s->start();
    return &s->stream();
}

}  // namespace sigrelay::inbound
