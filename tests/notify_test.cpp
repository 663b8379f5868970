// notify: the exact sd_notify datagrams, received on a socket of the test's
// own (as systemd's NOTIFY_SOCKET), the watchdog rules, and the STATUS= text.
#include <doctest/doctest.h>

#include <sigrelay/notify.hpp>

#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cstring>
#include <string>

using namespace sigrelay;

namespace {

// A datagram socket in a fresh temporary folder, named by NOTIFY_SOCKET while
// it lives.
class notify_socket {
public:
    notify_socket() {
        char tmpl[] = "/tmp/sigrelay-notify-XXXXXX";
        REQUIRE(mkdtemp(tmpl) != nullptr);
        dir_ = tmpl;
        path_ = dir_ + "/notify.sock";
        fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        REQUIRE(fd_ >= 0);
        sockaddr_un sa{};
        sa.sun_family = AF_UNIX;
        std::memcpy(sa.sun_path, path_.c_str(), path_.size() + 1);
        REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
        REQUIRE(setenv("NOTIFY_SOCKET", path_.c_str(), 1) == 0);
    }
    ~notify_socket() {
        unsetenv("NOTIFY_SOCKET");
        ::close(fd_);
        ::unlink(path_.c_str());
        ::rmdir(dir_.c_str());
    }

    // The next datagram, or "" when none arrives within `ms`.
    std::string next(int ms = 2000) {
        pollfd p{fd_, POLLIN, 0};
        if (::poll(&p, 1, ms) != 1) return "";
        char buf[4096];
        ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
        return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
    }

private:
    std::string dir_, path_;
    int fd_ = -1;
};

long long monotonic_usec() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<long long>(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
}

}  // namespace

TEST_CASE("ready, status, stopping and watchdog: the exact datagrams") {
    notify_socket s;
    notify::ready("listening on 127.0.0.1:25, 2 shards, 3 tenants");
    CHECK(s.next() == "READY=1\nSTATUS=listening on 127.0.0.1:25, 2 shards, 3 tenants");
    notify::status("12 connections");
    CHECK(s.next() == "STATUS=12 connections");
    notify::watchdog();
    CHECK(s.next() == "WATCHDOG=1");
    notify::stopping("draining");
    CHECK(s.next() == "STOPPING=1\nSTATUS=draining");
    CHECK(s.next(50).empty());
}

TEST_CASE("reloading carries MONOTONIC_USEC, now on CLOCK_MONOTONIC") {
    notify_socket s;
    const long long before = monotonic_usec();
    notify::reloading("reloading /etc/sigrelay/tenants.json");
    const long long after = monotonic_usec();
    const std::string got = s.next();
    const std::string head = "RELOADING=1\nMONOTONIC_USEC=";
    REQUIRE(got.rfind(head, 0) == 0);
    const std::size_t nl = got.find('\n', head.size());
    REQUIRE(nl != std::string::npos);
    const long long usec = std::stoll(got.substr(head.size(), nl - head.size()));
    CHECK(usec >= before);
    CHECK(usec <= after);
    CHECK(got.substr(nl) == "\nSTATUS=reloading /etc/sigrelay/tenants.json");
}

TEST_CASE("a status stays one line: control characters become spaces") {
    CHECK(notify::status_message("bad file\nREADY=1\tx") == "STATUS=bad file READY=1 x");
    CHECK(notify::ready_message("") == "READY=1\nSTATUS=");
    CHECK(notify::stopping_message("a\r\nb") == "STOPPING=1\nSTATUS=a  b");
    CHECK(notify::reloading_message(std::chrono::microseconds(42), "r") ==
          "RELOADING=1\nMONOTONIC_USEC=42\nSTATUS=r");
}

TEST_CASE("without NOTIFY_SOCKET every call is a no-op") {
    unsetenv("NOTIFY_SOCKET");
    notify::ready("x");
    notify::reloading("x");
    notify::status("x");
    notify::watchdog();
    notify::stopping("x");
    // And a socket that vanished is no error either.
    setenv("NOTIFY_SOCKET", "/nonexistent/sigrelay-notify.sock", 1);
    notify::ready("x");
    unsetenv("NOTIFY_SOCKET");
}

TEST_CASE("watchdog_interval: WATCHDOG_USEC, for this process or any when WATCHDOG_PID is unset") {
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
    CHECK(notify::watchdog_interval().count() == 0);
    setenv("WATCHDOG_USEC", "400000", 1);
    CHECK(notify::watchdog_interval().count() == 400000);
    setenv("WATCHDOG_PID", std::to_string(::getpid()).c_str(), 1);
    CHECK(notify::watchdog_interval().count() == 400000);
    // Meant for another process (a parent that forked us): not ours to keep alive.
    setenv("WATCHDOG_PID", std::to_string(::getpid() + 1).c_str(), 1);
    CHECK(notify::watchdog_interval().count() == 0);
    unsetenv("WATCHDOG_PID");
    setenv("WATCHDOG_USEC", "0", 1);
    CHECK(notify::watchdog_interval().count() == 0);
    setenv("WATCHDOG_USEC", "soon", 1);
    CHECK(notify::watchdog_interval().count() == 0);
    unsetenv("WATCHDOG_USEC");
}

TEST_CASE("counts: thousands separators and singulars") {
    CHECK(notify::thousands(0) == "0");
    CHECK(notify::thousands(999) == "999");
    CHECK(notify::thousands(1000) == "1,000");
    CHECK(notify::thousands(3456) == "3,456");
    CHECK(notify::thousands(1234567) == "1,234,567");
    CHECK(notify::thousands(18446744073709551615ull) == "18,446,744,073,709,551,615");
    CHECK(notify::counts_text({12, 3456, 3400, 0}) ==
          "12 connections, 3,456 messages relayed (3,400 signed), 0 deferred");
    CHECK(notify::counts_text({1, 1, 1, 1}) == "1 connection, 1 message relayed (1 signed), 1 deferred");
}
