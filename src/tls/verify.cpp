// Certificate names and verification: what a peer certificate calls itself,
// the client-certificate name rule (-TlsSenderCertificateName), error texts.
#include "internal.hpp"

#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>

namespace sigrelay::tls::detail {

namespace {

// Peer-supplied names end up in logs and trace headers: keep them short and
// free of control characters (a dNSName has no spaces either).
constexpr std::size_t max_name_length = 255;

bool printable_name(std::string_view s) {
    if (s.empty() || s.size() > max_name_length) return false;
    return std::all_of(s.begin(), s.end(), [](char c) { return c > 0x20 && c < 0x7f; });
}

std::string_view without_trailing_dot(std::string_view s) {
    if (!s.empty() && s.back() == '.') s.remove_suffix(1);
    return s;
}

bool iequal(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        if (std::tolower(static_cast<unsigned char>(a[i])) !=
            std::tolower(static_cast<unsigned char>(b[i])))
            return false;
    }
    return true;
}

std::string common_name(X509* cert) {
    X509_NAME* subject = X509_get_subject_name(cert);
    if (subject == nullptr) return {};
    int idx = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
    if (idx < 0) return {};
    ASN1_STRING* data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, idx));
    unsigned char* utf8 = nullptr;
    int len = ASN1_STRING_to_UTF8(&utf8, data);
    if (len < 0) return {};
    std::string cn(reinterpret_cast<const char*>(utf8), static_cast<std::size_t>(len));
    OPENSSL_free(utf8);
    if (cn.size() > max_name_length) cn.resize(max_name_length);
    for (char& c : cn) {
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
    }
    return cn;
}

}  // namespace

cert_names names_of(X509* cert) {
    cert_names out;
    if (cert == nullptr) return out;
    out.cn = common_name(cert);
    auto* sans =
        static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
    if (sans == nullptr) return out;
    for (std::size_t i = 0; i < sk_GENERAL_NAME_num(sans); ++i) {
        const GENERAL_NAME* gn = sk_GENERAL_NAME_value(sans, i);
        if (gn->type != GEN_DNS) continue;
        std::string_view name(reinterpret_cast<const char*>(ASN1_STRING_get0_data(gn->d.dNSName)),
                              static_cast<std::size_t>(ASN1_STRING_length(gn->d.dNSName)));
        // An embedded NUL or control character makes the name unusable, not
        // truncated: "good.example\0.evil" must never match "good.example".
        if (printable_name(name)) out.dns.emplace_back(name);
    }
    GENERAL_NAMES_free(sans);
    return out;
}

bool name_matches(const cert_names& names, std::string_view wanted) {
    wanted = without_trailing_dot(wanted);
    if (wanted.empty()) return false;
    // RFC 6125 §6.4.4: the CN counts only when there is no dNSName.
    if (names.dns.empty()) return iequal(without_trailing_dot(names.cn), wanted);
    return std::any_of(names.dns.begin(), names.dns.end(), [&](const std::string& n) {
        return iequal(without_trailing_dot(n), wanted);
    });
}

bool is_ip_literal(std::string_view s) {
    if (s.size() >= 2 && s.front() == '[' && s.back() == ']') s = s.substr(1, s.size() - 2);
    if (s.empty() || s.size() >= INET6_ADDRSTRLEN) return false;
    std::string z(s);
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, z.c_str(), buf) == 1 || inet_pton(AF_INET6, z.c_str(), buf) == 1;
}

int verify_client_name(int preverify_ok, X509_STORE_CTX* store) {
    if (!preverify_ok) return 0;
    // Called with ok=1 once per certificate of a chain that verified; only the
    // leaf (depth 0) carries the client's name.
    if (X509_STORE_CTX_get_error_depth(store) != 0) return 1;
    auto* ssl =
        static_cast<SSL*>(X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx()));
    if (ssl == nullptr) return 0;
    const ctx_data* data = get_ctx_data(SSL_get_SSL_CTX(ssl));
    if (data == nullptr || data->required_client_name.empty()) return 1;
    X509* leaf = X509_STORE_CTX_get_current_cert(store);
    if (leaf == nullptr || !name_matches(names_of(leaf), data->required_client_name)) {
        X509_STORE_CTX_set_error(store, X509_V_ERR_HOSTNAME_MISMATCH);
        return 0;
    }
    return 1;
}

std::string take_errors(std::string_view fallback) {
    uint32_t first = ERR_get_error();
    if (first == 0) return std::string(fallback);
    ERR_clear_error();
    std::string text;
    if (const char* reason = ERR_reason_error_string(first); reason != nullptr) {
        text = reason;  // "WRONG_VERSION_NUMBER" -> "wrong version number"
        for (char& c : text) {
            c = c == '_' ? ' ' : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        }
    } else {
        char buf[256];
        ERR_error_string_n(first, buf, sizeof buf);
        text = buf;
    }
    return text;
}

std::string verify_error_text(long code, std::string_view wanted) {
    if (code == X509_V_ERR_HOSTNAME_MISMATCH || code == X509_V_ERR_IP_ADDRESS_MISMATCH)
        return "name mismatch, wanted " + std::string(wanted);
    return X509_verify_cert_error_string(code);
}

}  // namespace sigrelay::tls::detail
