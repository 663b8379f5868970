// Unit tests for src/signature: templates, the NDJSON directory, rules.
#include <sigrelay/signature.hpp>

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace sigrelay::signature;
using namespace std::chrono;

namespace {

using attrs = std::vector<std::pair<std::string, std::string>>;

std::string render(std::string_view src, escape mode, const attrs& values) {
    auto t = compiled_template::compile(src, mode, "t");
    REQUIRE_MESSAGE(t.ok(), (t.ok() ? "" : t.err().message));
    return t->render_with(values);
}

std::string compile_error(std::string_view src) {
    auto t = compiled_template::compile(src, escape::html, "sig.html");
    REQUIRE(!t.ok());
    return t.err().message;
}

}  // namespace

TEST_CASE("template: rendering table") {
    struct row {
        const char* src;
        escape mode;
        attrs values;
        const char* want;
    };
    const row rows[] = {
        {"plain text", escape::html, {}, "plain text"},
        {"", escape::html, {}, ""},
        {"Hi {{name}}!", escape::html, {{"name", "Ann"}}, "Hi Ann!"},
        {"{{ name }}", escape::html, {{"name", "Ann"}}, "Ann"},
        {"<b>{{name}}</b>",
         escape::html,
         {{"name", "<a&b>\"'"}},
         "<b>&lt;a&amp;b&gt;&quot;&#39;</b>"},
        {"{{name}}", escape::text, {{"name", "<a&b>\"'"}}, "<a&b>\"'"},
        {"[{{missing}}]", escape::html, {}, "[]"},
        {"{{#m}}M:{{m}}{{/m}}", escape::html, {{"m", "1"}}, "M:1"},
        {"{{#m}}M:{{m}}{{/m}}", escape::html, {}, ""},
        {"{{^m}}none{{/m}}", escape::html, {}, "none"},
        {"{{^m}}none{{/m}}", escape::html, {{"m", "x"}}, ""},
        {"{{#a}}A{{#b}}B{{/b}}{{^b}}b{{/b}}{{/a}}", escape::html, {{"a", "1"}, {"b", "1"}}, "AB"},
        {"{{#a}}A{{#b}}B{{/b}}{{^b}}b{{/b}}{{/a}}", escape::html, {{"a", "1"}}, "Ab"},
        {"{{#a}}A{{#b}}B{{/b}}{{/a}}.", escape::html, {{"b", "1"}}, "."},
        {"x{{! a comment }}y", escape::html, {}, "xy"},
        {"a { b } {c}", escape::html, {}, "a { b } {c}"},
        {"{{first.name}}-{{x_y}}", escape::html, {{"first.name", "F"}, {"x_y", "X"}}, "F-X"},
        // Line breaks become CRLF; values never carry a line break.
        {"a\nb\r\nc\rd", escape::text, {}, "a\r\nb\r\nc\r\nd"},
        {"{{v}}", escape::text, {{"v", "l1\r\nl2"}}, "l1  l2"},
        {"{{v}}", escape::html, {{"v", "a\tb\nc"}}, "a\tb c"},
        // Standalone section lines vanish with their line break.
        {"Name\n{{#m}}\nMobile: {{m}}\n{{/m}}\nEnd\n",
         escape::text,
         {{"m", "5"}},
         "Name\r\nMobile: 5\r\nEnd\r\n"},
        {"Name\n  {{#m}}  \nMobile: {{m}}\n{{/m}}\nEnd", escape::text, {}, "Name\r\nEnd"},
        {"{{#m}}inline{{/m}} text\n", escape::text, {{"m", "1"}}, "inline text\r\n"},
        {"a {{#m}}\nb\n{{/m}}", escape::text, {{"m", "1"}}, "a \r\nb\r\n"},
    };
    for (const auto& r : rows) {
        std::string src = r.src;
        CAPTURE(src);
        CHECK(render(src, r.mode, r.values) == std::string(r.want));
    }
}

