// tls: a client engine and a server engine wired back to back in memory; the
// certificates come from scripts/gen-certs.sh (run at configure time).
#include <doctest/doctest.h>
#include <openssl/ssl.h>
#include <sigrelay/tls.hpp>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

using namespace sigrelay;
using namespace sigrelay::tls;

namespace {

const std::string certs = SIGRELAY_TEST_CERTS;
std::string cert_path(const std::string& name) {
    return certs + "/" + name;
}

const std::string relay_name = "smtp.contososignatureservice.com";
const std::string tenant_name = "S5HG3DCG14.smtp.contososignatureservice.com";

context server_ctx(const std::string& client_ca = "", const std::string& required = "") {
    server_options o;
    o.cert_file = cert_path("relay.pem");
    o.key_file = cert_path("relay.key");
    if (!client_ca.empty()) o.client_ca_file = cert_path(client_ca);
    o.required_client_name = required;
    auto r = context::server(o);
    REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.err().message));
    return std::move(r).value();
}

// id: a client certificate base name ("S5HG3DCG14", "rogue"), or "" for none.
context client_ctx(const std::string& id = "", bool verify = true,
                   const std::string& ca = "ca.pem") {
    client_options o;
    if (!ca.empty()) o.ca_file = cert_path(ca);
    if (!id.empty()) {
        o.cert_file = cert_path(id + ".pem");
        o.key_file = cert_path(id + ".key");
    }
    o.verify_peer = verify;
    auto r = context::client(o);
    REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.err().message));
    return std::move(r).value();
}

// Two engines and the wire between them. `chunk` > 0 feeds that many bytes at
// a time, to show the result does not depend on how TCP splits the stream.
struct link {
    engine c;
    engine s;
    std::string c_plain, s_plain;
    std::string c_err, s_err;  // first error each side reported
    std::size_t chunk = 0;

    static link make(const context& sc, const context& cc, std::string_view sni,
                     std::string_view verify) {
        auto s = engine::server(sc);
        REQUIRE_MESSAGE(s.ok(), (s.ok() ? "" : s.err().message));
        auto c = engine::client(cc, sni, verify);
        REQUIRE_MESSAGE(c.ok(), (c.ok() ? "" : c.err().message));
        return link{std::move(c).value(), std::move(s).value(), {}, {}, {}, {}, 0};
    }

    void deliver(engine& e, const std::string& bytes, std::string& plain, std::string& err) {
        std::size_t step = chunk > 0 ? chunk : std::max<std::size_t>(bytes.size(), 1);
        for (std::size_t off = 0; off < bytes.size(); off += step) {
            if (e.current_state() == state::failed) return;  // the socket is gone
            auto r = e.feed(
                std::span<const char>(bytes.data() + off, std::min(step, bytes.size() - off)),
                plain);
            if (!r && err.empty()) err = r.err().message;
        }
    }

    // Shuttles take_output() -> feed() both ways until nothing moves.
    bool shuttle(int max_rounds = 10000) {
        for (int i = 0; i < max_rounds; ++i) {
            std::string to_s, to_c;
            c.take_output(to_s);
            s.take_output(to_c);
            if (to_s.empty() && to_c.empty()) return true;
            deliver(s, to_s, s_plain, s_err);
            deliver(c, to_c, c_plain, c_err);
        }
        return false;
    }

    void handshake() {
        auto r = c.start();
        CHECK_MESSAGE(r.ok(), (r.ok() ? "" : r.err().message));
        CHECK(c.has_output());  // the ClientHello
        REQUIRE(shuttle());
    }

    bool both_open() const {
        return c.current_state() == state::open && s.current_state() == state::open;
    }
};

std::string random_bytes(std::size_t n, unsigned seed) {
    std::mt19937 rng(seed);
    std::string s(n, '\0');
    for (auto& ch : s) ch = static_cast<char>(rng());
    return s;
}

bool contains(const std::string& hay, const std::string& needle) {
    return hay.find(needle) != std::string::npos;
}

std::string temp_file(const std::string& name, const std::string& content) {
    std::string path = "/tmp/sigrelay_tls_test_" + name;
    std::FILE* f = std::fopen(path.c_str(), "w");
    REQUIRE(f != nullptr);
    std::fwrite(content.data(), 1, content.size(), f);
    std::fclose(f);
    return path;
}

}  // namespace

TEST_CASE("library_version is BoringSSL") {
    CHECK(library_version() == "BoringSSL");
}

