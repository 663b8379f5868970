// A small JSON tree that remembers where each value starts in the file, built
// with simdjson's On-Demand API, so that configuration errors can name the
// line of the offending field. Only for small files (the tenants file).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace sigrelay::tenants::detail {

struct json_field;

struct json_value {
    enum kind_t { null_value, boolean, number, string, array, object };
    kind_t kind = null_value;
    std::size_t offset = 0;  // byte offset of the value's first character
    std::string text;        // string: unescaped; number: the token as written
    bool flag = false;       // boolean
    std::vector<json_value> items;
    std::vector<json_field> fields;  // in file order, duplicates kept
};

struct json_field {
    std::string key;
    std::size_t offset = 0;  // of the key
    json_value value;
};

// Parses `json`; on failure returns false with `error_offset` (or npos when
// the position is unknown) and a message.
bool parse_json_tree(std::string_view json, json_value& out, std::size_t& error_offset,
                     std::string& message);

const char* kind_name(json_value::kind_t k);

}  // namespace sigrelay::tenants::detail
