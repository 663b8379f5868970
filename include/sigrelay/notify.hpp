// Notifications to the service manager (systemd's sd_notify protocol): ready,
// reloading, stopping, status lines and watchdog keep-alives. Every call is a
// no-op when NOTIFY_SOCKET is unset (not started by systemd with Type=notify),
// and a failure to send is ignored: the relay serves mail either way.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace sigrelay::notify {

// READY=1 and STATUS=: start-up finished, or a reload ended (applied or refused).
void ready(std::string_view status);
// RELOADING=1, MONOTONIC_USEC=<now, CLOCK_MONOTONIC> and STATUS= (systemd 253's
// Type=notify-reload wants the timestamp; older versions ignore it). READY=1 ends it.
void reloading(std::string_view status);
// STOPPING=1 and STATUS=: the drain has begun.
void stopping(std::string_view status);
// STATUS= alone (systemctl status shows the latest one).
void status(std::string_view status);
// WATCHDOG=1: the relay is alive. Send only after checking that it is.
void watchdog();

// The watchdog interval systemd expects keep-alives within (WatchdogSec=, via
// WATCHDOG_USEC when WATCHDOG_PID is unset or this process), or zero: none.
std::chrono::microseconds watchdog_interval();

// The datagram texts the functions above send (exposed for tests). A status
// is one line: newlines and other control characters become spaces.
std::string ready_message(std::string_view status);
std::string reloading_message(std::chrono::microseconds monotonic_now, std::string_view status);
std::string stopping_message(std::string_view status);
std::string status_message(std::string_view status);

// What STATUS= says while the relay serves:
// "12 connections, 3,456 messages relayed (3,400 signed), 0 deferred".
struct counts {
    std::uint64_t connections = 0;      // open now
    std::uint64_t relayed = 0;          // accepted by a smart host
    std::uint64_t signed_messages = 0;  // of those, signed
    std::uint64_t deferred = 0;         // 4xx from a smart host, or none reachable
};
std::string counts_text(const counts& c);
// 3456 → "3,456".
std::string thousands(std::uint64_t n);

}  // namespace sigrelay::notify