TEST_CASE("TLS 1.3 handshake: server verified, SNI visible") {
    auto sc = server_ctx();
    auto cc = client_ctx();
    auto l = link::make(sc, cc, relay_name, relay_name);
    CHECK(l.c.current_state() == state::handshaking);
    CHECK_FALSE(l.c.handshake_done());
    l.handshake();
    REQUIRE_MESSAGE(l.both_open(), (l.c_err + " / " + l.s_err));
    CHECK(l.c.handshake_done());
    CHECK(l.c.info().version == "TLSv1.3");
    CHECK(l.s.info().version == "TLSv1.3");
    CHECK(contains(l.c.info().cipher, "TLS_"));
    CHECK(l.c.info().peer_verified);
    CHECK(l.c.info().peer_subject_cn == relay_name);
    auto& names = l.c.info().peer_dns_names;
    CHECK(std::find(names.begin(), names.end(), relay_name) != names.end());
    CHECK(std::find(names.begin(), names.end(), "localhost") != names.end());
    CHECK(l.s.info().sni == relay_name);
    CHECK_FALSE(l.s.info().peer_verified);  // no client certificate asked for
    CHECK(l.s.info().peer_dns_names.empty());
    CHECK_FALSE(l.c.info().resumed);
}

TEST_CASE("TLS 1.2 when the client caps its version") {
    auto sc = server_ctx();
    auto cc = client_ctx();
    REQUIRE(SSL_CTX_set_max_proto_version(cc.native(), TLS1_2_VERSION));
    auto l = link::make(sc, cc, relay_name, relay_name);
    l.handshake();
    REQUIRE_MESSAGE(l.both_open(), (l.c_err + " / " + l.s_err));
    CHECK(l.c.info().version == "TLSv1.2");
    CHECK(l.s.info().version == "TLSv1.2");
    CHECK(l.c.info().peer_verified);
    CHECK(l.s.info().sni == relay_name);
}

TEST_CASE("a TLS 1.1-only client is refused") {
    auto sc = server_ctx();
    auto cc = client_ctx();
    REQUIRE(SSL_CTX_set_min_proto_version(cc.native(), TLS1_1_VERSION));
    REQUIRE(SSL_CTX_set_max_proto_version(cc.native(), TLS1_1_VERSION));
    auto l = link::make(sc, cc, relay_name, relay_name);
    l.handshake();
    CHECK(l.s.current_state() == state::failed);
    CHECK(l.c.current_state() == state::failed);
    CHECK_FALSE(l.s_err.empty());
    CHECK_FALSE(l.c_err.empty());
    MESSAGE("server: " << l.s_err << "; client: " << l.c_err);
}

TEST_CASE("data both ways, small and 1 MiB") {
    auto sc = server_ctx();
    auto cc = client_ctx();
    auto l = link::make(sc, cc, relay_name, relay_name);
    l.handshake();
    REQUIRE(l.both_open());

    REQUIRE(l.c.write("EHLO client.example\r\n").ok());
    REQUIRE(l.shuttle());
    CHECK(l.s_plain == "EHLO client.example\r\n");
    REQUIRE(l.s.write("250 ok\r\n").ok());
    REQUIRE(l.shuttle());
    CHECK(l.c_plain == "250 ok\r\n");

    l.c_plain.clear();
    l.s_plain.clear();
    std::string up = random_bytes(1 << 20, 1);
    std::string down = random_bytes((1 << 20) + 17, 2);
    REQUIRE(l.c.write(up).ok());
    REQUIRE(l.s.write(down).ok());
    REQUIRE(l.shuttle());
    CHECK(l.s_plain.size() == up.size());
    CHECK(l.s_plain == up);
    CHECK(l.c_plain.size() == down.size());
    CHECK(l.c_plain == down);
    CHECK_FALSE(l.c.has_output());
    CHECK_FALSE(l.s.has_output());
    CHECK(l.c_err.empty());
    CHECK(l.s_err.empty());
}

TEST_CASE("split invariance: one-byte and odd-sized feeds") {
    for (std::size_t chunk : {std::size_t{1}, std::size_t{7}, std::size_t{4099}}) {
        CAPTURE(chunk);
        auto sc = server_ctx("ca.pem", tenant_name);
        auto cc = client_ctx("S5HG3DCG14");
        auto l = link::make(sc, cc, relay_name, relay_name);
        l.chunk = chunk;
        l.handshake();
        REQUIRE_MESSAGE(l.both_open(), (l.c_err + " / " + l.s_err));
        CHECK(l.s.info().peer_verified);
        std::string up = random_bytes(chunk == 1 ? 40000 : 300000, 3);
        std::string down = random_bytes(chunk == 1 ? 30001 : 200001, 4);
        REQUIRE(l.c.write(up).ok());
        REQUIRE(l.s.write(down).ok());
        REQUIRE(l.shuttle());
        CHECK(l.s_plain == up);
        CHECK(l.c_plain == down);
    }
}

