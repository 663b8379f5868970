// The log writer of each thread: lines are gathered in a buffer of the
// thread's own and written with plain write(2) calls, never through stdio's
// lock, which every shard would otherwise take for each line. A shard's
// reactor flushes before it waits for events, so a line is out within one
// turn of its loop.
#include <sigrelay/runtime.hpp>

#include <unistd.h>

#include <cerrno>
#include <string>

namespace sigrelay::runtime {

namespace {

// At most this much per write(2): writes to a pipe up to PIPE_BUF are atomic
// (POSIX), so lines of different shards never interleave mid-line.
constexpr std::size_t write_unit = 4096;
constexpr std::size_t flush_at = 16 * 1024;

struct writer {
    std::string buf;
    ~writer() { flush(); }
    void flush() {
        std::size_t at = 0;
        while (at < buf.size()) {
            std::size_t n = buf.size() - at;
            if (n > write_unit) {
                // End the write at a line end, unless one line is longer.
                std::size_t cut = buf.rfind('\n', at + write_unit - 1);
                n = (cut == std::string::npos || cut < at) ? write_unit : cut + 1 - at;
            }
            ssize_t w = ::write(STDERR_FILENO, buf.data() + at, n);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) break;  // nowhere to write: drop rather than block the shard
            at += static_cast<std::size_t>(w);
        }
        buf.clear();
        if (buf.capacity() > 4 * flush_at) std::string().swap(buf);
    }
};

writer& mine() {
    thread_local writer w;
    return w;
}

}  // namespace

void log_line(std::string_view line) {
    writer& w = mine();
    w.buf.append(line);
    w.buf.push_back('\n');
    if (w.buf.size() >= flush_at) w.flush();
}

void flush_log() {
    mine().flush();
}

}  // namespace sigrelay::runtime
