// The tenants file (docs/configuration.md) → an immutable snapshot: every field checked,
// with errors naming file, line and field; templates compiled; directories
// loaded. Also tenant resolution and the per-message signature decision.
#include <sigrelay/tenants.hpp>
#include <sigrelay/tls.hpp>

#include "json_tree.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace sigrelay::tenants {

namespace {

using detail::json_field;
using detail::json_value;

// Configuration errors are exceptions while loading (STYLE 4), turned into a
// result at the API boundary.
struct load_error {
    std::size_t offset;
    std::string message;  // "path: what"
};

bool valid_domain(std::string_view d) {
    if (d.empty() || d.size() > 253) return false;
    std::size_t label = 0;
    for (std::size_t i = 0; i <= d.size(); ++i) {
        if (i == d.size() || d[i] == '.') {
            if (label == 0 || label > 63) return false;
            if (d[i - 1] == '-' || d[i - label] == '-') return false;
            label = 0;
            continue;
        }
        char c = d[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
        ++label;
    }
    return true;
}

// RFC 5322 §3.6.8: field-name = 1*ftext, ftext = %d33-57 / %d59-126.
bool valid_field_name(std::string_view n) {
    if (n.empty() || n.size() > 76) return false;
    for (char c : n)
        if (c < 33 || c > 126 || c == ':') return false;
    return true;
}

// Header values and other text we may write into a header: no CR, LF, NUL
// or other control characters (TAB allowed).
bool header_safe(std::string_view v) {
    for (char c : v) {
        auto u = static_cast<unsigned char>(c);
        if ((u < 0x20 && u != '\t') || u == 0x7f) return false;
    }
    return true;
}

bool valid_guid(std::string_view g) {
    if (g.size() != 36) return false;
    for (std::size_t i = 0; i < g.size(); ++i) {
        char c = g[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-') return false;
        } else if (!std::isxdigit(static_cast<unsigned char>(c))) {
            return false;
        }
    }
    return true;
}

std::string normalise_domain(std::string_view d) {
    if (!d.empty() && d.back() == '.') d.remove_suffix(1);
    return signature::ascii_lower(d);
}

}  // namespace

struct tenants_loader {
    std::string path;
    std::string_view text;
    std::filesystem::path base;

    [[noreturn]] void fail(std::size_t offset, const std::string& field,
                           const std::string& what) const {
        throw load_error{offset, field.empty() ? what : field + ": " + what};
    }

    std::size_t line_of(std::size_t offset) const {
        if (offset > text.size()) offset = text.size();
        return 1 + static_cast<std::size_t>(std::count(text.begin(), text.begin() + offset, '\n'));
    }

    std::string resolve_path(const std::string& p) const {
        std::filesystem::path fp(p);
        if (fp.is_absolute() || base.empty()) return fp.lexically_normal().string();
        return (base / fp).lexically_normal().string();
    }

    const std::string& want_string(const json_value& v, const std::string& field) const {
        if (v.kind != json_value::string)
            fail(v.offset, field,
                 std::string("expected a string, got ") + detail::kind_name(v.kind));
        return v.text;
    }

    const std::string& want_nonempty(const json_value& v, const std::string& field) const {
        const auto& s = want_string(v, field);
        if (s.empty()) fail(v.offset, field, "must not be empty");
        return s;
    }

    void want_kind(const json_value& v, json_value::kind_t k, const std::string& field) const {
        if (v.kind != k)
            fail(v.offset, field,
                 std::string("expected ") + detail::kind_name(k) + ", got " +
                     detail::kind_name(v.kind));
    }

    std::string read_file(const json_value& at, const std::string& field,
                          const std::string& file) const {
        std::ifstream in(file, std::ios::binary);
        if (!in) fail(at.offset, field, file + ": cannot open: " + std::strerror(errno));
        std::ostringstream ss;
        ss << in.rdbuf();
        if (in.bad()) fail(at.offset, field, file + ": read error");
        return std::move(ss).str();
    }

    // Keys of one object, each to be taken at most once; leftovers are errors.
    struct fields {
        const tenants_loader& l;
        const json_value& obj;
        std::string path;
        std::vector<bool> used;