TEST_CASE("plaintext in the same feed as the client's Finished (TLS 1.3)") {
    auto sc = server_ctx();
    auto cc = client_ctx();
    auto l = link::make(sc, cc, relay_name, relay_name);
    REQUIRE(l.c.start().ok());
    std::string wire;
    l.c.take_output(wire);  // ClientHello
    REQUIRE(l.s.feed(wire, l.s_plain).ok());
    wire.clear();
    l.s.take_output(wire);  // ServerHello ... Finished
    REQUIRE(l.c.feed(wire, l.c_plain).ok());
    REQUIRE(l.c.current_state() == state::open);
    CHECK(l.s.current_state() == state::handshaking);
    REQUIRE(l.c.write("MAIL FROM:<a@b.example>\r\n").ok());
    wire.clear();
    l.c.take_output(wire);  // client Finished and the first record, one TCP segment
    REQUIRE(l.s.feed(wire, l.s_plain).ok());
    CHECK(l.s.current_state() == state::open);
    CHECK(l.s_plain == "MAIL FROM:<a@b.example>\r\n");
}

TEST_CASE("SNI is not sent for an IP literal") {
    auto sc = server_ctx();
    auto cc = client_ctx();
    auto l = link::make(sc, cc, "127.0.0.1", "127.0.0.1");
    l.handshake();
    REQUIRE_MESSAGE(l.both_open(), (l.c_err + " / " + l.s_err));
    CHECK(l.s.info().sni.empty());
    CHECK(l.c.info().peer_verified);
}

