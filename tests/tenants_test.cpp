// Unit tests for src/tenants: the tenants file, lookups, the signature
// decision, Subject decoding and the Received: builder.
#include <sigrelay/tenants.hpp>
#include <sigrelay/text.hpp>
#include <sigrelay/mime/codec.hpp>

#include <doctest/doctest.h>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

using namespace sigrelay;
using namespace sigrelay::tenants;

namespace {

const std::string data_dir = std::string(SIGRELAY_SOURCE_DIR) + "/tests/data/tenants";

std::string env_dir(const char* name) {
    const char* v = std::getenv(name);
    REQUIRE_MESSAGE(v != nullptr, name << " is not set (run through meson test)");
    return v;
}

// tests/data/tenants, copied into a scratch folder with real certificate
// files where good.json's paths point (the loader reads and checks them):
// "../ca.pem", "certs/abc.pem" and an absolute key path.
struct good_data {
    std::string root, dir;
    good_data() {
        namespace fs = std::filesystem;
        root = (fs::temp_directory_path() / ("sigrelay-tenants-" + std::to_string(::getpid()))).string();
        dir = root + "/tenants";
        fs::remove_all(root);
        fs::create_directories(dir + "/certs");
        fs::create_directories(root + "/abs");
        fs::copy(std::string(SIGRELAY_SOURCE_DIR) + "/tests/data/tenants", dir,
                 fs::copy_options::recursive | fs::copy_options::overwrite_existing);
        const std::string certs = env_dir("SIGRELAY_TEST_CERTS");
        fs::copy_file(certs + "/ca.pem", root + "/ca.pem", fs::copy_options::overwrite_existing);
        fs::copy_file(certs + "/S5HG3DCG14.pem", dir + "/certs/abc.pem", fs::copy_options::overwrite_existing);
        fs::copy_file(certs + "/S5HG3DCG14.key", root + "/abs/abc.key", fs::copy_options::overwrite_existing);
        std::ifstream in(dir + "/good.json");
        std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        replace(text, "\"/abs/abc.key\"", "\"" + root + "/abs/abc.key\"");
        replace(text, "ABC.smtp.contososignatureservice.com", "S5HG3DCG14.smtp.contososignatureservice.com");
        std::ofstream(dir + "/good.json") << text;
    }
    ~good_data() { std::filesystem::remove_all(root); }
    static void replace(std::string& s, const std::string& from, const std::string& to) {
        auto at = s.find(from);
        REQUIRE(at != std::string::npos);
        s.replace(at, from.size(), to);
    }
};

const good_data& good() {
    static good_data d;
    return d;
}

std::shared_ptr<const snapshot> load_good() {
    auto s = snapshot::load(good().dir + "/good.json");
    REQUIRE_MESSAGE(s.ok(), (s.ok() ? "" : s.err().message));
    return *s;
}

signature::date day(const char* s) {
    return *signature::parse_date(s);
}

// A minimal valid tenants file, one field per line, so that a test can swap
// one line and know the line number the error must name.
std::vector<std::string> base_lines() {
    return {
        "{ \"tenants\": [ {",                                                    // 1
        "  \"id\": \"t1\",",                                                     // 2
        "  \"domains\": [\"t1.com\"],",                                          // 3
        "  \"smart_host\": \"mx.t1.com:25\",",                                   // 4
        "  \"processed_header\": { \"name\": \"X-Sig\", \"value\": \"yes\" },",  // 5
        "  \"templates\": { \"default\": { \"html_file\": \"sig.html\", \"text_file\": \"sig.txt\" "
        "} },",                                             // 6
        "  \"rules\": [ { \"template\": \"default\" } ],",  // 7
        "  \"directory_file\": \"users.ndjson\"",           // 8
        "} ] }",                                            // 9
    };
}

std::string join(const std::vector<std::string>& lines) {
    std::string s;
    for (const auto& l : lines) s += l + "\n";
    return s;
}

}  // namespace

TEST_CASE("display names: placement, image mode, joined lists") {
    CHECK(sigrelay::tenants::placement_name(sigrelay::mime::placement::bottom) == "bottom");
    CHECK(sigrelay::tenants::placement_name(sigrelay::mime::placement::below_reply) == "below_reply");
    CHECK(sigrelay::tenants::image_mode_name(sigrelay::tenants::image_mode::link) == "link");
    const std::vector<std::string> parts = {"", "a.com", "b.com"};
    CHECK(sigrelay::text::join(parts, ", ") == ", a.com, b.com");  // an empty first item keeps its place
    CHECK(sigrelay::text::join(std::vector<std::string>{}, ", ").empty());
}

