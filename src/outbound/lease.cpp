// outbound::lease: one checked-out connection as a transaction sees it. Each call forwards to the
// link it holds, which it keeps alive, so a lease may outlive its pool (the link is detached then).
#include "link.hpp"

#include <sigrelay/outbound.hpp>

#include <utility>

namespace sigrelay::outbound {

lease& lease::operator=(lease&& other) noexcept {
    if (this != &other) {
        release(true);
        link_ = std::move(other.link_);
    }
    return *this;
}

lease::~lease() {
    release(true);
}

void lease::set_events(transaction_events* ev) noexcept {
    if (link_) link_->set_events(ev);
}

void lease::mail(std::string_view reverse_path, std::string_view params) {
    if (link_) link_->mail(reverse_path, params);
}

void lease::rcpt(std::string_view forward_path, std::string_view params) {
    if (link_) link_->rcpt(forward_path, params);
}

void lease::data(std::string content) {
    if (link_) link_->data(std::move(content));
}

void lease::begin_message() {
    if (link_) link_->begin_message();
}

void lease::message_content(std::span<const std::string_view> pieces) {
    if (link_) link_->message_content(pieces);
}

void lease::end_message() {
    if (link_) link_->end_message();
}

void lease::abandon_message() {
    if (link_) link_->abandon_message();
}

std::size_t lease::backlog() const noexcept {
    return link_ ? link_->backlog() : 0;
}

void lease::release(bool reusable) {
    if (!link_) return;
    auto l = std::move(link_);
    l->release(reusable);
}

std::size_t lease::pending() const noexcept {
    return link_ ? link_->pending() : 0;
}

bool lease::broken() const noexcept {
    return link_ && link_->broken();
}

bool lease::reused() const noexcept {
    return link_ && link_->reused();
}

const smtp::server_capabilities* lease::capabilities() const noexcept {
    return link_ ? &link_->capabilities() : nullptr;
}

const tls::peer_info* lease::tls_info() const noexcept {
    return link_ ? link_->tls_info() : nullptr;
}

std::uint64_t lease::connection_id() const noexcept {
    return link_ ? link_->connection_id() : 0;
}

}  // namespace sigrelay::outbound
