// The transaction proxy (docs/behaviour.md, Delivery): an inbound transaction
// is bound to a pooled outbound connection from MAIL FROM on; every reply the
// client gets for MAIL, RCPT and the message is the smart host's (or a 4yz of
// ours when the smart host cannot be reached), so nothing is ever
// acknowledged that only our memory holds.
//
// The message streams: each piece of content the client sends goes through
// the signer and on to the smart host (a BDAT chunk, or DATA dot-stuffed) at
// once, held back only while the signer still has to decide about it. The
// LAST chunk (or the final dot) goes only once the client's message is
// complete and accepted by our own checks; anything that fails before
// abandons the outbound message, so the smart host never delivers a part.
#include <sigrelay/relay.hpp>
#include <sigrelay/mime/scanner.hpp>
#include <sigrelay/text.hpp>

#include "recipient_split.hpp"

#include <chrono>
#include <cstdio>
#include <deque>
#include <optional>

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

// The tenant id Exchange Online stamps on a message: every copy of the field
// must name the required tenant, and there must be one (a forged second copy
// must not ride along with the real one).
bool tenant_id_matches(const mime::part& root, std::string_view required, std::string& seen) {
    bool any = false;
    for (const auto& f : root.fields) {
        if (!iequals(f.name, "X-MS-Exchange-CrossTenant-Id")) continue;
        if (!seen.empty()) seen += ",";
        seen += f.value;
        if (!iequals(f.value, required)) return false;
        any = true;
    }
    return any;
}

enum class txn {
    none,       // no MAIL yet (or the transaction ended)
    acquiring,  // MAIL answered later: waiting for a pooled connection
    open,       // the lease carries the transaction
    failed,     // MAIL failed: RCPTs dispatched behind it are answered 503
};

enum class msg {
    none,       // no content yet
    streaming,  // content flows to the smart host
    refused,    // our own refusal: the rest is read and dropped, then `refusal_`
    failed,     // the smart host already answered (a refused chunk, a lost connection)
    ended,      // the end went out: waiting for the smart host's reply
};

}  // namespace

