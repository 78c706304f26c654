#ifndef COPENSSL_SHIM_H
#define COPENSSL_SHIM_H
// The OpenSSL libmosquitto already links (Debian's libssl3): TLS for Ditto's WebSocket binding (wss://).
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <errno.h>
#include <stdint.h>
#include <sys/socket.h>

// Macros Swift cannot import.
static inline long copenssl_set_tlsext_host_name(SSL *ssl, const char *name) {
    return SSL_set_tlsext_host_name(ssl, name);
}
static inline int copenssl_set_min_proto_version(SSL_CTX *ctx, int version) {
    return (int)SSL_CTX_set_min_proto_version(ctx, version);
}
// A client SSL for a non-blocking socket: SSL_write may take part of the bytes and be retried from another
// address (the caller's buffer moves as it grows); a peer's EOF without close_notify reads as a close (the
// WebSocket close handshake, not TLS, says whether the stream ended cleanly).
static inline void copenssl_set_nonblocking_client_modes(SSL *ssl) {
    SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_set_options(ssl, SSL_OP_IGNORE_UNEXPECTED_EOF);
}

// A socket BIO that writes with send(MSG_NOSIGNAL): OpenSSL's own socket BIO uses write(2), and a peer that
// has gone away would raise SIGPIPE, whose default action ends the process. The descriptor is the BIO's data.
static inline int copenssl_nosigpipe_write(BIO *bio, const char *data, int length) {
    BIO_clear_retry_flags(bio);
    ssize_t written;
    do {
        written = send((int)(intptr_t)BIO_get_data(bio), data, (size_t)length, MSG_NOSIGNAL);
    } while (written < 0 && errno == EINTR);
    if (written < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) BIO_set_retry_write(bio);
    return (int)written;
}
static inline int copenssl_nosigpipe_read(BIO *bio, char *data, int length) {
    BIO_clear_retry_flags(bio);
    ssize_t count;
    do {
        count = recv((int)(intptr_t)BIO_get_data(bio), data, (size_t)length, 0);
    } while (count < 0 && errno == EINTR);
    if (count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) BIO_set_retry_read(bio);
    return (int)count;
}
static inline long copenssl_nosigpipe_ctrl(BIO *bio, int command, long number, void *pointer) {
    (void)bio; (void)number; (void)pointer;
    return command == BIO_CTRL_FLUSH ? 1 : 0;
}
static inline int copenssl_nosigpipe_create(BIO *bio) {
    BIO_set_init(bio, 1);
    return 1;
}
/// A new method for such BIOs; the caller frees it with BIO_meth_free after the last BIO using it.
static inline BIO_METHOD *copenssl_nosigpipe_method_new(void) {
    BIO_METHOD *method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "socket without SIGPIPE");
    if (method == NULL) return NULL;
    BIO_meth_set_write(method, copenssl_nosigpipe_write);
    BIO_meth_set_read(method, copenssl_nosigpipe_read);
    BIO_meth_set_ctrl(method, copenssl_nosigpipe_ctrl);
    BIO_meth_set_create(method, copenssl_nosigpipe_create);
    return method;
}
/// A BIO of `method` on socket `fd` (which it never closes).
static inline BIO *copenssl_nosigpipe_bio_new(BIO_METHOD *method, int fd) {
    BIO *bio = BIO_new(method);
    if (bio != NULL) BIO_set_data(bio, (void *)(intptr_t)fd);
    return bio;
}
#endif
