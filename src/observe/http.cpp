// The /metrics and /healthz endpoint, and the door to the admin pages: one
// request per connection, answered and closed. Small on purpose: Prometheus,
// load-balancer health checks and an administrator's browser are its only
// clients.
#include <sigrelay/observe.hpp>

#include <chrono>

namespace sigrelay::observe {

namespace {
constexpr std::size_t max_request = 8192;
// The whole exchange, request and response: a client that reads slowly (or
// not at all) is cut off, and at most max_clients are served at once, so
// the endpoint cannot be made to hold memory or a shard's attention.
constexpr std::chrono::seconds request_timeout{10};
constexpr unsigned max_clients = 64;

const char* reason(int status) {
    switch (status) {
        case 200: return "OK";
        case 400: return "Bad Request";
        case 404: return "Not Found";
        case 405: return "Method Not Allowed";
        case 503: return "Service Unavailable";
    }
    return "Error";
}
}  // namespace

std::string http_response(int status, std::string_view content_type, std::string_view body,
                          std::string_view extra_headers, bool head) {
    std::string r = "HTTP/1.1 " + std::to_string(status) + " " + reason(status) + "\r\n";
    r += "Content-Type: ";
    r += content_type;
    r += "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
    r += extra_headers;
    r += "Connection: close\r\n\r\n";
    if (!head) r += body;
    return r;
}

http_endpoint::route http_endpoint::dispatch(std::string_view head, bool healthy) {
    route r;
    r.content_type = "text/plain; charset=utf-8";
    std::size_t eol = head.find("\r\n");
    std::string_view line = head.substr(0, eol);
    std::size_t sp1 = line.find(' ');
    std::size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
    if (sp1 == std::string_view::npos || sp2 == std::string_view::npos || line.substr(sp2 + 1, 5) != "HTTP/") {
        r.status = 400;
        r.body = "bad request\n";
        return r;
    }
    std::string_view method = line.substr(0, sp1);
    std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
    std::string_view query;
    if (auto q = target.find('?'); q != std::string_view::npos) {
        query = target.substr(q + 1);
        target = target.substr(0, q);
    }
    r.head = method == "HEAD";
    if (method != "GET" && method != "HEAD") {
        // Every path is read-only.
        r.status = 405;
        r.body = "method not allowed\n";
        return r;
    }
    if (target != "/metrics" && target != "/healthz") {
        // 404 unless the pages callback serves the path.
        r.status = 404;
        r.body = "not found\n";
        r.page = true;
        r.path = target;
        r.query = query;
        return r;
    }
    if (target == "/healthz") {
        r.status = healthy ? 200 : 503;
        r.body = healthy ? "ok\n" : "draining\n";
        return r;
    }
    r.metrics = true;
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    return r;
}

class http_endpoint::client final : public runtime::connection_handler {
public:
    client(http_endpoint& ep, runtime::connection& c) : ep_(ep), alive_(std::make_shared<int>(0)) {
        ++ep_.clients_;
        c.set_timer(0, request_timeout);
    }
    ~client() override { --ep_.clients_; }

    void on_data(runtime::connection& c, std::span<const char> bytes) override {
        if (answered_) return;
        head_.append(bytes.data(), bytes.size());
        if (head_.find("\r\n\r\n") == std::string::npos) {
            if (head_.size() > max_request) c.abort();
            return;
        }
        answered_ = true;
        c.pause_reading();
        route r = dispatch(head_, ep_.healthy_);
        if (r.page && ep_.pages_) {
            if (auto served = ep_.pages_(r.path, r.query)) {
                served->head = r.head;
                r = std::move(*served);
            }
        }
        if (!r.metrics) {
            c.send(http_response(r.status, r.content_type, r.body, r.headers, r.head));
            c.close();
            return;
        }
        std::weak_ptr<int> alive = alive_;
        runtime::connection* conn = &c;
        std::string type = r.content_type;
        const bool head = r.head;
        ep_.metrics_([alive, conn, type, head](std::string body) {
            if (alive.expired()) return;
            conn->send(http_response(200, type, body, {}, head));
            conn->close();
        });
    }
    void on_timer(runtime::connection& c, std::uint64_t) override { c.abort(); }
    void on_closed(runtime::connection&, int) override { delete this; }

private:
    http_endpoint& ep_;
    std::shared_ptr<int> alive_;
    std::string head_;
    bool answered_ = false;
};

http_endpoint::http_endpoint(runtime::reactor& r, metrics_fn metrics, pages_fn pages)
    : reactor_(r), metrics_(std::move(metrics)), pages_(std::move(pages)) {}

result<void> http_endpoint::listen(const runtime::socket_address& addr) {
    return reactor_.listen(addr, [this](runtime::connection& c) -> runtime::connection_handler* {
        if (clients_ >= max_clients) {
            c.send(http_response(503, "text/plain; charset=utf-8", "busy\n"));
            c.close();
            return nullptr;
        }
        return new client(*this, c);
    });
}

}  // namespace sigrelay::observe