        fields(const tenants_loader& loader, const json_value& o, std::string p)
            : l(loader), obj(o), path(std::move(p)) {
            l.want_kind(o, json_value::object, path);
            used.assign(o.fields.size(), false);
            for (std::size_t i = 0; i < o.fields.size(); ++i)
                for (std::size_t j = 0; j < i; ++j)
                    if (o.fields[i].key == o.fields[j].key)
                        l.fail(o.fields[i].offset, field(o.fields[i].key), "given twice");
        }
        std::string field(std::string_view key) const {
            return path.empty() ? std::string(key) : path + "." + std::string(key);
        }
        const json_value* get(std::string_view key) {
            for (std::size_t i = 0; i < obj.fields.size(); ++i)
                if (obj.fields[i].key == key) {
                    used[i] = true;
                    return &obj.fields[i].value;
                }
            return nullptr;
        }
        const json_value& need(std::string_view key) {
            const json_value* v = get(key);
            if (!v) l.fail(obj.offset, field(key), "missing");
            return *v;
        }
        std::string optional_string(std::string_view key) {
            const json_value* v = get(key);
            return v ? l.want_string(*v, field(key)) : std::string();
        }
        void finish() const {
            for (std::size_t i = 0; i < obj.fields.size(); ++i)
                if (!used[i])
                    l.fail(obj.fields[i].offset, field(obj.fields[i].key), "unknown field");
        }
    };

    void parse_smart_host(tenant& t, const json_value& v, const std::string& field) const {
        const std::string& s = want_string(v, field);
        std::string_view sv = s;
        std::string_view host, port;
        if (!sv.empty() && sv.front() == '[') {
            auto close = sv.find(']');
            if (close == std::string_view::npos || close + 1 >= sv.size() || sv[close + 1] != ':')
                fail(v.offset, field, "expected \"host:port\"");
            host = sv.substr(1, close - 1);
            port = sv.substr(close + 2);
        } else {
            auto colon = sv.rfind(':');
            if (colon == std::string_view::npos || sv.find(':') != colon)
                fail(v.offset, field, "expected \"host:port\"");
            host = sv.substr(0, colon);
            port = sv.substr(colon + 1);
        }
        unsigned long p = 0;
        bool digits = !port.empty() && port.size() <= 5;
        for (char c : port) {
            if (c < '0' || c > '9') digits = false;
            if (digits) p = p * 10 + static_cast<unsigned>(c - '0');
        }
        if (host.empty() || !digits || p == 0 || p > 65535)
            fail(v.offset, field, "expected \"host:port\"");
        for (char c : host)
            if (static_cast<unsigned char>(c) <= ' ' || c == '/' || c == '@' || c == 0x7f)
                fail(v.offset, field, "expected \"host:port\"");
        t.smart_host = s;
        t.smart_host_name = signature::ascii_lower(host);
        t.smart_host_port = static_cast<std::uint16_t>(p);
    }

    signature::compiled_template load_template(const json_value& v, const std::string& field,
                                               std::string& resolved,
                                               signature::escape mode) const {
        resolved = resolve_path(want_nonempty(v, field));
        std::string src = read_file(v, field, resolved);
        auto t = signature::compiled_template::compile(src, mode, resolved);
        if (!t) fail(v.offset, field, t.err().message);
        return std::move(t).value();
    }

