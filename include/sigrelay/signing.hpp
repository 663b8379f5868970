// One message's signing pipeline: tenant rules → rendering → MIME injection
// → trace and processed headers. The relay's proxy and sigrelay-inject both
// run exactly this.
#pragma once

#include <sigrelay/mime.hpp>
#include <sigrelay/result.hpp>
#include <sigrelay/signature.hpp>
#include <sigrelay/tenants.hpp>

#include <ctime>
#include <span>
#include <string_view>
#include <string>
#include <vector>

namespace sigrelay::relay {

struct envelope {
    std::string sender;  // empty: the null sender
    std::vector<std::string> recipients;
    std::string helo;       // the client's EHLO name
    std::string client_ip;  // "40.107.1.2"
    std::string by_host;    // our name
    std::string protocol = "ESMTPS";
    std::string queue_id;
    std::time_t when = 0;
};

struct signed_message {
    tenants::decision decision;
    mime::injection injection;
};

// One message on its way through: the tenant's rules are run once its header
// block is complete (the Subject is there), the chosen signature rendered and
// injected as the message streams (mime::stream_injector). The processed
// header and a Received: field are always added, unless the message already
// carries the processed header. `t` and `env` must outlive the signer.
class message_signer {
public:
    // `allow_8bit`: the smart host takes 8BITMIME (mime::inject_options::allow_8bit).
    message_signer(const tenants::tenant& t, const envelope& env, signature::date today,
                   std::size_t max_signed_bytes = mime::inject_options{}.max_signed_bytes,
                   bool allow_8bit = false);
    message_signer(const message_signer&) = delete;
    message_signer& operator=(const message_signer&) = delete;

    // As mime::stream_injector::feed/finish: `out` gets the output released.
    void feed(std::span<const char> bytes, std::vector<mime::output_piece>& out) {
        injector_.feed(bytes, out);
    }
    void finish(std::vector<mime::output_piece>& out) { injector_.finish(out); }

    bool header_complete() const noexcept { return injector_.header_complete(); }
    const mime::part* root() const noexcept { return injector_.root(); }
    // The rules' verdict; meaningful once header_complete().
    const tenants::decision& decision() const noexcept { return decision_; }
    const mime::stream_injector& injector() const noexcept { return injector_; }

private:
    const tenants::tenant& tenant_;
    const envelope& env_;
    signature::date today_;
    mime::inject_options opts_;
    tenants::decision decision_;
    mime::stream_injector injector_;
};

// Runs one whole message (CRLF line ends) through a message_signer.
result<signed_message> sign(const tenants::tenant& t, const envelope& env,
                            std::span<const char> message, signature::date today,
                            bool allow_8bit = false);

signature::date today_utc();

}  // namespace sigrelay::relay
