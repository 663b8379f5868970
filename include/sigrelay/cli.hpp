// A small command-line flag parser shared by sigrelay and its tools:
// "--name value", "--name=value", boolean "--name" / "--no-name", repeatable
// flags, positional arguments, and both the --help text and the manual
// page's SYNOPSIS and OPTIONS (--man) generated from the one flag list.
#pragma once

#include <sigrelay/result.hpp>
#include <sigrelay/roff.hpp>

#include <charconv>
#include <cstdint>
#include <functional>
#include <optional>
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
    // For a flag whose empty value means something (sigrelay-inject --from ""):
    // the caller can tell "given empty" from "not given".
    void add(std::string name, std::optional<std::string>* out, std::string help) {
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
                          },
                          "N"});
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
                          },
                          "NUMBER"});
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

    // Parses argv; "--help" or "--man" sets help_requested() and stops.
    result<void> parse(int argc, char** argv) {
        for (int i = 1; i < argc; ++i) {
            std::string_view a = argv[i];
            if (a == "--help" || a == "-h" || a == "--man") {
                help_ = true;
                man_ = a == "--man";
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

    // True for --help and --man: the caller prints requested_help() and exits 0.
    bool help_requested() const noexcept { return help_; }
    bool man_requested() const noexcept { return man_; }
    // What was asked for: man() after --man, help() after --help.
    std::string requested_help() const { return man_ ? man() : help(); }

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

    // The manual page's SYNOPSIS and OPTIONS sections (roff, man macros),
    // from the same flags and help strings as help(). The rest of a page is
    // prose in packaging/man/, which the build joins with this; the OPTIONS
    // heading is what it splits on.
    std::string man() const {
        // .SY/.YS: a hanging indent under the program's name, not adjusted.
        std::string s = ".SH SYNOPSIS\n.SY " + roff::escape(program_) + "\n[\\fIflags\\fR]\n";
        if (positional_) s += roff::lines(positional_usage_);
        s += ".YS\n.SH OPTIONS\n"
             "A flag with a value is written \\fB\\-\\-name\\fR \\fIvalue\\fR or "
             "\\fB\\-\\-name=\\fR\\fIvalue\\fR; for a flag given more than once the last value wins, "
             "except where the flag says it is repeatable.\n";
        bool any_bool = false;
        for (const auto& f : flags_) any_bool = any_bool || !f.takes_value;
        if (any_bool)
            s += "A switch is turned on with \\fB\\-\\-name\\fR and off with \\fB\\-\\-no\\-name\\fR; "
                 "\\fB\\-\\-name=\\fR takes true, yes, on, 1, false, no, off or 0.\n";
        for (const auto& f : flags_) {
            s += ".TP\n\\fB" + roff::escape(f.name) + "\\fR";
            if (f.takes_value) s += " \\fI" + roff::escape(f.value_name) + "\\fR";
            else s += ", \\fB" + roff::escape("--no-" + f.name.substr(2)) + "\\fR";
            s += "\n" + roff::lines(f.help);
        }
        s += ".TP\n\\fB" + roff::escape("--help") + "\\fR, \\fB" + roff::escape("-h") + "\\fR\n" +
             "Print every flag with a line of description and exit 0.\n"
             ".TP\n\\fB" + roff::escape("--man") + "\\fR\n" +
             "Print the SYNOPSIS and OPTIONS sections of this page as roff and exit 0 "
             "(the page is built from them, so it names the same flags as \\fB" + roff::escape("--help") +
             "\\fR).\n";
        return s;
    }

private:
    struct flag {
        std::string name;
        std::string help;
        bool takes_value;
        std::function<result<void>(std::string_view)> set;
        // What the manual page writes after the flag: the kind of value it takes.
        std::string value_name = "VALUE";
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
    bool man_ = false;
};

}  // namespace sigrelay::cli
