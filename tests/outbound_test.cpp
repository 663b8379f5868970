// outbound::pool against a real smarthost-sink process over loopback: STARTTLS
// with the tenant's client certificate, reuse, limits, retirement, every
// failure mapped to a 4yz, DATA fallback, timeouts and TLS resumption.
#include <doctest/doctest.h>

#include <sigrelay/outbound.hpp>
#include <sigrelay/runtime.hpp>
#include <sigrelay/tls.hpp>

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

using namespace sigrelay;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

const std::string tenant_name = "S5HG3DCG14.smtp.contososignatureservice.com";
const std::string smart_host_name = "fabrikam.mail.protection.outlook.com";

std::string certs(const std::string& name) {
    const char* dir = std::getenv("SIGRELAY_TEST_CERTS");
    REQUIRE_MESSAGE(dir != nullptr, "SIGRELAY_TEST_CERTS is not set (run through meson test)");
    return std::string(dir) + "/" + name;
}

std::string read_file(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

int free_port() {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    socklen_t len = sizeof a;
    REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0);
    ::close(fd);
    return ntohs(a.sin_port);
}

// A smarthost-sink child process on a free loopback port; SIGTERM on stop().
class sink_process {
public:
    struct config {
        bool tls = true;
        bool require_client_cert = true;
        std::vector<std::string> extra;
    };

    explicit sink_process(const config& c) {
        const char* bin = std::getenv("SIGRELAY_SINK");
        REQUIRE_MESSAGE(bin != nullptr, "SIGRELAY_SINK is not set (run through meson test)");
        char tmpl[] = "/tmp/outbound-test-XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        dir_ = tmpl;
        port_ = free_port();
        std::vector<std::string> args = {bin,
                                         "--listen",
                                         "127.0.0.1:" + std::to_string(port_),
                                         "--threads",
                                         "1",
                                         "--json",
                                         "--save-dir",
                                         (dir_ / "saved").string()};
        if (c.tls) {
            args.insert(args.end(), {"--tls-cert", certs("smarthost.pem"), "--tls-key",
                                     certs("smarthost.key")});
            if (c.require_client_cert)
                args.insert(args.end(),
                            {"--require-client-cert", tenant_name, "--client-ca", certs("ca.pem")});
        }
        args.insert(args.end(), c.extra.begin(), c.extra.end());
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);

        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        std::string out = (dir_ / "stdout").string(), err = (dir_ / "stderr").string();
        posix_spawn_file_actions_addopen(&fa, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        posix_spawn_file_actions_addopen(&fa, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int rc = posix_spawn(&pid_, argv[0], &fa, nullptr, argv.data(), environ);
        posix_spawn_file_actions_destroy(&fa);
        REQUIRE_MESSAGE(rc == 0, "cannot start " << bin);
        // Ready once it says it listens (a probe connection would be counted).
        for (int i = 0; i < 500; ++i) {
            if (read_file(dir_ / "stderr").find("listening on") != std::string::npos) return;
            int status = 0;
            if (::waitpid(pid_, &status, WNOHANG) == pid_) {
                pid_ = -1;
                FAIL("smarthost-sink exited: " << read_file(dir_ / "stderr"));
            }
            std::this_thread::sleep_for(10ms);
        }
        FAIL("smarthost-sink did not start: " << read_file(dir_ / "stderr"));
    }

    ~sink_process() {
        stop();
        std::error_code ec;
        fs::remove_all(dir_, ec);
    }

    // Stops the sink and returns one of its --json counters.
    unsigned long counter(const std::string& name) {
        stop();
        std::string json = read_file(dir_ / "stdout");
        auto at = json.find("\"" + name + "\": ");
        REQUIRE_MESSAGE(at != std::string::npos, "no " << name << " in " << json);
        return std::stoul(json.substr(at + name.size() + 4));
    }

    std::vector<std::string> saved() const {
        std::vector<fs::path> files;
        std::error_code ec;
        for (auto& e : fs::directory_iterator(dir_ / "saved", ec))
            if (e.path().extension() == ".eml") files.push_back(e.path());
        std::sort(files.begin(), files.end());
        std::vector<std::string> out;
        for (auto& f : files) out.push_back(read_file(f));
        return out;
    }

    runtime::socket_address address() const {
        auto a = runtime::socket_address::parse("127.0.0.1:" + std::to_string(port_));
        REQUIRE(a.ok());
        return *a;
    }

private:
    void stop() {
        if (pid_ <= 0) return;
        ::kill(pid_, SIGTERM);
        int status = 0;
        ::waitpid(pid_, &status, 0);
        pid_ = -1;
    }

    fs::path dir_;
    int port_ = 0;
    pid_t pid_ = -1;
};

std::shared_ptr<const tls::context> client_context(const std::string& cert) {
    tls::client_options co;
    co.ca_file = certs("ca.pem");
    co.cert_file = certs(cert + ".pem");
    co.key_file = certs(cert + ".key");
    auto c = tls::context::client(co);
    REQUIRE_MESSAGE(c.ok(), (c.ok() ? "" : c.err().message));
    return std::make_shared<const tls::context>(std::move(c).value());
}

// The result of one transaction through the pool.
struct delivery {
    bool acquired = false;
    smtp::reply failure;
    std::string detail;
    std::vector<std::pair<smtp::command_kind, smtp::reply>> replies;
    bool reused = false, resumed = false, chunking = false;
    std::string tls_version;
    std::uint64_t connection = 0;
    int data_code() const { return replies.empty() ? 0 : replies.back().second.code; }
};

// A reactor, a pool and a destination; scenarios chain callbacks, run()
// turns the loop until done() or the watchdog.
struct harness {
    std::unique_ptr<runtime::reactor> r;
    std::unique_ptr<outbound::pool> p;
    outbound::destination dest;
    bool finished = false;

