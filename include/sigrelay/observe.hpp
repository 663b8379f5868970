// Observability: a minimal HTTP endpoint on the shard runtime for Prometheus
// (/metrics) and health checks (/healthz), and the Prometheus text format.
#pragma once

#include <sigrelay/result.hpp>
#include <sigrelay/runtime.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace sigrelay::observe {

// Builds Prometheus text exposition (format 0.0.4): one HELP/TYPE block per
// metric name, samples labelled by the caller.
class prometheus_text {
public:
    enum class kind { counter, gauge, histogram };
    // Starts a metric family; samples follow with sample().
    void family(std::string_view name, kind k, std::string_view help);
    void sample(std::string_view name, std::string_view labels, double value);
    void sample(std::string_view name, std::string_view labels, std::uint64_t value);
    // A histogram's samples: name_bucket{labels,le="…"} (cumulative, ending
    // with le="+Inf"), name_sum and name_count. `per_bucket` has one count per
    // bound plus the +Inf bucket.
    void histogram(std::string_view name, std::string_view labels, std::span<const double> bounds,
                   std::span<const std::uint64_t> per_bucket, double sum);
    const std::string& str() const noexcept { return out_; }
    std::string take() { return std::move(out_); }

private:
    void line(std::string_view name, std::string_view labels, std::string_view value);
    std::string out_;
};

// Called for GET /metrics; hands the body to `respond` (possibly later, from
// the same shard thread).
using metrics_fn = std::function<void(std::function<void(std::string body)> respond)>;

// Serves GET /metrics and GET /healthz on one reactor (HTTP/1.0 and 1.1,
// one request per connection, Connection: close), and any other path through
// the pages callback (the admin pages). Unknown paths: 404; methods other
// than GET and HEAD: 405. Requests larger than 8 KiB, or slower than 10 s,
// are dropped.
class http_endpoint {
public:
    // The response for a complete request head (exposed for tests).
    struct route {
        int status = 200;
        std::string content_type, body;
        std::string headers;  // extra header lines, each ending in CRLF
        bool metrics = false;  // the body must come from metrics_fn
        bool page = false;     // the pages callback decides, from path and query
        bool head = false;     // HEAD: the headers only
        std::string path, query;
    };
    // For a page route: its response, or nullopt for a path it does not serve.
    using pages_fn = std::function<std::optional<route>(std::string_view path, std::string_view query)>;

    http_endpoint(runtime::reactor& r, metrics_fn metrics, pages_fn pages = {});
    result<void> listen(const runtime::socket_address& addr);
    void set_healthy(bool h) noexcept { healthy_ = h; }

    static route dispatch(std::string_view request_head, bool healthy);

private:
    class client;
    runtime::reactor& reactor_;
    metrics_fn metrics_;
    pages_fn pages_;
    bool healthy_ = true;
    unsigned clients_ = 0;  // connections being served
};

// An HTTP/1.1 response with Content-Length and Connection: close;
// `extra_headers` are lines ending in CRLF. `head`: the body is left out
// (Content-Length still counts it).
std::string http_response(int status, std::string_view content_type, std::string_view body,
                          std::string_view extra_headers = {}, bool head = false);

}  // namespace sigrelay::observe