TEST_CASE("tenants: the examples load") {
    const std::string examples_dir = env_dir("SIGRELAY_EXAMPLES");
    auto s = snapshot::load(examples_dir + "/tenants.json");
    REQUIRE_MESSAGE(s.ok(), (s.ok() ? "" : s.err().message));
    const auto& snap = **s;
    REQUIRE(snap.all().size() == 2);
    const tenant* fab = snap.find_by_id("fabrikam");
    REQUIRE(fab);
    CHECK(fab->smart_host_name == "127.0.0.1");
    CHECK(fab->smart_host_port == 2526);
    CHECK(fab->tls_domain == "fabrikam.mail.protection.outlook.com");
    // "../certs/..." beside the examples: the build puts the test certificates there.
    CHECK(fab->smart_host_ca == env_dir("SIGRELAY_TEST_CERTS") + "/ca.pem");
    CHECK(fab->client_cert == env_dir("SIGRELAY_TEST_CERTS") + "/S5HG3DCG14.pem");
    CHECK(fab->client_cert_pem.find("BEGIN CERTIFICATE") != std::string::npos);
    CHECK(fab->client_key_pem.find("PRIVATE KEY") != std::string::npos);
    CHECK(fab->certificate_domain == "S5HG3DCG14.smtp.contososignatureservice.com");
    CHECK(fab->processed_header.name == "SignatureContoso");
    CHECK(fab->templates.size() == 2);
    CHECK(fab->directory.size() == 5);
    CHECK(snap.find_by_xoorg("fabrikam.onmicrosoft.com") == fab);
    const tenant* con = snap.find_by_domain("Contoso.com");
    REQUIRE(con);
    CHECK(con->id == "contoso");
    CHECK(con->templates[0].where == mime::placement::bottom);

    std::vector<std::string> rcpts{"someone@gmail.com"};
    auto d = decide(*fab, "zoe.akesson@fabrikam.com", rcpts, "Offer", day("2026-03-01"));
    REQUIRE(d.kind == verdict::signature);
    CHECK(d.template_name == "sales");
    CHECK(d.signature.html.find("Zoë Åkesson") != std::string::npos);
    CHECK(d.signature.text.find("Zoë Åkesson\r\nNordic Sales Lead - Fabrikam Sales\r\n") !=
          std::string::npos);
    CHECK(d.signature.html.find("Mobile") == std::string::npos);  // no mobile attribute
    auto dev = decide(*fab, "dev@fabrikam.com", rcpts, "", day("2026-03-01"));
    REQUIRE(dev.kind == verdict::signature);
    CHECK(dev.template_name == "default");
    CHECK(dev.signature.html.find("Dana &quot;Dev&quot; O&#39;Neil") != std::string::npos);
    CHECK(dev.signature.html.find("R&amp;D Engineer &lt;Platform&gt;") != std::string::npos);
    CHECK(dev.signature.text.find("Dana \"Dev\" O'Neil\r\nR&D Engineer <Platform>, R&D\r\n") !=
          std::string::npos);
    CHECK(dev.signature.where == mime::placement::below_reply);
}

TEST_CASE("tenants: fields, relative paths and lookups") {
    auto snap = load_good();
    REQUIRE(snap->all().size() == 2);
    const tenant& t = snap->all()[0];
    CHECK(t.id == "example");
    CHECK(t.domains ==
          std::vector<std::string>{"example.com", "example.org", "example.onmicrosoft.com"});
    CHECK(t.smart_host == "example-com.mail.protection.outlook.com:25");
    CHECK(t.smart_host_name == "example-com.mail.protection.outlook.com");
    CHECK(t.smart_host_port == 25);
    CHECK(t.tls_domain == "example-com.mail.protection.outlook.com");  // default: the host
    CHECK(t.smart_host_ca == good().root + "/ca.pem");  // "../ca.pem"
    CHECK(t.client_cert == good().dir + "/certs/abc.pem");
    CHECK(t.client_key == good().root + "/abs/abc.key");  // absolute stays as written
    CHECK(t.directory_file == good().dir + "/users.ndjson");
    CHECK(t.templates[1].html_file == good().dir + "/sub/campaign.html");
    CHECK(t.templates[0].where == mime::placement::below_reply);
    CHECK(t.templates[1].where == mime::placement::bottom);  // the default
    CHECK(t.rules.size() == 5);
    CHECK(t.require.sni == "abc.smtp.contososignatureservice.com");
    CHECK(t.require.tenant_guid == "0b5e3c1a-1111-2222-3333-444455556666");
    CHECK(t.reply_markers == std::vector<std::string>{"Von:", "-----Ursprüngliche Nachricht-----"});
    CHECK(t.find_template("campaign") == &t.templates[1]);
    CHECK(!t.find_template("nope"));

    const tenant& o = snap->all()[1];
    CHECK(o.smart_host_name == "::1");
    CHECK(o.smart_host_port == 2525);
    CHECK(o.tls_domain == "::1");

    struct row {
        const char* domain;
        const char* want;  // tenant id, or "" for none
    };
    const row rows[] = {
        {"example.com", "example"},
        {"EXAMPLE.COM", "example"},
        {"example.com.", "example"},
        {"example.org", "example"},
        {"other.net", "other"},
        {"mail.example.com", ""},
        {"com", ""},
        {"", ""},
        {"example.co", ""},
        {"example.onmicrosoft.com", "example"},
    };
    for (const auto& r : rows) {
        CAPTURE(r.domain);
        const tenant* found = snap->find_by_domain(r.domain);
        CHECK(std::string(found ? found->id : "") == r.want);
    }
    CHECK(snap->find_by_address("Someone@Example.COM") == &t);
    CHECK(snap->find_by_address("example.com") == nullptr);
    CHECK(snap->find_by_id("other") == &o);
    // XOORG first and authoritative; else the sender's domain.
    CHECK(snap->resolve("example.onmicrosoft.com", "x@other.net") == &t);
    CHECK(snap->resolve("Example.OnMicrosoft.com", "") == &t);
    CHECK(snap->resolve("unknown.onmicrosoft.com", "x@example.com") == nullptr);
    CHECK(snap->resolve("", "x@other.net") == &o);
    CHECK(snap->resolve("", "") == nullptr);
    CHECK(snap->resolve("", "x@nowhere.net") == nullptr);
}

