// The signing pipeline (relay::sign) with the example tenants: what the
// relay and sigrelay-inject do to one message.
#include <doctest/doctest.h>

#include <cstdlib>

#include <sigrelay/signing.hpp>
#include <sigrelay/text.hpp>

#include <string>

using namespace sigrelay;

namespace {

std::shared_ptr<const tenants::snapshot> examples() {
    // The build's copy of examples/, beside the test certificates its paths name.
    const char* dir = std::getenv("SIGRELAY_EXAMPLES");
    REQUIRE_MESSAGE(dir != nullptr, "SIGRELAY_EXAMPLES is not set (run through meson test)");
    auto s = tenants::snapshot::load(std::string(dir) + "/tenants.json");
    REQUIRE_MESSAGE(s.ok(), (s.ok() ? "" : s.err().message));
    return *s;
}

relay::envelope env(std::string sender) {
    relay::envelope e;
    e.sender = std::move(sender);
    e.recipients = {"bob@example.net"};
    e.helo = "exo.test";
    e.client_ip = "40.107.1.2";
    e.by_host = "relay.test";
    e.queue_id = "Q1";
    e.when = 1764410000;
    return e;
}

std::string run(const tenants::tenant& t, const relay::envelope& e, const std::string& msg,
                mime::outcome* outcome = nullptr) {
    auto r = relay::sign(t, e, std::span<const char>(msg.data(), msg.size()), *signature::parse_date("2026-11-29"));
    REQUIRE(r.ok());
    if (outcome) *outcome = r->injection.result;
    return r->injection.flatten(std::span<const char>(msg.data(), msg.size()));
}

const std::string plain = text::to_crlf(
    "From: Jane <jane.doe@fabrikam.com>\nTo: bob@example.net\nSubject: numbers\n"
    "MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\nHi Bob.\n");

}  // namespace

TEST_CASE("a directory user's message is signed, stamped and traced") {
    auto snap = examples();
    const auto* t = snap->resolve("", "jane.doe@fabrikam.com");
    REQUIRE(t != nullptr);
    mime::outcome o{};
    std::string out = run(*t, env("jane.doe@fabrikam.com"), plain, &o);
    CHECK(o == mime::outcome::signed_message);
    CHECK(out.rfind("Received: from exo.test", 0) == 0);
    CHECK(out.find("by relay.test (sigrelay) with ESMTPS id Q1") != std::string::npos);
    CHECK(out.find("\r\nSignatureContoso: true\r\n") != std::string::npos);
    CHECK(out.find("Jane Doe") != std::string::npos);
    CHECK(out.find("Hi Bob.\r\n") < out.find("Jane Doe"));
}

TEST_CASE("the output of one pass is left alone by the next (loop guard)") {
    auto snap = examples();
    const auto* t = snap->resolve("", "jane.doe@fabrikam.com");
    std::string once = run(*t, env("jane.doe@fabrikam.com"), plain);
    mime::outcome o{};
    std::string twice = run(*t, env("jane.doe@fabrikam.com"), once, &o);
    CHECK(o == mime::outcome::untouched);
    CHECK(twice == once);
}

TEST_CASE("a sender outside the directory, [nosig] and the null sender are stamped only") {
    auto snap = examples();
    const auto* t = snap->find_by_id("fabrikam");
    REQUIRE(t != nullptr);
    mime::outcome o{};
    std::string out = run(*t, env("nobody@fabrikam.com"), plain, &o);
    CHECK(o == mime::outcome::stamped_only);
    CHECK(out.find("SignatureContoso: true") != std::string::npos);

    std::string nosig = plain;
    nosig.replace(nosig.find("Subject: numbers"), 16, "Subject: [nosig] numbers");
    run(*t, env("jane.doe@fabrikam.com"), nosig, &o);
    CHECK(o == mime::outcome::stamped_only);

    run(*t, env(""), plain, &o);
    CHECK(o == mime::outcome::stamped_only);
}

TEST_CASE("hostile envelope text never breaks the Received: header") {
    auto snap = examples();
    const auto* t = snap->find_by_id("fabrikam");
    auto e = env("jane.doe@fabrikam.com");
    e.helo = "evil\r\nBcc: victim@example.com\r\n";
    e.recipients = {"bob@example.net\r\nX-Injected: 1"};
    std::string out = run(*t, e, plain);
    std::string headers = out.substr(0, out.find("\r\n\r\n"));
    CHECK(headers.find("\r\nBcc:") == std::string::npos);
    CHECK(headers.find("\r\nX-Injected:") == std::string::npos);
}