    harness(const sink_process& sink, outbound::pool_options o = {},
            const std::string& cert = "S5HG3DCG14", std::string tls_domain = smart_host_name) {
        auto rr = runtime::reactor::create({});
        REQUIRE_MESSAGE(rr.ok(), (rr.ok() ? "" : rr.err().message));
        r = std::move(rr).value();
        o.helo_name = "relay.test";
        p = std::make_unique<outbound::pool>(*r, o);
        dest.key = "fabrikam";
        dest.addresses = {sink.address()};
        dest.tls_domain = std::move(tls_domain);
        dest.tls = client_context(cert);
    }
    ~harness() { p.reset(); }

    void done() {
        finished = true;
        r->stop(0ms);
    }

    void run(std::chrono::milliseconds limit = 15s) {
        // A watchdog, so a bug fails the test instead of hanging it.
        r->after(limit, [this] { r->stop(0ms); });
        r->run();
        REQUIRE_MESSAGE(finished, "scenario did not finish");
    }

    // Acquire, MAIL/RCPT/DATA, release(reusable); then next(result).
    struct job final : outbound::transaction_events {
        harness* h;
        delivery d;
        outbound::lease l;
        std::function<void(delivery&)> next;
        void on_reply(smtp::command_kind kind, const smtp::reply& rep) override {
            d.replies.emplace_back(kind, rep);
            if (d.replies.size() < 3) return;
            l.release(true);
            next(d);
        }
    };
    std::vector<std::unique_ptr<job>> jobs;

    void deliver(std::string content, std::function<void(delivery&)> next) {
        jobs.push_back(std::make_unique<job>());
        job* j = jobs.back().get();
        j->h = this;
        j->next = std::move(next);
        p->acquire(dest, [j, content = std::move(content)](outbound::acquire_outcome o) mutable {
            if (!o.ok()) {
                j->d.failure = o.failure;
                j->d.detail = o.detail;
                j->next(j->d);
                return;
            }
            j->d.acquired = true;
            j->l = std::move(o.channel);
            j->d.reused = j->l.reused();
            j->d.connection = j->l.connection_id();
            j->d.chunking = j->l.capabilities()->chunking;
            if (auto* info = j->l.tls_info()) {
                j->d.resumed = info->resumed;
                j->d.tls_version = info->version;
            }
            j->l.set_events(j);
            j->l.mail("alice@fabrikam.com");
            j->l.rcpt("bob@example.org");
            j->l.data(std::move(content));
        });
    }
};

const std::string message =
    "From: alice@fabrikam.com\r\nTo: bob@example.org\r\nSubject: hi\r\n\r\nHello Bob.\r\n";

}  // namespace

