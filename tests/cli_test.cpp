// cli::parser's generated manual page sections and the roff escaping under
// them: what groff would read as markup is made literal, and the page names
// every flag --help names.
#include <doctest/doctest.h>

#include <sigrelay/cli.hpp>
#include <sigrelay/inbound.hpp>
#include <sigrelay/roff.hpp>

#include <cstdint>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

using namespace sigrelay;

namespace {

// The flag names --help prints, one per flag line ("  --name V   help").
std::vector<std::string> help_flags(const std::string& help) {
    std::vector<std::string> names;
    std::istringstream in(help);
    for (std::string line; std::getline(in, line);) {
        if (line.rfind("  --", 0) != 0) continue;
        names.push_back(line.substr(2, line.find(' ', 2) - 2));
    }
    return names;
}

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) out.push_back(line);
    return out;
}

struct sample {
    std::string text, list_item;
    std::vector<std::string> list;
    std::optional<std::string> maybe;
    unsigned count = 0;
    double rate = 0;
    bool on = false;
    std::vector<std::string> rest;
    inbound::server_flags server;
    inbound::tls_flags tls;

    cli::parser make() {
        cli::parser p("demo-tool", "A demo.");
        p.add("--text", &text, "a path like C:\\dir\\file (backslashes)");
        p.add("--list", &list, "repeatable; 'quoted' at the start of the line is fine");
        p.add("--maybe", &maybe, ".starts with a dot\n'and a line with an apostrophe");
        p.add("--count", &count, "a whole number -- with dashes");
        p.add("--rate", &rate, "a number, caf\xc3\xa9");
        p.add_bool("--on", &on, "a switch (see --no-on)");
        tls.add_to(p, "certificate chain (PEM)");
        server.add_to(p);
        p.positional(&rest, "[MESSAGE]");
        return p;
    }
};

}  // namespace

TEST_CASE("roff::escape: backslashes, dashes, flags and non-ASCII text") {
    CHECK(roff::escape("a\\b") == "a\\eb");
    CHECK(roff::escape("per-shard") == "per\\-shard");
    // A word that starts with '-' is a flag: \% keeps groff from hyphenating it.
    CHECK(roff::escape("see --help") == "see \\%\\-\\-help");
    CHECK(roff::escape("--x") == "\\%\\-\\-x");
    CHECK(roff::escape("[--quiet]") == "\\%[\\-\\-quiet]");
    CHECK(roff::escape("(-h)") == "\\%(\\-h)");
    CHECK(roff::escape("caf\xc3\xa9") == "caf\\[u00E9]");
    CHECK(roff::escape("\xe2\x80\x94") == "\\[u2014]");
    CHECK(roff::escape("\xf0\x9f\x98\x80") == "\\[u1F600]");
    // Not UTF-8 (a lone continuation byte, a truncated sequence, an overlong form).
    CHECK(roff::escape("a\x80z") == "a\\[uFFFD]z");
    CHECK(roff::escape("\xe2\x80") == "\\[uFFFD]\\[uFFFD]");
    CHECK(roff::escape("\xc0\xaf") == "\\[uFFFD]\\[uFFFD]");
    CHECK(roff::escape("plain text, 1.0") == "plain text, 1.0");
}

TEST_CASE("roff::lines: no input line is read as a request") {
    CHECK(roff::lines(".SH oops") == "\\&.SH oops\n");
    CHECK(roff::lines("'br") == "\\&'br\n");
    CHECK(roff::lines("one\ntwo") == "one\ntwo\n");
    CHECK(roff::lines("one\n\ntwo\n") == "one\n.PP\ntwo\n");
    CHECK(roff::lines(" .indented") == " .indented\n");
}

