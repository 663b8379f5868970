// The Received: trace field sigrelay adds (RFC 5321 §4.4, RFC 5322 §3.6.7).
// Everything a peer controls is sanitised, so the field can hold no CR, LF or
// NUL except in the folds this file writes.
#include <sigrelay/tenants.hpp>

#include <ctime>

namespace sigrelay::tenants {

namespace {

// Keeps printable ASCII that cannot break the field's syntax (comments,
// angle brackets, the ';' before the date); everything else becomes '_'.
std::string clean(std::string_view s, std::size_t max) {
    if (s.size() > max) s = s.substr(0, max);
    std::string out;
    out.reserve(s.size());
    for (char ch : s) {
        auto c = static_cast<unsigned char>(ch);
        bool keep = c > 0x20 && c < 0x7f && c != '(' && c != ')' && c != '<' && c != '>' &&
                    c != ';' && c != '\\' && c != '"' && c != ',';
        out += keep ? ch : '_';
    }
    return out;
}

std::string clean_word(std::string_view s, std::size_t max) {
    std::string out;
    for (char c : s.substr(0, std::min(s.size(), max)))
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) out += c;
    return out;
}

}  // namespace

std::string rfc5322_date(std::time_t when) {
    std::tm tm{};
    gmtime_r(&when, &tm);
    static constexpr const char* days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static constexpr const char* months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                             "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    char buf[64];
    std::snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday % 7],
                  tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
                  tm.tm_sec);
    return buf;
}

std::string received_header(const received_fields& f) {
    std::string helo = clean(f.helo, 255);
    std::string rdns = clean(f.reverse_dns, 255);
    std::string ip = clean(f.ip, 64);
    std::string host = clean(f.by_host, 255);
    std::string proto = clean_word(f.protocol, 16);
    std::string id = clean_word(f.queue_id, 64);
    std::string rcpt = clean(f.recipient, 256);

    std::string out = "Received: from ";
    out += helo.empty() ? "unknown" : helo;
    out += " (";
    if (!rdns.empty()) out += rdns + " ";
    out += "[" + (ip.empty() ? std::string("unknown") : ip) + "])";
    out += "\r\n\tby " + (host.empty() ? std::string("localhost") : host) + " (sigrelay) with " +
           (proto.empty() ? std::string("ESMTP") : proto);
    if (!id.empty()) out += " id " + id;
    if (!rcpt.empty()) out += "\r\n\tfor <" + rcpt + ">";
    out += ";\r\n\t" + rfc5322_date(f.when);
    return out;
}

}  // namespace sigrelay::tenants