TEST_CASE("template: value with embedded NUL is sanitised") {
    auto t = compiled_template::compile("{{v}}", escape::text);
    REQUIRE(t.ok());
    std::string v("a\0b", 3);
    std::string_view values[] = {v};
    CHECK(t->render(values) == "a b");
}

TEST_CASE("template: attributes in slot order, repeated names share a slot") {
    auto t = compiled_template::compile("{{b}}{{a}}{{#b}}{{b}}{{/b}}", escape::html);
    REQUIRE(t.ok());
    CHECK(t->attributes() == std::vector<std::string>{"b", "a"});
}

TEST_CASE("template: errors carry line and column") {
    struct row {
        const char* src;
        const char* want;
    };
    const row rows[] = {
        {"<p>\n  {{#mobile}}x", "sig.html:2:3: {{#mobile}} is never closed"},
        {"a\n{{/x}}", "sig.html:2:1: {{/x}} has no open section"},
        {"{{#a}}\n{{^b}}\n{{/a}}", "sig.html:3:1: {{/a}} closes {{^b}} opened at 2:1"},
        {"ab {{name", "sig.html:1:4: unterminated tag: no '}}'"},
        {"{{}}", "sig.html:1:1: empty tag"},
        {"x{{#}}", "sig.html:1:2: empty tag"},
        {"{{a b}}", "sig.html:1:1: bad attribute name 'a b' (allowed: letters, digits, _ . -)"},
        {"{{{raw}}}", "sig.html:1:1: '{{{' is not supported; use {{attr}}"},
    };
    for (const auto& r : rows) {
        CAPTURE(r.src);
        CHECK(compile_error(r.src) == r.want);
    }
    CHECK(compile_error(std::string_view("ok\n a\0", 7)) == "sig.html:2:3: NUL byte in template");
    CHECK(compile_error("bad \xff utf8") == "sig.html: not valid UTF-8");
}

// ---- directory ----------------------------------------------------------------

TEST_CASE("template: {{img:name}} slots, written as the caller's URL") {
    auto t = compiled_template::compile(
        "<img src=\"{{img:logo}}\"> {{name}} <img src=\"{{ img:badge }}\"><img src=\"{{img:logo}}\">",
        escape::html, "sig.html");
    REQUIRE(t.ok());
    REQUIRE(t->images() == std::vector<std::string>{"logo", "badge"});
    CHECK(t->image_positions() == std::vector<std::string>{"1:11", "1:45"});
    std::string_view values[] = {"Ann & Bob"};
    std::string_view urls[] = {"cid:logo.Q1@h", "https://x.example/b.png?a=1&amp;b=2"};
    std::string out;
    t->render(values, out, urls);
    CHECK(out ==
          "<img src=\"cid:logo.Q1@h\"> Ann &amp; Bob <img src=\"https://x.example/b.png?a=1&amp;b=2\">"
          "<img src=\"cid:logo.Q1@h\">");
    // Without URLs an image renders as nothing (callers always pass them).
    CHECK(t->render(values) == "<img src=\"\"> Ann &amp; Bob <img src=\"\"><img src=\"\">");
    CHECK(t->attributes() == std::vector<std::string>{"name"});
}

TEST_CASE("template: image tags are checked") {
    CHECK(compile_error("x {{img:lo go}}") ==
          "sig.html:1:3: bad image name 'lo go' (allowed: letters, digits, _ . -)");
    CHECK(compile_error("{{img:}}") == "sig.html:1:1: empty tag");
    auto text = compiled_template::compile("{{img:logo}}", escape::text, "sig.txt");
    REQUIRE(!text.ok());
    CHECK(text.err().message == "sig.txt:1:1: {{img:...}} is for HTML templates only");
}

