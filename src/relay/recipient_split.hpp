// One recipient group per transaction (docs/behaviour.md, Recipient groups).
// Rules that test `recipients` give internal and external readers different
// signatures; a message for both cannot carry one correct signature, so a
// transaction keeps the group of its first recipient and answers the other
// group's RCPTs 452 4.5.3, which RFC 5321 §4.5.3.1.10 clients (Exchange
// Online among them) send again in a new transaction.
//
// "First recipient" means the first one not refused: while an RCPT's answer
// is pending the group is taken; once every RCPT of the group has been
// refused and none accepted, the next RCPT may choose again.
#pragma once

#include <sigrelay/signature.hpp>

#include <cstddef>
#include <optional>

namespace sigrelay::relay {

class recipient_split {
public:
    using group = signature::recipients_scope;  // internal or external

    void reset() noexcept { *this = recipient_split{}; }

    // An RCPT of group `g` is about to go to the smart host: true when the
    // transaction takes it (it is then counted pending), false for a 452.
    bool admit(group g) noexcept {
        if (fixed_ && *fixed_ != g) {
            const std::size_t k = index(*fixed_);
            if (accepted_[k] > 0 || pending_[k] > 0) return false;
        }
        fixed_ = g;
        ++pending_[index(g)];
        return true;
    }

    // The smart host's answer for an admitted RCPT of group `g`.
    void answered(group g, bool accepted) noexcept {
        std::size_t& p = pending_[index(g)];
        if (p > 0) --p;
        if (accepted) ++accepted_[index(g)];
    }

    std::optional<group> fixed() const noexcept { return fixed_; }

private:
    static std::size_t index(group g) noexcept { return g == group::external ? 1 : 0; }
    std::optional<group> fixed_;
    std::size_t pending_[2] = {0, 0};
    std::size_t accepted_[2] = {0, 0};
};

}  // namespace sigrelay::relay
