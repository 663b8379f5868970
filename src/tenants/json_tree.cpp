// Builds a json_value tree with source offsets from simdjson On-Demand.
#include "json_tree.hpp"

#include <simdjson.h>

namespace sigrelay::tenants::detail {

namespace {

namespace od = simdjson::ondemand;

constexpr int max_depth = 64;

struct builder {
    const char* base;
    std::size_t size;
    std::size_t last = 0;  // offset of the last value started (error fallback)
    std::string message;

    std::size_t offset_of(const char* p) const {
        if (p < base || p > base + size) return last;
        return static_cast<std::size_t>(p - base);
    }

    bool fail(simdjson::error_code e) {
        message = simdjson::error_message(e);
        return false;
    }

    bool build(od::value v, json_value& out, int depth) {
        if (depth > max_depth) {
            message = "nested too deeply";
            return false;
        }
        out.offset = last = offset_of(v.raw_json_token().data());
        od::json_type t;
        if (auto e = v.type().get(t)) return fail(e);
        switch (t) {
            case od::json_type::object: {
                out.kind = json_value::object;
                od::object obj;
                if (auto e = v.get_object().get(obj)) return fail(e);
                for (auto f : obj) {
                    od::field field;
                    if (auto e = std::move(f).get(field)) return fail(e);
                    json_field jf;
                    jf.offset = last = offset_of(field.key().raw() - 1);
                    std::string_view key;
                    if (auto e = field.unescaped_key().get(key)) return fail(e);
                    jf.key.assign(key);
                    if (!build(field.value(), jf.value, depth + 1)) return false;
                    out.fields.push_back(std::move(jf));
                }
                return true;
            }
            case od::json_type::array: {
                out.kind = json_value::array;
                od::array arr;
                if (auto e = v.get_array().get(arr)) return fail(e);
                for (auto item : arr) {
                    od::value iv;
                    if (auto e = item.get(iv)) return fail(e);
                    json_value child;
                    if (!build(iv, child, depth + 1)) return false;
                    out.items.push_back(std::move(child));
                }
                return true;
            }
            case od::json_type::string: {
                out.kind = json_value::string;
                std::string_view s;
                if (auto e = v.get_string().get(s)) return fail(e);
                out.text.assign(s);
                return true;
            }
            case od::json_type::number: {
                out.kind = json_value::number;
                double d;
                if (auto e = v.get_double().get(d)) return fail(e);
                std::string_view tok = v.raw_json_token();
                while (!tok.empty() && (tok.back() == ' ' || tok.back() == '\n' ||
                                        tok.back() == '\r' || tok.back() == '\t'))
                    tok.remove_suffix(1);
                out.text.assign(tok);
                return true;
            }
            case od::json_type::boolean: {
                out.kind = json_value::boolean;
                if (auto e = v.get_bool().get(out.flag)) return fail(e);
                return true;
            }
            case od::json_type::null: {
                out.kind = json_value::null_value;
                bool is_null = false;
                if (auto e = v.is_null().get(is_null)) return fail(e);
                if (!is_null) return fail(simdjson::N_ATOM_ERROR);
                return true;
            }
        }
        return fail(simdjson::TAPE_ERROR);
    }
};

// Where an unterminated string starts, for stage-1 errors simdjson reports
// without a position.
std::size_t unclosed_string(std::string_view json) {
    bool in = false;
    std::size_t start = std::string_view::npos;
    for (std::size_t i = 0; i < json.size(); ++i) {
        char c = json[i];
        if (in) {
            if (c == '\\') {
                ++i;
            } else if (c == '"') {
                in = false;
            } else if (c == '\n') {
                return start;  // JSON strings cannot hold a raw line break
            }
        } else if (c == '"') {
            in = true;
            start = i;
        }
    }
    return in ? start : std::string_view::npos;
}

std::size_t bad_utf8(std::string_view json) {
    std::size_t line_start = 0;
    while (line_start < json.size()) {
        std::size_t nl = json.find('\n', line_start);
        std::size_t end = nl == std::string_view::npos ? json.size() : nl;
        if (!simdjson::validate_utf8(json.data() + line_start, end - line_start)) return line_start;
        if (nl == std::string_view::npos) break;
        line_start = nl + 1;
    }
    return std::string_view::npos;
}

}  // namespace

bool parse_json_tree(std::string_view json, json_value& out, std::size_t& error_offset,
                     std::string& message) {
    simdjson::padded_string buf(json);
    od::parser parser;
    od::document doc;
    error_offset = std::string_view::npos;
    if (auto e = parser.iterate(buf).get(doc)) {
        message = simdjson::error_message(e);
        if (e == simdjson::EMPTY) {
            error_offset = 0;
            message = "empty file";
        } else if (e == simdjson::UTF8_ERROR) {
            error_offset = bad_utf8(json);
            message = "not valid UTF-8";
        } else if (e == simdjson::UNCLOSED_STRING) {
            error_offset = unclosed_string(json);
            message = "unclosed string";
        }
        return false;
    }
    builder b{buf.data(), buf.size(), 0, {}};
    od::value root;
    auto e = doc.get_value().get(root);
    bool good = !e && b.build(root, out, 0);
    if (e) b.message = simdjson::error_message(e);
    // After the root value the iterator must be at the end: a location that is
    // still in bounds means trailing content (document::at_end() is newer
    // than simdjson 3.0).
    const char* rest = nullptr;
    if (good && !doc.current_location().get(rest)) {
        b.message = "unexpected content after the JSON value";
        good = false;
    }
    if (!good) {
        message = b.message;
        const char* loc = nullptr;
        if (!doc.current_location().get(loc) && loc >= buf.data() && loc <= buf.data() + buf.size())
            error_offset = static_cast<std::size_t>(loc - buf.data());
        else
            error_offset = b.last;
        if (std::size_t u = unclosed_string(json); u != std::string_view::npos) {
            error_offset = u;
            message = "unclosed string";
        }
        return false;
    }
    return true;
}

const char* kind_name(json_value::kind_t k) {
    switch (k) {
        case json_value::null_value:
            return "null";
        case json_value::boolean:
            return "a boolean";
        case json_value::number:
            return "a number";
        case json_value::string:
            return "a string";
        case json_value::array:
            return "an array";
        case json_value::object:
            return "an object";
    }
    return "?";
}

}  // namespace sigrelay::tenants::detail