TEST_CASE("parser::man: every flag of --help, escaped, in SYNOPSIS and OPTIONS") {
    sample s;
    const cli::parser p = s.make();
    const std::string man = p.man();
    const std::vector<std::string> flags = help_flags(p.help());
    REQUIRE(flags.size() == 20);  // 6 of its own, 4 TLS, 10 SMTP server flags
    for (const auto& f : flags) {
        INFO(f);
        CHECK(man.find("\\fB" + roff::escape(f) + "\\fR") != std::string::npos);
    }
    // Switches name their --no- form; value flags the kind of value.
    CHECK(man.find("\\fB\\%\\-\\-on\\fR, \\fB\\%\\-\\-no\\-on\\fR") != std::string::npos);
    CHECK(man.find("\\fB\\%\\-\\-count\\fR \\fIN\\fR") != std::string::npos);
    CHECK(man.find("\\fB\\%\\-\\-rate\\fR \\fINUMBER\\fR") != std::string::npos);
    CHECK(man.find("\\fB\\%\\-\\-text\\fR \\fIVALUE\\fR") != std::string::npos);
    CHECK(man.find("\\fB\\%\\-\\-help\\fR") != std::string::npos);
    CHECK(man.find("\\fB\\%\\-\\-man\\fR") != std::string::npos);
    // The help strings' markup-like characters are literal.
    CHECK(man.find("C:\\edir\\efile") != std::string::npos);
    CHECK(man.find("\\&.starts with a dot\n\\&'and a line") != std::string::npos);
    CHECK(man.find("caf\\[u00E9]") != std::string::npos);

    const std::size_t syn = man.find(".SH SYNOPSIS\n.SY demo\\-tool\n");
    const std::size_t opt = man.find("\n.SH OPTIONS\n");
    REQUIRE(syn == 0);
    REQUIRE(opt != std::string::npos);
    CHECK(man.find("[MESSAGE]") < opt);
    CHECK(man.find(".YS\n") < opt);

    // No '-' is left for groff to typeset as a hyphen, and every line that
    // starts with '.' is one of the requests the renderer means to write.
    for (std::size_t i = 0; i < man.size(); ++i)
        if (man[i] == '-') {
            INFO("bare '-' at ", i, ": ", man.substr(i > 20 ? i - 20 : 0, 40));
            CHECK((i > 0 && man[i - 1] == '\\'));
        }
    for (const auto& line : lines_of(man)) {
        if (line.empty() || line[0] != '.') continue;
        const std::string req = line.substr(0, line.find(' '));
        INFO(line);
        CHECK((req == ".SH" || req == ".TP" || req == ".SY" || req == ".YS" || req == ".PP"));
    }
    // A page without switches does not explain --no-NAME.
    cli::parser plain("plain", "No switches.");
    std::string v;
    plain.add("--only", &v, "a value");
    CHECK(plain.man().find("no\\-name") == std::string::npos);
    CHECK(man.find("no\\-name") != std::string::npos);
}

TEST_CASE("parser: --man and --help are requests; an optional string tells empty from absent") {
    sample s;
    cli::parser p = s.make();
    const char* man[] = {"demo-tool", "--man"};
    REQUIRE(p.parse(2, const_cast<char**>(man)).ok());
    CHECK(p.help_requested());
    CHECK(p.man_requested());

    sample s2;
    cli::parser q = s2.make();
    const char* help[] = {"demo-tool", "-h"};
    REQUIRE(q.parse(2, const_cast<char**>(help)).ok());
    CHECK(q.help_requested());
    CHECK_FALSE(q.man_requested());

    sample s3;
    cli::parser r = s3.make();
    const char* none[] = {"demo-tool", "--count", "3"};
    REQUIRE(r.parse(3, const_cast<char**>(none)).ok());
    CHECK_FALSE(r.help_requested());
    CHECK_FALSE(s3.maybe.has_value());
    const char* empty[] = {"demo-tool", "--maybe="};
    REQUIRE(r.parse(2, const_cast<char**>(empty)).ok());
    REQUIRE(s3.maybe.has_value());
    CHECK(s3.maybe->empty());
}
