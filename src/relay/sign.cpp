// The signing pipeline: the one code path from a received message to the
// bytes relayed, used by the relay and by sigrelay-inject.
#include <sigrelay/signing.hpp>

#include <chrono>

namespace sigrelay::relay {

signature::date today_utc() {
    return std::chrono::year_month_day{
        std::chrono::floor<std::chrono::days>(std::chrono::system_clock::now())};
}

result<signed_message> sign(const tenants::tenant& t, const envelope& env,
                            std::span<const char> message, signature::date today) {
    signed_message out;
    const std::string subject =
        tenants::message_subject(std::string_view(message.data(), message.size()));
    out.decision = tenants::decide(t, env.sender, env.recipients, subject, today);

    mime::inject_options opts;
    opts.processed_header_name = t.processed_header.name;
    opts.processed_header_value = t.processed_header.value;
    opts.sender = env.sender;
    opts.marker_id = tenants::marker_id(env.sender);
    opts.reply_markers = t.reply_markers;

    tenants::received_fields rf;
    rf.helo = env.helo;
    rf.ip = env.client_ip;
    rf.by_host = env.by_host;
    rf.protocol = env.protocol;
    rf.queue_id = env.queue_id;
    // One "for" clause only when it names the single recipient (RFC 5321
    // §4.4: never disclose a list of recipients).
    if (env.recipients.size() == 1) rf.recipient = env.recipients.front();
    rf.when = env.when ? env.when : std::time(nullptr);
    opts.received_header = tenants::received_header(rf);

    static const mime::rendered_signature none;
    const auto& sig =
        out.decision.kind == tenants::verdict::signature ? out.decision.signature : none;
    auto injected = mime::inject(message, sig, opts);
    if (!injected) return injected.err();
    out.injection = std::move(injected).value();
    return out;
}

}  // namespace sigrelay::relay
