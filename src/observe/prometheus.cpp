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
    out_ += k == kind::counter ? " counter\n" : " gauge\n";
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

}  // namespace sigrelay::observe
