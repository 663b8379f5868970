// The recipient-group state machine behind split_recipients.
#include "../src/relay/recipient_split.hpp"

#include <doctest/doctest.h>

using sigrelay::relay::recipient_split;
using g = recipient_split::group;

TEST_CASE("the first recipient fixes the group; the other group is refused") {
    recipient_split s;
    CHECK(!s.fixed());
    CHECK(s.admit(g::internal));
    CHECK(s.fixed() == g::internal);
    CHECK(!s.admit(g::external));  // pipelined while the first is pending
    CHECK(s.admit(g::internal));
    s.answered(g::internal, true);
    s.answered(g::internal, true);
    CHECK(!s.admit(g::external));
    CHECK(s.fixed() == g::internal);
}

TEST_CASE("a refused first recipient lets the next one choose") {
    recipient_split s;
    CHECK(s.admit(g::external));
    s.answered(g::external, false);  // 550 from the smart host
    CHECK(s.admit(g::internal));
    CHECK(s.fixed() == g::internal);
    CHECK(!s.admit(g::external));
}

TEST_CASE("a group stays once one of its recipients was accepted") {
    recipient_split s;
    CHECK(s.admit(g::external));
    CHECK(s.admit(g::external));
    s.answered(g::external, true);
    s.answered(g::external, false);
    CHECK(!s.admit(g::internal));
    s.reset();
    CHECK(!s.fixed());
    CHECK(s.admit(g::internal));
}