TEST_CASE("tenants: rules and rendering through decide()") {
    auto snap = load_good();
    const tenant& t = snap->all()[0];
    std::vector<std::string> external{"a@example.com", "b@gmail.com"};
    std::vector<std::string> internal{"a@example.com", "b@EXAMPLE.org"};
    CHECK(classify_recipients(t, external) == signature::recipients_scope::external);
    CHECK(classify_recipients(t, internal) == signature::recipients_scope::internal);
    CHECK(classify_recipients(t, {}) == signature::recipients_scope::internal);
    std::vector<std::string> bare{"postmaster"};
    CHECK(classify_recipients(t, bare) == signature::recipients_scope::external);

    struct row {
        const char* sender;
        bool external;
        const char* subject;
        const char* date;
        verdict kind;
        const char* reason;
    };
    const row rows[] = {
        {"ann@example.com", false, "Re: [nosig] hi", "2026-06-01", verdict::no_signature,
         "rules[0]: template null"},
        {"ann@example.com", true, "hi", "2026-12-01", verdict::signature,
         "rules[1]: template campaign"},
        {"carol@example.org", true, "hi", "2027-01-06", verdict::signature,
         "rules[1]: template campaign"},
        {"carol@example.org", true, "hi", "2027-01-07", verdict::no_signature, "no rule matched"},
        {"ann@example.com", false, "hi", "2026-12-24", verdict::signature,
         "rules[2]: template campaign"},
        {"ANN@example.com", true, "hi", "2026-06-01", verdict::signature,
         "rules[2]: template campaign"},
        {"bob@example.com", false, "hi", "2026-06-01", verdict::no_signature,
         "rules[3]: template null"},
        {"carol@example.org", false, "hi", "2026-06-01", verdict::signature,
         "rules[4]: template default"},
        {"nobody@example.com", false, "hi", "2026-06-01", verdict::unknown_sender,
         "sender not in the directory"},
        {"", false, "hi", "2026-06-01", verdict::no_signature, "null sender"},
    };
    for (const auto& r : rows) {
        CAPTURE(r.sender);
        CAPTURE(r.date);
        auto d = decide(t, r.sender, r.external ? external : internal, r.subject, day(r.date));
        CHECK(d.kind == r.kind);
        CHECK(d.reason == r.reason);
    }

    auto ann = decide(t, "ann@example.com", external, "", day("2026-12-02"));
    CHECK(ann.signature.html == "<p>Ann &lt;A&amp;B&gt; - campaign</p>\r\n");
    CHECK(ann.signature.text == "Ann <A&B> - campaign\r\n");
    CHECK(ann.signature.where == mime::placement::bottom);
    CHECK(ann.rule == 1u);

    // Directory values cannot carry line breaks into a body.
    auto carol = decide(t, "carol@example.org", internal, "", day("2026-06-01"));
    CHECK(carol.signature.html == "<p>Carol  Bcc: evil@x<br>Line Break</p>\r\n");
    CHECK(carol.signature.text == "Carol  Bcc: evil@x\r\nLine Break\r\n");
    CHECK(carol.signature.where == mime::placement::below_reply);
}

