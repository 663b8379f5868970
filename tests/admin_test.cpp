// The admin pages as pure functions of a snapshot and a query: decoding,
// escaping of every directory value, the decision shown, images inlined for
// the browser, 400/404 with a message.
#include <sigrelay/admin.hpp>

#include <doctest/doctest.h>

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

using namespace sigrelay;

namespace {

namespace fs = std::filesystem;

std::string examples() {
    const char* e = std::getenv("SIGRELAY_EXAMPLES");
    return e != nullptr ? e : "examples";
}

// One tenant folder: the example logo, a directory with a hostile display
// name, an embed template and a link template chosen by recipient group.
struct scratch {
    std::string dir;
    std::shared_ptr<const tenants::snapshot> snap;
    scratch() {
        dir = (fs::temp_directory_path() / ("sigrelay-admin-" + std::to_string(::getpid()))).string();
        fs::remove_all(dir);
        fs::create_directories(dir);
        fs::copy_file(examples() + "/fabrikam/logo.png", dir + "/logo.png");
        std::ofstream(dir + "/users.ndjson")
            << "{\"email\": \"eve@t1.com\", \"display_name\": \"Eve <script>parent.pwned=1</script> & Co\", "
               "\"title\": \"<img src=x onerror=alert(1)>\"}\n"
               "{\"email\": \"ann@t1.com\", \"display_name\": \"Ann Ödegaard\"}\n";
        std::ofstream(dir + "/in.html") << "<p>{{display_name}}<br>{{title}}</p><img src=\"{{img:logo}}\" alt=\"logo\">";
        std::ofstream(dir + "/out.html") << "<p>{{display_name}} (external)</p><img src=\"{{img:logo}}\">";
        std::ofstream(dir + "/sig.txt") << "{{display_name}}\nline two";
        const std::string json = R"({ "tenants": [ {
  "id": "t1", "domains": ["t1.com", "t1.onmicrosoft.com"],
  "smart_host": "t1-com.mail.protection.outlook.com:25",
  "processed_header": { "name": "X-Sig", "value": "yes" },
  "images": { "logo": { "file": "logo.png", "url": "https://cdn.t1.example/logo.png" } },
  "templates": {
    "internal": { "html_file": "in.html", "text_file": "sig.txt" },
    "external": { "html_file": "out.html", "text_file": "sig.txt", "image_mode": "link", "placement": "below_reply" }
  },
  "rules": [
    { "when": { "subject_contains": "[nosig]" }, "template": null },
    { "when": { "recipients": "external" }, "template": "external" },
    { "template": "internal" }
  ],
  "directory_file": "users.ndjson"
} ] })";
        auto s = tenants::snapshot::parse(json, dir + "/tenants.json");
        REQUIRE_MESSAGE(s.ok(), (s.ok() ? "" : s.err().message));
        snap = *s;
    }
    ~scratch() { fs::remove_all(dir); }
};

const scratch& data() {
    static scratch s;
    return s;
}

const signature::date today{std::chrono::year{2026}, std::chrono::month{12}, std::chrono::day{4}};

observe::http_endpoint::route ask(std::string_view query) { return admin::preview(*data().snap, query, today); }

bool has(const std::string& s, std::string_view what) { return s.find(what) != std::string::npos; }

// The srcdoc attribute's value, un-escaped: the document the iframe shows.
std::string srcdoc(const std::string& page) {
    auto at = page.find("srcdoc=\"");
    REQUIRE(at != std::string::npos);
    at += 8;
    std::string v = page.substr(at, page.find('"', at) - at);
    std::string out;
    for (std::size_t i = 0; i < v.size(); ++i) {
        if (v[i] != '&') {
            out += v[i];
            continue;
        }
        const auto semi = v.find(';', i);
        const std::string ent = v.substr(i, semi - i + 1);
        out += ent == "&amp;" ? "&" : ent == "&lt;" ? "<" : ent == "&gt;" ? ">" : ent == "&quot;" ? "\"" : "'";
        i = semi;
    }
    return out;
}

}  // namespace

TEST_CASE("query strings decode as a form would send them") {
    auto q = admin::parse_query("from=eve%40t1.com&to=a%40x.com&to=&subject=Hello+there%21&flag&%zz=%4");
    REQUIRE(q.size() == 6);
    CHECK(q[0] == std::pair<std::string, std::string>{"from", "eve@t1.com"});
    CHECK(q[1].second == "a@x.com");
    CHECK(q[2].second.empty());
    CHECK(q[3].second == "Hello there!");
    CHECK(q[4] == std::pair<std::string, std::string>{"flag", ""});
    CHECK(q[5] == std::pair<std::string, std::string>{"%zz", "%4"});  // malformed escapes kept
    CHECK(admin::parse_query("&&a=%C3%96&").at(0).second == "\xC3\x96");
    CHECK(admin::parse_query("").empty());
}

TEST_CASE("html_escape leaves no markup and keeps line ends") {
    CHECK(admin::html_escape("<a href=\"x\">Tom & 'Jerry'</a>\n") ==
          "&lt;a href=&quot;x&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/a&gt;\n");
    CHECK(admin::html_escape("Zoë") == "Zoë");
}

TEST_CASE("preview needs a sender, and says why it has nothing to show") {
    auto none = ask("subject=hi");
    CHECK(none.status == 400);
    CHECK(has(none.body, "from="));

    auto domain = ask("from=someone%40elsewhere.example");
    CHECK(domain.status == 404);
    CHECK(has(domain.body, "No tenant has the domain of someone@elsewhere.example"));

    auto missing = ask("from=nobody%40t1.com");
    CHECK(missing.status == 404);
    CHECK(has(missing.body, "nobody@t1.com is not in the directory of tenant t1"));
    CHECK(missing.content_type == "text/html; charset=utf-8");
    CHECK(has(missing.headers, "Content-Security-Policy: default-src 'none'"));
}