    signature::rule parse_rule(const json_value& v, const std::string& path,
                               const tenant& t) const {
        fields f(*this, v, path);
        signature::rule r;
        const json_value& tv = f.need("template");
        if (tv.kind != json_value::null_value) {
            const std::string& name = want_string(tv, f.field("template"));
            auto it = std::find_if(t.templates.begin(), t.templates.end(),
                                   [&](const template_set& s) { return s.name == name; });
            if (it == t.templates.end())
                fail(tv.offset, f.field("template"), "unknown template \"" + name + "\"");
            r.template_index = static_cast<std::size_t>(it - t.templates.begin());
        }
        if (const json_value* when = f.get("when")) {
            fields w(*this, *when, f.field("when"));
            for (const json_field& c : when->fields) {
                std::string cf = w.field(c.key);
                w.get(c.key);
                if (c.key == "recipients") {
                    const std::string& s = want_string(c.value, cf);
                    if (s == "internal")
                        r.recipients = signature::recipients_scope::internal;
                    else if (s == "external")
                        r.recipients = signature::recipients_scope::external;
                    else
                        fail(c.value.offset, cf, "expected \"internal\" or \"external\"");
                } else if (c.key == "subject_contains") {
                    r.subject_contains = want_nonempty(c.value, cf);
                } else if (c.key == "sender") {
                    std::string s = signature::ascii_lower(want_nonempty(c.value, cf));
                    auto at = s.find('@');
                    bool good = at != std::string::npos &&
                                s.find('@', at + 1) == std::string::npos && at + 1 < s.size() &&
                                header_safe(s) && s.find(' ') == std::string::npos;
                    if (!good) fail(c.value.offset, cf, "expected an address or \"@domain\"");
                    r.sender = s;
                } else if (c.key == "active") {
                    if (c.value.kind != json_value::array || c.value.items.size() != 2)
                        fail(c.value.offset, cf, "expected [\"YYYY-MM-DD\", \"YYYY-MM-DD\"]");
                    std::optional<signature::date> d[2];
                    for (int i = 0; i < 2; ++i) {
                        const json_value& item = c.value.items[static_cast<std::size_t>(i)];
                        std::string itf = cf + "[" + std::to_string(i) + "]";
                        d[i] = signature::parse_date(want_string(item, itf));
                        if (!d[i]) fail(item.offset, itf, "expected a date \"YYYY-MM-DD\"");
                    }
                    if (*d[1] < *d[0]) fail(c.value.offset, cf, "the range ends before it starts");
                    r.active = std::pair{*d[0], *d[1]};
                } else {
                    r.attributes.emplace_back(c.key, want_string(c.value, cf));
                }
            }
        }
        f.finish();
        return r;
    }