TEST_CASE("tenants: each invalid field names file, line and field") {
    struct row {
        std::size_t line;  // 1-based line to replace
        std::string replacement;
        std::string want;  // after "<path>:"
    };
    const std::string d = data_dir;
    const row rows[] = {
        {4, "\"smart_host\": \"mx.t1.com\",", "4: tenants[0].smart_host: expected \"host:port\""},
        {4, "\"smart_host\": \"mx.t1.com:0\",", "4: tenants[0].smart_host: expected \"host:port\""},
        {4, "\"smart_host\": \"mx.t1.com:70000\",",
         "4: tenants[0].smart_host: expected \"host:port\""},
        {4, "\"smart_host\": \"mx.t1.com:25x\",",
         "4: tenants[0].smart_host: expected \"host:port\""},
        {4, "\"smart_host\": \"[::1]25\",", "4: tenants[0].smart_host: expected \"host:port\""},
        {4, "\"smart_host\": \":25\",", "4: tenants[0].smart_host: expected \"host:port\""},
        {4, "\"smart_host\": 25,", "4: tenants[0].smart_host: expected a string, got a number"},
        {4, "\"smart_host\": \"mx.t1.com:25\", \"tls_domain\": \"a b\",",
         "4: tenants[0].tls_domain: not a domain name"},
        {2, "\"id\": \"\",", "2: tenants[0].id: must not be empty"},
        {2, "\"id\": \"a b\",", "2: tenants[0].id: use letters, digits, '-', '_' or '.'"},
        {3, "\"domains\": [],", "3: tenants[0].domains: must not be empty"},
        {3, "\"domains\": \"t1.com\",", "3: tenants[0].domains: expected an array, got a string"},
        {3, "\"domains\": [\"t1.com\", \"bad_domain..com\"],",
         "3: tenants[0].domains[1]: not a domain name"},
        {3, "\"domains\": [\"t1.com\", \"T1.com\"],", "3: tenants[0].domains[1]: listed twice"},
        {5, "\"processed_header\": { \"name\": \"X Sig\", \"value\": \"yes\" },",
         "5: tenants[0].processed_header.name: not a header field name (printable ASCII without "
         "':' or blanks)"},
        {5, "\"processed_header\": { \"name\": \"X:Sig\", \"value\": \"yes\" },",
         "5: tenants[0].processed_header.name: not a header field name (printable ASCII without "
         "':' or blanks)"},
        {5, "\"processed_header\": { \"name\": \"\", \"value\": \"yes\" },",
         "5: tenants[0].processed_header.name: not a header field name (printable ASCII without "
         "':' or blanks)"},
        {5, "\"processed_header\": { \"name\": \"X-Sig\", \"value\": \"yes\\r\\nBcc: evil@x\" },",
         "5: tenants[0].processed_header.value: must not contain CR, LF, NUL or control "
         "characters"},
        {5, "\"processed_header\": { \"name\": \"X-Sig\", \"value\": \"yes\\n\" },",
         "5: tenants[0].processed_header.value: must not contain CR, LF, NUL or control "
         "characters"},
        {5, "\"processed_header\": { \"name\": \"X-Sig\", \"value\": \"y\\u0000s\" },",
         "5: tenants[0].processed_header.value: must not contain CR, LF, NUL or control "
         "characters"},
        {5, "\"processed_header\": { \"name\": \"X-Sig\" },",
         "5: tenants[0].processed_header.value: missing"},
        {5, "\"processed_header\": { \"name\": \"X-Sig\", \"value\": \"yes\", \"x\": 1 },",
         "5: tenants[0].processed_header.x: unknown field"},
        {6, "\"templates\": { \"default\": { \"html_file\": \"sig.html\" } },",
         "6: tenants[0].templates.default.text_file: missing"},
        {6,
         "\"templates\": { \"default\": { \"html_file\": \"nope.html\", \"text_file\": \"sig.txt\" "
         "} },",
         "6: tenants[0].templates.default.html_file: " + d +
             "/nope.html: cannot open: No such file or directory"},
        {6,
         "\"templates\": { \"default\": { \"html_file\": \"bad-section.html\", \"text_file\": "
         "\"sig.txt\" } },",
         "6: tenants[0].templates.default.html_file: " + d +
             "/bad-section.html:2:3: {{#mobile}} is never closed"},
        {6,
         "\"templates\": { \"default\": { \"html_file\": \"sig.html\", \"text_file\": \"sig.txt\", "
         "\"placement\": \"top\" } },",
         "6: tenants[0].templates.default.placement: expected \"bottom\" or \"below_reply\""},
        {7, "\"rules\": [ { \"template\": \"sales\" } ],",
         "7: tenants[0].rules[0].template: unknown template \"sales\""},
        {7, "\"rules\": [ { \"when\": {} } ],", "7: tenants[0].rules[0].template: missing"},
        {7, "\"rules\": [ { \"template\": null, \"tmpl\": 1 } ],",
         "7: tenants[0].rules[0].tmpl: unknown field"},
        {7, "\"rules\": [ { \"when\": { \"recipients\": \"everyone\" }, \"template\": null } ],",
         "7: tenants[0].rules[0].when.recipients: expected \"internal\" or \"external\""},
        {7, "\"rules\": [ { \"when\": { \"active\": [\"2026-12-01\"] }, \"template\": null } ],",
         "7: tenants[0].rules[0].when.active: expected [\"YYYY-MM-DD\", \"YYYY-MM-DD\"]"},
        {7,
         "\"rules\": [ { \"when\": { \"active\": [\"2026-12-01\", \"2027-02-30\"] }, \"template\": "
         "null } ],",
         "7: tenants[0].rules[0].when.active[1]: expected a date \"YYYY-MM-DD\""},
        {7,
         "\"rules\": [ { \"when\": { \"active\": [\"2027-01-06\", \"2026-12-01\"] }, \"template\": "
         "null } ],",
         "7: tenants[0].rules[0].when.active: the range ends before it starts"},
        {7, "\"rules\": [ { \"when\": { \"department\": 5 }, \"template\": null } ],",
         "7: tenants[0].rules[0].when.department: expected a string, got a number"},
        {7, "\"rules\": [ { \"when\": { \"sender\": \"nobody\" }, \"template\": null } ],",
         "7: tenants[0].rules[0].when.sender: expected an address or \"@domain\""},
        {7, "\"rules\": [ { \"when\": { \"subject_contains\": \"\" }, \"template\": null } ],",
         "7: tenants[0].rules[0].when.subject_contains: must not be empty"},
        {8, "\"directory_file\": \"bad-users.ndjson\"",
         "8: tenants[0].directory_file: " + d + "/bad-users.ndjson:2: email: missing"},
        {8, "\"directory_file\": \"none.ndjson\"",
         "8: tenants[0].directory_file: " + d +
             "/none.ndjson: cannot open: No such file or directory"},
        {8, "\"directory_file\": \"users.ndjson\", \"colour\": \"red\"",
         "8: tenants[0].colour: unknown field"},
        {8, "\"directory_file\": \"users.ndjson\", \"require\": { \"tenant_guid\": \"nope\" }",
         "8: tenants[0].require.tenant_guid: expected a GUID like "
         "00000000-0000-0000-0000-000000000000"},
        {8, "\"directory_file\": \"users.ndjson\", \"require\": { \"sni\": \"a b\" }",
         "8: tenants[0].require.sni: not a domain name"},
        {8, "\"directory_file\": \"users.ndjson\", \"reply_markers\": [\"ok\", \"\"]",
         "8: tenants[0].reply_markers[1]: must not be empty"},
        {8, "\"directory_file\": \"users.ndjson\", \"client_cert\": \"c.pem\"",
         "1: tenants[0].client_key: missing (client_cert needs it)"},
        {8, "\"directory_file\": \"users.ndjson\", \"id\": \"again\"",
         "8: tenants[0].id: given twice"},
        {4, "", "1: tenants[0].smart_host: missing"},
        // JSON syntax errors point at the line where parsing stopped.
        {4, "\"smart_host\": \"mx.t1.com:25\"",
         "5: invalid JSON: The JSON document has an improper structure: missing or "
         "superfluous commas, braces, missing keys, etc."},
        {4, "\"smart_host\": \"mx.t1.com:25,", "4: invalid JSON: unclosed string"},
        {9, "} ] } x", "9: invalid JSON: unexpected content after the JSON value"},
    };
    const std::string path = data_dir + "/t.json";
    {
        auto ok = snapshot::parse(join(base_lines()), path);
        REQUIRE_MESSAGE(ok.ok(), (ok.ok() ? "" : ok.err().message));
    }
    for (const auto& r : rows) {
        auto lines = base_lines();
        lines[r.line - 1] = (r.line == 1 || r.line == 9 ? "" : "  ") + r.replacement;
        std::string json = join(lines);
        CAPTURE(json);
        auto s = snapshot::parse(json, path);
        REQUIRE(!s.ok());
        CHECK(s.err().message == path + ":" + r.want);
    }
}