TEST_CASE("preview: the decision, the embedded logo inline, directory values escaped everywhere") {
    auto r = ask("from=eve%40t1.com&to=bob%40t1.com&subject=Numbers");
    REQUIRE(r.status == 200);
    CHECK(has(r.headers, "Content-Security-Policy: default-src 'none'; img-src data: https:"));
    CHECK(has(r.body, "t1 (t1.com, t1.onmicrosoft.com)"));
    CHECK(has(r.body, "internal (bob@t1.com)"));
    CHECK(has(r.body, "rules[2] when always → template internal"));
    CHECK(has(r.body, "Images</th><td>embed: logo"));
    // Not one tag from the directory reaches the page as markup.
    CHECK_FALSE(has(r.body, "<script"));
    CHECK_FALSE(has(r.body, "<img src=x"));
    CHECK(has(r.body, "Eve &lt;script&gt;parent.pwned=1&lt;/script&gt; &amp; Co &lt;eve@t1.com&gt;"));
    CHECK(has(r.body, "<iframe id=\"signature\" title=\"HTML signature\" sandbox "));

    // Inside the iframe: the template's markup, the values still escaped
    // once, and the logo as the exact bytes in a data: URL (no cid:).
    const std::string doc = srcdoc(r.body);
    CHECK(has(doc, "<p>Eve &lt;script&gt;parent.pwned=1&lt;/script&gt; &amp; Co<br>&lt;img src=x onerror=alert(1)&gt;</p>"));
    CHECK_FALSE(has(doc, "cid:"));
    const auto& logo = data().snap->all()[0].images[0];
    std::string b64;
    for (char c : logo.base64)
        if (c != '\r' && c != '\n') b64 += c;
    CHECK(has(doc, "<img src=\"data:image/png;base64," + b64 + "\" alt=\"logo\">"));

    CHECK(has(r.body, "<pre id=\"text-signature\">-- \nEve &lt;script&gt;"));
    CHECK(has(r.body, "line two</pre>"));
}

TEST_CASE("preview: external recipients pick the link template; a split shows who waits") {
    auto r = ask("from=ann%40t1.com&to=partner%40example.org");
    REQUIRE(r.status == 200);
    CHECK(has(r.body, "rules[1] when recipients external → template external"));
    CHECK(has(r.body, "Placement</th><td>below_reply"));
    const std::string doc = srcdoc(r.body);
    CHECK(has(doc, "<img src=\"https://cdn.t1.example/logo.png\">"));
    CHECK_FALSE(has(doc, "data:"));
    CHECK(has(doc, "Ann Ödegaard (external)"));

    // split_recipients is on (a rule tests recipients): the first recipient
    // fixes the group, the other group waits for its own transaction.
    auto mixed = ask("from=ann%40t1.com&to=bob%40t1.com&to=partner%40example.org");
    REQUIRE(mixed.status == 200);
    CHECK(has(mixed.body, "internal (bob@t1.com); partner@example.org in a separate transaction (452 4.5.3"));
    CHECK(has(mixed.body, "template internal"));
}

TEST_CASE("preview: a rule without a signature says so") {
    auto r = ask("from=ann%40t1.com&subject=%5BNoSig%5D+draft");
    REQUIRE(r.status == 200);
    CHECK(has(r.body, "rules[0] when subject contains &quot;[nosig]&quot; → no signature"));
    CHECK(has(r.body, "No signature:"));
    CHECK(has(r.body, "still stamped (X-Sig: yes)"));
    CHECK_FALSE(has(r.body, "<iframe"));
}

TEST_CASE("tenants page lists each tenant's set-up in rule order") {
    auto r = admin::tenants_page(*data().snap);
    REQUIRE(r.status == 200);
    CHECK(has(r.headers, "X-Content-Type-Options: nosniff"));
    CHECK(has(r.body, "1 tenant from <code>" + data().dir + "/tenants.json</code>"));
    CHECK(has(r.body, "<section class=\"tenant\" id=\"tenant-t1\"><h2>t1</h2>"));
    CHECK(has(r.body, "t1-com.mail.protection.outlook.com:25 (TLS name t1-com.mail.protection.outlook.com, system CAs)"));
    CHECK(has(r.body, "users.ndjson: 2 users"));
    CHECK(has(r.body, "one per transaction (split_recipients)"));
    const auto r0 = r.body.find("rules[0] when subject contains");
    const auto r1 = r.body.find("rules[1] when recipients external");
    const auto r2 = r.body.find("rules[2] when always");
    CHECK(r0 < r1);
    CHECK(r1 < r2);
    CHECK(r2 != std::string::npos);
    CHECK(has(r.body, "<td>external</td><td><code>" + data().dir + "/out.html</code>"));
    CHECK(has(r.body, "link: logo"));
}

TEST_CASE("serve knows two paths") {
    CHECK(admin::serve(*data().snap, "/tenants", "", today).has_value());
    CHECK(admin::serve(*data().snap, "/preview", "from=ann%40t1.com", today)->status == 200);
    CHECK_FALSE(admin::serve(*data().snap, "/", "", today).has_value());
    CHECK_FALSE(admin::serve(*data().snap, "/preview/", "", today).has_value());
}
