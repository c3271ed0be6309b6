/*
 * Build-time check of hmac_sha1_prehashed.c (run by toolchain/libsrtp2.sh on native
 * builds): libsrtp2's own self-tests (RFC 2202 case), then the HMAC through libsrtp2's auth
 * interface against OpenSSL's HMAC() on random keys and messages split at random points,
 * restarted with the same key as SRTP does per packet. Exit status 0 when all agree.
 */
#define OPENSSL_SUPPRESS_DEPRECATED 1
#include <openssl/hmac.h>
#include <srtp2/srtp.h>
#include <srtp2/auth.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

srtp_err_status_t srtp_crypto_kernel_alloc_auth(srtp_auth_type_id_t id, srtp_auth_pointer_t *ap,
                                                int key_len, int out_len);
srtp_err_status_t srtp_crypto_kernel_status(void);

int main(void)
{
    srtp_auth_t *a;
    unsigned char key[20], msg[3000], ours[20], theirs[20];
    unsigned int len;
    int round, i;

    if (srtp_init() != srtp_err_status_ok || srtp_crypto_kernel_status() != srtp_err_status_ok) {
        fprintf(stderr, "hmac_check: libsrtp2's self-tests failed\n");
        return 1;
    }
    if (srtp_crypto_kernel_alloc_auth(SRTP_HMAC_SHA1, &a, 20, 20) != srtp_err_status_ok) {
        fprintf(stderr, "hmac_check: no HMAC-SHA1 in libsrtp2\n");
        return 1;
    }
    srand(7);
    for (round = 0; round < 2000; round++) {
        int n = rand() % (int)sizeof msg, split = rand() % (n + 1);
        for (i = 0; i < 20; i++) key[i] = (unsigned char)rand();
        for (i = 0; i < n; i++) msg[i] = (unsigned char)rand();
        HMAC(EVP_sha1(), key, 20, msg, (size_t)n, theirs, &len);
        a->type->init(a->state, key, 20);
        a->type->start(a->state);
        a->type->update(a->state, msg, split);
        a->type->compute(a->state, msg + split, n - split, 20, ours);
        if (memcmp(ours, theirs, 20) != 0) {
            fprintf(stderr, "hmac_check: differs from OpenSSL's HMAC (round %d, %d bytes)\n", round, n);
            return 1;
        }
        /* Restarted with the same key, as for every packet, and truncated as SRTP's
         * 80- and 32-bit tags are. */
        memset(ours, 0, sizeof ours);
        a->type->start(a->state);
        a->type->compute(a->state, msg, n, round % 2 ? 10 : 4, ours);
        if (memcmp(ours, theirs, round % 2 ? 10 : 4) != 0 || ours[round % 2 ? 10 : 4] != 0) {
            fprintf(stderr, "hmac_check: differs after a restart (round %d)\n", round);
            return 1;
        }
    }
    a->type->dealloc(a);
    return 0;
}
