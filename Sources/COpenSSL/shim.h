#ifndef COPENSSL_SHIM_H
#define COPENSSL_SHIM_H
// The OpenSSL libmosquitto already links (Debian's libssl3): TLS for Ditto's WebSocket binding (wss://).
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

// Macros Swift cannot import.
static inline long copenssl_set_tlsext_host_name(SSL *ssl, const char *name) {
    return SSL_set_tlsext_host_name(ssl, name);
}
static inline int copenssl_set_min_proto_version(SSL_CTX *ctx, int version) {
    return (int)SSL_CTX_set_min_proto_version(ctx, version);
}
#endif