TEST_CASE("tenants: errors across tenants and at the top") {
    const std::string path = data_dir + "/t.json";
    auto tenant_json = [](const char* id, const char* domain) {
        return std::string("{ \"id\": \"") + id + "\", \"domains\": [\"" + domain +
               "\"], \"smart_host\": \"h:25\", \"processed_header\": {\"name\": \"X\", \"value\": "
               "\"1\"}, \"templates\": {}, \"rules\": [], \"directory_file\": \"users.ndjson\" }";
    };
    auto dup_domain = snapshot::parse("{\"tenants\": [\n" + tenant_json("a", "a.com") + ",\n" +
                                          tenant_json("b", "A.COM") + "\n]}",
                                      path);
    REQUIRE(!dup_domain.ok());
    CHECK(dup_domain.err().message ==
          path + ":3: tenants[1].domains[0]: \"a.com\" already belongs to tenant \"a\"");
    auto dup_id = snapshot::parse("{\"tenants\": [\n" + tenant_json("a", "a.com") + ",\n" +
                                      tenant_json("a", "b.com") + "\n]}",
                                  path);
    REQUIRE(!dup_id.ok());
    CHECK(dup_id.err().message == path + ":3: tenants[1].id: \"a\" is used twice");

    struct row {
        std::string json;
        std::string want;
    };
    const row rows[] = {
        {"", ":1: invalid JSON: "},  // message text is simdjson's
        {"[]", ":1: expected an object, got an array"},
        {"{\"tenants\": {}}", ":1: tenants: expected an array, got an object"},
        {"{\"tenants\": [], \"extra\": 1}", ":1: extra: unknown field"},
        {"{\"tenants\": [\n 42\n]}", ":2: tenants[0]: expected an object, got a number"},
        {"{\"tenants\": [\n{\"id\": \"\xff\"}]}", ":2: invalid JSON: not valid UTF-8"},
    };
    for (const auto& r : rows) {
        CAPTURE(r.json);
        auto s = snapshot::parse(r.json, path);
        REQUIRE(!s.ok());
        CHECK(s.err().message.rfind(path + r.want, 0) == 0);
    }
    auto empty = snapshot::parse("{\"tenants\": []}", path);
    REQUIRE(empty.ok());
    CHECK((*empty)->all().empty());
    auto missing = snapshot::load(data_dir + "/nonexistent.json");
    REQUIRE(!missing.ok());
    CHECK(missing.err().message.rfind(data_dir + "/nonexistent.json: cannot open", 0) == 0);
}

TEST_CASE("marker_id is stable and case-insensitive") {
    CHECK(marker_id("Jane.Doe@Fabrikam.com") == marker_id("jane.doe@fabrikam.com"));
    CHECK(marker_id("a@b.c") != marker_id("a@b.d"));
    CHECK(marker_id("").size() == 16);
    CHECK(marker_id("") == "cbf29ce484222325");  // FNV-1a 64 offset basis
}

