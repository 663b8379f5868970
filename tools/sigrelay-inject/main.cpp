// sigrelay-inject (docs/configuration.md): runs one message through the relay's path —
// tenant resolution, rules, rendering, injection, headers — and prints the
// result, so administrators can preview signatures. --check validates only.
#include <sigrelay/cli.hpp>
#include <sigrelay/mime.hpp>
#include <sigrelay/signing.hpp>
#include <sigrelay/text.hpp>
#include <sigrelay/tenants.hpp>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iostream>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

namespace {

// sysexits.h
constexpr int ex_ok = 0;
constexpr int ex_usage = 64;
constexpr int ex_dataerr = 65;
constexpr int ex_noinput = 66;
constexpr int ex_software = 70;
constexpr int ex_cantcreat = 73;
constexpr int ex_config = 78;

const char* const summary_text =
    "Runs one message (MESSAGE, or standard input; LF or CRLF line ends) through the relay's\n"
    "signing path: the tenant from --xoorg or the sender's domain, its rules, the signature,\n"
    "the headers; writes it with CRLF line ends. --check only validates the tenants file.\n"
    "Exit: 0 written (signed, stamped or untouched) or valid, 64 usage, 65 unknown sender,\n"
    "66 unreadable message, 70 not processed, 73 output not written, 78 bad tenants file.";

int usage(const std::string& why) {
    std::cerr << "sigrelay-inject: " << why
              << (why.find("see --help") == std::string::npos ? " (see --help)\n" : "\n");
    return ex_usage;
}


// Reads everything from fd (a file, pipe or terminal); false with errno set.
bool read_all(int fd, std::string& out) {
    char buf[65536];
    while (true) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return false;
        if (n == 0) return true;
        out.append(buf, static_cast<std::size_t>(n));
    }
}

using sigrelay::text::join;

// The decision as an administrator reads it (--show-decision).
std::string describe(const sigrelay::tenants::tenant& t, const sigrelay::tenants::decision& d,
                     const sigrelay::mime::injection& inj, std::string_view from,
                     const std::vector<std::string>& to) {
    namespace tn = sigrelay::tenants;
    std::string out;
    auto line = [&](std::string_view k, const std::string& v) {
        out += std::string(k) + ":" + std::string(k.size() < 11 ? 11 - k.size() : 1, ' ') + v + "\n";
    };
    line("tenant", t.id + " (" + join(t.domains, ", ") + ")");
    std::string who = std::string(from);
    if (auto u = t.directory.find(from)) {
        auto name = t.directory.get(*u, "display_name");
        who += name.empty() ? " (in the directory)" : " (" + std::string(name) + ")";
    } else if (!from.empty()) {
        who += " (not in the directory)";
    }
    line("sender", who);
    line("recipients", std::string(tn::scope_name(d.group)) + (to.empty() ? " (none given)" : " (" + join(to, ", ") + ")") +
                           (t.split_recipients ? "; one group per transaction" : ""));
    if (d.rule)
        line("rule", "rules[" + std::to_string(*d.rule) + "] when " + tn::describe_conditions(t.rules[*d.rule]));
    else
        line("rule", "none (" + d.reason + ")");
    if (const tn::template_set* s = d.template_name.empty() ? nullptr : t.find_template(d.template_name)) {
        line("template", s->name + " (" + s->html_file + ", " + s->text_file + ")");
        line("placement", std::string(tn::placement_name(s->where)));
        if (s->image_index.empty()) {
            line("images", "none");
        } else {
            std::vector<std::string> names;
            for (auto i : s->image_index) {
                const tn::image& im = t.images[i];
                names.push_back(im.name + " (" + im.content_type + ", " + std::to_string(im.size) + " bytes" +
                                (s->images == tn::image_mode::link ? ", " + im.url : std::string()) + ")");
            }
            line("images", std::string(tn::image_mode_name(s->images)) + ": " + join(names, ", "));
        }
    } else {
        line("template", "none");
    }
    const char* o = inj.result == sigrelay::mime::outcome::signed_message ? "signed"
                    : inj.result == sigrelay::mime::outcome::stamped_only ? "stamped only"
                                                                          : "untouched (already processed)";
    line("outcome", std::string(o) + (inj.reason.empty() ? "" : " (" + inj.reason + ")"));
    return out;
}

}  // namespace

