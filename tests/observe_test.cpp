// observe: request routing, responses and the Prometheus text format.
#include <doctest/doctest.h>

#include <sigrelay/observe.hpp>

using namespace sigrelay::observe;

TEST_CASE("routes: /metrics, /healthz, 404, 405, 400") {
    auto m = http_endpoint::dispatch("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", true);
    CHECK(m.metrics);
    CHECK(m.content_type.find("version=0.0.4") != std::string::npos);
    auto h = http_endpoint::dispatch("GET /healthz HTTP/1.0\r\n\r\n", true);
    CHECK(h.status == 200);
    CHECK(h.body == "ok\n");
    CHECK(http_endpoint::dispatch("GET /healthz HTTP/1.1\r\n\r\n", false).status == 503);
    CHECK(http_endpoint::dispatch("GET /metrics?x=1 HTTP/1.1\r\n\r\n", true).metrics);
    CHECK(http_endpoint::dispatch("GET / HTTP/1.1\r\n\r\n", true).status == 404);
    CHECK(http_endpoint::dispatch("POST /metrics HTTP/1.1\r\n\r\n", true).status == 405);
    CHECK(http_endpoint::dispatch("garbage\r\n\r\n", true).status == 400);
    CHECK(http_endpoint::dispatch("GET /metrics\r\n\r\n", true).status == 400);
}

TEST_CASE("http_response carries length and closes") {
    std::string r = http_response(200, "text/plain", "ok\n");
    CHECK(r.rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
    CHECK(r.find("Content-Length: 3\r\n") != std::string::npos);
    CHECK(r.find("Connection: close\r\n\r\nok\n") != std::string::npos);
}

TEST_CASE("prometheus text: HELP and TYPE once per family, then labelled samples") {
    prometheus_text t;
    t.family("sigrelay_relayed_total", prometheus_text::kind::counter, "Messages relayed.");
    t.sample("sigrelay_relayed_total", "shard=\"0\"", std::uint64_t{7});
    t.sample("sigrelay_relayed_total", "shard=\"1\"", std::uint64_t{9});
    t.family("sigrelay_open", prometheus_text::kind::gauge, "Open.");
    t.sample("sigrelay_open", "", 1.5);
    CHECK(t.str() ==
          "# HELP sigrelay_relayed_total Messages relayed.\n# TYPE sigrelay_relayed_total counter\n"
          "sigrelay_relayed_total{shard=\"0\"} 7\nsigrelay_relayed_total{shard=\"1\"} 9\n"
          "# HELP sigrelay_open Open.\n# TYPE sigrelay_open gauge\nsigrelay_open 1.5\n");
}

TEST_CASE("prometheus text: a histogram is cumulative buckets, sum and count") {
    sigrelay::observe::prometheus_text t;
    t.family("lat_seconds", sigrelay::observe::prometheus_text::kind::histogram, "Latency.");
    const double bounds[] = {0.01, 0.1};
    const std::uint64_t per[] = {2, 3, 1};
    t.histogram("lat_seconds", "tenant=\"fabrikam\"", bounds, per, 0.5);
    CHECK(t.str() ==
          "# HELP lat_seconds Latency.\n# TYPE lat_seconds histogram\n"
          "lat_seconds_bucket{tenant=\"fabrikam\",le=\"0.01\"} 2\n"
          "lat_seconds_bucket{tenant=\"fabrikam\",le=\"0.1\"} 5\n"
          "lat_seconds_bucket{tenant=\"fabrikam\",le=\"+Inf\"} 6\n"
          "lat_seconds_sum{tenant=\"fabrikam\"} 0.5\n"
          "lat_seconds_count{tenant=\"fabrikam\"} 6\n");
}

TEST_CASE("other paths are page routes; HEAD sends headers only") {
    auto p = http_endpoint::dispatch("GET /preview?from=a%40b.com&to=c HTTP/1.1\r\n\r\n", true);
    CHECK(p.page);
    CHECK(p.status == 404);  // unless the pages callback serves it
    CHECK(p.path == "/preview");
    CHECK(p.query == "from=a%40b.com&to=c");
    auto post = http_endpoint::dispatch("POST /preview HTTP/1.1\r\n\r\n", true);
    CHECK_FALSE(post.page);
    CHECK(post.status == 405);  // every path is read-only
    CHECK(http_endpoint::dispatch("HEAD /metrics HTTP/1.1\r\n\r\n", true).head);

    const std::string full = http_response(200, "text/html", "<p>hi</p>", "X-A: b\r\n");
    CHECK(full == "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 9\r\nX-A: b\r\n"
                  "Connection: close\r\n\r\n<p>hi</p>");
    const std::string head = http_response(200, "text/html", "<p>hi</p>", {}, true);
    CHECK(head.ends_with("Content-Length: 9\r\nConnection: close\r\n\r\n"));
}