TEST_CASE("message_subject: unfolding and RFC 2047") {
    struct row {
        std::string message;
        std::string want;
    };
    const row rows[] = {
        {"From: a@b\r\nSubject: Hello\r\n\r\nbody", "Hello"},
        {"subject:   spaced  \nX: y\n\nbody", "spaced"},
        {"From: a@b\r\n\r\nSubject: in body\r\n", ""},
        {"Subject: folded\r\n line\r\n\tagain\r\nTo: x\r\n\r\n", "folded line\tagain"},
        {"Subject: =?UTF-8?B?W25vc2lnXSBHcsO8w59l?=\r\n\r\n", "[nosig] Grüße"},
        {"Subject: =?utf-8?q?Caf=C3=A9_au_lait?=\r\n\r\n", "Café au lait"},
        {"Subject: =?ISO-8859-1?Q?Z=F6e?= =?ISO-8859-1?Q?_=C5kesson?=\r\n\r\n", "Zöe Åkesson"},
        {"Subject: =?windows-1252?Q?=80_price?=\r\n\r\n", "€ price"},
        {"Subject: a =?UTF-8?B?w6k=?= b\r\n\r\n", "a é b"},
        {"Subject: =?UTF-8?Q?a?=\r\n =?UTF-8?Q?b?=\r\n\r\n", "ab"},
        {"Subject: =?KOI8-R?B?8NLJ?=\r\n\r\n", "=?KOI8-R?B?8NLJ?="},
        {"Subject: =?UTF-8?X?bad?= =?broken\r\n\r\n", "=?UTF-8?X?bad?= =?broken"},
        {"Subject: =?UTF-8*en?Q?hi?=\r\n\r\n", "hi"},
        {"Subject: raw Zo\xc3\xab\r\n\r\n", "raw Zo\xc3\xab"},
        {"X-Subject: no\r\nSubject: yes\r\nSubject: second\r\n\r\n", "yes"},
        {"", ""},
    };
    for (const auto& r : rows) {
        CAPTURE(r.message);
        CHECK(message_subject(r.message) == r.want);
    }
}

TEST_CASE("received_header: format and sanitising") {
    received_fields f;
    f.helo = "mail.example.com";
    f.reverse_dns = "mail-eopbgr.outbound.protection.outlook.com";
    f.ip = "40.107.1.2";
    f.by_host = "smtp.contososignatureservice.com";
    f.queue_id = "4Fq2kZ0001";
    f.recipient = "bob@example.com";
    f.when = 1764413640;
    CHECK(received_header(f) ==
          "Received: from mail.example.com (mail-eopbgr.outbound.protection.outlook.com "
          "[40.107.1.2])\r\n\tby smtp.contososignatureservice.com (sigrelay) with ESMTPS id "
          "4Fq2kZ0001\r\n\tfor <bob@example.com>;\r\n\tSat, 29 Nov 2025 10:54:00 +0000");
    received_fields g;
    g.helo = "localhost";
    g.ip = "127.0.0.1";
    g.by_host = "localhost";
    g.protocol = "ESMTP";
    g.when = 0;
    CHECK(received_header(g) ==
          "Received: from localhost ([127.0.0.1])\r\n\tby localhost (sigrelay) with ESMTP;\r\n\t"
          "Thu, 01 Jan 1970 00:00:00 +0000");

    // Hostile input: line breaks, NUL, comment/bracket characters, huge sizes.
    const std::string hostile[] = {
        std::string("evil\r\nBcc: victim@example.com\r\n"),
        std::string("a\0b", 3),
        "x) by forged (y",
        std::string(5000, 'h'),
        "\n\r\r\n",
        "<a>;\"\\,",
        "Zo\xc3\xab",
    };
    for (const auto& h : hostile) {
        received_fields r = f;
        r.helo = h;
        r.reverse_dns = h;
        r.ip = h;
        r.by_host = h;
        r.queue_id = h;
        r.recipient = h;
        r.protocol = h;
        std::string out = received_header(r);
        CAPTURE(out);
        // Folds are CRLF TAB; nothing else may hold CR, LF or NUL.
        std::string unfolded;
        std::size_t line_len = 0, max_line = 0;
        for (std::size_t i = 0; i < out.size(); ++i) {
            if (out.compare(i, 3, "\r\n\t") == 0) {
                max_line = std::max(max_line, line_len);
                line_len = 0;
                i += 2;
                unfolded += ' ';
                continue;
            }
            unfolded += out[i];
            ++line_len;
        }
        max_line = std::max(max_line, line_len);
        CHECK(unfolded.find_first_of(std::string("\r\n\0", 3)) == std::string::npos);
        CHECK(max_line <= 998);
        CHECK(out.rfind("Received: from ", 0) == 0);
        CHECK(unfolded.find("(sigrelay)") != std::string::npos);
        CHECK(unfolded.find(" by forged ") == std::string::npos);
        for (unsigned char c : unfolded) CHECK((c >= 0x20 && c < 0x7f));
    }
}

TEST_CASE("header_value: first field, case-insensitive, unfolded, header block only") {
    const std::string msg =
        "From: a@b.c\r\nX-MS-Exchange-CrossTenant-Id:  3B2A\r\n\tCONT \r\n"
        "x-ms-exchange-crosstenant-id: second\r\n\r\nX-Body: not a header\r\n";
    CHECK(sigrelay::tenants::header_value(msg, "X-MS-Exchange-CrossTenant-Id") == "3B2A\tCONT");
    CHECK(sigrelay::tenants::header_value(msg, "from") == "a@b.c");
    CHECK(sigrelay::tenants::header_value(msg, "X-Body").empty());
    CHECK(sigrelay::tenants::header_value(msg, "Subject").empty());
    CHECK(sigrelay::tenants::header_value("Subject: lf only\nTo: x\n\n", "subject") == "lf only");
}

