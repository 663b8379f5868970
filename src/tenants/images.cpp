// A tenant's images (docs/configuration.md, Images): recognised by their
// bytes, size-capped, and base64-encoded once per snapshot, so that a message
// that embeds one copies the encoding and never encodes anything.
#include <sigrelay/tenants.hpp>
#include <sigrelay/mime/codec.hpp>

#include <filesystem>

namespace sigrelay::tenants {

std::string_view image_mode_name(image_mode m) noexcept {
    return m == image_mode::embed ? "embed" : "link";
}

std::string_view sniff_image_type(std::string_view b) noexcept {
    if (b.starts_with(std::string_view("\x89PNG\r\n\x1a\n", 8))) return "image/png";
    if (b.size() >= 3 && b.starts_with("\xff\xd8\xff")) return "image/jpeg";
    if (b.starts_with("GIF87a") || b.starts_with("GIF89a")) return "image/gif";
    return {};
}

namespace {

// The file's own name for Content-Disposition: filename= and Content-Type:
// name= (RFC 2183): letters, digits, '.', '-' and '_' only, so that it needs
// neither quoting rules nor RFC 2231 encoding in any client.
std::string safe_filename(const std::string& file, std::string_view type) {
    std::string name = std::filesystem::path(file).filename().string();
    for (auto& c : name)
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-' && c != '_') c = '_';
    if (name.empty() || name.front() == '.') name = "image." + std::string(type.substr(6));
    if (name.size() > 64) name = name.substr(name.size() - 64);
    return name;
}

}  // namespace

result<image> make_image(std::string name, std::string file, std::string_view bytes) {
    const std::string_view type = sniff_image_type(bytes);
    if (type.empty()) return make_error(file + ": not a PNG, JPEG or GIF image");
    if (bytes.size() > max_image_bytes)
        return make_error(file + ": " + std::to_string(bytes.size()) + " bytes; an image may have at most " +
                          std::to_string(max_image_bytes));
    image im;
    im.name = std::move(name);
    im.content_type = type;
    im.filename = safe_filename(file, type);
    im.file = std::move(file);
    im.size = bytes.size();
    mime::base64_encode(bytes, im.base64);  // RFC 2045 §6.8: 76-column lines
    if (!im.base64.ends_with("\r\n")) im.base64 += "\r\n";
    return im;
}

}  // namespace sigrelay::tenants
