// The transaction proxy (docs/behaviour.md, Delivery): an inbound transaction is bound to a
// pooled outbound connection from MAIL FROM on; every reply the client gets
// for MAIL, RCPT and the message is the smart host's (or a 4yz of ours when
// the smart host cannot be reached), so nothing is ever acknowledged that
// only our memory holds.
#include <sigrelay/relay.hpp>
#include <sigrelay/text.hpp>

#include <chrono>
#include <cstdio>
#include <deque>

namespace sigrelay::relay {

namespace {

using text::iequals;


const char* outcome_name(mime::outcome o) {
    switch (o) {
        case mime::outcome::signed_message: return "signed";
        case mime::outcome::stamped_only: return "stamped";
        case mime::outcome::untouched: return "untouched";
    }
    return "?";
}

std::string json_escape(std::string_view s) {
    std::string o;
    for (unsigned char c : s) {
        if (c == '"' || c == '\\') (o += '\\') += static_cast<char>(c);
        else if (c < 0x20) {
            char b[8];
            std::snprintf(b, sizeof b, "\\u%04x", c);
            o += b;
        } else o += static_cast<char>(c);
    }
    return o;
}

}  // namespace

class proxy final : public inbound::transaction_handler, public outbound::transaction_events {
public:
    explicit proxy(shard& sh) : sh_(sh) {}

    void on_mail(inbound::session& s, const smtp::mail_command& cmd) override {
        clear();
        session_ = &s;
        snap_ = sh_.snap_;
        tenant_ = snap_->resolve(cmd.xoorg, cmd.reverse_path);
        if (!tenant_) {
            ++sh_.stats_.rejected_tenant;
            s.log("MAIL FROM:<" + smtp::printable(cmd.reverse_path) + ">" +
                  (cmd.xoorg.empty() ? "" : " XOORG=" + smtp::printable(cmd.xoorg)) +
                  ": no tenant; 550 5.7.1");
            s.answer({550, "5.7.1", "Relay access denied: the sender's organization is not served here"});
            return;
        }
        if (!tenant_->require.sni.empty()) {
            const tls::peer_info* t = s.tls();
            if (t == nullptr || !iequals(t->sni, tenant_->require.sni)) {
                ++sh_.stats_.rejected_requirements;
                s.log("tenant " + tenant_->id + ": TLS SNI \"" + (t ? smtp::printable(t->sni) : "") +
                      "\" is not the required \"" + tenant_->require.sni + "\"; 550 5.7.1");
                s.answer({550, "5.7.1", "Relay access denied for this connection"});
                tenant_ = nullptr;
                return;
            }
        }
        auto dest = sh_.destination_for(*tenant_);
        if (!dest) {
            ++sh_.stats_.outbound_failures;
            s.log("tenant " + tenant_->id + ": smart host: " + dest.err().message + "; 451 4.4.3");
            s.answer({451, "4.4.3", "Smart host unavailable, try again later"});
            tenant_ = nullptr;
            return;
        }
        env_.sender = cmd.reverse_path;
        params_.clear();
        if (cmd.body_8bitmime) params_ = "BODY=8BITMIME";
        if (cmd.smtputf8) params_ += params_.empty() ? "SMTPUTF8" : " SMTPUTF8";
        // SIZE is not forwarded: the signature adds bytes (docs/behaviour.md, SMTP server rules).
        started_ = std::chrono::steady_clock::now();
        ++sh_.stats_.transactions;
        std::weak_ptr<void> alive = s.alive();
        ticket_ = sh_.pool_.acquire(*dest, [this, alive](outbound::acquire_outcome o) {
            if (alive.expired()) return;
            ticket_ = 0;
            if (!o.ok()) {
                ++sh_.stats_.outbound_failures;
                session_->log("tenant " + tenant_->id + ": " + o.detail + "; " +
                              std::to_string(o.failure.code) + " " + o.failure.enhanced);
                tenant_ = nullptr;
                session_->answer(o.failure);
                return;
            }
            lease_ = std::move(o.channel);
            lease_.set_events(this);
            lease_.mail(env_.sender, params_);
        });
    }