namespace {

// A scratch tenants folder for the image and recipient-group cases: the
// example logo, templates using it, and one user.
struct image_data {
    std::string dir;
    image_data() {
        namespace fs = std::filesystem;
        dir = (fs::temp_directory_path() / ("sigrelay-images-" + std::to_string(::getpid()))).string();
        fs::remove_all(dir);
        fs::create_directories(dir);
        fs::copy_file(env_dir("SIGRELAY_EXAMPLES") + "/fabrikam/logo.png", dir + "/logo.png");
        std::ofstream(dir + "/users.ndjson") << "{\"email\": \"ann@t1.com\", \"display_name\": \"Ann <A&B>\"}\n";
        std::ofstream(dir + "/img.html") << "<p>{{display_name}}</p>\n<img src=\"{{img:logo}}\">{{img:logo}}";
        std::ofstream(dir + "/two.html") << "<img src=\"{{img:logo}}\"><img src=\"{{ img:badge }}\">";
        std::ofstream(dir + "/bad.html") << "<p>x</p>\n  <img src=\"{{img:nologo}}\">";
        std::ofstream(dir + "/sig.txt") << "{{display_name}}";
        std::ofstream(dir + "/notes.txt") << "not an image";
        std::ofstream big(dir + "/big.png", std::ios::binary);
        big << std::string("\x89PNG\r\n\x1a\n", 8) << std::string(max_image_bytes, 'x');
    }
    ~image_data() { std::filesystem::remove_all(dir); }
};

const image_data& images_dir() {
    static image_data d;
    return d;
}

// One tenant; `extra` is spliced in after "domains" (its own line 4), `tpl`
// names the template's extra fields.
std::string image_tenants(const std::string& extra, const std::string& html = "img.html",
                          const std::string& tpl = "", const std::string& rules = "[ { \"template\": \"default\" } ]") {
    return "{ \"tenants\": [ {\n"
           "  \"id\": \"t1\",\n"
           "  \"domains\": [\"t1.com\"],\n" +
           extra +
           "\n  \"smart_host\": \"mx.t1.com:25\",\n"
           "  \"processed_header\": { \"name\": \"X-Sig\", \"value\": \"yes\" },\n"
           "  \"templates\": { \"default\": { \"html_file\": \"" + html + "\", \"text_file\": \"sig.txt\"" + tpl + " } },\n"
           "  \"rules\": " + rules + ",\n"
           "  \"directory_file\": \"users.ndjson\"\n"
           "} ] }\n";
}

result<std::shared_ptr<const snapshot>> parse_images(const std::string& json) {
    return snapshot::parse(json, images_dir().dir + "/tenants.json");
}

std::string image_error(const std::string& json) {
    auto s = parse_images(json);
    REQUIRE(!s.ok());
    std::string m = s.err().message;
    const std::string prefix = images_dir().dir + "/";
    for (auto at = m.find(prefix); at != std::string::npos; at = m.find(prefix)) m.erase(at, prefix.size());
    return m;
}

const std::string kLogo = "  \"images\": { \"logo\": { \"file\": \"logo.png\", \"url\": \"https://cdn.t1.com/logo.png?a=1&b=2\" } },";

}  // namespace

