// The command-line flags of an SMTP server, shared by sigrelay and the sink.
#include <sigrelay/inbound.hpp>

namespace sigrelay::inbound {

void server_flags::add_to(cli::parser& p) {
    p.add("--allow-cidr", &allow_cidr, "client ranges allowed (repeatable)" +
          std::string(default_allow.empty() ? "; default: everyone" : "; default: loopback + Exchange Online's ranges"));
    p.add("--max-connections", &max_connections, "connections per shard (0: no limit)");
    p.add("--max-connections-per-ip", &max_connections_per_ip, "connections per client address (0: no limit)");
    p.add("--command-timeout", &command_timeout, "seconds to wait for a command (default 300)");
    p.add("--data-timeout", &data_timeout, "seconds to wait for message data (default 600)");
    p.add("--min-data-rate", &min_data_rate, "bytes/s a client must keep up while sending content (0: off)");
    p.add("--max-message-size", &max_message_size, "SIZE limit in bytes (default 150 MiB)");
    p.add("--max-recipients", &max_recipients, "recipients per message (default 1000)");
    p.add("--bare-newline", &bare_newline, "reject|normalize bare CR/LF in DATA (default reject)");
    p.add_bool("--chunking", &chunking, "offer CHUNKING/BDAT (default on; --no-chunking)");
}

result<void> server_flags::apply(server_options& o) const {
    if (bare_newline == "normalize") o.smtp.bare_newline = smtp::bare_newline_policy::normalize;
    else if (bare_newline == "reject") o.smtp.bare_newline = smtp::bare_newline_policy::reject;
    else return make_error("--bare-newline must be reject or normalize");
    o.allow.clear();
    for (const auto& c : allow_cidr.empty() ? default_allow : allow_cidr) {
        auto range = runtime::cidr::parse(c);
        if (!range) return make_error("--allow-cidr " + c + ": " + range.err().message);
        o.allow.push_back(*range);
    }
    if (command_timeout == 0 || data_timeout == 0) return make_error("timeouts must be at least 1 second");
    o.max_connections = max_connections;
    o.max_connections_per_ip = max_connections_per_ip;
    o.command_timeout = std::chrono::seconds(command_timeout);
    o.data_timeout = std::chrono::seconds(data_timeout);
    o.min_data_rate = min_data_rate;
    o.smtp.max_message_size = max_message_size;
    o.smtp.max_recipients = max_recipients;
    o.smtp.chunking = chunking;
    return {};
}

void tls_flags::add_to(cli::parser& p, std::string_view cert_help) {
    p.add("--tls-cert", &cert, std::string(cert_help));
    p.add("--tls-key", &key, "private key (PEM) for --tls-cert");
    p.add("--require-client-cert", &require_client_cert,
          "refuse TLS unless the client certificate carries NAME (like -TlsSenderCertificateName)");
    p.add("--client-ca", &client_ca, "CA (PEM) the client certificate must chain to");
}

result<void> tls_flags::validate() const {
    if (cert.empty() != key.empty()) return make_error("--tls-cert and --tls-key go together");
    if (!require_client_cert.empty() && (client_ca.empty() || cert.empty()))
        return make_error("--require-client-cert needs --client-ca and --tls-cert/--tls-key");
    if (require_client_cert.empty() && !client_ca.empty())
        return make_error("--client-ca goes with --require-client-cert NAME");
    return {};
}

result<tls::context> tls_flags::make_context() const {
    tls::server_options to;
    to.cert_file = cert;
    to.key_file = key;
    to.client_ca_file = client_ca;
    to.required_client_name = require_client_cert;
    return tls::context::server(to);
}

}  // namespace sigrelay::inbound
