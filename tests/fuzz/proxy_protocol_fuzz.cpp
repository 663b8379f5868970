// libFuzzer target for the PROXY protocol header parser: never crashes, never
// claims more bytes than it was given, and a header it accepts parses the
// same when more bytes follow it.
#include <sigrelay/proxy_protocol.hpp>

#include <cstdint>
#include <cstdlib>
#include <string>

using namespace sigrelay::inbound;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string in(reinterpret_cast<const char*>(data), size);
    proxy_header h;
    std::string err;
    auto st = parse_proxy_header(std::span<const char>(in.data(), in.size()), h, err);
    if (st == proxy_status::invalid && err.empty()) std::abort();
    if (st != proxy_status::done) return 0;
    if (h.length == 0 || h.length > size) std::abort();
    std::string longer = in + "EHLO trailing\r\n";
    proxy_header h2;
    if (parse_proxy_header(std::span<const char>(longer.data(), longer.size()), h2, err) != proxy_status::done ||
        h2.length != h.length || h2.local != h.local)
        std::abort();
    return 0;
}
