// Streaming MIME structure scanner (RFC 5322 §2.2, RFC 2045, RFC 2046 §5.1).
// Fed byte spans in any split, it records each part's header fields and the
// byte offsets of its header block and body. It never copies bodies: only the
// current line's first bytes (all of it inside a header block) are buffered.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace sigrelay::mime {

// What made a structure uncertain. The injector signs nothing when any is set.
enum defect : std::uint32_t {
    defect_bare_newline = 1u << 0,         // a bare CR or bare LF
    defect_no_header_separator = 1u << 1,  // header block not ended by an empty line
    defect_continuation_first = 1u << 2,   // header block starts with a folded line
    defect_header_too_big = 1u << 3,       // header block over max_header_bytes
    defect_missing_boundary = 1u << 4,     // multipart without boundary parameter
    defect_bad_boundary = 1u << 5,         // RFC 2046 §5.1.1 syntax: length, chars, trailing space
    defect_boundary_overlap = 1u << 6,     // a nested boundary ambiguous with an enclosing one
    defect_no_parts = 1u << 7,             // multipart in which no delimiter was found
    defect_unterminated = 1u << 8,         // multipart without close delimiter
    defect_too_deep = 1u << 9,             // nesting over max_depth
    defect_duplicate_header = 1u << 10,    // two Content-Type or two Content-Transfer-Encoding
    defect_bad_content_type = 1u << 11,    // unparsable Content-Type
};

// Human-readable name of the lowest defect bit set ("" for none).
std::string_view defect_name(std::uint32_t defects) noexcept;

struct header_field {
    std::size_t begin = 0;  // input offset of the field's first byte
    std::size_t end = 0;    // input offset after its final line end
    std::string name;       // as written
    std::string value;      // unfolded (line ends removed), outer whitespace trimmed
};

struct content_param {
    std::string name;   // lowercased; RFC 2231 sections joined, "*" dropped
    std::string value;  // unquoted; RFC 2231 percent-decoding applied
};

struct part {
    std::size_t begin = 0;       // first byte of the header block
    std::size_t header_end = 0;  // after the last header field (the empty line starts here)
    std::size_t body_begin = 0;  // first body byte
    std::size_t body_end = 0;    // end of body (the CRLF before a delimiter belongs to it)
    int parent = -1;
    unsigned depth = 0;
    std::vector<int> children;
    std::vector<header_field> fields;
    std::string type = "text";  // lowercased; defaults per RFC 2045 §5.2 / RFC 2046 §5.1.5
    std::string subtype = "plain";
    bool has_content_type = false;
    std::vector<content_param> params;  // Content-Type parameters
    std::string cte;                    // lowercased Content-Transfer-Encoding, "" if absent
    std::string disposition;            // lowercased disposition type, "" if absent
    std::string filename;               // Content-Disposition filename, else Content-Type name
    std::string content_id;             // Content-ID as written (with <>)
    std::uint32_t defects = 0;
    bool header_complete = false;  // the header block has been read
    bool closed = false;           // the part has ended (body_end is final)

    bool is_multipart() const noexcept { return type == "multipart"; }
    bool is(std::string_view t, std::string_view s) const noexcept {
        return type == t && subtype == s;
    }
    // A parameter's value, or nullptr.
    const std::string* param(std::string_view lower_name) const noexcept;
    // The first field with this name (ASCII case-insensitive), or nullptr.
    const header_field* field(std::string_view name) const noexcept;
};

struct scan_limits {
    unsigned max_depth = 16;
    std::size_t max_header_bytes = 1 << 20;
};

class scanner {
public:
    explicit scanner(scan_limits limits = {});

    // Any split of the message is fine; offsets count from the first byte fed.
    void feed(std::span<const char> bytes);
    // Ends the message: closes open parts at the last byte.
    void finish();

    // parts()[0] is the message itself; children hold indexes into the vector.
    const std::vector<part>& parts() const noexcept { return parts_; }
    // Union of every part's defects.
    std::uint32_t defects() const noexcept;
    std::size_t size() const noexcept { return pos_; }

private:
    struct open_part {
        int index = 0;
        bool in_headers = true;
        bool multipart = false;  // a multipart whose delimiters are being looked for
        bool closed = false;     // close delimiter seen: in the epilogue
        bool any_child = false;
        std::string delimiter;  // "--" + boundary
    };

    void on_line(const char* p, std::size_t kept, std::size_t len, std::size_t eol);
    void header_line(const char* p, std::size_t kept, std::size_t len, std::size_t eol);
    void body_line(const char* p, std::size_t kept, std::size_t len, std::size_t eol);
    bool try_delimiter(const char* p, std::size_t kept, std::size_t len, std::size_t eol);
    void flush_field();
    void end_headers(std::size_t header_end, std::size_t body_begin, bool open_body);
    void close_top(std::size_t end);
    void start_child(int parent, std::size_t begin);
    std::size_t keep_limit() const noexcept;

    scan_limits limits_;
    std::vector<part> parts_;
    std::vector<open_part> open_;
    std::string line_;  // buffered start of the current, unfinished line
    std::size_t line_len_ = 0;
    std::size_t line_cr_ = 0;  // CRs seen in the unfinished line
    char line_last_ = 0;
    std::size_t line_start_ = 0;
    std::size_t pos_ = 0;
    std::size_t prev_eol_ = 0;
    std::size_t header_bytes_ = 0;
    bool field_open_ = false;
    std::size_t field_begin_ = 0;
    std::size_t field_end_ = 0;
    std::string field_name_;
    std::string field_value_;
    std::uint32_t global_defects_ = 0;
    bool finished_ = false;
};

// Scans a whole message.
std::vector<part> scan(std::span<const char> message, scan_limits limits = {},
                       std::uint32_t* defects = nullptr);

// Header value parsing (RFC 2045 §5.1, RFC 2183, RFC 2231). Returns false when
// the value has no "type/subtype".
bool parse_content_type(std::string_view value, std::string& type, std::string& subtype,
                        std::vector<content_param>& params);
// Disposition type (lowercased) and its parameters.
void parse_disposition(std::string_view value, std::string& disposition,
                       std::vector<content_param>& params);
// RFC 2046 §5.1.1 boundary syntax: 1-70 bchars, not ending in a space.
bool valid_boundary(std::string_view boundary) noexcept;

}  // namespace sigrelay::mime
