// The signing pipeline: the one code path from a received message to the
// bytes relayed, used by the relay and by sigrelay-inject.
#include <sigrelay/signing.hpp>
#include <sigrelay/mime/scanner.hpp>

#include <chrono>

namespace sigrelay::relay {

signature::date today_utc() {
    return std::chrono::year_month_day{
        std::chrono::floor<std::chrono::days>(std::chrono::system_clock::now())};
}

namespace {

mime::inject_options options_for(const tenants::tenant& t, const envelope& env,
                                 std::size_t max_signed_bytes, bool allow_8bit) {
    mime::inject_options opts;
    opts.allow_8bit = allow_8bit;
    opts.processed_header_name = t.processed_header.name;
    opts.processed_header_value = t.processed_header.value;
    opts.sender = env.sender;
    opts.marker_id = tenants::marker_id(env.sender);
    opts.reply_markers = t.reply_markers;
    opts.max_signed_bytes = max_signed_bytes;

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
    return opts;
}

}  // namespace

message_signer::message_signer(const tenants::tenant& t, const envelope& env, signature::date today,
                               std::size_t max_signed_bytes, bool allow_8bit)
    : tenant_(t),
      env_(env),
      today_(today),
      opts_(options_for(t, env, max_signed_bytes, allow_8bit)),
      injector_(opts_, [this](const mime::part& root) -> const mime::rendered_signature* {
          const mime::header_field* f = root.field("Subject");
          const std::string subject = f ? tenants::decode_subject(f->value) : std::string();
          // Content-IDs for embedded images: unique per message (RFC 2392).
          const std::string cid_suffix = (env_.queue_id.empty() ? std::string("message") : env_.queue_id) +
                                         "@" + (env_.by_host.empty() ? std::string("sigrelay.invalid") : env_.by_host);
          decision_ = tenants::decide(tenant_, env_.sender, env_.recipients, subject, today_, cid_suffix);
          return decision_.kind == tenants::verdict::signature ? &decision_.signature : nullptr;
      }) {}

result<signed_message> sign(const tenants::tenant& t, const envelope& env,
                            std::span<const char> message, signature::date today, bool allow_8bit) {
    SIGRELAY_TRY(mime::check_options(options_for(t, env, 0, false)));
    message_signer s(t, env, today, mime::inject_options{}.max_signed_bytes, allow_8bit);
    signed_message out;
    std::vector<mime::output_piece> pieces;
    s.feed(message, pieces);
    out.injection.add(pieces);
    s.finish(pieces);
    out.injection.add(pieces);
    out.injection.result = s.injector().result();
    out.injection.reason = s.injector().reason();
    out.decision = s.decision();
    return out;
}

}  // namespace sigrelay::relay
