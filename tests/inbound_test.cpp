// inbound: the shared per-IP connection table and the server flags.
#include <doctest/doctest.h>

#include <sigrelay/inbound.hpp>

#include <memory>
#include <thread>
#include <vector>

using namespace sigrelay;

namespace {
runtime::socket_address addr(const char* s) {
    auto a = runtime::socket_address::parse(s);
    REQUIRE(a.ok());
    return *a;
}
}  // namespace

TEST_CASE("ip_table counts per address, not per port, and enforces the limit") {
    auto table = std::make_unique<inbound::ip_table>();
    auto a1 = addr("192.0.2.1:1000"), a2 = addr("192.0.2.1:2000"), b = addr("198.51.100.7:1000");
    CHECK(table->try_acquire(a1, 2));
    CHECK(table->try_acquire(a2, 2));
    CHECK_FALSE(table->try_acquire(a1, 2));
    CHECK(table->count(a1) == 2);
    CHECK(table->try_acquire(b, 2));
    table->release(a1);
    CHECK(table->try_acquire(a2, 2));
    CHECK(table->try_acquire(a2, 0));  // 0: no limit, still counted
    CHECK(table->count(a2) == 3);
}

TEST_CASE("ip_table: IPv4-mapped IPv6 peers share the IPv4 address's slot") {
    auto table = std::make_unique<inbound::ip_table>();
    CHECK(table->try_acquire(addr("192.0.2.9:1"), 1));
    CHECK_FALSE(table->try_acquire(addr("[::ffff:192.0.2.9]:2"), 1));
}

TEST_CASE("ip_table is consistent under concurrent shards") {
    auto table = std::make_unique<inbound::ip_table>();
    auto a = addr("203.0.113.5:25");
    std::vector<std::thread> threads;
    std::atomic<int> granted{0};
    for (int t = 0; t < 4; ++t)
        threads.emplace_back([&] {
            for (int i = 0; i < 10000; ++i)
                if (table->try_acquire(a, 100)) {
                    ++granted;
                    table->release(a);
                }
        });
    for (auto& t : threads) t.join();
    CHECK(granted.load() == 40000);
    CHECK(table->count(a) == 0);
}

TEST_CASE("server_flags: defaults, overrides and errors") {
    inbound::server_flags f;
    f.default_allow = {"127.0.0.0/8", "40.107.0.0/16"};
    inbound::server_options o;
    REQUIRE(f.apply(o).ok());
    CHECK(o.allow.size() == 2);
    CHECK(o.smtp.bare_newline == smtp::bare_newline_policy::reject);
    CHECK(o.command_timeout == std::chrono::seconds(300));

    f.allow_cidr = {"10.0.0.0/8"};
    f.bare_newline = "normalize";
    f.max_connections_per_ip = 7;
    f.chunking = false;
    REQUIRE(f.apply(o).ok());
    CHECK(o.allow.size() == 1);
    CHECK(o.allow[0].contains(addr("10.1.2.3:4")));
    CHECK(o.smtp.bare_newline == smtp::bare_newline_policy::normalize);
    CHECK(o.max_connections_per_ip == 7);
    CHECK_FALSE(o.smtp.chunking);

    f.bare_newline = "pass";
    CHECK_FALSE(f.apply(o).ok());
    f.bare_newline = "reject";
    f.allow_cidr = {"10.0.0.0/33"};
    auto r = f.apply(o);
    REQUIRE_FALSE(r.ok());
    CHECK(r.err().message.find("10.0.0.0/33") != std::string::npos);
}

TEST_CASE("server_flags: parsed from a command line") {
    inbound::server_flags f;
    cli::parser p("t", "test");
    f.add_to(p);
    const char* argv[] = {"t", "--allow-cidr", "192.0.2.0/24", "--allow-cidr=::1", "--min-data-rate", "500",
                          "--no-chunking", "--max-message-size", "1048576"};
    REQUIRE(p.parse(9, const_cast<char**>(argv)).ok());
    CHECK(f.allow_cidr.size() == 2);
    CHECK(f.min_data_rate == 500);
    CHECK_FALSE(f.chunking);
    CHECK(f.max_message_size == 1048576);
    const char* bad[] = {"t", "--max-connections", "many"};
    CHECK_FALSE(p.parse(3, const_cast<char**>(bad)).ok());
    // A boolean takes true/false words; "--chunking=0" is off, not a silent "on".
    const char* off[] = {"t", "--chunking=0"};
    f.chunking = true;
    REQUIRE(p.parse(2, const_cast<char**>(off)).ok());
    CHECK_FALSE(f.chunking);
    const char* on[] = {"t", "--chunking=yes"};
    REQUIRE(p.parse(2, const_cast<char**>(on)).ok());
    CHECK(f.chunking);
    const char* junk[] = {"t", "--chunking=maybe"};
    auto r = p.parse(2, const_cast<char**>(junk));
    REQUIRE_FALSE(r.ok());
    CHECK(r.err().message.find("--chunking") != std::string::npos);
}