TEST_CASE("directory: loads users and finds them case-insensitively") {
    auto d = directory::parse(
        "{\"email\": \"Ann.Lee@Fabrikam.com\", \"display_name\": \"Ann Lee\", \"title\": \"CEO\"}\n"
        "\n"
        "{\"display_name\": \"Zo\xc3\xab \xc3\x85kesson\", \"email\": \"zoe@fabrikam.com\", "
        "\"mobile\": \"+46 70\", \"age\": 41, \"manager\": null, \"tags\": [\"a\"], "
        "\"vip\": true, \"x\": {\"y\": 1}}\r\n"
        "  {\"email\":\"bo@fabrikam.com\",\"title\":\"Dev \\\"quoted\\\" \\u00e9\"}",
        "users.ndjson");
    REQUIRE_MESSAGE(d.ok(), (d.ok() ? "" : d.err().message));
    CHECK(d->size() == 3);
    auto ann = d->find("ann.lee@fabrikam.com");
    REQUIRE(ann);
    CHECK(d->email(*ann) == "Ann.Lee@Fabrikam.com");
    CHECK(d->get(*ann, "title") == "CEO");
    CHECK(d->get(*ann, "mobile") == "");
    CHECK(d->find("ANN.LEE@FABRIKAM.COM") == ann);
    auto zoe = d->find("Zoe@fabrikam.com");
    REQUIRE(zoe);
    CHECK(d->get(*zoe, "display_name") == "Zo\xc3\xab \xc3\x85kesson");
    CHECK(d->get(*zoe, "mobile") == "+46 70");
    // Non-string attributes are ignored (documented).
    CHECK(d->get(*zoe, "age") == "");
    CHECK(d->get(*zoe, "manager") == "");
    CHECK(d->get(*zoe, "vip") == "");
    CHECK(d->attribute_id("age") == directory::no_attribute);
    auto bo = d->find("bo@fabrikam.com");
    REQUIRE(bo);
    CHECK(d->get(*bo, "title") == "Dev \"quoted\" \xc3\xa9");
    CHECK(!d->find("nobody@fabrikam.com"));
    CHECK(!d->find(""));
    CHECK(!d->find("ann.lee@fabrikam.co"));
    std::vector<std::string> names;
    d->for_each(*zoe, [&](std::string_view n, std::string_view) { names.emplace_back(n); });
    CHECK(names == std::vector<std::string>{"email", "display_name", "mobile"});
}

TEST_CASE("directory: errors name origin, line and field") {
    struct row {
        std::string ndjson;
        std::string want;
    };
    const std::string ok1 = "{\"email\":\"a@x.com\"}\n";
    const std::string ok2 = "{\"email\":\"b@x.com\"}\n";
    const row rows[] = {
        {ok1 + "{\"display_name\":\"No Mail\"}\n", "users.ndjson:2: email: missing"},
        {ok1 + ok2 + "{\"email\": 42}\n", "users.ndjson:3: email: expected a string"},
        {ok1 + "{\"email\":\"nobody\"}\n",
         "users.ndjson:2: email: expected an address like user@example.com, got \"nobody\""},
        {ok1 + "{\"email\":\"a b@x.com\"}\n",
         "users.ndjson:2: email: contains a blank or control character"},
        {ok1 + ok2 + "{\"email\":\"A@X.com\"}\n",
         "users.ndjson:3: email: duplicate address \"A@X.com\" (already on line 1)"},
        {ok1 + "[1,2]\n", "users.ndjson:2: expected a JSON object {\"email\": ...}"},
        {ok1 + "{\"email\":\"c@x.com\"} {\"email\":\"d@x.com\"}\n",
         "users.ndjson:2: more than one JSON value on the line"},
        {ok1 + "{\"email\":\"c@x.com\",\"\":\"v\"}\n", "users.ndjson:2: empty attribute name"},
        {ok1 + "{\"email\":\"c@x.com\",\"email\":\"c@x.com\"}\n",
         "users.ndjson:2: email: given twice"},
    };
    for (const auto& r : rows) {
        CAPTURE(r.ndjson);
        auto d = directory::parse(r.ndjson, "users.ndjson");
        REQUIRE(!d.ok());
        CHECK(d.err().message == r.want);
    }
}