TEST_CASE("a transaction over STARTTLS with the tenant's client certificate") {
    sink_process sink({});
    delivery got;
    {
        harness h(sink);
        h.deliver(message, [&](delivery& d) {
            got = d;
            h.done();
        });
        h.run();
        CHECK(h.p->stats().transactions == 1);
    }
    REQUIRE_MESSAGE(got.acquired, got.detail);
    REQUIRE(got.replies.size() == 3);
    CHECK(got.replies[0].first == smtp::command_kind::mail);
    CHECK(got.replies[0].second.code == 250);
    CHECK(got.replies[1].first == smtp::command_kind::rcpt);
    CHECK(got.replies[1].second.code == 250);
    CHECK(got.replies[2].first == smtp::command_kind::data);
    CHECK(got.replies[2].second.code == 250);
    CHECK(got.replies[2].second.text.find("queued as") != std::string::npos);
    CHECK(got.chunking);
    CHECK_FALSE(got.reused);
    CHECK_FALSE(got.tls_version.empty());
    auto saved = sink.saved();
    REQUIRE(saved.size() == 1);
    CHECK(saved[0] == message);
}

TEST_CASE("the next transaction reuses the connection, with RSET after an unfinished one") {
    sink_process sink({});
    std::vector<delivery> got;
    outbound::pool_stats st;
    {
        harness h(sink);
        h.deliver(message, [&](delivery& d) {
            got.push_back(d);
            // An abandoned transaction: MAIL and RCPT answered, then released.
            h.p->acquire(h.dest, [&](outbound::acquire_outcome o) {
                REQUIRE(o.ok());
                struct ev final : outbound::transaction_events {
                    int n = 0;
                    outbound::lease* l = nullptr;
                    std::function<void()> after;
                    void on_reply(smtp::command_kind, const smtp::reply&) override {
                        if (++n == 2) after();
                    }
                };
                auto* e = new ev;
                auto* l = new outbound::lease(std::move(o.channel));
                e->after = [&h, &got, e, l] {
                    l->release(true);  // RSET, then idle
                    h.deliver(message, [&h, &got, e, l](delivery& d2) {
                        got.push_back(d2);
                        delete l;
                        delete e;
                        h.done();
                    });
                };
                l->set_events(e);
                l->mail("alice@fabrikam.com");
                l->rcpt("carol@example.org");
            });
        });
        h.run();
        st = h.p->stats();
    }
    REQUIRE(got.size() == 2);
    CHECK(got[0].data_code() == 250);
    CHECK(got[1].data_code() == 250);
    CHECK(got[1].reused);
    CHECK(got[1].connection == got[0].connection);
    CHECK(st.connects == 1);
    CHECK(st.resets == 1);
    CHECK(st.reuses == 2);
    CHECK(st.transactions == 3);
    CHECK(sink.counter("connections") == 1);
    CHECK(sink.saved().size() == 2);
}

TEST_CASE("max_connections bounds the connections; waiters queue") {
    sink_process sink({.extra = {"--delay-ms", "100"}});
    outbound::pool_options o;
    o.max_connections = 2;
    int done = 0, ok = 0;
    outbound::pool_stats st;
    {
        harness h(sink, o);
        for (int i = 0; i < 5; ++i)
            h.deliver(message, [&](delivery& d) {
                ok += d.data_code() == 250;
                if (++done == 5) h.done();
            });
        h.run();
        st = h.p->stats();
    }
    CHECK(ok == 5);
    CHECK(st.connects == 2);
    CHECK(st.queued >= 3);
    CHECK(sink.counter("connections") == 2);
}

TEST_CASE("max_messages retires a connection; the next new one resumes TLS") {
    sink_process sink({});
    outbound::pool_options o;
    o.max_messages = 1;
    std::vector<delivery> got;
    outbound::pool_stats st;
    {
        harness h(sink, o);
        h.deliver(message, [&](delivery& d) {
            got.push_back(d);
            h.deliver(message, [&](delivery& d2) {
                got.push_back(d2);
                h.done();
            });
        });
        h.run();
        st = h.p->stats();
    }
    REQUIRE(got.size() == 2);
    CHECK(got[1].data_code() == 250);
    CHECK_FALSE(got[1].reused);
    CHECK(got[1].connection != got[0].connection);
    CHECK_FALSE(got[0].resumed);
    CHECK(got[1].resumed);
    CHECK(st.retired_max_messages == 2);
    CHECK(st.tls_resumed == 1);
    CHECK(sink.counter("connections") == 2);
}

