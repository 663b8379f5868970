// libFuzzer target for the admin pages: any request head through the HTTP
// router and, for a page path, the query decoder and the page builder over a
// small tenant. Never crashes; every page is 200, 400 or 404; and no byte
// sequence in the request becomes markup: the page never contains "<script"
// (nor does the template), in any letter case.
#include <sigrelay/admin.hpp>
#include <sigrelay/text.hpp>

#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

using namespace sigrelay;

namespace {

std::shared_ptr<const tenants::snapshot> make_snapshot() {
    namespace fs = std::filesystem;
    const std::string dir = (fs::temp_directory_path() / ("sigrelay-admin-fuzz-" + std::to_string(::getpid()))).string();
    fs::create_directories(dir);
    std::ofstream(dir + "/users.ndjson") << "{\"email\": \"eve@t1.com\", \"display_name\": \"Eve <b>&</b>\"}\n"
                                            "{\"email\": \"ann@t1.com\", \"display_name\": \"Ann\", \"department\": \"Sales\"}\n";
    std::ofstream(dir + "/sig.html") << "<p>{{display_name}}</p>{{#department}}<i>{{department}}</i>{{/department}}";
    std::ofstream(dir + "/sig.txt") << "{{display_name}}";
    const std::string json = R"({ "tenants": [ {
  "id": "t1", "domains": ["t1.com"], "smart_host": "mx.t1.com:25",
  "processed_header": { "name": "X-Sig", "value": "yes" },
  "templates": { "default": { "html_file": "sig.html", "text_file": "sig.txt" } },
  "rules": [ { "when": { "subject_contains": "[nosig]" }, "template": null },
             { "when": { "recipients": "external" }, "template": "default" },
             { "template": "default" } ],
  "directory_file": "users.ndjson" } ] })";
    auto s = tenants::snapshot::parse(json, dir + "/tenants.json");
    fs::remove_all(dir);
    if (!s) std::abort();
    return *s;
}

bool contains_script(const std::string& s) {
    static constexpr std::string_view needle = "<script";
    for (std::size_t i = 0; i + needle.size() <= s.size(); ++i) {
        std::size_t k = 0;
        while (k < needle.size() && text::ascii_lower(s[i + k]) == needle[k]) ++k;
        if (k == needle.size()) return true;
    }
    return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static const auto snap = make_snapshot();
    static const signature::date today{std::chrono::year{2026}, std::chrono::month{12}, std::chrono::day{4}};
    const std::string head(reinterpret_cast<const char*>(data), size);
    auto r = observe::http_endpoint::dispatch(head, true);
    if (!r.page) return 0;
    auto page = admin::serve(*snap, r.path, r.query, today);
    if (!page) return 0;
    if (page->status != 200 && page->status != 400 && page->status != 404) std::abort();
    if (contains_script(page->body)) std::abort();
    return 0;
}