TEST_CASE("directory: bad JSON reports the line where it is") {
    std::string good;
    for (int i = 0; i < 50; ++i) good += "{\"email\":\"u" + std::to_string(i) + "@x.com\"}\n";
    const std::string bads[] = {
        "{\"email\":\"bad@x.com\",}\n",  // trailing comma
        "{\"email\":\"bad@x.com\"\n",    // unfinished object
        "{\"email\":\"bad@x.com}\n",     // unterminated string
        "{\"email\" \"bad@x.com\"}\n",   // missing colon
        "nonsense\n",
    };
    for (const auto& bad : bads) {
        for (int where : {0, 10, 50}) {
            std::string text;
            int line = 1;
            for (int i = 0; i < 50; ++i) {
                if (i == where) text += bad;
                text += "{\"email\":\"u" + std::to_string(i) + "@x.com\"}\n";
            }
            if (where == 50) text += bad;
            line = where + 1;
            CAPTURE(bad);
            CAPTURE(where);
            auto d = directory::parse(text, "u.ndjson");
            REQUIRE(!d.ok());
            CHECK(d.err().message.rfind("u.ndjson:" + std::to_string(line) + ": invalid JSON", 0) ==
                  0);
        }
    }
    // Unfinished last line without a newline.
    auto d = directory::parse(good + "{\"email\":\"z@x.com\"", "u.ndjson");
    REQUIRE(!d.ok());
    CHECK(d.err().message.rfind("u.ndjson:51: invalid JSON", 0) == 0);
}

TEST_CASE("directory: empty file and missing file") {
    auto e = directory::parse("", "e.ndjson");
    REQUIRE(e.ok());
    CHECK(e->size() == 0);
    CHECK(!e->find("a@b.c"));
    auto m = directory::load("/nonexistent/users.ndjson");
    REQUIRE(!m.ok());
    CHECK(m.err().message.rfind("/nonexistent/users.ndjson: cannot open", 0) == 0);
    directory empty;
    CHECK(!empty.find("a@b.c"));
}

TEST_CASE("directory: many users, every one found") {
    std::string text;
    for (int i = 0; i < 20000; ++i)
        text += "{\"email\":\"User" + std::to_string(i) + "@Example.com\",\"n\":\"" +
                std::to_string(i) + "\"}\n";
    auto d = directory::parse(text, "big");
    REQUIRE(d.ok());
    CHECK(d->size() == 20000);
    bool all = true;
    for (int i = 0; i < 20000; ++i) {
        auto u = d->find("user" + std::to_string(i) + "@example.COM");
        all = all && u && d->get(*u, "n") == std::to_string(i);
    }
    CHECK(all);
    CHECK(!d->find("user20000@example.com"));
}

TEST_CASE("binding renders a directory user") {
    auto d = directory::parse(
        "{\"email\":\"a@x.com\",\"display_name\":\"A & B\",\"mobile\":\"1\"}\n"
        "{\"email\":\"b@x.com\",\"display_name\":\"Bee\"}\n",
        "d");
    REQUIRE(d.ok());
    auto t = compiled_template::compile(
        "<p>{{display_name}}{{#mobile}} m:{{mobile}}{{/mobile}}{{^title}} -{{/title}}</p>",
        escape::html);
    REQUIRE(t.ok());
    binding b(*t, *d);
    std::string out;
    b.render(*t, *d, *d->find("a@x.com"), out);
    CHECK(out == "<p>A &amp; B m:1 -</p>");
    out.clear();
    b.render(*t, *d, *d->find("b@x.com"), out);
    CHECK(out == "<p>Bee -</p>");
}

// ---- rules --------------------------------------------------------------------

TEST_CASE("parse_date") {
    CHECK(parse_date("2026-12-01") == date{year{2026}, month{12}, day{1}});
    CHECK(parse_date("2024-02-29"));
    CHECK(!parse_date("2025-02-29"));
    CHECK(!parse_date("2026-13-01"));
    CHECK(!parse_date("2026-1-01"));
    CHECK(!parse_date("2026/12/01"));
    CHECK(!parse_date("20261201"));
    CHECK(!parse_date("2026-12-01 "));
}