TEST_CASE("an idle connection is QUIT after idle_timeout") {
    sink_process sink({});
    outbound::pool_options o;
    o.idle_timeout = 200ms;
    outbound::pool_stats mid, end;
    delivery second;
    {
        harness h(sink, o);
        h.deliver(message, [&](delivery&) {
            h.r->after(600ms, [&] {
                mid = h.p->stats();
                h.deliver(message, [&](delivery& d) {
                    second = d;
                    h.done();
                });
            });
        });
        h.run();
        end = h.p->stats();
    }
    CHECK(mid.retired_idle == 1);
    CHECK(mid.open == 0);
    CHECK(mid.idle == 0);
    CHECK(second.data_code() == 250);
    CHECK_FALSE(second.reused);
    CHECK(end.connects == 2);
    CHECK(sink.counter("connections") == 2);
}

TEST_CASE("an idle connection the smart host closed is dropped, not handed out") {
    sink_process sink({.extra = {"--command-timeout", "1"}});
    outbound::pool_stats mid;
    delivery second;
    {
        harness h(sink);
        h.deliver(message, [&](delivery&) {
            h.r->after(1600ms, [&] {
                mid = h.p->stats();
                h.deliver(message, [&](delivery& d) {
                    second = d;
                    h.done();
                });
            });
        });
        h.run();
    }
    CHECK(mid.dropped_idle == 1);
    CHECK(mid.open == 0);
    CHECK(second.data_code() == 250);
    CHECK_FALSE(second.reused);
}

TEST_CASE("an idle connection is checked with NOOP before reuse") {
    sink_process sink({});
    outbound::pool_options o;
    o.probe_after = 0ms;
    delivery second;
    outbound::pool_stats st;
    {
        harness h(sink, o);
        h.deliver(message, [&](delivery&) {
            h.r->after(20ms, [&] {
                h.deliver(message, [&](delivery& d) {
                    second = d;
                    h.done();
                });
            });
        });
        h.run();
        st = h.p->stats();
    }
    CHECK(second.data_code() == 250);
    CHECK(second.reused);
    CHECK(st.probes >= 1);
    CHECK(st.connects == 1);
}

TEST_CASE(
    "a client certificate with the wrong name: the smart host refuses TLS, acquire fails 4yz") {
    sink_process sink({});
    delivery got;
    {
        harness h(sink, {}, "K7QW2PLM55");
        h.deliver(message, [&](delivery& d) {
            got = d;
            h.done();
        });
        h.run();
        CHECK(h.p->stats().connect_failures == 1);
        CHECK(h.p->stats().open == 0);
    }
    CHECK_FALSE(got.acquired);
    CHECK(got.failure.code / 100 == 4);
    CHECK(got.failure.enhanced.substr(0, 2) == "4.");
    CHECK(got.detail.find("TLS") != std::string::npos);
    CHECK(sink.saved().empty());
}

TEST_CASE("a smart host certificate that does not carry tls_domain: acquire fails 4yz") {
    sink_process sink({});
    delivery got;
    {
        harness h(sink, {}, "S5HG3DCG14", "wrong.example");
        h.deliver(message, [&](delivery& d) {
            got = d;
            h.done();
        });
        h.run();
    }
    CHECK_FALSE(got.acquired);
    CHECK(got.failure.code == 451);
    CHECK(got.failure.enhanced == "4.4.1");
    CHECK(got.detail.find("TLS") != std::string::npos);
}

TEST_CASE("tls_domain may be an IP literal that the certificate carries as an IP SAN") {
    sink_process sink({});
    delivery got;
    {
        harness h(sink, {}, "S5HG3DCG14", "127.0.0.1");
        h.deliver(message, [&](delivery& d) {
            got = d;
            h.done();
        });
        h.run();
    }
    REQUIRE_MESSAGE(got.acquired, got.detail);
    CHECK(got.data_code() == 250);
}

TEST_CASE("a closed port: acquire fails with 451 4.4.1, every waiter at once") {
    sink_process sink({});
    int port = free_port();
    std::vector<delivery> got;
    outbound::pool_options o;
    o.max_connections = 1;  // one attempt; the waiters behind it need not try again
    {
        harness h(sink, o);
        h.dest.addresses = {*runtime::socket_address::parse("127.0.0.1:" + std::to_string(port))};
        for (int i = 0; i < 3; ++i)
            h.deliver(message, [&](delivery& d) {
                got.push_back(d);
                if (got.size() == 3) h.done();
            });
        h.run();
        CHECK(h.p->stats().connects == 1);
    }
    REQUIRE(got.size() == 3);
    for (auto& d : got) {
        CHECK_FALSE(d.acquired);
        CHECK(d.failure.code == 451);
        CHECK(d.failure.enhanced == "4.4.1");
    }
}