int main(int argc, char** argv) {
    std::string tenants_file, out_file, xoorg, date_text, queue_id;
    std::optional<std::string> from_flag;  // --from "" is the null sender, not a missing --from
    bool show_decision = false;
    std::vector<std::string> to;
    bool check = false;
    std::vector<std::string> messages;

    sigrelay::cli::parser p("sigrelay-inject", summary_text);
    p.add("--tenants", &tenants_file, "tenants file (JSON), loaded and checked as the relay does (required)");
    p.add("--from", &from_flag, "envelope sender; \"\" is the null sender (required, except with --check)");
    p.add("--to", &to, "envelope recipient (repeatable; none: rules see no recipients, internal)");
    p.add("--xoorg", &xoorg, "DOMAIN the client would have sent as XOORG=, for tenant resolution");
    p.add("--date", &date_text, "YYYY-MM-DD: the day \"active\" rules test (default today, UTC)");
    p.add("--queue-id", &queue_id,
          "the queue id in Received: and embedded images' Content-IDs; letters, digits, '-', '.', '_' "
          "(default inject-PID-TIME)");
    p.add("--out", &out_file, "write the message to this file (default standard output)");
    p.add_bool("--show-decision", &show_decision,
               "first print tenant, recipient group, rule, template, placement, images, outcome, then \"--\"");
    p.add_bool("--check", &check, "only load and validate the tenants file, print a summary and exit");
    p.positional(&messages, "[MESSAGE]");
    if (auto r = p.parse(argc, argv); !r) return usage(r.err().message);
    if (p.help_requested()) {
        std::cout << p.requested_help();
        return ex_ok;
    }
    if (messages.size() > 1) return usage("more than one MESSAGE");
    const bool have_message = !messages.empty();
    const std::string message_file = have_message ? messages.front() : std::string();
    const bool have_from = from_flag.has_value();
    const std::string from = from_flag.value_or("");
    for (char c : queue_id)
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '.' && c != '_')
            return usage("--queue-id: use letters, digits, '-', '.' or '_'");
    if (tenants_file.empty()) return usage("--tenants is required");

    auto snap = sigrelay::tenants::snapshot::load(tenants_file);
    if (!snap) {
        std::cerr << "sigrelay-inject: " << snap.err().message << "\n";
        return ex_config;
    }
    if (check) {
        std::cout << tenants_file << ": OK, " << (*snap)->all().size() << " tenant(s)";
        for (const auto& t : (*snap)->all())
            std::cout << (&t == &(*snap)->all().front() ? ": " : ", ") << t.id << " ("
                      << t.directory.size() << " users)";
        std::cout << "\n";
        return ex_ok;
    }
    if (!have_from) return usage("--from is required");

    sigrelay::signature::date today = sigrelay::relay::today_utc();
    if (!date_text.empty()) {
        auto d = sigrelay::signature::parse_date(date_text);
        if (!d) return usage("--date: expected YYYY-MM-DD, got " + date_text);
        today = *d;
    }

    std::string raw;
    {
        const bool from_stdin = !have_message || message_file == "-";
        const std::string name = from_stdin ? std::string("stdin") : message_file;
        int fd = from_stdin ? 0 : ::open(message_file.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0 || !read_all(fd, raw)) {
            std::cerr << "sigrelay-inject: " << name << ": " << std::strerror(errno) << "\n";
            return ex_noinput;
        }
        if (!from_stdin) ::close(fd);
    }
    const std::string message = sigrelay::text::to_crlf(raw);

    const sigrelay::tenants::tenant* t = (*snap)->resolve(xoorg, from);
    if (!t) {
        std::cerr << "sigrelay-inject: unknown sender: no tenant for "
                  << (xoorg.empty()
                          ? (from.empty() ? std::string("the null sender") : "\"" + from + "\"")
                          : "XOORG \"" + xoorg + "\"")
                  << "\n";
        return ex_dataerr;
    }

    // The relay's own pipeline: rules, rendering, injection, headers.
    sigrelay::relay::envelope env;
    env.sender = from;
    env.recipients = to;
    env.helo = "localhost";
    env.client_ip = "127.0.0.1";
    env.by_host = "localhost";
    env.protocol = "ESMTP";
    env.queue_id = queue_id.empty() ? "inject-" + std::to_string(::getpid()) + "-" +
                                          std::to_string(std::time(nullptr))
                                    : queue_id;
    env.when = std::time(nullptr);
    auto signed_msg =
        sigrelay::relay::sign(*t, env, std::span<const char>(message.data(), message.size()), today);
    if (!signed_msg) {
        std::cerr << "sigrelay-inject: " << signed_msg.err().message << "\n";
        return ex_software;
    }
    const auto& decision = signed_msg->decision;
    const auto* injected = &signed_msg->injection;
    const std::string output =
        injected->flatten(std::span<const char>(message.data(), message.size()));

    const char* outcome = injected->result == sigrelay::mime::outcome::signed_message ? "signed"
                          : injected->result == sigrelay::mime::outcome::stamped_only
                              ? "stamped only"
                              : "untouched (already processed)";
    std::cerr << "sigrelay-inject: tenant " << t->id << ": " << decision.reason << "; " << outcome;
    if (!injected->reason.empty()) std::cerr << " (" << injected->reason << ")";
    std::cerr << "\n";

    if (show_decision) {
        std::cout << describe(*t, decision, *injected, from, to) << "--\n";
    }
    if (out_file.empty()) {
        std::cout.write(output.data(), static_cast<std::streamsize>(output.size()));
        std::cout.flush();
        if (!std::cout) return ex_cantcreat;
    } else {
        std::ofstream out(out_file, std::ios::binary | std::ios::trunc);
        out.write(output.data(), static_cast<std::streamsize>(output.size()));
        out.close();
        if (!out) {
            std::cerr << "sigrelay-inject: " << out_file << ": cannot write\n";
            return ex_cantcreat;
        }
    }
    return ex_ok;
}
