// The admin pages' HTML (docs/operations.md, Admin pages). Every value that
// comes from the tenants file, the directory or the request goes through
// html_escape; the rendered signature is shown in a sandboxed iframe srcdoc,
// so its markup is displayed as a mail client would, and no script in it (or
// in a directory value a template did not escape) can run.
#include <sigrelay/admin.hpp>
#include <sigrelay/text.hpp>

#include <cstdio>

namespace sigrelay::admin {

namespace {

using route = observe::http_endpoint::route;
namespace tn = tenants;

constexpr std::string_view style =
    "body{font:15px/1.45 system-ui,sans-serif;margin:0 auto;max-width:72rem;padding:1rem 1.5rem;color:#1b1b1b}"
    "header{display:flex;gap:1.5rem;align-items:baseline;border-bottom:1px solid #ccc;margin-bottom:1rem}"
    "h1{font-size:1.3rem;margin:.4rem 0}h2{font-size:1.1rem;margin-top:1.6rem}"
    "table{border-collapse:collapse}th,td{text-align:left;vertical-align:top;padding:.25rem .8rem .25rem 0}"
    "th{font-weight:600;white-space:nowrap}code{font-size:.9em}"
    ".mail{border:1px solid #bbb;border-radius:4px;padding:.8rem 1rem;flex:3;min-width:20rem}"
    ".mail dl{display:grid;grid-template-columns:auto 1fr;gap:.1rem .8rem;margin:0 0 .8rem}"
    ".mail dt{color:#555}.mail dd{margin:0}.body{color:#777;font-style:italic}"
    ".text{flex:2;min-width:16rem}.text pre{background:#f6f6f6;padding:.8rem;white-space:pre-wrap}"
    ".views{display:flex;gap:1.5rem;flex-wrap:wrap}"
    "iframe{width:100%;min-height:16rem;border:0;border-top:1px dashed #ccc}"
    "form{display:flex;gap:.6rem;flex-wrap:wrap;align-items:end;margin:.5rem 0 1rem}"
    "label{display:flex;flex-direction:column;font-size:.85rem}input{font:inherit;padding:.2rem .4rem}"
    ".note{color:#555}";

std::string page_start(std::string_view title) {
    std::string s = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                    "<meta name=\"viewport\" content=\"width=device-width\"><title>";
    s += html_escape(title);
    s += " · sigrelay</title><style>";
    s += style;
    s += "</style></head><body><header><h1>sigrelay</h1><nav><a href=\"/tenants\">Tenants</a> · "
         "<a href=\"/preview\">Preview</a></nav></header>\n";
    return s;
}

route html_page(int status, std::string body) {
    route r;
    r.status = status;
    r.content_type = "text/html; charset=utf-8";
    r.headers = std::string(page_headers);
    r.body = std::move(body);
    r.body += "</body></html>\n";
    return r;
}

using text::join;

void row(std::string& out, std::string_view name, std::string_view escaped_value) {
    out += "<tr><th>";
    out += name;
    out += "</th><td>";
    out += escaped_value;
    out += "</td></tr>\n";
}

std::string images_text(const tn::tenant& t, const tn::template_set& s) {
    if (s.image_index.empty()) return "none";
    std::vector<std::string> names;
    for (auto i : s.image_index) names.push_back(t.images[i].name);
    return std::string(tn::image_mode_name(s.images)) + ": " + join(names, ", ");
}

std::string rule_text(const tn::tenant& t, std::size_t i) {
    const signature::rule& r = t.rules[i];
    return "rules[" + std::to_string(i) + "] when " + tn::describe_conditions(r) + " → " +
           (r.template_index ? "template " + t.templates[*r.template_index].name : std::string("no signature"));
}

// The request form, filled in with what was asked.
std::string preview_form(std::string_view from, const std::vector<std::string>& to, std::string_view subject) {
    std::string s = "<form method=\"get\" action=\"/preview\">"
                    "<label>From <input name=\"from\" size=\"30\" value=\"" + html_escape(from) + "\"></label>";
    // One field per recipient asked, and one empty field to add another.
    for (std::size_t i = 0; i <= to.size(); ++i)
        s += "<label>To <input name=\"to\" size=\"26\" value=\"" + html_escape(i < to.size() ? to[i] : "") +
             "\"></label>";
    s += "<label>Subject <input name=\"subject\" size=\"24\" value=\"" + html_escape(subject) +
         "\"></label><button type=\"submit\">Preview</button></form>\n";
    return s;
}

// The rendered HTML with each cid: reference (the image as embedded in a
// message) replaced by a data: URL of the same bytes, so the browser shows it.
std::string with_inline_images(std::string html, const mime::rendered_signature& sig) {
    for (const auto& im : sig.images) {
        const std::string cid = "cid:" + im.content_id;
        std::string data = "data:" + std::string(im.content_type) + ";base64,";
        data.reserve(data.size() + im.base64.size());
        for (char c : im.base64)
            if (c != '\r' && c != '\n') data += c;
        for (std::size_t at = html.find(cid); at != std::string::npos; at = html.find(cid, at + data.size()))
            html.replace(at, cid.size(), data);
    }
    return html;
}

route not_found(std::string_view from, const std::vector<std::string>& to, std::string_view subject,
                const std::string& message) {
    std::string s = page_start("Preview");
    s += preview_form(from, to, subject);
    s += "<p id=\"error\">" + html_escape(message) + "</p>\n";
    return html_page(404, std::move(s));
}

}  // namespace

route preview(const tn::snapshot& snap, std::string_view query, signature::date today) {
    std::string from, subject;
    std::vector<std::string> to;
    for (auto& [name, value] : parse_query(query)) {
        if (name == "from") from = std::move(value);
        else if (name == "to" && !value.empty()) to.push_back(std::move(value));
        else if (name == "subject") subject = std::move(value);
    }
    if (from.empty()) {
        std::string s = page_start("Preview");
        s += preview_form(from, to, subject);
        s += "<p id=\"error\">Give the sender's address (from=) to see the signature they would get.</p>\n";
        return html_page(400, std::move(s));
    }
    const tn::tenant* t = snap.find_by_address(from);
    if (t == nullptr) return not_found(from, to, subject, "No tenant has the domain of " + from + ".");
    const auto user = t->directory.find(from);
    if (!user)
        return not_found(from, to, subject,
                         from + " is not in the directory of tenant " + t->id + " (" + t->directory_file +
                             "): the relay stamps such a sender's mail but does not sign it.");

    // With split_recipients the first recipient fixes the transaction's
    // group; the others would be sent again in a transaction of their own.
    std::vector<std::string> in_transaction, deferred;
    for (const auto& r : to) {
        const bool same = !t->split_recipients || in_transaction.empty() ||
                          tn::recipient_group(*t, r) == tn::recipient_group(*t, in_transaction.front());
        (same ? in_transaction : deferred).push_back(r);
    }
    const tn::decision d = tn::decide(*t, from, in_transaction, subject, today, "preview.sigrelay.invalid");

    const std::string display_name(t->directory.get(*user, "display_name"));
    std::string s = page_start("Preview of " + from);
    s += preview_form(from, to, subject);
    s += "<h2>Decision</h2><table id=\"decision\">\n";
    row(s, "Tenant", html_escape(t->id + " (" + join(t->domains, ", ") + ")"));
    row(s, "Sender", html_escape(display_name.empty() ? from : display_name + " <" + from + ">"));
    std::string group = std::string(tn::scope_name(d.group)) +
                        (in_transaction.empty() ? " (no recipients given)" : " (" + join(in_transaction, ", ") + ")");
    if (!deferred.empty())
        group += "; " + join(deferred, ", ") + " in a separate transaction (452 4.5.3, split_recipients)";
    row(s, "Recipients", html_escape(group));
    row(s, "Rule", html_escape(d.rule ? rule_text(*t, *d.rule) : "none (" + d.reason + ")"));
    const tn::template_set* set = d.template_name.empty() ? nullptr : t->find_template(d.template_name);
    if (set != nullptr) {
        row(s, "Template", html_escape(set->name + " (" + set->html_file + ", " + set->text_file + ")"));
        row(s, "Placement", tn::placement_name(set->where));
        row(s, "Images", html_escape(images_text(*t, *set)));
    } else {
        row(s, "Template", "none");
    }
    s += "</table>\n";

    if (d.kind != tn::verdict::signature) {
        s += "<p id=\"no-signature\">No signature: " + html_escape(d.reason) + ". The message is still stamped (" +
             html_escape(t->processed_header.name + ": " + t->processed_header.value) + ").</p>\n";
        return html_page(200, std::move(s));
    }

    s += "<h2>As the reader sees it</h2><div class=\"views\"><div class=\"mail\"><dl>";
    s += "<dt>From</dt><dd id=\"from\">" + html_escape(display_name.empty() ? from : display_name + " <" + from + ">") +
         "</dd>";
    s += "<dt>To</dt><dd>" + html_escape(in_transaction.empty() ? "(no recipients given)" : join(in_transaction, ", ")) +
         "</dd>";
    s += "<dt>Subject</dt><dd>" + html_escape(subject) + "</dd></dl>";
    s += "<p class=\"body\">The message the sender wrote comes here; the signature follows it";
    s += set != nullptr && set->where == mime::placement::below_reply ? ", above any quoted reply.</p>" : ".</p>";
    // sandbox with no allow-* token: no script, no form, no navigation of
    // this page; the srcdoc also inherits the page's Content-Security-Policy.
    const std::string doc = "<!DOCTYPE html><html><head><meta charset=\"utf-8\"></head><body>" +
                            with_inline_images(d.signature.html, d.signature) + "</body></html>";
    s += "<iframe id=\"signature\" title=\"HTML signature\" sandbox referrerpolicy=\"no-referrer\" srcdoc=\"" +
         html_escape(doc) + "\"></iframe></div>";
    s += "<div class=\"text\"><h3>Plain-text version</h3><pre id=\"text-signature\">-- \n" +
         html_escape(d.signature.text) + "</pre></div></div>\n";
    return html_page(200, std::move(s));
}

route tenants_page(const tn::snapshot& snap) {
    std::string s = page_start("Tenants");
    s += "<p class=\"note\">" + std::to_string(snap.all().size()) + (snap.all().size() == 1 ? " tenant" : " tenants") +
         " from <code>" + html_escape(snap.path()) + "</code>. Read-only: edit the file and reload (SIGHUP).</p>\n";
    for (const tn::tenant& t : snap.all()) {
        s += "<section class=\"tenant\" id=\"tenant-" + html_escape(t.id) + "\"><h2>" + html_escape(t.id) +
             "</h2><table>\n";
        row(s, "Domains", html_escape(join(t.domains, ", ")));
        row(s, "Smart host",
            html_escape(t.smart_host + " (TLS name " + t.tls_domain + ", " +
                        (t.smart_host_ca.empty() ? std::string("system CAs") : "CA " + t.smart_host_ca) + ")"));
        row(s, "Client certificate",
            html_escape(t.client_cert.empty() ? std::string("none") : t.client_cert + " (key " + t.client_key + ")"));
        row(s, "Certificate domain", html_escape(t.certificate_domain.empty() ? "none" : t.certificate_domain));
        row(s, "Processed header", html_escape(t.processed_header.name + ": " + t.processed_header.value));
        if (!t.require.sni.empty() || !t.require.tenant_guid.empty())
            row(s, "Requires",
                html_escape((t.require.sni.empty() ? "" : "SNI " + t.require.sni + " ") +
                            (t.require.tenant_guid.empty() ? "" : "tenant id " + t.require.tenant_guid)));
        row(s, "Recipient groups", t.split_recipients ? "one per transaction (split_recipients)" : "not split");
        row(s, "Directory",
            html_escape(t.directory_file + ": " + std::to_string(t.directory.size()) +
                        (t.directory.size() == 1 ? " user" : " users")));
        std::vector<std::string> images;
        for (const auto& im : t.images)
            images.push_back(im.name + " (" + im.content_type + ", " + std::to_string(im.size) + " bytes" +
                             (im.url.empty() ? "" : ", " + im.url) + ")");
        if (!images.empty())
            row(s, "Images", html_escape(std::string(tn::image_mode_name(t.images_by_default)) + " by default: " +
                                         join(images, ", ")));
        s += "</table>\n<h3>Templates</h3><table class=\"templates\"><tr><th>name</th><th>HTML</th><th>text</th>"
             "<th>placement</th><th>images</th></tr>\n";
        for (const auto& set : t.templates)
            s += "<tr><td>" + html_escape(set.name) + "</td><td><code>" + html_escape(set.html_file) +
                 "</code></td><td><code>" + html_escape(set.text_file) + "</code></td><td>" +
                 std::string(tn::placement_name(set.where)) + "</td><td>" +
                 html_escape(images_text(t, set)) + "</td></tr>\n";
        s += "</table>\n<h3>Rules, first match wins</h3><ol class=\"rules\" start=\"0\">\n";
        for (std::size_t i = 0; i < t.rules.size(); ++i) s += "<li>" + html_escape(rule_text(t, i)) + "</li>\n";
        s += "</ol></section>\n";
    }
    return html_page(200, std::move(s));
}

std::optional<route> serve(const tn::snapshot& snap, std::string_view path, std::string_view query,
                           signature::date today) {
    if (path == "/preview") return preview(snap, query, today);
    if (path == "/tenants") return tenants_page(snap);
    return std::nullopt;
}

}  // namespace sigrelay::admin
