// The engine's BIO: BoringSSL reads ciphertext straight from the bytes the
// socket delivered and writes records straight into the buffer the reactor
// sends. A memory BIO would copy both ways and zero each buffer it grows
// (about a tenth of the relay's CPU at 20 KiB messages); this one copies
// only a partial record left at the end of a feed.
#include "internal.hpp"

#include <openssl/bio.h>

#include <climits>
#include <cstring>

namespace sigrelay::tls::detail {

namespace {

int io_read(BIO* b, char* dst, int len) {
    BIO_clear_retry_flags(b);
    auto* d = static_cast<io_bio_data*>(BIO_get_data(b));
    if (len <= 0) return 0;
    std::size_t want = static_cast<std::size_t>(len), got = 0;
    const std::size_t kept = d->pending.size() - d->pending_off;
    if (kept > 0) {
        got = std::min(kept, want);
        std::memcpy(dst, d->pending.data() + d->pending_off, got);
        d->pending_off += got;
        if (d->pending_off == d->pending.size()) {
            d->pending.clear();
            d->pending_off = 0;
        }
    }
    if (got < want && d->in_left > 0) {
        const std::size_t n = std::min(d->in_left, want - got);
        std::memcpy(dst + got, d->in, n);
        d->in += n;
        d->in_left -= n;
        got += n;
    }
    if (got == 0) {
        BIO_set_retry_read(b);  // no more yet: WANT_READ, not the end of the stream
        return -1;
    }
    return static_cast<int>(got);
}

int io_write(BIO* b, const char* src, int len) {
    BIO_clear_retry_flags(b);
    if (len <= 0) return 0;
    static_cast<io_bio_data*>(BIO_get_data(b))->out.append(src, static_cast<std::size_t>(len));
    return len;
}

long io_ctrl(BIO* b, int cmd, long, void*) {
    auto* d = static_cast<io_bio_data*>(BIO_get_data(b));
    switch (cmd) {
        case BIO_CTRL_PENDING:
            return static_cast<long>(d->pending.size() - d->pending_off + d->in_left);
        case BIO_CTRL_WPENDING:
            return static_cast<long>(d->out.size());
        case BIO_CTRL_FLUSH:
            return 1;
        default:
            return 0;
    }
}

int io_create(BIO* b) {
    BIO_set_data(b, new io_bio_data);
    BIO_set_init(b, 1);
    return 1;
}

int io_destroy(BIO* b) {
    delete static_cast<io_bio_data*>(BIO_get_data(b));
    BIO_set_data(b, nullptr);
    return 1;
}

const BIO_METHOD* io_method() {
    static const BIO_METHOD* m = [] {
        BIO_METHOD* meth = BIO_meth_new(BIO_TYPE_SOURCE_SINK | BIO_get_new_index(), "sigrelay-io");
        if (meth == nullptr) return static_cast<BIO_METHOD*>(nullptr);
        BIO_meth_set_read(meth, io_read);
        BIO_meth_set_write(meth, io_write);
        BIO_meth_set_ctrl(meth, io_ctrl);
        BIO_meth_set_create(meth, io_create);
        BIO_meth_set_destroy(meth, io_destroy);
        return meth;
    }();
    return m;
}

}  // namespace

BIO* new_io_bio() {
    const BIO_METHOD* m = io_method();
    return m == nullptr ? nullptr : BIO_new(m);
}

io_bio_data* io_of(BIO* b) { return static_cast<io_bio_data*>(BIO_get_data(b)); }

void io_bio_data::keep_unread() {
    if (in_left == 0) return;
    if (pending_off > 0) {
        pending.erase(0, pending_off);
        pending_off = 0;
    }
    pending.append(in, in_left);
    in = nullptr;
    in_left = 0;
}

}  // namespace sigrelay::tls::detail