TEST_CASE("client certificate with the required name is accepted") {
    std::string required = tenant_name;
    SUBCASE("exact") {}
    SUBCASE("case-insensitive") {
        std::transform(required.begin(), required.end(), required.begin(),
                       [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
        REQUIRE(required != tenant_name);
    }
    auto sc = server_ctx("ca.pem", required);
    CHECK(sc.required_client_name() == required);
    auto cc = client_ctx("S5HG3DCG14");
    auto l = link::make(sc, cc, relay_name, relay_name);
    l.handshake();
    REQUIRE_MESSAGE(l.both_open(), (l.c_err + " / " + l.s_err));
    CHECK(l.s.info().peer_verified);
    CHECK(l.s.info().peer_subject_cn == tenant_name);
    CHECK(l.s.info().peer_dns_names == std::vector<std::string>{tenant_name});
    CHECK(l.c.info().peer_verified);
}

TEST_CASE("client certificate refusals") {
    std::string client_id, why;
    SUBCASE("wrong name") {
        client_id = "K7QW2PLM55";
        why = "name mismatch, wanted " + tenant_name;
    }
    SUBCASE("right name, rogue CA") {
        client_id = "rogue";
        why = "certificate verify failed";
    }
    SUBCASE("no certificate") {
        client_id = "";
        why = "certificate";
    }
    CAPTURE(client_id);
    auto sc = server_ctx("ca.pem", tenant_name);
    auto cc = client_ctx(client_id);
    auto l = link::make(sc, cc, relay_name, relay_name);
    l.handshake();
    CHECK(l.s.current_state() == state::failed);
    CHECK_MESSAGE(contains(l.s_err, why), l.s_err);
    // TLS 1.3: the client finishes first and learns from the server's alert.
    CHECK(l.c.current_state() == state::failed);
    CHECK_FALSE(l.c_err.empty());
    CHECK(l.s_plain.empty());
    MESSAGE("server: " << l.s_err << "; client: " << l.c_err);
}

TEST_CASE("client CA without a required name: a certificate is optional") {
    auto sc = server_ctx("ca.pem");
    SUBCASE("none sent") {
        auto cc = client_ctx();
        auto l = link::make(sc, cc, relay_name, relay_name);
        l.handshake();
        REQUIRE_MESSAGE(l.both_open(), (l.c_err + " / " + l.s_err));
        CHECK_FALSE(l.s.info().peer_verified);
    }
    SUBCASE("one sent") {
        auto cc = client_ctx("K7QW2PLM55");
        auto l = link::make(sc, cc, relay_name, relay_name);
        l.handshake();
        REQUIRE_MESSAGE(l.both_open(), (l.c_err + " / " + l.s_err));
        CHECK(l.s.info().peer_verified);
        CHECK(l.s.info().peer_dns_names ==
              std::vector<std::string>{"K7QW2PLM55.smtp.contososignatureservice.com"});
    }
    SUBCASE("rogue one sent") {
        auto cc = client_ctx("rogue");
        auto l = link::make(sc, cc, relay_name, relay_name);
        l.handshake();
        CHECK(l.s.current_state() == state::failed);
    }
}

TEST_CASE("server certificate name mismatch is refused by the client") {
    auto sc = server_ctx();
    auto cc = client_ctx();
    auto l = link::make(sc, cc, relay_name, "wrong.example");
    l.handshake();
    CHECK(l.c.current_state() == state::failed);
    CHECK_MESSAGE(
        contains(l.c_err, "certificate verify failed: name mismatch, wanted wrong.example"),
        l.c_err);
    CHECK(l.s.current_state() == state::failed);  // got the client's alert
}

TEST_CASE("IP literal verify names need an IP SAN") {
    auto sc = server_ctx();
    auto cc = client_ctx();
    SUBCASE("127.0.0.1 is in the certificate") {
        auto l = link::make(sc, cc, "", "127.0.0.1");
        l.handshake();
        REQUIRE_MESSAGE(l.both_open(), (l.c_err + " / " + l.s_err));
        CHECK(l.c.info().peer_verified);
    }
    SUBCASE("[::1] is in the certificate") {
        auto l = link::make(sc, cc, "", "[::1]");
        l.handshake();
        REQUIRE_MESSAGE(l.both_open(), (l.c_err + " / " + l.s_err));
    }
    SUBCASE("10.9.9.9 is not") {
        auto l = link::make(sc, cc, "", "10.9.9.9");
        l.handshake();
        CHECK(l.c.current_state() == state::failed);
        CHECK_MESSAGE(contains(l.c_err, "name mismatch, wanted 10.9.9.9"), l.c_err);
    }
}

TEST_CASE("trust anchors: system store does not know the test CA; verify_peer=false accepts") {
    auto sc = server_ctx();
    SUBCASE("system CAs") {
        auto cc = client_ctx("", true, "");
        auto l = link::make(sc, cc, relay_name, relay_name);
        l.handshake();
        CHECK(l.c.current_state() == state::failed);
        CHECK_MESSAGE(contains(l.c_err, "certificate verify failed"), l.c_err);
    }
    SUBCASE("no verification") {
        auto cc = client_ctx("", false, "");
        auto l = link::make(sc, cc, relay_name, "wrong.example");
        l.handshake();
        REQUIRE_MESSAGE(l.both_open(), (l.c_err + " / " + l.s_err));
        CHECK_FALSE(l.c.info().peer_verified);
        CHECK(l.c.info().peer_subject_cn == relay_name);
    }
}

TEST_CASE("garbage ciphertext is an error, not a crash") {
    auto sc = server_ctx();
    auto cc = client_ctx();
    std::string garbage = "EHLO this is not TLS\r\n" + random_bytes(3000, 5);
    SUBCASE("server, before the handshake") {
        auto l = link::make(sc, cc, relay_name, relay_name);
        std::string plain;
        auto r = l.s.feed(garbage, plain);
        CHECK_FALSE(r.ok());
        CHECK(l.s.current_state() == state::failed);
        CHECK(plain.empty());
        CHECK_FALSE(l.s.feed(garbage, plain).ok());  // stays failed
        CHECK_FALSE(l.s.write("x").ok());
    }
    SUBCASE("client, after the handshake") {
        auto l = link::make(sc, cc, relay_name, relay_name);
        l.handshake();
        REQUIRE(l.both_open());
        std::string plain;
        auto r = l.c.feed(garbage, plain);
        CHECK_FALSE(r.ok());
        CHECK(l.c.current_state() == state::failed);
        CHECK(plain.empty());
        CHECK(l.c.has_output());  // the alert to send before closing
    }
    SUBCASE("random records everywhere") {
        for (unsigned seed = 0; seed < 50; ++seed) {
            auto l = link::make(sc, cc, relay_name, relay_name);
            std::string bytes = random_bytes(1 + seed * 37, seed + 100);
            bytes[0] = 0x16;  // looks like a handshake record
            std::string plain;
            (void)l.s.feed(bytes, plain);
            CHECK(l.s.current_state() != state::open);
        }
    }
}

TEST_CASE("close_notify closes both sides") {
    auto sc = server_ctx();
    auto cc = client_ctx();
    auto l = link::make(sc, cc, relay_name, relay_name);
    l.handshake();
    REQUIRE(l.both_open());
    REQUIRE(l.c.write("QUIT\r\n").ok());
    l.c.shutdown();
    CHECK(l.c.current_state() == state::closed);
    CHECK(l.c.has_output());
    CHECK_FALSE(l.c.write("more").ok());
    REQUIRE(l.shuttle());
    CHECK(l.s_plain == "QUIT\r\n");
    CHECK(l.s.current_state() == state::closed);
    CHECK(l.s.handshake_done());
    CHECK(l.s_err.empty());
    l.s.shutdown();  // reply with our own close_notify
    CHECK(l.s.has_output());
    REQUIRE(l.shuttle());
    CHECK(l.c_err.empty());
}

TEST_CASE("write before the handshake is an error") {
    auto sc = server_ctx();
    auto cc = client_ctx();
    auto l = link::make(sc, cc, relay_name, relay_name);
    CHECK_FALSE(l.c.write("too early").ok());
}

TEST_CASE("bad certificate and key files are errors naming the file") {
    std::string garbage = temp_file("garbage.pem", "this is not PEM\n");
    server_options o;
    o.cert_file = cert_path("relay.pem");
    o.key_file = cert_path("relay.key");
    SUBCASE("missing certificate") {
        o.cert_file = "/nonexistent/relay.pem";
        auto r = context::server(o);
        REQUIRE_FALSE(r.ok());
        CHECK_MESSAGE(contains(r.err().message, "/nonexistent/relay.pem"), r.err().message);
    }
    SUBCASE("garbage certificate") {
        o.cert_file = garbage;
        auto r = context::server(o);
        REQUIRE_FALSE(r.ok());
        CHECK_MESSAGE(contains(r.err().message, garbage), r.err().message);
    }
    SUBCASE("garbage key") {
        o.key_file = garbage;
        auto r = context::server(o);
        REQUIRE_FALSE(r.ok());
        CHECK_MESSAGE(contains(r.err().message, garbage), r.err().message);
    }
    SUBCASE("key of another certificate") {
        o.key_file = cert_path("smarthost.key");
        auto r = context::server(o);
        REQUIRE_FALSE(r.ok());
        CHECK_MESSAGE(contains(r.err().message, "smarthost.key"), r.err().message);
    }
    SUBCASE("missing client CA") {
        o.client_ca_file = "/nonexistent/ca.pem";
        o.required_client_name = tenant_name;
        auto r = context::server(o);
        REQUIRE_FALSE(r.ok());
        CHECK_MESSAGE(contains(r.err().message, "/nonexistent/ca.pem"), r.err().message);
    }
    SUBCASE("required name without a client CA") {
        o.required_client_name = tenant_name;
        CHECK_FALSE(context::server(o).ok());
    }
    SUBCASE("client: garbage CA") {
        client_options co;
        co.ca_file = garbage;
        auto r = context::client(co);
        REQUIRE_FALSE(r.ok());
        CHECK_MESSAGE(contains(r.err().message, garbage), r.err().message);
    }
    SUBCASE("client: missing client key") {
        client_options co;
        co.ca_file = cert_path("ca.pem");
        co.cert_file = cert_path("S5HG3DCG14.pem");
        co.key_file = "/nonexistent/S5HG3DCG14.key";
        auto r = context::client(co);
        REQUIRE_FALSE(r.ok());
        CHECK_MESSAGE(contains(r.err().message, "/nonexistent/S5HG3DCG14.key"), r.err().message);
    }
    SUBCASE("the good files load") {
        CHECK(context::server(o).ok());
    }
}

TEST_CASE("engines refuse the wrong kind of context") {
    auto sc = server_ctx();
    auto cc = client_ctx();
    CHECK_FALSE(engine::server(cc).ok());
    CHECK_FALSE(engine::client(sc, relay_name, relay_name).ok());
    CHECK_FALSE(engine::client(cc, "", "").ok());  // nothing to verify against
}

TEST_CASE("session resumption for the next connection to the same host") {
    int version = 0;
    SUBCASE("TLS 1.3") {
        version = TLS1_3_VERSION;
    }
    SUBCASE("TLS 1.2") {
        version = TLS1_2_VERSION;
    }
    CAPTURE(version);
    auto sc = server_ctx("ca.pem", tenant_name);
    auto cc = client_ctx("S5HG3DCG14");
    REQUIRE(SSL_CTX_set_max_proto_version(cc.native(), static_cast<uint16_t>(version)));

    auto first = link::make(sc, cc, relay_name, relay_name);
    first.handshake();
    REQUIRE_MESSAGE(first.both_open(), (first.c_err + " / " + first.s_err));
    CHECK_FALSE(first.c.info().resumed);
    // TLS 1.3 tickets arrive after the handshake; a round trip reads them.
    REQUIRE(first.s.write("220 ready\r\n").ok());
    REQUIRE(first.shuttle());
    CHECK(first.c_plain == "220 ready\r\n");

    auto second = link::make(sc, cc, relay_name, relay_name);
    second.handshake();
    REQUIRE_MESSAGE(second.both_open(), (second.c_err + " / " + second.s_err));
    CHECK(second.c.info().resumed);
    CHECK(second.s.info().resumed);
    // The resumed session still reports the client certificate it carries.
    CHECK(second.s.info().peer_verified);
    CHECK(second.s.info().peer_dns_names == std::vector<std::string>{tenant_name});
    CHECK(second.c.info().peer_verified);

    // Another verify name does not get that session.
    auto other = link::make(sc, cc, "localhost", "localhost");
    other.handshake();
    REQUIRE(other.both_open());
    CHECK_FALSE(other.c.info().resumed);
}

TEST_CASE("engines move") {
    auto sc = server_ctx();
    auto cc = client_ctx();
    auto l = link::make(sc, cc, relay_name, relay_name);
    l.handshake();
    REQUIRE(l.both_open());
    engine moved = std::move(l.c);
    CHECK(moved.current_state() == state::open);
    REQUIRE(moved.write("after move").ok());
    std::string wire, plain;
    moved.take_output(wire);
    REQUIRE(l.s.feed(wire, plain).ok());
    CHECK(plain == "after move");
    context moved_ctx = std::move(cc);
    CHECK(moved_ctx.native() != nullptr);
    CHECK(cc.native() == nullptr);
}

namespace {
std::string slurp(const std::string& path) {
    std::FILE* f = std::fopen(path.c_str(), "rb");
    REQUIRE(f != nullptr);
    std::string out;
    char buf[4096];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
    std::fclose(f);
    return out;
}
}  // namespace

TEST_CASE("client contexts from PEM already read: the tenant's certificate is presented") {
    client_options o;
    o.ca_file = "ca.pem (label)";
    o.ca_pem = slurp(cert_path("ca.pem"));
    o.cert_file = "client.pem (label)";
    o.cert_pem = slurp(cert_path("S5HG3DCG14.pem"));
    o.key_pem = slurp(cert_path("S5HG3DCG14.key"));
    auto cc = context::client(o);
    REQUIRE_MESSAGE(cc.ok(), (cc.ok() ? "" : cc.err().message));
    auto sc = server_ctx("ca.pem", tenant_name);
    auto l = link::make(sc, *cc, relay_name, relay_name);
    l.handshake();
    REQUIRE(l.both_open());
    CHECK(l.s.info().peer_verified);
    SUBCASE("a key of another certificate names the labels") {
        o.key_pem = slurp(cert_path("smarthost.key"));
        o.key_file = "the-key (label)";
        auto r = context::client(o);
        REQUIRE_FALSE(r.ok());
        CHECK_MESSAGE(contains(r.err().message, "the-key (label)"), r.err().message);
    }
    SUBCASE("no certificate in the CA data") {
        o.ca_pem = "not PEM at all\n";
        auto r = context::client(o);
        REQUIRE_FALSE(r.ok());
        CHECK_MESSAGE(contains(r.err().message, "ca.pem (label)"), r.err().message);
    }
}

TEST_CASE("certificate_has_name: SAN names, not another tenant's") {
    const std::string pem = slurp(cert_path("S5HG3DCG14.pem"));
    auto yes = certificate_has_name(pem, tenant_name);
    REQUIRE(yes.ok());
    CHECK(*yes);
    auto upper = certificate_has_name(pem, "s5hg3dcg14.SMTP.contososignatureservice.com");
    CHECK((upper.ok() && *upper));
    auto no = certificate_has_name(pem, "K7QW2PLM55.smtp.contososignatureservice.com");
    REQUIRE(no.ok());
    CHECK_FALSE(*no);
    CHECK_FALSE(certificate_has_name("garbage", tenant_name).ok());
}
