// sd_notify(3) messages for systemd: ready, reloading, stopping, status and
// watchdog. libsystemd does the socket work (NOTIFY_SOCKET, abstract names,
// no-op when unset); this file only composes the assignments.
#include <sigrelay/notify.hpp>

#include <systemd/sd-daemon.h>
#include <time.h>

namespace sigrelay::notify {
namespace {

// A STATUS= value is one line of the newline-separated assignment list.
std::string one_line(std::string_view s) {
    std::string out(s);
    for (char& c : out) {
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
    }
    return out;
}

std::string with_status(std::string head, std::string_view status) {
    head += "STATUS=";
    head += one_line(status);
    return head;
}

void send(const std::string& message) {
    // unset_environment=0: children (none today) and later calls still see it.
    (void)sd_notify(0, message.c_str());
}

std::chrono::microseconds monotonic_now() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return std::chrono::seconds(ts.tv_sec) +
           std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::nanoseconds(ts.tv_nsec));
}

}  // namespace

std::string ready_message(std::string_view status) {
    return with_status("READY=1\n", status);
}

std::string reloading_message(std::chrono::microseconds now, std::string_view status) {
    return with_status("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(now.count()) + "\n", status);
}

std::string stopping_message(std::string_view status) {
    return with_status("STOPPING=1\n", status);
}

std::string status_message(std::string_view status) {
    return with_status("", status);
}

void ready(std::string_view status) {
    send(ready_message(status));
}

void reloading(std::string_view status) {
    send(reloading_message(monotonic_now(), status));
}

void stopping(std::string_view status) {
    send(stopping_message(status));
}

void status(std::string_view status) {
    send(status_message(status));
}

void watchdog() {
    send("WATCHDOG=1");
}

std::chrono::microseconds watchdog_interval() {
    std::uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) <= 0) return std::chrono::microseconds(0);
    return std::chrono::microseconds(usec);
}

std::string thousands(std::uint64_t n) {
    std::string digits = std::to_string(n);
    std::string out;
    out.reserve(digits.size() + digits.size() / 3);
    for (std::size_t i = 0; i < digits.size(); ++i) {
        if (i != 0 && (digits.size() - i) % 3 == 0) out += ',';
        out += digits[i];
    }
    return out;
}

std::string counts_text(const counts& c) {
    return thousands(c.connections) + (c.connections == 1 ? " connection, " : " connections, ") +
           thousands(c.relayed) + (c.relayed == 1 ? " message relayed (" : " messages relayed (") +
           thousands(c.signed_messages) + " signed), " + thousands(c.deferred) + " deferred";
}

}  // namespace sigrelay::notify
