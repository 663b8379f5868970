// libFuzzer target for the signature parsers: the template compiler (HTML and
// text mode) and renderer, and the NDJSON directory parser. The first byte
// picks the parser. Invariants: no crash, errors are values, and a rendered
// template never carries a CR or LF that neither template nor value had, nor
// an unescaped '<' from a value in HTML mode.
#include <sigrelay/signature.hpp>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

using namespace sigrelay::signature;

namespace {
void trap(bool ok) {
    if (!ok) std::abort();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
    switch (data[0] % 3) {
        case 0:
        case 1: {
            escape mode = data[0] % 3 == 0 ? escape::html : escape::text;
            auto t = compiled_template::compile(in, mode, "fuzz");
            if (!t) {
                trap(!t.err().message.empty());
                return 0;
            }
            // Every attribute gets a hostile value.
            std::vector<std::string_view> values(t->attributes().size(), "<b>\"x\"&'y'</b>");
            std::string out = t->render(values);
            if (mode == escape::html && in.find("<b>") == std::string_view::npos)
                trap(out.find("<b>\"x\"") == std::string::npos);
            bool template_has_newline = in.find_first_of("\r\n") != std::string_view::npos;
            if (!template_has_newline) trap(out.find_first_of("\r\n") == std::string::npos);
            // Empty values take the inverted branches instead; still no crash.
            std::vector<std::string_view> empty(t->attributes().size(), "");
            (void)t->render(empty);
            return 0;
        }
        default: {
            auto d = directory::parse(in, "fuzz.ndjson");
            if (!d) {
                trap(!d.err().message.empty());
                return 0;
            }
            for (std::size_t i = 0; i < d->attribute_names().size(); ++i) (void)d->attribute_names()[i];
            return 0;
        }
    }
}