    void on_rcpt(inbound::session& s, const smtp::rcpt_command& cmd) override {
        if (!lease_.valid()) {
            s.answer({451, "4.4.2", "Lost the connection to the smart host"});
            return;
        }
        // Recipients are relayed exactly as given, and only to the tenant's
        // own smart host (docs/behaviour.md, SMTP server rules: no rewriting, no open relay).
        rcpts_.push_back(cmd.forward_path);
        lease_.rcpt(cmd.forward_path);
    }

    void on_content(inbound::session&, std::span<const char> bytes) override {
        message_.append(bytes.data(), bytes.size());
    }

    void on_message(inbound::session& s) override {
        if (!lease_.valid() || tenant_ == nullptr) {
            s.answer({451, "4.4.2", "Lost the connection to the smart host"});
            return;
        }
        sh_.stats_.bytes_in += message_.size();
        if (!tenant_->require.tenant_guid.empty()) {
            std::string guid = tenants::header_value(message_, "X-MS-Exchange-CrossTenant-Id");
            if (!iequals(guid, tenant_->require.tenant_guid)) {
                ++sh_.stats_.rejected_requirements;
                s.log("tenant " + tenant_->id + ": X-MS-Exchange-CrossTenant-Id \"" + smtp::printable(guid) +
                      "\" does not match; 550 5.7.1");
                clear();
                s.answer({550, "5.7.1", "Message refused: it does not come from this tenant"});
                return;
            }
        }
        env_.helo = s.helo();
        env_.client_ip = s.peer().ip_string();
        env_.by_host = sh_.opts_.hostname;
        env_.protocol = s.tls() ? "ESMTPS" : "ESMTP";
        queue_id_ = sh_.next_queue_id();
        env_.queue_id = queue_id_;
        env_.recipients = accepted_;
        env_.when = std::time(nullptr);
        auto signed_msg = sign(*tenant_, env_, std::span<const char>(message_.data(), message_.size()), today_utc());
        if (!signed_msg) {
            // Never relay what we could not process, never drop it: the
            // client keeps it and retries.
            s.log("queue " + queue_id_ + ": " + signed_msg.err().message + "; 451 4.3.0");
            clear();
            s.answer({451, "4.3.0", "Could not process the message, try again later"});
            return;
        }
        outcome_ = signed_msg->injection.result;
        reason_ = signed_msg->decision.reason;
        if (!signed_msg->injection.reason.empty()) reason_ += "; " + signed_msg->injection.reason;
        std::string out = signed_msg->injection.flatten(std::span<const char>(message_.data(), message_.size()));
        size_out_ = out.size();
        sh_.stats_.bytes_out += out.size();
        lease_.data(std::move(out));
    }

    void on_reset(inbound::session&) override { clear(); }

    void on_end(inbound::session&) override { clear(); }

    // outbound::transaction_events
    void on_reply(smtp::command_kind kind, const smtp::reply& r) override {
        switch (kind) {
            case smtp::command_kind::mail:
                if (r.code >= 300) {
                    session_->log("tenant " + tenant_->id + ": smart host refused MAIL: " +
                                  std::to_string(r.code) + " " + smtp::printable(r.text));
                    clear();
                }
                session_->answer(r);
                return;
            case smtp::command_kind::rcpt:
                if (!rcpts_.empty()) {
                    if (r.code < 300) accepted_.push_back(std::move(rcpts_.front()));
                    rcpts_.pop_front();
                }
                session_->answer(r);
                return;
            case smtp::command_kind::data:
                finish(r);
                return;
            default:
                return;
        }
    }

private:
    void finish(const smtp::reply& r) {
        auto& st = sh_.stats_;
        if (r.code < 300) {
            ++st.relayed;
            if (outcome_ == mime::outcome::signed_message) ++st.signed_messages;
            else if (outcome_ == mime::outcome::stamped_only) ++st.stamped;
            else ++st.untouched;
        } else if (r.code < 500) {
            ++st.smart_host_4xx;
        } else {
            ++st.smart_host_5xx;
        }
        if (sh_.opts_.log_messages) log_message(r);
        inbound::session* s = session_;
        clear();
        s->answer(r);
    }