    tenant parse_tenant(const json_value& v, const std::string& path) const {
        fields f(*this, v, path);
        tenant t;

        const json_value& id = f.need("id");
        t.id = want_nonempty(id, f.field("id"));
        for (char c : t.id)
            if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.')
                fail(id.offset, f.field("id"), "use letters, digits, '-', '_' or '.'");

        const json_value& domains = f.need("domains");
        want_kind(domains, json_value::array, f.field("domains"));
        if (domains.items.empty()) fail(domains.offset, f.field("domains"), "must not be empty");
        for (std::size_t i = 0; i < domains.items.size(); ++i) {
            std::string df = f.field("domains") + "[" + std::to_string(i) + "]";
            std::string d = normalise_domain(want_string(domains.items[i], df));
            if (!valid_domain(d)) fail(domains.items[i].offset, df, "not a domain name");
            if (std::find(t.domains.begin(), t.domains.end(), d) != t.domains.end())
                fail(domains.items[i].offset, df, "listed twice");
            t.domains.push_back(std::move(d));
        }

        parse_smart_host(t, f.need("smart_host"), f.field("smart_host"));
        if (const json_value* td = f.get("tls_domain")) {
            t.tls_domain = normalise_domain(want_nonempty(*td, f.field("tls_domain")));
            if (!valid_domain(t.tls_domain))
                fail(td->offset, f.field("tls_domain"), "not a domain name");
        } else {
            t.tls_domain = t.smart_host_name;
        }
        if (const json_value* ca = f.get("smart_host_ca"))
            t.smart_host_ca = resolve_path(want_nonempty(*ca, f.field("smart_host_ca")));
        if (const json_value* cd = f.get("certificate_domain")) {
            // Kept as written (it names the client certificate); checked in lowercase.
            t.certificate_domain = want_nonempty(*cd, f.field("certificate_domain"));
            if (!valid_domain(normalise_domain(t.certificate_domain)))
                fail(cd->offset, f.field("certificate_domain"), "not a domain name");
        }
        const json_value* cert = f.get("client_cert");
        const json_value* key = f.get("client_key");
        if (cert) t.client_cert = resolve_path(want_nonempty(*cert, f.field("client_cert")));
        if (key) t.client_key = resolve_path(want_nonempty(*key, f.field("client_key")));
        if (cert && !key) fail(v.offset, f.field("client_key"), "missing (client_cert needs it)");
        if (key && !cert) fail(v.offset, f.field("client_cert"), "missing (client_key needs it)");
        // Read and checked now, so that a bad file is refused at start-up and
        // on reload (keeping the previous snapshot), never at a client's MAIL.
        if (const json_value* ca = f.get("smart_host_ca"))
            t.smart_host_ca_pem = read_file(*ca, f.field("smart_host_ca"), t.smart_host_ca);
        if (cert) {
            t.client_cert_pem = read_file(*cert, f.field("client_cert"), t.client_cert);
            t.client_key_pem = read_file(*key, f.field("client_key"), t.client_key);
        }
        {
            if (auto ctx = tls::context::client(tls_client_options(t)); !ctx) {
                const json_value* at = cert ? cert : f.get("smart_host_ca");
                fail(at ? at->offset : v.offset,
                     f.field(cert && ctx.err().message.find("CA") == std::string::npos ? "client_cert"
                                                                                        : "smart_host_ca"),
                     ctx.err().message);
            }
        }
        // Exchange's inbound connector accepts the tenant only when the client
        // certificate carries the certificate domain (-TlsSenderCertificateName).
        if (cert && !t.certificate_domain.empty()) {
            auto has = tls::certificate_has_name(t.client_cert_pem, t.certificate_domain);
            if (!has || !*has)
                fail(cert->offset, f.field("client_cert"),
                     t.client_cert + " does not carry certificate_domain " + t.certificate_domain);
        }

        {
            const json_value& ph = f.need("processed_header");
            fields p(*this, ph, f.field("processed_header"));
            const json_value& name = p.need("name");
            t.processed_header.name = want_string(name, p.field("name"));
            if (!valid_field_name(t.processed_header.name))
                fail(name.offset, p.field("name"),
                     "not a header field name (printable ASCII without ':' or blanks)");
            const json_value& value = p.need("value");
            t.processed_header.value = want_string(value, p.field("value"));
            if (!header_safe(t.processed_header.value))
                fail(value.offset, p.field("value"),
                     "must not contain CR, LF, NUL or control characters");
            if (t.processed_header.value.size() > 900)
                fail(value.offset, p.field("value"), "too long");
            p.finish();
        }

        parse_images(t, f);

        {
            const json_value& tv = f.need("templates");
            fields tf(*this, tv, f.field("templates"));
            for (const json_field& entry : tv.fields) {
                tf.get(entry.key);
                std::string ef = tf.field(entry.key);
                if (entry.key.empty()) fail(entry.offset, ef, "empty template name");
                fields e(*this, entry.value, ef);
                template_set s;
                s.name = entry.key;
                s.html = load_template(e.need("html_file"), e.field("html_file"), s.html_file,
                                       signature::escape::html);
                s.text = load_template(e.need("text_file"), e.field("text_file"), s.text_file,
                                       signature::escape::text);
                if (const json_value* pl = e.get("placement")) {
                    const std::string& p = want_string(*pl, e.field("placement"));
                    if (p == "bottom")
                        s.where = mime::placement::bottom;
                    else if (p == "below_reply")
                        s.where = mime::placement::below_reply;
                    else
                        fail(pl->offset, e.field("placement"),
                             "expected \"bottom\" or \"below_reply\"");
                }
                s.images = t.images_by_default;
                if (const json_value* im = e.get("image_mode"))
                    s.images = parse_image_mode(*im, e.field("image_mode"));
                bind_images(t, s, e.need("html_file"), e.field("html_file"));
                e.finish();
                t.templates.push_back(std::move(s));
            }
        }

        {
            const json_value& rv = f.need("rules");
            want_kind(rv, json_value::array, f.field("rules"));
            for (std::size_t i = 0; i < rv.items.size(); ++i)
                t.rules.push_back(
                    parse_rule(rv.items[i], f.field("rules") + "[" + std::to_string(i) + "]", t));
        }

        {
            const json_value& dv = f.need("directory_file");
            t.directory_file = resolve_path(want_nonempty(dv, f.field("directory_file")));
            auto d = signature::directory::load(t.directory_file);
            if (!d) fail(dv.offset, f.field("directory_file"), d.err().message);
            t.directory = std::move(d).value();
            for (auto& s : t.templates) {
                s.html_binding = signature::binding(s.html, t.directory);
                s.text_binding = signature::binding(s.text, t.directory);
            }
        }

        if (const json_value* rq = f.get("require")) {
            fields r(*this, *rq, f.field("require"));
            if (const json_value* sni = r.get("sni")) {
                t.require.sni = normalise_domain(want_nonempty(*sni, r.field("sni")));
                if (!valid_domain(t.require.sni))
                    fail(sni->offset, r.field("sni"), "not a domain name");
            }
            if (const json_value* g = r.get("tenant_guid")) {
                t.require.tenant_guid =
                    signature::ascii_lower(want_nonempty(*g, r.field("tenant_guid")));
                if (!valid_guid(t.require.tenant_guid))
                    fail(g->offset, r.field("tenant_guid"),
                         "expected a GUID like 00000000-0000-0000-0000-000000000000");
            }
            r.finish();
        }

        if (const json_value* rm = f.get("reply_markers")) {
            want_kind(*rm, json_value::array, f.field("reply_markers"));
            for (std::size_t i = 0; i < rm->items.size(); ++i) {
                std::string mf = f.field("reply_markers") + "[" + std::to_string(i) + "]";
                const std::string& m = want_nonempty(rm->items[i], mf);
                if (!header_safe(m))
                    fail(rm->items[i].offset, mf, "must not contain control characters");
                t.reply_markers.push_back(m);
            }
        }

        bool tests_recipients = false;
        for (const auto& r : t.rules)
            tests_recipients = tests_recipients || r.recipients != signature::recipients_scope::any;
        t.split_recipients = tests_recipients;
        if (const json_value* sr = f.get("split_recipients")) {
            if (sr->kind != json_value::boolean)
                fail(sr->offset, f.field("split_recipients"),
                     std::string("expected true or false, got ") + detail::kind_name(sr->kind));
            t.split_recipients = sr->flag;
        }

        f.finish();
        return t;
    }

