// transport::stream over real loopback sockets: plaintext, TLS from the
// first byte, STARTTLS-style upgrade, and TLS failures reported as such.
#include <doctest/doctest.h>

#include <sigrelay/runtime.hpp>
#include <sigrelay/tls.hpp>
#include <sigrelay/transport.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <string>

using namespace sigrelay;
using namespace std::chrono_literals;

namespace {

std::string certs(const std::string& name) {
    const char* dir = std::getenv("SIGRELAY_TEST_CERTS");
    REQUIRE_MESSAGE(dir != nullptr, "SIGRELAY_TEST_CERTS is not set (run through meson test)");
    return std::string(dir) + "/" + name;
}

// Echoes plaintext back; upgrades to TLS when it receives "STARTTLS\n".
struct echo_server final : transport::stream_events {
    echo_server(runtime::connection& c, const tls::context* ctx, bool implicit_tls)
        : s(c, *this), ctx(ctx) {
        if (implicit_tls) REQUIRE(s.start_tls_server(*ctx));
    }
    void on_plain(transport::stream& st, std::span<const char> b) override {
        std::string_view v(b.data(), b.size());
        if (v == "STARTTLS\n") {
            st.write("GO\n");
            REQUIRE(st.start_tls_server(*ctx));
            return;
        }
        st.write(v);
    }
    void on_closed(transport::stream&, int, const std::string& tls_error) override {
        if (!tls_error.empty()) *last_tls_error = tls_error;
        delete this;
    }
    transport::stream s;
    const tls::context* ctx;
    std::string* last_tls_error = nullptr;
};

struct client final : transport::stream_events {
    client(runtime::reactor& r, const tls::context* ctx, std::string payload, bool upgrade)
        : r(r), ctx(ctx), payload(std::move(payload)), upgrade(upgrade) {}

    void on_connected(transport::stream& st, int err) override {
        connect_err = err;
        if (err < 0) return;
        if (upgrade) {
            st.write("STARTTLS\n");
        } else if (ctx) {
            REQUIRE(st.start_tls_client(*ctx, "fabrikam.mail.protection.outlook.com",
                                        "fabrikam.mail.protection.outlook.com"));
        } else {
            st.write(payload);
        }
    }
    void on_tls_ready(transport::stream& st) override {
        tls_ok = true;
        version = st.tls_info()->version;
        if (piece == 0) {
            st.write(payload);
            return;
        }
        // Corked: many small writes and some large ones, gathered into records.
        st.cork();
        for (std::size_t at = 0; at < payload.size();) {
            std::size_t n = std::min(payload.size() - at, (at / piece) % 5 == 4 ? 40000 : piece);
            st.write(std::string_view(payload).substr(at, n));
            at += n;
        }
        st.uncork();
    }
    std::size_t piece = 0;
    void on_plain(transport::stream& st, std::span<const char> b) override {
        if (upgrade && !upgraded) {
            REQUIRE(std::string_view(b.data(), b.size()) == "GO\n");
            upgraded = true;
            REQUIRE(st.start_tls_client(*ctx, "fabrikam.mail.protection.outlook.com",
                                        "fabrikam.mail.protection.outlook.com"));
            return;
        }
        got.append(b.data(), b.size());
        if (got.size() >= payload.size()) st.close();
    }
    void on_closed(transport::stream&, int err, const std::string& tls_error) override {
        closed_err = err;
        this->tls_error = tls_error;
        done = true;
        r.stop(0ms);
    }
    runtime::reactor& r;
    const tls::context* ctx;
    std::string payload, got, version, tls_error;
    bool upgrade, upgraded = false, tls_ok = false, done = false;
    int connect_err = 1, closed_err = 1;
    std::unique_ptr<transport::stream> st;
};

struct fixture {
    std::unique_ptr<runtime::reactor> r;
    runtime::socket_address addr;
    tls::context server_ctx;
    tls::context client_ctx;
    std::string server_tls_error;