    void log_message(const smtp::reply& r) {
        auto ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started_).count();
        std::string first_line = r.text.substr(0, r.text.find('\n'));
        char buf[160];
        if (sh_.opts_.json_logs) {
            std::string line = "{\"queue_id\": \"" + queue_id_ + "\", \"tenant\": \"" + json_escape(tenant_->id) +
                               "\", \"from\": \"" + json_escape(env_.sender) + "\", \"recipients\": " +
                               std::to_string(accepted_.size()) + ", \"size_in\": " + std::to_string(message_.size()) +
                               ", \"size_out\": " + std::to_string(size_out_) + ", \"outcome\": \"" +
                               outcome_name(outcome_) + "\", \"reason\": \"" + json_escape(reason_) +
                               "\", \"smart_host_reply\": \"" + std::to_string(r.code) + " " + json_escape(r.enhanced) +
                               " " + json_escape(smtp::printable(first_line, 120)) + "\"";
            std::snprintf(buf, sizeof buf, ", \"ms\": %.1f}", ms);
            session_->log(line + buf);
            return;
        }
        std::snprintf(buf, sizeof buf, " ms=%.1f", ms);
        session_->log("queue=" + queue_id_ + " tenant=" + tenant_->id + " from=<" + smtp::printable(env_.sender) +
                      "> rcpts=" + std::to_string(accepted_.size()) + " size=" + std::to_string(message_.size()) +
                      "->" + std::to_string(size_out_) + " " + outcome_name(outcome_) + " (" + reason_ +
                      ") smart_host=\"" + std::to_string(r.code) + " " + r.enhanced + " " +
                      smtp::printable(first_line, 120) + "\"" + buf);
    }

    // Ends the transaction on our side: a waiting acquire is dropped, the
    // lease goes back to the pool (RSET first when it was mid-transaction).
    void clear() {
        if (ticket_ != 0) {
            sh_.pool_.cancel(ticket_);
            ticket_ = 0;
        }
        if (lease_.valid()) lease_.release(true);
        lease_ = outbound::lease();
        tenant_ = nullptr;
        rcpts_.clear();
        accepted_.clear();
        message_.clear();
        size_out_ = 0;
    }

    shard& sh_;
    inbound::session* session_ = nullptr;
    std::shared_ptr<const tenants::snapshot> snap_;
    const tenants::tenant* tenant_ = nullptr;
    outbound::lease lease_;
    std::uint64_t ticket_ = 0;
    envelope env_;
    std::string params_;
    std::deque<std::string> rcpts_;       // RCPTs awaiting the smart host's reply
    std::vector<std::string> accepted_;   // RCPTs the smart host accepted
    std::string message_;
    std::string queue_id_, reason_;
    mime::outcome outcome_ = mime::outcome::stamped_only;
    std::size_t size_out_ = 0;
    std::chrono::steady_clock::time_point started_{};
};

shard::shard(runtime::reactor& r, const relay_options& opts, std::shared_ptr<const tenants::snapshot> snap,
             unsigned index)
    : reactor_(r), opts_(opts), snap_(std::move(snap)), pool_(r, opts.pool), index_(index) {}

inbound::handler_factory shard::handlers() {
    return [this](inbound::session&) { return std::make_unique<proxy>(*this); };
}

void shard::replace_snapshot(std::shared_ptr<const tenants::snapshot> snap) {
    snap_ = std::move(snap);
    destinations_.clear();  // smart hosts and certificates may have changed
}

result<outbound::destination> shard::destination_for(const tenants::tenant& t) {
    if (auto it = destinations_.find(t.id); it != destinations_.end()) return it->second;
    auto addr = runtime::socket_address::parse(t.smart_host);
    if (!addr) return make_error(t.smart_host + ": " + addr.err().message);
    tls::client_options co;
    co.ca_file = t.smart_host_ca;
    co.cert_file = t.client_cert;
    co.key_file = t.client_key;
    auto ctx = tls::context::client(co);
    if (!ctx) return make_error("TLS client context: " + ctx.err().message);
    outbound::destination d;
    d.key = t.id;
    d.address = *addr;
    d.tls_domain = t.tls_domain;
    d.tls = std::make_shared<const tls::context>(std::move(ctx).value());
    destinations_.emplace(t.id, d);
    return d;
}

std::string shard::next_queue_id() {
    // Unique per process run and shard: start time, shard, sequence.
    static const auto boot = static_cast<unsigned long long>(std::time(nullptr));
    char buf[48];
    std::snprintf(buf, sizeof buf, "%llX%02X%06llX", boot & 0xFFFFFFull, index_ & 0xFF,
                  static_cast<unsigned long long>(++queue_seq_));
    return buf;
}

}  // namespace sigrelay::relay
