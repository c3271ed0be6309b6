#ifndef COPENSSL_SHIM_H
#define COPENSSL_SHIM_H
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/pem.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/bio.h>
#include <openssl/ec.h>

/* OpenSSL macros that Swift does not import, as functions. */
static inline int copenssl_ctx_set_min_dtls12(SSL_CTX *ctx) { return (int)SSL_CTX_set_min_proto_version(ctx, DTLS1_2_VERSION); }
static inline int copenssl_ctx_set_groups(SSL_CTX *ctx, const char *list) { return (int)SSL_CTX_set1_groups_list(ctx, list); }
static inline void copenssl_ctx_set_options(SSL_CTX *ctx, unsigned long opts) { SSL_CTX_set_options(ctx, opts); }
static inline unsigned long copenssl_op_no_query_mtu(void) { return SSL_OP_NO_QUERY_MTU; }
static inline unsigned long copenssl_op_no_ticket(void) { return SSL_OP_NO_TICKET; }
static inline int copenssl_set_mtu(SSL *ssl, long mtu) { return (int)SSL_set_mtu(ssl, mtu); }
static inline void copenssl_free(void *p) { OPENSSL_free(p); }
static inline EVP_PKEY *copenssl_ec_p256_generate(void) { return EVP_EC_gen("P-256"); }
static inline X509 *copenssl_get_peer_certificate(const SSL *s) { return SSL_get1_peer_certificate(s); }
static inline int copenssl_dtls_get_timeout(SSL *s, struct timeval *tv) { return (int)DTLSv1_get_timeout(s, tv); }
static inline int copenssl_dtls_handle_timeout(SSL *s) { return (int)DTLSv1_handle_timeout(s); }
static inline long copenssl_bio_pending(BIO *b) { return (long)BIO_ctrl_pending(b); }
static inline int copenssl_bio_set_mem_eof_return(BIO *b, int v) { return (int)BIO_set_mem_eof_return(b, v); }
static inline ASN1_TIME *copenssl_x509_not_before(X509 *x) { return X509_getm_notBefore(x); }
static inline ASN1_TIME *copenssl_x509_not_after(X509 *x) { return X509_getm_notAfter(x); }
#endif
