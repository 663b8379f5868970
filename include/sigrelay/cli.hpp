// A small command-line flag parser shared by sigrelay and its tools:
// "--name value", "--name=value", boolean "--name" / "--no-name", repeatable
// flags, positional arguments and generated --help text.
#pragma once

#include <sigrelay/result.hpp>

#include <charconv>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace sigrelay::cli {

class parser {
public:
    explicit parser(std::string program, std::string summary)
        : program_(std::move(program)), summary_(std::move(summary)) {}

    void add(std::string name, std::string* out, std::string help) {
        flags_.push_back({std::move(name), std::move(help), true,
                          [out](std::string_view v) -> result<void> { *out = std::string(v); return {}; }});
    }
    void add(std::string name, std::vector<std::string>* out, std::string help) {
        flags_.push_back({std::move(name), std::move(help), true,
                          [out](std::string_view v) -> result<void> { out->emplace_back(v); return {}; }});
    }
    template <class Int>
        requires std::is_integral_v<Int>
    void add(std::string name, Int* out, std::string help) {
        std::string n = name;
        flags_.push_back({std::move(name), std::move(help), true,
                          [out, n](std::string_view v) -> result<void> {
                              Int x{};
                              auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), x);
                              if (ec != std::errc{} || p != v.data() + v.size())
                                  return make_error(n + ": not a whole number: " + std::string(v));
                              *out = x;
                              return {};
                          }});
    }
    void add(std::string name, double* out, std::string help) {
        std::string n = name;
        flags_.push_back({std::move(name), std::move(help), true,
                          [out, n](std::string_view v) -> result<void> {
                              try {
                                  std::size_t used = 0;
                                  *out = std::stod(std::string(v), &used);
                                  if (used != v.size()) throw 0;
                              } catch (...) {
                                  return make_error(n + ": not a number: " + std::string(v));
                              }
                              return {};
                          }});
    }
    void add_bool(std::string name, bool* out, std::string help) {
        // "--flag", "--no-flag", or "--flag=true|false|yes|no|on|off|1|0";
        // anything else is an error, not a silent "on".
        flags_.push_back({name, std::move(help), false, [out, name](std::string_view v) -> result<void> {
                              if (v == "true" || v == "yes" || v == "on" || v == "1") *out = true;
                              else if (v == "false" || v == "no" || v == "off" || v == "0") *out = false;
                              else return make_error(name + ": expected true or false, got " + std::string(v));
                              return {};
                          }});
    }
    void positional(std::vector<std::string>* out, std::string usage) {
        positional_ = out;
        positional_usage_ = std::move(usage);
    }

    // Parses argv; "--help" sets help_requested() and stops.
    result<void> parse(int argc, char** argv) {
        for (int i = 1; i < argc; ++i) {
            std::string_view a = argv[i];
            if (a == "--help" || a == "-h") {
                help_ = true;
                return {};
            }
            if (a.size() < 3 || a.substr(0, 2) != "--") {
                if (positional_ && !(a.size() > 1 && a[0] == '-')) {
                    positional_->emplace_back(a);
                    continue;
                }
                return make_error("unexpected argument: " + std::string(a));
            }
            std::string_view name = a, value;
            bool has_value = false;
            if (auto eq = a.find('='); eq != std::string_view::npos) {
                name = a.substr(0, eq);
                value = a.substr(eq + 1);
                has_value = true;
            }
            const flag* f = find(name);
            bool negated = false;
            if (!f && name.substr(0, 5) == "--no-") {
                f = find(std::string("--") + std::string(name.substr(5)));
                negated = f && !f->takes_value;
                if (!negated) f = nullptr;
            }
            if (!f) return make_error("unknown flag: " + std::string(name) + " (see --help)");
            if (!f->takes_value) {
                SIGRELAY_TRY(f->set(negated ? "false" : (has_value ? value : "true")));
                continue;
            }
            if (!has_value) {
                if (i + 1 >= argc) return make_error(std::string(name) + " needs a value");
                value = argv[++i];
            }
            SIGRELAY_TRY(f->set(value));
        }
        return {};
    }

    bool help_requested() const noexcept { return help_; }

    std::string help() const {
        std::string s = "usage: " + program_ + " [flags]";
        if (positional_) s += " " + positional_usage_;
        s += "\n" + summary_ + "\n\n";
        for (const auto& f : flags_) {
            std::string left = "  " + f.name + (f.takes_value ? " V" : "");
            if (left.size() < 28) left.resize(28, ' ');
            else left += "\n" + std::string(28, ' ');
            s += left + f.help + "\n";
        }
        return s;
    }

private:
    struct flag {
        std::string name;
        std::string help;
        bool takes_value;
        std::function<result<void>(std::string_view)> set;
    };
    const flag* find(std::string_view name) const {
        for (const auto& f : flags_)
            if (f.name == name) return &f;
        return nullptr;
    }

    std::string program_, summary_;
    std::vector<flag> flags_;
    std::vector<std::string>* positional_ = nullptr;
    std::string positional_usage_;
    bool help_ = false;
};

}  // namespace sigrelay::cli
