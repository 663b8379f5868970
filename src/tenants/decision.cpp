// The signature decision for one message (docs/configuration.md, Rules): the
// recipient group, the first rule that holds, the template rendered with the
// sender's attributes and the images' URLs for this message.
#include <sigrelay/tenants.hpp>

#include <array>

namespace sigrelay::tenants {

signature::recipients_scope recipient_group(const tenant& t, std::string_view r) {
    return r.find('@') == std::string_view::npos || !t.owns_domain(signature::domain_of(r))
               ? signature::recipients_scope::external
               : signature::recipients_scope::internal;
}

signature::recipients_scope classify_recipients(const tenant& t,
                                                std::span<const std::string> recipients) {
    for (const auto& r : recipients)
        if (recipient_group(t, r) == signature::recipients_scope::external)
            return signature::recipients_scope::external;
    return signature::recipients_scope::internal;
}

std::string_view scope_name(signature::recipients_scope s) noexcept {
    switch (s) {
        case signature::recipients_scope::any: return "any";
        case signature::recipients_scope::internal: return "internal";
        case signature::recipients_scope::external: return "external";
    }
    return "?";
}

std::string_view placement_name(mime::placement p) noexcept {
    return p == mime::placement::bottom ? "bottom" : "below_reply";
}

std::string describe_conditions(const signature::rule& r) {
    std::string out;
    auto add = [&](std::string s) { out += (out.empty() ? "" : ", ") + std::move(s); };
    for (const auto& [name, value] : r.attributes) add(name + " = " + value);
    if (r.recipients != signature::recipients_scope::any)
        add("recipients " + std::string(scope_name(r.recipients)));
    if (!r.subject_contains.empty()) add("subject contains \"" + r.subject_contains + "\"");
    if (!r.sender.empty()) add("sender " + r.sender);
    if (r.active) {
        auto day = [](signature::date d) {
            char b[16];
            std::snprintf(b, sizeof b, "%04d-%02u-%02u", static_cast<int>(d.year()),
                          static_cast<unsigned>(d.month()), static_cast<unsigned>(d.day()));
            return std::string(b);
        };
        add("active " + day(r.active->first) + " to " + day(r.active->second));
    }
    return out.empty() ? "always" : out;
}

decision decide(const tenant& t, std::string_view sender, std::span<const std::string> recipients,
                std::string_view subject, signature::date today, std::string_view content_id_suffix) {
    decision d;
    d.group = classify_recipients(t, recipients);
    if (sender.empty()) {
        d.kind = verdict::no_signature;
        d.reason = "null sender";
        return d;
    }
    auto user = t.directory.find(sender);
    if (!user) {
        d.kind = verdict::unknown_sender;
        d.reason = "sender not in the directory";
        return d;
    }
    signature::message_facts facts{sender, d.group, subject, today};
    auto idx = signature::first_match(t.rules, facts, t.directory, *user);
    if (!idx) {
        d.kind = verdict::no_signature;
        d.reason = "no rule matched";
        return d;
    }
    d.rule = *idx;
    const signature::rule& r = t.rules[*idx];
    if (!r.template_index) {
        d.kind = verdict::no_signature;
        d.reason = "rules[" + std::to_string(*idx) + "]: template null";
        return d;
    }
    const template_set& s = t.templates[*r.template_index];
    d.kind = verdict::signature;
    d.template_name = s.name;
    d.reason = "rules[" + std::to_string(*idx) + "]: template " + s.name;

    // Each image's URL for this message: its own Content-ID when embedded,
    // unique per message (RFC 2392, RFC 5322 §3.6.4), else the tenant's URL.
    const std::size_t n = s.image_index.size();
    std::vector<std::string> cids;
    std::array<std::string_view, 8> small{};
    std::vector<std::string_view> large;
    std::span<std::string_view> urls = n <= small.size() ? std::span(small.data(), n)
                                                         : std::span(large = std::vector<std::string_view>(n));
    if (n > 0) {
        d.images = s.images;
        if (s.images == image_mode::embed) {
            cids.reserve(n);
            for (std::size_t i = 0; i < n; ++i) {
                const image& im = t.images[s.image_index[i]];
                cids.push_back("cid:" + im.name + "." + std::string(content_id_suffix));
                urls[i] = cids.back();
            }
        } else {
            for (std::size_t i = 0; i < n; ++i) urls[i] = t.images[s.image_index[i]].url_html;
        }
    }
    d.signature.html.reserve(s.html.literal_size() + 256);
    d.signature.text.reserve(s.text.literal_size() + 128);
    s.html_binding.render(s.html, t.directory, *user, d.signature.html, urls);
    s.text_binding.render(s.text, t.directory, *user, d.signature.text);
    d.signature.where = s.where;
    if (n > 0 && s.images == image_mode::embed) {
        d.signature.images.reserve(n);
        for (std::size_t i = 0; i < n; ++i) {
            const image& im = t.images[s.image_index[i]];
            d.signature.images.push_back(
                {cids[i].substr(4), im.content_type, im.filename, im.base64});
        }
    }
    return d;
}

std::string marker_id(std::string_view sender) {
    std::uint64_t h = 0xcbf29ce484222325ull;
    for (char ch : sender) {
        auto c = static_cast<unsigned char>(ch);
        if (c >= 'A' && c <= 'Z') c = static_cast<unsigned char>(c + 32);
        h ^= c;
        h *= 0x100000001b3ull;
    }
    static constexpr char hex[] = "0123456789abcdef";
    std::string out(16, '0');
    for (int i = 15; i >= 0; --i) {
        out[static_cast<std::size_t>(i)] = hex[h & 0xf];
        h >>= 4;
    }
    return out;
}

}  // namespace sigrelay::tenants
