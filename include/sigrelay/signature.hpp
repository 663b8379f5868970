// Signatures: the template compiler and renderer, the user directory (NDJSON)
// and the rules that pick a template for a message (docs/configuration.md).
// Loading may allocate freely; rendering and lookups are the hot path and
// report nothing but values.
#pragma once

#include <sigrelay/result.hpp>
#include <sigrelay/text.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace sigrelay::signature {

// How {{attr}} values are written: HTML-escaped (& < > " ') or raw. In both
// modes control characters (CR, LF, NUL, ...; not TAB) in a value become a
// space, so a directory value can never start a new line in a body.
enum class escape { html, text };

// A template compiled once into pre-split segments:
//   {{attr}}             the attribute's value (escaped as above)
//   {{#attr}}…{{/attr}}  shown only when the attribute is non-empty
//   {{^attr}}…{{/attr}}  shown only when it is empty (or missing)
//   {{! comment }}       dropped
//   {{img:name}}         the image `name`: a cid: or https: URL the caller
//                        supplies per message (HTML templates only)
// Sections nest. A line holding only a section/comment tag (and blanks)
// disappears entirely, as in Mustache, so text templates stay tidy. Line
// breaks of the literal text are normalised to CRLF (bodies are CRLF).
// Attribute names: [A-Za-z0-9_.-]+, blanks around them allowed ({{ title }}).
class compiled_template {
public:
    compiled_template() = default;

    // `origin` names the source in errors: "sig.html:3:7: {{#mobile}} is never
    // closed". The source must be UTF-8 without NUL bytes.
    static result<compiled_template> compile(std::string_view source, escape mode,
                                             std::string_view origin = "template");

    escape mode() const noexcept { return mode_; }
    // Attribute names in slot order: render() takes one value per slot.
    const std::vector<std::string>& attributes() const noexcept { return attributes_; }
    // Image names in slot order ({{img:name}}), each once, and where each
    // was first used ("3:17") for load errors.
    const std::vector<std::string>& images() const noexcept { return images_; }
    const std::vector<std::string>& image_positions() const noexcept { return image_positions_; }
    // Bytes of literal text (a good reserve() hint for the output).
    std::size_t literal_size() const noexcept { return text_.size(); }

    // Appends the rendering to `out`. values[i] is attributes()[i]'s value;
    // missing trailing values count as empty. image_urls[i] is written, as
    // given (already escaped), for images()[i].
    void render(std::span<const std::string_view> values, std::string& out,
                std::span<const std::string_view> image_urls = {}) const;
    std::string render(std::span<const std::string_view> values) const;
    // Convenience for tests and tools: values by name (absent = empty).
    std::string render_with(const std::vector<std::pair<std::string, std::string>>& values) const;

private:
    struct op {
        enum kind_t : std::uint8_t { literal, value, section, inverted, image };
        kind_t kind = literal;
        std::uint32_t slot = 0;    // value, section, inverted
        std::uint32_t offset = 0;  // literal: into text_; sections: index past the end
        std::uint32_t length = 0;  // literal
    };
    std::vector<op> ops_;
    std::string text_;
    std::vector<std::string> attributes_;
    std::vector<std::string> images_;
    std::vector<std::string> image_positions_;
    escape mode_ = escape::text;

    friend struct compiler;
};

using user_id = std::uint32_t;

// The user directory: NDJSON, one user per line, {"email": ..., any string
// attribute}. Stored compactly: one arena holding every string (a user's
// values back to back, email first), attribute names interned once, 4 bytes
// (name id, length) per attribute plus 8 bytes per user, and an
// open-addressing index of e-mail addresses (ASCII case-insensitive).
// Loading decisions (documented for administrators):
//  - every line must be a JSON object with a non-empty string "email" holding
//    one '@'; blank lines are skipped;
//  - a second line with the same address (any case) is an error naming both
//    lines: two people must not share an address;
//  - attributes whose value is not a string (null, numbers, booleans, arrays,
//    objects) are ignored: only strings are usable in templates;
//  - a value may hold up to 65535 bytes, a directory up to 65535 distinct
//    attribute names and 4 GiB of strings;
//  - errors read "users.ndjson:12: email: missing".
class directory {
public:
    static constexpr std::uint32_t no_attribute = ~std::uint32_t{0};

    directory() = default;

    // Reads and parses a file; errors name `path`.
    static result<directory> load(const std::string& path);
    // Parses NDJSON held in memory; errors name `origin`.
    static result<directory> parse(std::string_view ndjson, std::string_view origin);

    // Looks a sender up by address, ASCII case-insensitively.
    std::optional<user_id> find(std::string_view address) const noexcept;