    image_mode parse_image_mode(const json_value& v, const std::string& field) const {
        const std::string& m = want_string(v, field);
        if (m == "embed") return image_mode::embed;
        if (m == "link") return image_mode::link;
        fail(v.offset, field, "expected \"embed\" or \"link\"");
    }

    // "images": {"logo": {"file": "fabrikam/logo.png", "url": "https://..."}}
    void parse_images(tenant& t, fields& f) const {
        if (const json_value* m = f.get("image_mode"))
            t.images_by_default = parse_image_mode(*m, f.field("image_mode"));
        const json_value* iv = f.get("images");
        if (!iv) return;
        fields all(*this, *iv, f.field("images"));
        for (const json_field& entry : iv->fields) {
            all.get(entry.key);
            const std::string ef = all.field(entry.key);
            bool good = !entry.key.empty();
            for (char c : entry.key)
                good = good && (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-');
            if (!good) fail(entry.offset, ef, "image names use letters, digits, '_', '.' and '-'");
            fields e(*this, entry.value, ef);
            const json_value& fv = e.need("file");
            std::string file = resolve_path(want_nonempty(fv, e.field("file")));
            std::string bytes = read_file(fv, e.field("file"), file);
            auto im = make_image(entry.key, file, bytes);
            if (!im) fail(fv.offset, e.field("file"), im.err().message);
            if (const json_value* uv = e.get("url")) {
                const std::string& url = want_nonempty(*uv, e.field("url"));
                bool ok = url.starts_with("https://") || url.starts_with("http://");
                for (char c : url) {
                    auto u = static_cast<unsigned char>(c);
                    ok = ok && u > 0x20 && u < 0x7f && c != '"' && c != '\'' && c != '<' && c != '>' && c != '\\';
                }
                if (!ok)
                    fail(uv->offset, e.field("url"),
                         "expected an http:// or https:// URL of printable ASCII without quotes, <, > or blanks");
                im->url = url;
                for (char c : url) {
                    if (c == '&') im->url_html += "&amp;";
                    else im->url_html += c;
                }
            }
            e.finish();
            t.images.push_back(std::move(*im));
        }
    }

    // The template's {{img:name}} tags against the tenant's images.
    void bind_images(const tenant& t, template_set& s, const json_value& at, const std::string& field) const {
        const auto& names = s.html.images();
        for (std::size_t i = 0; i < names.size(); ++i) {
            auto it = std::find_if(t.images.begin(), t.images.end(),
                                   [&](const image& im) { return im.name == names[i]; });
            const std::string where = s.html_file + ":" + s.html.image_positions()[i];
            if (it == t.images.end())
                fail(at.offset, field, where + ": {{img:" + names[i] + "}}: no image \"" + names[i] +
                                           "\" in this tenant's images");
            if (s.images == image_mode::link && it->url.empty())
                fail(at.offset, field, where + ": {{img:" + names[i] + "}}: image_mode is link, but image \"" +
                                           names[i] + "\" has no url");
            s.image_index.push_back(static_cast<std::size_t>(it - t.images.begin()));
        }
    }

    std::shared_ptr<snapshot> run() const {
        json_value root;
        std::size_t err_offset = 0;
        std::string message;
        if (!detail::parse_json_tree(text, root, err_offset, message))
            throw load_error{err_offset, "invalid JSON: " + message};
        auto snap = std::make_shared<snapshot>();
        snap->path_ = path;
        fields top(*this, root, "");
        const json_value& list = top.need("tenants");
        want_kind(list, json_value::array, "tenants");
        top.finish();
        for (std::size_t i = 0; i < list.items.size(); ++i) {
            std::string tp = "tenants[" + std::to_string(i) + "]";
            tenant t = parse_tenant(list.items[i], tp);
            for (const auto& other : snap->tenants_)
                if (other.id == t.id)
                    fail(list.items[i].offset, tp + ".id", "\"" + t.id + "\" is used twice");
            for (std::size_t d = 0; d < t.domains.size(); ++d)
                if (auto it = snap->by_domain_.find(t.domains[d]); it != snap->by_domain_.end())
                    fail(list.items[i].offset, tp + ".domains[" + std::to_string(d) + "]",
                         "\"" + t.domains[d] + "\" already belongs to tenant \"" +
                             snap->tenants_[it->second].id + "\"");
            for (const auto& d : t.domains) snap->by_domain_.emplace(d, snap->tenants_.size());
            snap->tenants_.push_back(std::move(t));
        }
        return snap;
    }
};

result<std::shared_ptr<const snapshot>> snapshot::parse(std::string_view json,
                                                        const std::string& path) {
    tenants_loader l;
    l.path = path;
    l.text = json;
    l.base = std::filesystem::path(path).parent_path();
    try {
        return std::shared_ptr<const snapshot>(l.run());
    } catch (const load_error& e) {
        std::string where = path;
        if (e.offset != std::string_view::npos) where += ":" + std::to_string(l.line_of(e.offset));
        return make_error(where + ": " + e.message);
    } catch (const std::exception& e) {  // bad_alloc, filesystem errors
        return make_error(path + ": " + e.what());
    }
}

result<std::shared_ptr<const snapshot>> snapshot::load(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return make_error(path + ": cannot open: " + std::strerror(errno), errno);
    std::ostringstream ss;
    ss << in.rdbuf();
    if (in.bad()) return make_error(path + ": read error");
    return parse(ss.str(), path);
}

const tenant* snapshot::find_by_id(std::string_view id) const noexcept {
    for (const auto& t : tenants_)
        if (t.id == id) return &t;
    return nullptr;
}

const tenant* snapshot::find_by_domain(std::string_view domain) const noexcept {
    if (!domain.empty() && domain.back() == '.') domain.remove_suffix(1);
    if (domain.empty() || domain.size() > 253) return nullptr;
    char buf[256];
    for (std::size_t i = 0; i < domain.size(); ++i) {
        char c = domain[i];
        buf[i] = (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
    }
    auto it = by_domain_.find(std::string(buf, domain.size()));
    return it == by_domain_.end() ? nullptr : &tenants_[it->second];
}

const tenant* snapshot::find_by_address(std::string_view address) const noexcept {
    if (address.find('@') == std::string_view::npos) return nullptr;
    return find_by_domain(signature::domain_of(address));
}

const tenant* snapshot::resolve(std::string_view xoorg, std::string_view sender) const noexcept {
    if (!xoorg.empty()) return find_by_xoorg(xoorg);
    if (sender.empty()) return nullptr;
    return find_by_address(sender);
}

bool tenant::owns_domain(std::string_view domain) const noexcept {
    if (!domain.empty() && domain.back() == '.') domain.remove_suffix(1);
    for (const auto& d : domains)
        if (signature::iequals(d, domain)) return true;
    return false;
}

const template_set* tenant::find_template(std::string_view name) const noexcept {
    for (const auto& s : templates)
        if (s.name == name) return &s;
    return nullptr;
}

tls::client_options tls_client_options(const tenant& t) {
    tls::client_options co;
    co.ca_file = t.smart_host_ca;  // the file names only label errors: the PEM is used
    co.cert_file = t.client_cert;
    co.key_file = t.client_key;
    co.ca_pem = t.smart_host_ca_pem;
    co.cert_pem = t.client_cert_pem;
    co.key_pem = t.client_key_pem;
    return co;
}

}  // namespace sigrelay::tenants