TEST_CASE("the smart host's 5yz and 4yz to the message come back as the data reply") {
    for (std::string code : {"554", "451"}) {
        CAPTURE(code);
        sink_process sink({.extra = {"--fail-rate", "1", "--fail-code", code}});
        std::vector<delivery> got;
        {
            harness h(sink);
            h.deliver(message, [&](delivery& d) {
                got.push_back(d);
                h.deliver(message, [&](delivery& d2) {
                    got.push_back(d2);
                    h.done();
                });
            });
            h.run();
        }
        REQUIRE(got.size() == 2);
        CHECK(got[0].replies.at(1).second.code == 250);
        CHECK(got[0].data_code() == std::stoi(code));
        CHECK(got[0].replies.back().second.enhanced[0] == code[0]);
        // The transaction ended cleanly: the connection is reused.
        CHECK(got[1].reused);
        CHECK(got[1].data_code() == std::stoi(code));
        CHECK(sink.counter("connections") == 1);
    }
}

TEST_CASE("a disconnect mid-transaction: 4yz for the data, the connection is discarded") {
    sink_process sink({.extra = {"--disconnect-rate", "1"}});
    std::vector<delivery> got;
    outbound::pool_stats st;
    {
        harness h(sink);
        h.deliver(message, [&](delivery& d) {
            got.push_back(d);
            h.deliver(message, [&](delivery& d2) {
                got.push_back(d2);
                h.done();
            });
        });
        h.run();
        st = h.p->stats();
    }
    REQUIRE(got.size() == 2);
    CHECK(got[0].data_code() == 451);
    CHECK(got[0].replies.back().second.enhanced == "4.4.2");
    CHECK_FALSE(got[1].reused);
    CHECK(got[1].connection != got[0].connection);
    CHECK(got[1].data_code() / 100 == 4);
    CHECK(st.broken == 2);
    CHECK(sink.counter("connections") == 2);
}

TEST_CASE("without CHUNKING: DATA with dot-stuffing and bare CR/LF normalised") {
    sink_process sink({.extra = {"--no-chunking"}});
    const std::string content =
        "Subject: dots\r\n\r\n.leading dot\r\n..two dots\r\nbare\nLF\r\n.\r\nlast line";
    const std::string expected =
        "Subject: dots\r\n\r\n.leading dot\r\n..two dots\r\nbare\r\nLF\r\n.\r\nlast line\r\n";
    delivery got;
    {
        harness h(sink);
        h.deliver(content, [&](delivery& d) {
            got = d;
            h.done();
        });
        h.run();
    }
    REQUIRE_MESSAGE(got.acquired, got.detail);
    CHECK_FALSE(got.chunking);
    CHECK(got.data_code() == 250);
    auto saved = sink.saved();
    REQUIRE(saved.size() == 1);
    CHECK(saved[0] == expected);
}

TEST_CASE("a smart host slower than data_timeout: 421 4.4.2 and the connection is closed") {
    sink_process sink({.extra = {"--delay-ms", "3000"}});
    outbound::pool_options o;
    o.data_timeout = 300ms;
    delivery got;
    outbound::pool_stats st;
    {
        harness h(sink, o);
        h.deliver(message, [&](delivery& d) {
            got = d;
            h.r->after(100ms, [&] { h.done(); });
        });
        h.run();
        st = h.p->stats();
    }
    CHECK(got.data_code() == 421);
    CHECK(got.replies.back().second.enhanced == "4.4.2");
    CHECK(st.timeouts == 1);
    CHECK(st.open == 0);
}

TEST_CASE("a full pool answers a waiter 451 4.4.5 after acquire_timeout") {
    sink_process sink({});
    outbound::pool_options o;
    o.max_connections = 1;
    o.acquire_timeout = 200ms;
    outbound::acquire_outcome second;
    {
        harness h(sink, o);
        outbound::lease held;
        h.p->acquire(h.dest, [&](outbound::acquire_outcome a) {
            REQUIRE(a.ok());
            held = std::move(a.channel);
            h.p->acquire(h.dest, [&](outbound::acquire_outcome b) {
                second = std::move(b);
                held.release(true);
                h.done();
            });
        });
        h.run();
        CHECK(h.p->stats().acquire_timeouts == 1);
    }
    CHECK_FALSE(second.ok());
    CHECK(second.failure.code == 451);
    CHECK(second.failure.enhanced == "4.4.5");
}

