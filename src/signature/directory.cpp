// The user directory: NDJSON parsed with simdjson's parse_many into one
// string arena, interned attribute names and an open-addressing index of
// lowercase e-mail addresses. A million users load in well under a second.
#include <sigrelay/signature.hpp>

#include <simdjson.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <algorithm>
#include <cerrno>
#include <cstring>

namespace sigrelay::signature {

namespace {

constexpr unsigned char lower_table(unsigned char c) {
    return (c >= 'A' && c <= 'Z') ? static_cast<unsigned char>(c + 32) : c;
}

// FNV-1a over the ASCII-lowercased bytes, then a final avalanche so both
// halves of the result are usable (low bits: slot, high bits: tag).
std::uint64_t hash_lower(std::string_view s) noexcept {
    std::uint64_t h = 0xcbf29ce484222325ull;
    for (char ch : s) {
        h ^= lower_table(static_cast<unsigned char>(ch));
        h *= 0x100000001b3ull;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

std::size_t count_lines(const char* from, const char* to) {
    return static_cast<std::size_t>(std::count(from, to, '\n'));
}

}  // namespace

bool icontains(std::string_view haystack, std::string_view needle) noexcept {
    if (needle.empty()) return true;
    if (needle.size() > haystack.size()) return false;
    for (std::size_t i = 0; i + needle.size() <= haystack.size(); ++i)
        if (iequals(haystack.substr(i, needle.size()), needle)) return true;
    return false;
}

std::string_view domain_of(std::string_view address) noexcept {
    auto at = address.rfind('@');
    if (at == std::string_view::npos) return {};
    return address.substr(at + 1);
}

// Fills a directory from a padded buffer; a struct so it can be a friend.
struct directory_loader {
    directory d;
    std::string_view origin;
    std::vector<std::uint32_t> lines;           // per user, while loading (duplicate errors)
    std::vector<std::uint32_t> position_cache;  // field position → name id
    struct pending {
        std::uint16_t name;
        std::string_view value;
    };
    std::vector<pending> scratch;
    std::uint64_t mask = 0;
    bool too_many_names = false;

    error fail(std::size_t line, std::string_view what) const {
        return make_error(std::string(origin) + ":" + std::to_string(line) + ": " +
                          std::string(what));
    }

    std::uint32_t intern(std::string_view name, std::size_t position) {
        if (position < position_cache.size() && d.names_[position_cache[position]] == name)
            return position_cache[position];
        std::uint32_t id;
        if (auto it = d.name_ids_.find(name); it != d.name_ids_.end()) {
            id = it->second;
        } else {
            id = static_cast<std::uint32_t>(d.names_.size());
            d.names_.emplace_back(name);
            d.name_ids_.emplace(std::string(name), id);
            if (d.names_.size() > 0xfffe) too_many_names = true;
        }
        if (position >= position_cache.size()) position_cache.resize(position + 1, 0);
        position_cache[position] = id;
        return id;
    }

    void size_index(std::size_t expected_users) {
        std::size_t cap = 16;
        while (cap < expected_users * 2) cap <<= 1;
        d.index_.assign(cap, 0);
        mask = cap - 1;
    }

    // Inserts user u; returns the user already holding the address, if any.
    std::optional<user_id> insert(user_id u) {
        std::string_view key = d.email(u);
        std::uint64_t h = hash_lower(key);
        std::uint64_t tag = h & 0xffffffff00000000ull;
        for (std::uint64_t i = h & mask;; i = (i + 1) & mask) {
            std::uint64_t e = d.index_[i];
            if (e == 0) {
                d.index_[i] = tag | (std::uint64_t{u} + 1);
                return std::nullopt;
            }
            if ((e & 0xffffffff00000000ull) == tag) {
                auto other = static_cast<user_id>((e & 0xffffffffull) - 1);
                if (iequals(d.email(other), key)) return other;
            }
        }
    }

    // One NDJSON line's object → a user. Returns an error naming the field.
    result<void> add_user(simdjson::dom::object obj, std::size_t line) {
        scratch.clear();
        bool have_email = false;
        std::size_t position = 0;
        for (auto field : obj) {
            std::string_view key = field.key;
            if (key.empty()) return fail(line, "empty attribute name");
            std::string_view value;
            bool is_string = field.value.get_string().get(value) == simdjson::SUCCESS;
            if (key == "email") {
                if (have_email) return fail(line, "email: given twice");
                if (!is_string) return fail(line, "email: expected a string");
                auto at = value.find('@');
                if (value.empty() || at == std::string_view::npos || at == 0 ||
                    at + 1 == value.size() || value.find('@', at + 1) != std::string_view::npos)
                    return fail(line, "email: expected an address like user@example.com, got \"" +
                                          std::string(value.substr(0, 200)) + "\"");
                for (char c : value)
                    if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f)
                        return fail(line, "email: contains a blank or control character");
                have_email = true;
            }
            if (!is_string) {  // documented: non-string attributes are ignored
                ++position;
                continue;
            }
            if (value.size() > 0xffff)
                return fail(line, std::string(key) + ": value longer than 65535 bytes");
            pending a{static_cast<std::uint16_t>(intern(key, position)), value};
            if (too_many_names) return fail(line, "more than 65535 attribute names");
            if (key == "email")
                scratch.insert(scratch.begin(), a);
            else
                scratch.push_back(a);
            ++position;
        }
        if (!have_email) return fail(line, "email: missing");
        std::size_t bytes = 0;
        for (const auto& a : scratch) bytes += a.value.size();
        if (d.arena_.size() + bytes > 0xffffffffull)
            return fail(line, "directory larger than 4 GiB");
        auto u = static_cast<user_id>(d.users_.size() - 1);
        for (const auto& a : scratch) {
            d.attrs_.push_back({a.name, static_cast<std::uint16_t>(a.value.size())});
            d.arena_.append(a.value);
        }
        d.users_.push_back({static_cast<std::uint32_t>(d.attrs_.size()),
                            static_cast<std::uint32_t>(d.arena_.size())});
        lines.push_back(static_cast<std::uint32_t>(line));
        if (auto other = insert(u)) {
            return fail(line, "email: duplicate address \"" + std::string(d.email(u)) +
                                  "\" (already on line " + std::to_string(lines[*other]) + ")");
        }
        return ok();
    }

    // parse_many reports a bad document only approximately (a whole batch
    // can fail at once): find the first line that does not parse on its own.
    error locate(const simdjson::padded_string& buf, std::size_t from, std::size_t line,
                 simdjson::error_code stream_error) const {
        simdjson::dom::parser p;
        std::size_t pos = from;
        std::size_t first_line = line;
        while (pos < buf.size()) {
            std::size_t nl = std::string_view(buf.data(), buf.size()).find('\n', pos);
            std::size_t end = nl == std::string_view::npos ? buf.size() : nl;
            std::string_view text(buf.data() + pos, end - pos);
            bool blank = std::all_of(text.begin(), text.end(),
                                     [](char c) { return c == ' ' || c == '\t' || c == '\r'; });
            if (!blank) {
                simdjson::dom::element e;
                auto err = p.parse(text.data(), text.size(), true).get(e);
                if (err)
                    return fail(line, std::string("invalid JSON: ") + simdjson::error_message(err));
            }
            if (nl == std::string_view::npos) break;
            pos = nl + 1;
            ++line;
        }
        return fail(first_line,
                    std::string("invalid JSON: ") + simdjson::error_message(stream_error));
    }

    result<void> run(const simdjson::padded_string& buf) {
        d.names_.clear();
        d.names_.emplace_back("email");
        d.name_ids_.emplace("email", 0);
        d.users_.assign(1, {0, 0});
        d.arena_.reserve(buf.size());
        std::size_t expected = count_lines(buf.data(), buf.data() + buf.size()) + 1;
        size_index(expected);
        d.attrs_.reserve(expected * 4);
        d.users_.reserve(expected + 1);
        lines.reserve(expected);

        // parse_many over an empty buffer is not reliable in simdjson 3.0
        // (an error under sanitizers): an empty file is an empty directory.
        if (buf.size() == 0) return ok();

        // Documents larger than a batch cannot be parsed: one user per line is
        // never near 4 MiB, but say so clearly if it happens.
        constexpr std::size_t batch = 4 << 20;
        simdjson::dom::parser parser;
        simdjson::dom::document_stream stream;
        if (auto err = parser.parse_many(buf.data(), buf.size(), batch).get(stream))
            return fail(1, std::string("invalid JSON: ") + simdjson::error_message(err));

        std::size_t line = 1;
        std::size_t counted = 0;     // offset up to which newlines were counted
        std::size_t last_line = 0;   // line of the previous document
        std::size_t last_start = 0;  // offset of the previous document's line
        for (auto it = stream.begin(); it != stream.end(); ++it) {
            std::size_t at = it.current_index();
            if (at > buf.size()) at = buf.size();
            if (at > counted) {
                line += count_lines(buf.data() + counted, buf.data() + at);
                counted = at;
            }
            simdjson::dom::element doc;
            if (auto err = (*it).get(doc)) {
                std::size_t from = last_line ? last_start : 0;
                return locate(buf, from, last_line ? last_line : 1, err);
            }
            if (line == last_line) return fail(line, "more than one JSON value on the line");
            simdjson::dom::object obj;
            if (doc.get(obj)) return fail(line, "expected a JSON object {\"email\": ...}");
            if (auto r = add_user(obj, line); !r) return std::move(r).err();
            last_line = line;
            std::size_t ls = std::string_view(buf.data(), at).rfind('\n');
            last_start = ls == std::string_view::npos ? 0 : ls + 1;
        }
        if (stream.truncated_bytes() != 0) {  // an unfinished last document
            std::size_t from = last_line ? last_start : 0;
            return locate(buf, from, last_line ? last_line : 1, simdjson::TAPE_ERROR);
        }
        d.arena_.shrink_to_fit();
        d.attrs_.shrink_to_fit();
        d.users_.shrink_to_fit();
        return ok();
    }
};

result<directory> directory::parse(std::string_view ndjson, std::string_view origin) {
    simdjson::padded_string buf(ndjson);
    directory_loader l;
    l.origin = origin;
    if (auto r = l.run(buf); !r) return std::move(r).err();
    return std::move(l.d);
}

result<directory> directory::load(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return make_error(path + ": cannot open: " + std::strerror(errno), errno);
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        int e = errno;
        ::close(fd);
        return make_error(path + ": not a regular file", e);
    }
    simdjson::padded_string buf(static_cast<std::size_t>(st.st_size));
    std::size_t got = 0;
    while (got < buf.size()) {
        ssize_t n = ::read(fd, buf.data() + got, buf.size() - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            int e = errno;
            ::close(fd);
            return make_error(path + ": read error: " + (n < 0 ? std::strerror(e) : "short read"),
                              e);
        }
        got += static_cast<std::size_t>(n);
    }
    ::close(fd);
    directory_loader l;
    l.origin = path;
    if (auto r = l.run(buf); !r) return std::move(r).err();
    return std::move(l.d);
}

std::optional<user_id> directory::find(std::string_view address) const noexcept {
    if (index_.empty()) return std::nullopt;
    std::uint64_t h = hash_lower(address);
    std::uint64_t tag = h & 0xffffffff00000000ull;
    std::uint64_t mask = index_.size() - 1;
    for (std::uint64_t i = h & mask;; i = (i + 1) & mask) {
        std::uint64_t e = index_[i];
        if (e == 0) return std::nullopt;
        if ((e & 0xffffffff00000000ull) == tag) {
            auto u = static_cast<user_id>((e & 0xffffffffull) - 1);
            if (iequals(email(u), address)) return u;
        }
    }
}

std::uint32_t directory::attribute_id(std::string_view name) const noexcept {
    auto it = name_ids_.find(name);
    return it == name_ids_.end() ? no_attribute : it->second;
}

std::string_view directory::get(user_id u, std::uint32_t attribute) const noexcept {
    if (attribute == no_attribute || std::size_t{u} + 1 >= users_.size()) return {};
    const char* p = arena_.data() + users_[u].offset;
    for (std::uint32_t i = users_[u].first_attr, end = users_[u + 1].first_attr; i < end; ++i) {
        if (attrs_[i].name == attribute) return {p, attrs_[i].length};
        p += attrs_[i].length;
    }
    return {};
}

std::size_t directory::memory_bytes() const noexcept {
    std::size_t n = arena_.capacity() + attrs_.capacity() * sizeof(attr) +
                    users_.capacity() * sizeof(user_record) +
                    index_.capacity() * sizeof(std::uint64_t);
    for (const auto& s : names_) n += s.capacity() + sizeof(s) * 2;
    return n;
}

}  // namespace sigrelay::signature