TEST_CASE("tenants: images are read, recognised and encoded once at load") {
    auto s = parse_images(image_tenants(kLogo));
    REQUIRE_MESSAGE(s.ok(), (s.ok() ? "" : s.err().message));
    const tenant& t = (*s)->all().front();
    REQUIRE(t.images.size() == 1);
    const image& im = t.images[0];
    CHECK(im.content_type == "image/png");
    CHECK(im.filename == "logo.png");
    CHECK(im.url_html == "https://cdn.t1.com/logo.png?a=1&amp;b=2");
    std::ifstream in(images_dir().dir + "/logo.png", std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    CHECK(im.size == bytes.size());
    std::string decoded;
    REQUIRE(mime::base64_decode(im.base64, decoded));
    CHECK(decoded == bytes);
    CHECK(im.base64.ends_with("\r\n"));
    CHECK(t.images_by_default == image_mode::embed);
    CHECK(t.templates[0].image_index == std::vector<std::size_t>{0});

    CHECK(sniff_image_type("GIF89a...") == "image/gif");
    CHECK(sniff_image_type("\xff\xd8\xff\xe0") == "image/jpeg");
    CHECK(sniff_image_type("<svg") == "");
}

TEST_CASE("tenants: decide() renders cid: per message in embed mode, the URL in link mode") {
    auto s = parse_images(image_tenants(kLogo));
    REQUIRE(s.ok());
    const tenant& t = (*s)->all().front();
    std::vector<std::string> rcpts{"x@example.com"};
    auto d = decide(t, "ann@t1.com", rcpts, "", day("2026-03-01"), "Q1.h1@relay.example");
    REQUIRE(d.kind == verdict::signature);
    CHECK(d.images == image_mode::embed);
    CHECK(d.signature.html ==
          "<p>Ann &lt;A&amp;B&gt;</p>\r\n<img src=\"cid:logo.Q1.h1@relay.example\">cid:logo.Q1.h1@relay.example");
    REQUIRE(d.signature.images.size() == 1);  // one part even when shown twice
    CHECK(d.signature.images[0].content_id == "logo.Q1.h1@relay.example");
    CHECK(d.signature.images[0].base64.data() == t.images[0].base64.data());  // no copy, no encoding
    auto other = decide(t, "ann@t1.com", rcpts, "", day("2026-03-01"), "Q2.h1@relay.example");
    CHECK(other.signature.images[0].content_id == "logo.Q2.h1@relay.example");

    auto l = parse_images(image_tenants(kLogo + " \"image_mode\": \"link\","));
    REQUIRE_MESSAGE(l.ok(), (l.ok() ? "" : l.err().message));
    auto dl = decide((*l)->all().front(), "ann@t1.com", rcpts, "", day("2026-03-01"), "Q1@h");
    CHECK(dl.images == image_mode::link);
    CHECK(dl.signature.html.find("<img src=\"https://cdn.t1.com/logo.png?a=1&amp;b=2\">") != std::string::npos);
    CHECK(dl.signature.images.empty());

    // The template overrides the tenant's mode.
    auto o = parse_images(image_tenants(kLogo, "img.html", ", \"image_mode\": \"link\""));
    REQUIRE(o.ok());
    CHECK((*o)->all().front().templates[0].images == image_mode::link);
    CHECK(decide((*o)->all().front(), "ann@t1.com", rcpts, "", day("2026-03-01"), "Q@h").signature.images.empty());
}

TEST_CASE("tenants: image errors name file, line and field") {
    CHECK(image_error(image_tenants(kLogo, "bad.html")) ==
          "tenants.json:7: tenants[0].templates.default.html_file: bad.html:2:13: {{img:nologo}}: no image "
          "\"nologo\" in this tenant's images");
    CHECK(image_error(image_tenants(kLogo, "two.html")) ==
          "tenants.json:7: tenants[0].templates.default.html_file: two.html:1:35: {{img:badge}}: no image "
          "\"badge\" in this tenant's images");
    CHECK(image_error(image_tenants("  \"images\": { \"logo\": { \"file\": \"logo.png\" } },", "img.html",
                                    ", \"image_mode\": \"link\"")) ==
          "tenants.json:7: tenants[0].templates.default.html_file: img.html:2:11: {{img:logo}}: image_mode is "
          "link, but image \"logo\" has no url");
    CHECK(image_error(image_tenants("  \"images\": { \"logo\": { \"file\": \"notes.txt\" } },")) ==
          "tenants.json:4: tenants[0].images.logo.file: notes.txt: not a PNG, JPEG or GIF image");
    CHECK(image_error(image_tenants("  \"images\": { \"logo\": { \"file\": \"big.png\" } },")) ==
          "tenants.json:4: tenants[0].images.logo.file: big.png: " + std::to_string(max_image_bytes + 8) +
              " bytes; an image may have at most " + std::to_string(max_image_bytes));
    CHECK(image_error(image_tenants("  \"images\": { \"logo\": { \"file\": \"missing.png\" } },")).starts_with(
        "tenants.json:4: tenants[0].images.logo.file: missing.png: cannot open: "));
    CHECK(image_error(image_tenants("  \"images\": { \"logo\": { \"file\": \"logo.png\", \"url\": \"ftp://x\" } },")) ==
          "tenants.json:4: tenants[0].images.logo.url: expected an http:// or https:// URL of printable ASCII "
          "without quotes, <, > or blanks");
    CHECK(image_error(image_tenants("  \"images\": { \"logo\": { \"file\": \"logo.png\", \"url\": \"https://x/\\\"a\" } },")) ==
          "tenants.json:4: tenants[0].images.logo.url: expected an http:// or https:// URL of printable ASCII "
          "without quotes, <, > or blanks");
    CHECK(image_error(image_tenants("  \"images\": { \"lo go\": { \"file\": \"logo.png\" } },")) ==
          "tenants.json:4: tenants[0].images.lo go: image names use letters, digits, '_', '.' and '-'");
    CHECK(image_error(image_tenants("  \"images\": { \"logo\": { \"file\": \"logo.png\", \"alt\": \"x\" } },")) ==
          "tenants.json:4: tenants[0].images.logo.alt: unknown field");
    CHECK(image_error(image_tenants(kLogo + " \"image_mode\": \"inline\",")) ==
          "tenants.json:4: tenants[0].image_mode: expected \"embed\" or \"link\"");
}

TEST_CASE("tenants: split_recipients defaults to whether a rule tests recipients") {
    const std::string by_group =
        "[ { \"when\": { \"recipients\": \"external\" }, \"template\": \"default\" }, { \"template\": null } ]";
    auto a = parse_images(image_tenants(kLogo, "img.html", "", by_group));
    REQUIRE(a.ok());
    CHECK((*a)->all().front().split_recipients);
    auto b = parse_images(image_tenants(kLogo));
    REQUIRE(b.ok());
    CHECK(!(*b)->all().front().split_recipients);
    auto c = parse_images(image_tenants(kLogo + " \"split_recipients\": false,", "img.html", "", by_group));
    REQUIRE(c.ok());
    CHECK(!(*c)->all().front().split_recipients);
    auto d = parse_images(image_tenants(kLogo + " \"split_recipients\": true,"));
    REQUIRE(d.ok());
    CHECK((*d)->all().front().split_recipients);
    CHECK(image_error(image_tenants(kLogo + " \"split_recipients\": \"yes\",")) ==
          "tenants.json:4: tenants[0].split_recipients: expected true or false, got a string");

    const tenant& t = (*a)->all().front();
    CHECK(recipient_group(t, "x@T1.com") == signature::recipients_scope::internal);
    CHECK(recipient_group(t, "x@sub.t1.com") == signature::recipients_scope::external);
    CHECK(describe_conditions(t.rules[0]) == "recipients external");
    CHECK(describe_conditions(t.rules[1]) == "always");
}