    std::size_t size() const noexcept { return users_.empty() ? 0 : users_.size() - 1; }
    std::string_view email(user_id u) const noexcept {
        return {arena_.data() + users_[u].offset, attrs_[users_[u].first_attr].length};
    }
    // The attribute's id, or no_attribute when no user has it.
    std::uint32_t attribute_id(std::string_view name) const noexcept;
    const std::vector<std::string>& attribute_names() const noexcept { return names_; }
    // A user's attribute value; "" when the user lacks it.
    std::string_view get(user_id u, std::uint32_t attribute) const noexcept;
    std::string_view get(user_id u, std::string_view name) const noexcept {
        return get(u, attribute_id(name));
    }
    // Calls f(name, value) for each string attribute of the user, email first.
    template <class F>
    void for_each(user_id u, F&& f) const {
        const char* p = arena_.data() + users_[u].offset;
        for (std::uint32_t i = users_[u].first_attr; i < users_[u + 1].first_attr; ++i) {
            f(std::string_view(names_[attrs_[i].name]), std::string_view(p, attrs_[i].length));
            p += attrs_[i].length;
        }
    }
    // Approximate heap bytes held (benchmarks, metrics).
    std::size_t memory_bytes() const noexcept;

private:
    struct attr {
        std::uint16_t name;
        std::uint16_t length;
    };
    struct user_record {
        std::uint32_t first_attr;  // into attrs_
        std::uint32_t offset;      // into arena_: the user's values, back to back
    };
    struct name_hash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const noexcept {
            return std::hash<std::string_view>{}(s);
        }
    };
    std::string arena_;
    std::vector<attr> attrs_;         // users' attributes, email first
    std::vector<user_record> users_;  // per user, plus one end marker
    std::vector<std::string> names_;  // interned names; names_[0] == "email"
    std::unordered_map<std::string, std::uint32_t, name_hash, std::equal_to<>> name_ids_;
    // Open addressing: (hash high 32 bits << 32) | (user + 1); 0 = empty.
    std::vector<std::uint64_t> index_;

    friend struct directory_loader;
    friend class binding;
};

// A template's slots resolved against one directory's attribute ids, once at
// load time, so that rendering a user's signature does no name lookups.
class binding {
public:
    binding() = default;
    binding(const compiled_template& t, const directory& d);

    // Appends the user's rendering to `out` (image_urls as in compiled_template::render).
    void render(const compiled_template& t, const directory& d, user_id u, std::string& out,
                std::span<const std::string_view> image_urls = {}) const;

private:
    static constexpr std::uint16_t no_slot = 0xffff;
    std::vector<std::uint16_t> slot_of_;  // directory attribute id → template slot
    std::size_t slots_ = 0;
};

// Calendar dates for `active` rules; the caller passes today's date (no
// clock inside the library).
using date = std::chrono::year_month_day;
// Strict "YYYY-MM-DD" with a valid calendar day.
std::optional<date> parse_date(std::string_view s) noexcept;

enum class recipients_scope { any, internal, external };

// One rule of a tenant (docs/configuration.md). Every condition present must hold.
struct rule {
    // Directory attribute == value, exact but ASCII case-insensitive.
    std::vector<std::pair<std::string, std::string>> attributes;
    recipients_scope recipients = recipients_scope::any;
    std::string subject_contains;  // ASCII case-insensitive; empty = no test
    std::string sender;            // lowercase "user@domain" or "@domain"; empty = no test
    std::optional<std::pair<date, date>> active;  // inclusive
    // Index into the tenant's templates; nullopt: no signature (still stamped).
    std::optional<std::size_t> template_index;
};

// What rules look at in a message.
struct message_facts {
    std::string_view sender;  // envelope sender address
    // internal: every recipient in the tenant's domains; external: at least
    // one outside (docs/configuration.md).
    recipients_scope recipients = recipients_scope::internal;
    std::string_view subject;  // decoded, UTF-8
    date today{};
};

bool matches(const rule& r, const message_facts& m, const directory& d, user_id u);
// The index of the first rule that holds, if any.
std::optional<std::size_t> first_match(std::span<const rule> rules, const message_facts& m,
                                       const directory& d, user_id u);

// ASCII helpers shared with the tenants module.
inline std::string ascii_lower(std::string_view s) { return text::to_lower(s); }
using text::iequals;
bool icontains(std::string_view haystack, std::string_view needle) noexcept;
// The domain of an address (after the last '@'), or "" when there is none.
std::string_view domain_of(std::string_view address) noexcept;

}  // namespace sigrelay::signature
