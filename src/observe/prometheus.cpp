// Prometheus text exposition format 0.0.4.
#include <sigrelay/observe.hpp>

#include <cstdio>

namespace sigrelay::observe {

void prometheus_text::family(std::string_view name, kind k, std::string_view help) {
    out_ += "# HELP ";
    out_ += name;
    out_ += ' ';
    out_ += help;
    out_ += "\n# TYPE ";
    out_ += name;
    out_ += k == kind::counter ? " counter\n" : k == kind::gauge ? " gauge\n" : " histogram\n";
}

void prometheus_text::line(std::string_view name, std::string_view labels, std::string_view value) {
    out_ += name;
    if (!labels.empty()) {
        out_ += '{';
        out_ += labels;
        out_ += '}';
    }
    out_ += ' ';
    out_ += value;
    out_ += '\n';
}

void prometheus_text::sample(std::string_view name, std::string_view labels, std::uint64_t value) {
    line(name, labels, std::to_string(value));
}

void prometheus_text::sample(std::string_view name, std::string_view labels, double value) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.17g", value);
    line(name, labels, buf);
}

void prometheus_text::histogram(std::string_view name, std::string_view labels, std::span<const double> bounds,
                                std::span<const std::uint64_t> per_bucket, double sum) {
    const std::string bucket = std::string(name) + "_bucket";
    const std::string prefix = labels.empty() ? std::string() : std::string(labels) + ",";
    std::uint64_t total = 0;
    for (std::size_t i = 0; i < per_bucket.size(); ++i) {
        total += per_bucket[i];
        char le[32];
        if (i < bounds.size()) std::snprintf(le, sizeof le, "%g", bounds[i]);
        else std::snprintf(le, sizeof le, "+Inf");
        line(bucket, prefix + "le=\"" + le + "\"", std::to_string(total));
    }
    sample(std::string(name) + "_sum", labels, sum);
    sample(std::string(name) + "_count", labels, total);
}

}  // namespace sigrelay::observe