TEST_CASE("a greeting refused by the smart host comes back as the acquire failure") {
    // The sink allows one connection: the second pool (another shard) is
    // greeted with 421, which must reach the client as a 4yz that keeps its
    // session (451), not as 421.
    sink_process sink({.extra = {"--max-connections", "1"}});
    outbound::acquire_outcome second;
    {
        harness h(sink);
        outbound::pool other(*h.r, {});
        outbound::lease held;
        h.p->acquire(h.dest, [&](outbound::acquire_outcome a) {
            REQUIRE(a.ok());
            held = std::move(a.channel);
            other.acquire(h.dest, [&](outbound::acquire_outcome b) {
                second = std::move(b);
                held.release(true);
                h.done();
            });
        });
        h.run();
    }
    CHECK_FALSE(second.ok());
    CHECK(second.failure.code == 451);
    CHECK(second.failure.enhanced[0] == '4');
}

TEST_CASE("shutdown QUITs idle connections and refuses new acquires") {
    sink_process sink({});
    outbound::acquire_outcome after;
    outbound::pool_stats st;
    {
        harness h(sink);
        h.deliver(message, [&](delivery&) {
            h.p->shutdown();
            h.p->acquire(h.dest, [&](outbound::acquire_outcome o) {
                after = std::move(o);
                h.r->after(200ms, [&] { h.done(); });
            });
        });
        h.run();
        st = h.p->stats();
    }
    CHECK_FALSE(after.ok());
    CHECK(after.failure.code == 451);
    CHECK(after.failure.enhanced == "4.3.2");
    CHECK(st.open == 0);
    CHECK(sink.counter("connections") == 1);
}

TEST_CASE("an idle connection the smart host closed leaves the idle list and frees its slot") {
    // One slot: were it still held by the dead connection, the next acquire
    // would wait and get 451 4.4.5 instead of a new connection.
    sink_process sink({.extra = {"--command-timeout", "1"}});
    outbound::pool_options o;
    o.max_connections = 1;
    o.acquire_timeout = 500ms;
    outbound::pool_stats before, mid;
    delivery first, second;
    {
        harness h(sink, o);
        h.deliver(message, [&](delivery& d) {
            first = d;
            h.r->after(50ms, [&] { before = h.p->stats(); });
            h.r->after(1600ms, [&] {
                mid = h.p->stats();
                h.deliver(message, [&](delivery& d2) {
                    second = d2;
                    h.done();
                });
            });
        });
        h.run();
    }
    CHECK(before.idle == 1);
    CHECK(before.open == 1);
    CHECK(mid.dropped_idle == 1);
    CHECK(mid.idle == 0);
    CHECK(mid.open == 0);
    REQUIRE_MESSAGE(second.acquired, second.detail);
    CHECK(second.data_code() == 250);
    CHECK_FALSE(second.reused);
    CHECK(second.connection != first.connection);
}

TEST_CASE("a changed destination retires its connections: idle ones now, leased ones on release") {
    sink_process sink({});
    outbound::lease held;
    delivery changed, again;
    outbound::pool_stats mid, end;
    {
        harness h(sink);
        // Two connections: one stays leased, one goes back idle.
        h.p->acquire(h.dest, [&](outbound::acquire_outcome a) {
            REQUIRE(a.ok());
            held = std::move(a.channel);
            h.deliver(message, [&](delivery&) {
                // The tenant's TLS name changed (a reload): same smart host,
                // a new generation of connections.
                h.dest.tls_domain = "127.0.0.1";
                h.deliver(message, [&](delivery& d) {
                    changed = d;
                    held.release(true);  // made for the old destination: QUIT, not idle
                    h.r->after(200ms, [&] {
                        mid = h.p->stats();
                        h.deliver(message, [&](delivery& d2) {
                            again = d2;
                            h.done();
                        });
                    });
                });
            });
        });
        h.run();
        end = h.p->stats();
    }
    CHECK(changed.data_code() == 250);
    CHECK_FALSE(changed.reused);  // the idle one was retired, not handed out
    CHECK(mid.idle == 1);         // only the new connection is kept
    CHECK(mid.open == 1);
    CHECK(mid.resets == 0);
    CHECK(again.data_code() == 250);
    CHECK(again.reused);
    CHECK(again.connection == changed.connection);
    CHECK(end.connects == 3);
    CHECK(sink.counter("connections") == 3);
}