TEST_CASE("rules: each condition and first-match order") {
    auto d = directory::parse(
        "{\"email\":\"sam@fabrikam.com\",\"department\":\"Sales\"}\n"
        "{\"email\":\"dev@fabrikam.com\",\"department\":\"R&D\"}\n",
        "d");
    REQUIRE(d.ok());
    user_id sam = *d->find("sam@fabrikam.com");
    user_id dev = *d->find("dev@fabrikam.com");
    const date today{year{2026}, month{12}, day{15}};
    message_facts m{"Sam@Fabrikam.com", recipients_scope::external, "Quote [NoSig] please", today};

    rule sales;
    sales.attributes = {{"department", "sales"}};
    CHECK(matches(sales, m, *d, sam));
    CHECK(!matches(sales, m, *d, dev));
    rule missing_attr;
    missing_attr.attributes = {{"office", "Oslo"}};
    CHECK(!matches(missing_attr, m, *d, sam));

    rule ext;
    ext.recipients = recipients_scope::external;
    rule in;
    in.recipients = recipients_scope::internal;
    CHECK(matches(ext, m, *d, sam));
    CHECK(!matches(in, m, *d, sam));
    message_facts mi = m;
    mi.recipients = recipients_scope::internal;
    CHECK(matches(in, mi, *d, sam));

    rule nosig;
    nosig.subject_contains = "[nosig]";
    CHECK(matches(nosig, m, *d, sam));
    message_facts other = m;
    other.subject = "hello";
    CHECK(!matches(nosig, other, *d, sam));

    rule by_addr;
    by_addr.sender = "sam@fabrikam.com";
    rule by_domain;
    by_domain.sender = "@fabrikam.com";
    rule by_other_domain;
    by_other_domain.sender = "@contoso.com";
    rule by_parent;
    by_parent.sender = "@com";
    CHECK(matches(by_addr, m, *d, sam));
    CHECK(matches(by_domain, m, *d, sam));
    CHECK(!matches(by_other_domain, m, *d, sam));
    CHECK(!matches(by_parent, m, *d, sam));

    // Several conditions are ANDed.
    rule both = sales;
    both.recipients = recipients_scope::internal;
    CHECK(!matches(both, m, *d, sam));
    CHECK(matches(both, mi, *d, sam));

    // First match wins; an empty rule always holds.
    rule fallback;
    fallback.template_index = 0;
    std::vector<rule> rules{nosig, sales, fallback};
    CHECK(first_match(rules, m, *d, sam) == 0u);
    CHECK(first_match(rules, other, *d, sam) == 1u);
    CHECK(first_match(rules, other, *d, dev) == 2u);
    std::vector<rule> none{sales};
    CHECK(!first_match(none, other, *d, dev));
}

TEST_CASE("rules: active date range boundaries are inclusive") {
    auto d = directory::parse("{\"email\":\"a@x.com\"}\n", "d");
    REQUIRE(d.ok());
    rule r;
    r.active = std::pair{*parse_date("2026-12-01"), *parse_date("2027-01-06")};
    struct row {
        const char* day;
        bool want;
    };
    const row rows[] = {{"2026-11-30", false}, {"2026-12-01", true},  {"2026-12-31", true},
                        {"2027-01-06", true},  {"2027-01-07", false}, {"2025-12-15", false}};
    for (const auto& rw : rows) {
        CAPTURE(rw.day);
        message_facts m{"a@x.com", recipients_scope::internal, "", *parse_date(rw.day)};
        CHECK(matches(r, m, *d, 0) == rw.want);
    }
}

TEST_CASE("ascii helpers") {
    CHECK(ascii_lower("AbC@Ö") == "abc@Ö");
    CHECK(iequals("Hello", "hELLO"));
    CHECK(!iequals("Hello", "Hell"));
    CHECK(icontains("Re: [NOSIG] x", "[nosig]"));
    CHECK(!icontains("abc", "abcd"));
    CHECK(icontains("abc", ""));
    CHECK(domain_of("a@b@c.com") == "c.com");
    CHECK(domain_of("nodomain") == "");
}
