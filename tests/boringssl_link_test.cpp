// BoringSSL, never OpenSSL's headers or libraries, must be what we link (README, dependencies).
#include <doctest/doctest.h>
#include <openssl/crypto.h>
#include <openssl/ssl.h>

#include <string_view>

TEST_CASE("OpenSSL_version reports BoringSSL") {
    std::string_view v = OpenSSL_version(OPENSSL_VERSION);
    CHECK(v == "BoringSSL");
#ifndef OPENSSL_IS_BORINGSSL
    FAIL("headers are not BoringSSL's");
#endif
}