    static tls::context make_server(bool require_client) {
        tls::server_options so;
        so.cert_file = certs("smarthost.pem");
        so.key_file = certs("smarthost.key");
        if (require_client) {
            so.client_ca_file = certs("ca.pem");
            so.required_client_name = "S5HG3DCG14.smtp.contososignatureservice.com";
        }
        auto c = tls::context::server(so);
        REQUIRE_MESSAGE(c.ok(), (c.ok() ? "" : c.err().message));
        return std::move(c).value();
    }
    static tls::context make_client(const std::string& cert) {
        tls::client_options co;
        co.ca_file = certs("ca.pem");
        if (!cert.empty()) {
            co.cert_file = certs(cert + ".pem");
            co.key_file = certs(cert + ".key");
        }
        auto c = tls::context::client(co);
        REQUIRE_MESSAGE(c.ok(), (c.ok() ? "" : c.err().message));
        return std::move(c).value();
    }

    fixture(bool implicit_tls, bool require_client = false, const std::string& client_cert = "")
        : server_ctx(make_server(require_client)), client_ctx(make_client(client_cert)) {
        runtime::reactor_options ro;
        auto rr = runtime::reactor::create(ro);
        REQUIRE_MESSAGE(rr.ok(), (rr.ok() ? "" : rr.err().message));
        r = std::move(rr).value();
        auto a = runtime::socket_address::parse("127.0.0.1:0");
        REQUIRE(a.ok());
        REQUIRE(r->listen(*a, [this, implicit_tls](runtime::connection& c) -> runtime::connection_handler* {
                    auto* e = new echo_server(c, &server_ctx, implicit_tls);
                    e->last_tls_error = &server_tls_error;
                    return &e->s;
                }).ok());
        addr = r->listening_addresses().at(0);
    }

    void run_client(client& cl) {
        auto c = r->connect(addr, nullptr, 5s);
        REQUIRE(c.ok());
        cl.st = std::make_unique<transport::stream>(**c, cl);
        // A watchdog so a bug fails the test instead of hanging it.
        r->after(10s, [this] { r->stop(0ms); });
        r->run();
        REQUIRE_MESSAGE(cl.done, "client did not finish");
    }
};

}  // namespace

TEST_CASE("plaintext echo through a stream") {
    fixture f(false);
    client cl(*f.r, nullptr, std::string(100000, 'p'), false);
    f.run_client(cl);
    CHECK(cl.connect_err == 0);
    CHECK(cl.got == cl.payload);
}

TEST_CASE("TLS from the first byte, 1 MiB echoed") {
    fixture f(true);
    std::string payload(1 << 20, '\0');
    for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>(i * 7 + 3);
    client cl(*f.r, &f.client_ctx, payload, false);
    f.run_client(cl);
    CHECK(cl.tls_ok);
    CHECK(cl.version == "TLSv1.3");
    CHECK(cl.got.size() == payload.size());
    CHECK(cl.got == payload);
}

TEST_CASE("corked writes arrive whole and in order") {
    fixture f(true);
    std::string payload(300000, '\0');
    for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>(i * 13 + 1);
    client cl(*f.r, &f.client_ctx, payload, false);
    cl.piece = 37;
    f.run_client(cl);
    CHECK(cl.tls_ok);
    CHECK(cl.got == payload);
}

TEST_CASE("STARTTLS-style upgrade with a required client certificate") {
    fixture f(false, true, "S5HG3DCG14");
    client cl(*f.r, &f.client_ctx, "hello over tls\n", true);
    f.run_client(cl);
    CHECK(cl.upgraded);
    CHECK(cl.tls_ok);
    CHECK(cl.got == "hello over tls\n");
    CHECK(cl.tls_error.empty());
}

TEST_CASE("a client certificate with the wrong name ends the stream with a TLS error") {
    fixture f(true, true, "K7QW2PLM55");
    client cl(*f.r, &f.client_ctx, "must not echo\n", false);
    f.run_client(cl);
    CHECK(cl.got.empty());
    // Either side may see the failure first; the server always names it.
    CHECK_FALSE(f.server_tls_error.empty());
}

TEST_CASE("connecting to a closed port reports the error") {
    fixture f(false);
    auto closed = runtime::socket_address::parse("127.0.0.1:1");
    REQUIRE(closed.ok());
    client cl(*f.r, nullptr, "x", false);
    auto c = f.r->connect(*closed, nullptr, 5s);
    REQUIRE(c.ok());
    cl.st = std::make_unique<transport::stream>(**c, cl);
    f.r->after(10s, [&] { f.r->stop(0ms); });
    f.r->run();
    CHECK(cl.connect_err < 0);
    CHECK(cl.done);
}