class proxy final : public inbound::transaction_handler,
                    public outbound::transaction_events,
                    public memory_budget::holder {
public:
    explicit proxy(shard& sh) : sh_(sh) {}
    ~proxy() override { sh_.budget().forget(*this); }

    // ---- envelope -------------------------------------------------------------------
    void on_mail(inbound::session& s, const smtp::mail_command& cmd) override {
        clear();
        session_ = &s;
        snap_ = sh_.snapshot();
        tenant_ = snap_->resolve(cmd.xoorg, cmd.reverse_path);
        if (!tenant_) {
            ++sh_.counters().rejected_tenant;
            s.log("MAIL FROM:<" + smtp::printable(cmd.reverse_path) + ">" +
                  (cmd.xoorg.empty() ? "" : " XOORG=" + smtp::printable(cmd.xoorg)) +
                  ": no tenant; 550 5.7.1");
            return fail_mail({550, "5.7.1", "Relay access denied: the sender's organization is not served here"});
        }
        if (!tenant_->require.sni.empty()) {
            const tls::peer_info* t = s.tls();
            if (t == nullptr || !iequals(t->sni, tenant_->require.sni)) {
                ++sh_.counters().rejected_requirements;
                s.log("tenant " + tenant_->id + ": TLS SNI \"" + (t ? smtp::printable(t->sni) : "") +
                      "\" is not the required \"" + tenant_->require.sni + "\"; 550 5.7.1");
                return fail_mail({550, "5.7.1", "Relay access denied for this connection"});
            }
        }
        env_ = envelope{};
        env_.sender = cmd.reverse_path;
        client_8bit_ = cmd.body_8bitmime;
        client_smtputf8_ = cmd.smtputf8;
        // SIZE is not forwarded: the signature adds bytes (docs/behaviour.md, SMTP server rules).
        started_ = std::chrono::steady_clock::now();
        ++sh_.counters().transactions;
        retried_ = false;
        mail_pending_ = true;
        split_.reset();
        txn_ = txn::acquiring;  // RCPTs pipelined meanwhile wait for the connection
        std::weak_ptr<void> alive = s.alive();
        const std::uint64_t mail_seq = ++mail_seq_;
        sh_.destination_for(*tenant_, [this, alive, mail_seq](result<outbound::destination> d) {
            // The client may have gone, or reset and begun another transaction.
            if (alive.expired() || mail_seq != mail_seq_ || txn_ != txn::acquiring) return;
            if (!d) {
                ++sh_.counters().outbound_failures;
                session_->log("tenant " + tenant_->id + ": smart host: " + d.err().message + "; 451 4.4.3");
                return fail_mail({451, "4.4.3", "Smart host unavailable, try again later"});
            }
            dest_ = std::move(d).value();
            acquire(false);
        });
    }

    void on_rcpt(inbound::session& s, const smtp::rcpt_command& cmd) override {
        // Recipients are relayed exactly as given, and only to the tenant's
        // own smart host (docs/behaviour.md, SMTP server rules: no rewriting,
        // no open relay).
        if ((txn_ == txn::acquiring || txn_ == txn::open) && !admit(s, cmd.forward_path)) return;
        switch (txn_) {
            case txn::acquiring:
                rcpts_.push_back({cmd.forward_path, group_of(cmd.forward_path), {}});
                unsent_.push_back(cmd.forward_path);
                return;
            case txn::open:
                rcpts_.push_back({cmd.forward_path, group_of(cmd.forward_path), {}});
                lease_.rcpt(cmd.forward_path);
                return;
            case txn::failed:
                // Pipelined behind a MAIL that failed (the session answers it
                // 503 itself; this keeps the answers in order).
                return s.answer({503, "5.5.1", "Error: need MAIL command"});
            case txn::none:
                return s.answer({451, "4.4.2", "Lost the connection to the smart host"});
        }
    }

    // ---- content --------------------------------------------------------------------
    void on_content(inbound::session& s, std::span<const char> bytes) override {
        if (state_ == msg::refused || state_ == msg::failed) return;  // read and dropped
        if (!start_message(s)) return;
        signer_->feed(bytes, pieces_);
        after_feed(s);
    }

    void on_message(inbound::session& s) override {
        if (txn_ != txn::open || tenant_ == nullptr) {
            s.answer({451, "4.4.2", "Lost the connection to the smart host"});
            return;
        }
        if (state_ == msg::refused) return finish_refused(s);
        if (state_ == msg::failed) return finish(early_);
        if (!start_message(s)) return;
        signer_->finish(pieces_);
        after_feed(s);
        if (state_ == msg::refused) return finish_refused(s);
        if (state_ == msg::failed) return finish(early_);
        if (!begun_) {
            lease_.begin_message();
            begun_ = true;
        }
        state_ = msg::ended;
        ended_at_ = std::chrono::steady_clock::now();
        lease_.end_message();  // the reply comes as on_reply(data)
    }

    void on_reset(inbound::session&) override { clear(); }
    void on_end(inbound::session&) override { clear(); }

    // ---- outbound::transaction_events -------------------------------------------------
    void on_reply(smtp::command_kind kind, const smtp::reply& r) override {
        if (tenant_ != nullptr &&
            (kind == smtp::command_kind::mail || kind == smtp::command_kind::rcpt || kind == smtp::command_kind::data))
            per_tenant().reply(r.code);
        switch (kind) {
            case smtp::command_kind::mail:
                if (r.code >= 300 && retry_mail(r)) return;
                if (r.code >= 300) {
                    session_->log("tenant " + tenant_->id + ": smart host refused MAIL: " +
                                  std::to_string(r.code) + " " + smtp::printable(r.text));
                    txn_ = txn::failed;
                }
                mail_pending_ = false;
                session_->answer(for_client(r));
                answer_local_rcpts();
                if (txn_ == txn::failed && rcpts_.empty()) release_lease();
                return;
            case smtp::command_kind::rcpt:
                if (!rcpts_.empty()) {
                    split_.answered(rcpts_.front().group, r.code < 300);
                    if (r.code < 300 && txn_ == txn::open) env_.recipients.push_back(std::move(rcpts_.front().path));
                    rcpts_.pop_front();
                }
                session_->answer(for_client(r));
                answer_local_rcpts();
                if (txn_ == txn::failed && rcpts_.empty()) release_lease();
                return;
            case smtp::command_kind::data:
                if (state_ == msg::ended) return finish(r);
                // Before our client finished: the smart host refused the
                // message or the connection went. Read the rest, then answer.
                early_ = r;
                state_ = msg::failed;
                pieces_.clear();
                stop_holding();
                return;
            default:
                return;
        }
    }

    void on_drained() override {
        if (session_ != nullptr) session_->release(inbound::session::hold_outbound);
    }

    // memory_budget::holder
    void budget_available() override {
        if (session_ != nullptr) session_->release(inbound::session::hold_budget);
    }

private:
    relay::tenant_stats& per_tenant() { return sh_.tenant_counters(tenant_->id); }

    signature::recipients_scope group_of(std::string_view rcpt) const {
        return tenants::recipient_group(*tenant_, rcpt);
    }

    // Recipient groups (docs/behaviour.md): an RCPT of the other group is
    // answered 452 4.5.3 by us, in its turn among the pending answers.
    bool admit(inbound::session& s, const std::string& rcpt) {
        if (!tenant_->split_recipients) return true;
        const auto g = group_of(rcpt);
        if (split_.admit(g)) return true;
        ++sh_.counters().recipients_deferred;
        const auto other = *split_.fixed();
        s.log("tenant " + tenant_->id + ": RCPT TO:<" + smtp::printable(rcpt) + "> is " +
              std::string(tenants::scope_name(g)) + ", this transaction's recipients are " +
              std::string(tenants::scope_name(other)) + "; 452 4.5.3 (split_recipients)");
        const smtp::reply r{452, "4.5.3",
                            std::string("Internal and external recipients get different signatures: "
                                        "send this ") +
                                std::string(tenants::scope_name(g)) + " recipient in a separate transaction"};
        if (!mail_pending_ && rcpts_.empty()) s.answer(r);
        else rcpts_.push_back({rcpt, g, r});
        return false;
    }

    void answer_local_rcpts() {
        while (!rcpts_.empty() && rcpts_.front().local) {
            const smtp::reply r = *rcpts_.front().local;
            rcpts_.pop_front();
            session_->answer(r);
        }
    }

    void acquire(bool fresh) {
        txn_ = txn::acquiring;
        std::weak_ptr<void> alive = session_->alive();
        ticket_ = sh_.pool().acquire(dest_, [this, alive](outbound::acquire_outcome o) {
            if (alive.expired()) return;
            ticket_ = 0;
            if (!o.ok()) {
                ++sh_.counters().outbound_failures;
                session_->log("tenant " + tenant_->id + ": " + o.detail + "; " +
                              std::to_string(o.failure.code) + " " + o.failure.enhanced);
                return fail_mail(o.failure);
            }
            lease_ = std::move(o.channel);
            lease_.set_events(this);
            txn_ = txn::open;
            // A smart host that takes 8BITMIME gets BODY=8BITMIME on every
            // message (RFC 6152 allows it for 7-bit content too), so that a
            // signature with non-ASCII text never forces a whole 7bit part
            // into quoted-printable (docs/behaviour.md, Encodings and charsets).
            const smtp::server_capabilities* caps = lease_.capabilities();
            eight_bit_out_ = caps != nullptr && caps->eightbitmime;
            params_.clear();
            if (client_8bit_ || eight_bit_out_) params_ = "BODY=8BITMIME";
            if (client_smtputf8_) params_ += params_.empty() ? "SMTPUTF8" : " SMTPUTF8";
            // MAIL and every RCPT the client pipelined meanwhile go as one
            // group (RFC 2920): one round trip, whatever the recipient count.
            lease_.mail(env_.sender, params_);
            for (const auto& r : unsent_) lease_.rcpt(r);
            unsent_.clear();
        }, fresh);
    }

    // A pooled connection can turn out dead only when it is used: the smart
    // host closed it meanwhile, or answers MAIL with 421 because it caps the
    // messages per connection. That is the pool's staleness, not the
    // client's problem: MAIL (and the RCPTs behind it) go again, once, on a
    // newly opened connection, and the client sees only the second answer.
    bool retry_mail(const smtp::reply& r) {
        if (retried_ || !(r.code == 421 || lease_.broken())) return false;
        retried_ = true;
        ++sh_.counters().retries;
        session_->log("tenant " + tenant_->id + ": pooled connection unusable at MAIL (" +
                      std::to_string(r.code) + " " + smtp::printable(r.text, 80) +
                      "); retrying on a new connection");
        release_lease();  // its other replies are not ours any more
        unsent_.clear();
        for (const auto& p : rcpts_)
            if (!p.local) unsent_.push_back(p.path);
        acquire(true);
        return true;
    }

    // RFC 5321 §3.8: 421 means the server closes the channel. The client's
    // session with us stays open, so a smart host's 421 (or our own timeout
    // toward it) reaches the client as the same temporary failure, 451.
    static smtp::reply for_client(smtp::reply r) {
        if (r.code == 421) r.code = 451;
        return r;
    }

    void fail_mail(const smtp::reply& r) {
        txn_ = txn::failed;
        mail_pending_ = false;
        // The transaction's message is deferred or refused before it began.
        if (tenant_ != nullptr)
            ++per_tenant().messages[r.code >= 500 ? tenant_stats::refused : tenant_stats::deferred];
        inbound::session* s = session_;
        // RCPTs dispatched while we were acquiring are answered in order.
        std::size_t owed = rcpts_.size();
        rcpts_.clear();
        unsent_.clear();
        s->answer(for_client(r));
        for (std::size_t i = 0; i < owed; ++i) s->answer({503, "5.5.1", "Error: need MAIL command"});
    }

    // The first content (or the end of an empty message): the envelope is
    // complete, the signer starts.
    bool start_message(inbound::session& s) {
        if (signer_) return true;
        if (txn_ != txn::open || tenant_ == nullptr) {
            state_ = msg::failed;
            early_ = {451, "4.4.2", "Lost the connection to the smart host"};
            return false;
        }
        env_.helo = s.helo();
        env_.client_ip = s.peer().ip_string();
        env_.by_host = sh_.options().hostname;
        env_.protocol = s.tls() ? "ESMTPS" : "ESMTP";
        queue_id_ = sh_.next_queue_id();
        env_.queue_id = queue_id_;
        env_.when = std::time(nullptr);
        signer_.emplace(*tenant_, env_, today_utc(), sh_.options().max_signed_part, eight_bit_out_);
        state_ = msg::streaming;
        return true;
    }

    // Header decisions first (nothing has been sent before them), then the
    // released output goes out, then back-pressure and memory accounting.
    void after_feed(inbound::session& s) {
        if (!header_checked_ && signer_->header_complete()) {
            header_checked_ = true;
            if (!tenant_->require.tenant_guid.empty()) {
                std::string seen;
                if (!tenant_id_matches(*signer_->root(), tenant_->require.tenant_guid, seen)) {
                    ++sh_.counters().rejected_requirements;
                    s.log("tenant " + tenant_->id + ": X-MS-Exchange-CrossTenant-Id \"" +
                          smtp::printable(seen) + "\" is not the required one; 550 5.7.1");
                    return refuse({550, "5.7.1", "Message refused: it does not come from this tenant"});
                }
            }
        }
        if (!pieces_.empty()) {
            views_.clear();
            for (const auto& p : pieces_)
                if (!p.bytes.empty()) views_.push_back(p.bytes);
            if (!views_.empty()) {
                if (!begun_) {
                    lease_.begin_message();
                    begun_ = true;
                }
                lease_.message_content(views_);
                if (state_ != msg::streaming) return;  // the smart host refused it meanwhile
            }
        }
        if (lease_.backlog() > sh_.options().outbound_high_water) s.hold(inbound::session::hold_outbound);
        if (!sh_.budget().set(*this, signer_->injector().held_bytes())) {
            ++sh_.counters().budget_waits;
            s.hold(inbound::session::hold_budget);
        } else {
            s.release(inbound::session::hold_budget);
        }
    }

    // Our own refusal of the message: what the smart host got is abandoned,
    // the rest of the client's content is read and dropped.
    void refuse(const smtp::reply& r) {
        refusal_ = r;
        state_ = msg::refused;
        pieces_.clear();
        abandon_outbound();
    }

    void finish_refused(inbound::session& s) {
        const smtp::reply r = refusal_;
        if (tenant_ != nullptr)
            ++per_tenant().messages[r.code >= 500 ? tenant_stats::refused : tenant_stats::deferred];
        clear();
        s.answer(r);
    }

    void finish(const smtp::reply& r) {
        auto& st = sh_.counters();
        if (tenant_ != nullptr) {
            relay::tenant_stats& ts = per_tenant();
            if (state_ == msg::ended)
                ts.latency(std::chrono::duration<double>(std::chrono::steady_clock::now() - ended_at_).count());
            if (r.code >= 500) ++ts.messages[tenant_stats::refused];
            else if (r.code >= 300) ++ts.messages[tenant_stats::deferred];
            else {
                const auto o = signer_ ? signer_->injector().result() : mime::outcome::stamped_only;
                ++ts.messages[o == mime::outcome::signed_message ? tenant_stats::signed_message
                              : o == mime::outcome::untouched    ? tenant_stats::untouched
                                                                 : tenant_stats::stamped];
            }
        }
        if (r.code < 300) {
            ++st.relayed;
            const auto o = signer_ ? signer_->injector().result() : mime::outcome::stamped_only;
            if (o == mime::outcome::signed_message) ++st.signed_messages;
            else if (o == mime::outcome::stamped_only) ++st.stamped;
            else ++st.untouched;
        } else if (r.code < 500) {
            ++st.smart_host_4xx;
        } else {
            ++st.smart_host_5xx;
        }
        if (signer_) {
            st.bytes_in += signer_->injector().bytes_in();
            st.bytes_out += signer_->injector().bytes_out();
        }
        if (sh_.options().log_messages) log_message(r);
        inbound::session* s = session_;
        clear();
        s->answer(for_client(r));
    }

    void log_message(const smtp::reply& r) {
        auto ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started_).count();
        std::string first_line = r.text.substr(0, r.text.find('\n'));
        const auto o = signer_ ? signer_->injector().result() : mime::outcome::stamped_only;
        std::string reason = signer_ ? signer_->decision().reason : std::string();
        if (signer_ && !signer_->injector().reason().empty())
            reason += (reason.empty() ? "" : "; ") + signer_->injector().reason();
        const std::size_t in = signer_ ? signer_->injector().bytes_in() : 0;
        const std::size_t out = signer_ ? signer_->injector().bytes_out() : 0;
        char buf[160];
        if (sh_.options().json_logs) {
            std::string line = "{\"queue_id\": \"" + queue_id_ + "\", \"tenant\": \"" + json_escape(tenant_->id) +
                               "\", \"from\": \"" + json_escape(env_.sender) + "\", \"recipients\": " +
                               std::to_string(env_.recipients.size()) + ", \"size_in\": " + std::to_string(in) +
                               ", \"size_out\": " + std::to_string(out) + ", \"outcome\": \"" +
                               outcome_name(o) + "\", \"reason\": \"" + json_escape(reason) +
                               "\", \"smart_host_reply\": \"" + std::to_string(r.code) + " " + json_escape(r.enhanced) +
                               " " + json_escape(smtp::printable(first_line, 120)) + "\"";
            std::snprintf(buf, sizeof buf, ", \"ms\": %.1f}", ms);
            session_->log(line + buf);
            return;
        }
        std::snprintf(buf, sizeof buf, " ms=%.1f", ms);
        session_->log("queue=" + queue_id_ + " tenant=" + tenant_->id + " from=<" + smtp::printable(env_.sender) +
                      "> rcpts=" + std::to_string(env_.recipients.size()) + " size=" + std::to_string(in) +
                      "->" + std::to_string(out) + " " + outcome_name(o) + " (" + reason + ") smart_host=\"" +
                      std::to_string(r.code) + " " + r.enhanced + " " + smtp::printable(first_line, 120) + "\"" +
                      buf);
    }

    // The outbound message must never complete: no LAST chunk, no final dot.
    void abandon_outbound() {
        if (begun_ && lease_.valid() && (state_ == msg::streaming || state_ == msg::refused)) {
            lease_.abandon_message();
            ++sh_.counters().abandoned;
        }
        begun_ = false;
    }

    // Nothing of this message is held any more, and nothing holds the client
    // back: the rest of its content is read (and dropped, or the message is over).
    void stop_holding() {
        sh_.budget().forget(*this);
        if (session_ != nullptr) {
            session_->release(inbound::session::hold_outbound);
            session_->release(inbound::session::hold_budget);
        }
    }

    void release_lease() {
        if (lease_.valid()) lease_.release(true);
        lease_ = outbound::lease();
    }

    // Ends the transaction on our side: a waiting acquire is dropped, an
    // unfinished outbound message abandoned, the lease goes back to the pool
    // (RSET first when it was mid-transaction).
    void clear() {
        if (ticket_ != 0) {
            sh_.pool().cancel(ticket_);
            ticket_ = 0;
        }
        if (state_ == msg::streaming || state_ == msg::refused) {
            if (state_ == msg::streaming && session_ != nullptr)
                session_->log("queue " + queue_id_ + ": message abandoned before its end; nothing delivered");
            abandon_outbound();
        }
        release_lease();
        signer_.reset();
        stop_holding();
        tenant_ = nullptr;
        txn_ = txn::none;
        state_ = msg::none;
        begun_ = false;
        header_checked_ = false;
        rcpts_.clear();
        unsent_.clear();
        pieces_.clear();
        views_.clear();
        split_.reset();
        mail_pending_ = false;
    }

    shard& sh_;
    inbound::session* session_ = nullptr;
    std::shared_ptr<const tenants::snapshot> snap_;
    const tenants::tenant* tenant_ = nullptr;
    outbound::lease lease_;
    outbound::destination dest_;
    bool retried_ = false;
    std::uint64_t mail_seq_ = 0;  // which MAIL a pending resolution belongs to
    std::uint64_t ticket_ = 0;
    txn txn_ = txn::none;
    msg state_ = msg::none;
    envelope env_;
    std::string params_;
    bool client_8bit_ = false, client_smtputf8_ = false;
    bool eight_bit_out_ = false;  // this transaction's smart host takes 8BITMIME
    struct pending_rcpt {
        std::string path;
        signature::recipients_scope group;
        std::optional<smtp::reply> local;  // answered by us (a 452 of split_recipients)
    };
    std::deque<pending_rcpt> rcpts_;  // RCPTs awaiting their answer, in order
    recipient_split split_;
    bool mail_pending_ = false;  // MAIL not answered yet: nothing after it may be
    std::deque<std::string> unsent_;  // ... of which not sent yet (acquiring)
    std::optional<message_signer> signer_;
    std::vector<mime::output_piece> pieces_;
    std::vector<std::string_view> views_;
    bool begun_ = false;           // begin_message() sent
    bool header_checked_ = false;  // the header decisions were made
    smtp::reply refusal_, early_;
    std::string queue_id_;
    std::chrono::steady_clock::time_point started_{};
    std::chrono::steady_clock::time_point ended_at_{};  // the end of the message went out
};

inbound::handler_factory shard::handlers() {
    return [this](inbound::session&) { return std::make_unique<proxy>(*this); };
}

}  // namespace sigrelay::relay
