/*
 * HMAC-SHA1 for libsrtp2 without a heap allocation per packet (toolchain/libsrtp2.sh puts
 * this file in place of libsrtp2's crypto/hash/hmac_ossl.c; videophone project).
 *
 * Why: on OpenSSL 3, libsrtp2's EVP_MAC back end restarts the MAC for every packet, and
 * each restart duplicates the provider's digest context on the heap (malloc + free per
 * packet protected or unprotected with AES_CM_128_HMAC_SHA1_80/32). HMAC (RFC 2104) only
 * needs two digest states fixed by the key: SHA1(K ^ ipad) and SHA1(K ^ opad). They are
 * computed once per key and copied (a plain struct copy) at the start of each message.
 * SHA1_* are OpenSSL's low-level digest (deprecated in 3.0 in favour of EVP, still
 * exported, and the same assembly block function EVP uses).
 */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif

#define OPENSSL_SUPPRESS_DEPRECATED 1
#include <openssl/sha.h>
#include <string.h>

#include "auth.h"
#include "alloc.h"
#include "err.h"
#include "auth_test_cases.h"

#define VP_SHA1_DIGEST 20
#define VP_SHA1_BLOCK 64

srtp_debug_module_t srtp_mod_hmac = {
    0,                       /* debugging is off by default */
    "hmac sha-1 prehashed"   /* printable name for module */
};

typedef struct {
    SHA_CTX inner_start; /* SHA1 after K ^ ipad: where every message's inner hash begins */
    SHA_CTX outer_start; /* SHA1 after K ^ opad */
    SHA_CTX running;     /* the current message's inner hash */
} vp_hmac_state_t;

extern const srtp_auth_type_t srtp_hmac;

static srtp_err_status_t vp_hmac_alloc(srtp_auth_t **a, int key_len, int out_len)
{
    if (out_len > VP_SHA1_DIGEST || key_len < 0 || key_len > VP_SHA1_BLOCK) {
        return srtp_err_status_bad_param;
    }
    *a = (srtp_auth_t *)srtp_crypto_alloc(sizeof(srtp_auth_t) + sizeof(vp_hmac_state_t));
    if (*a == NULL) {
        return srtp_err_status_alloc_fail;
    }
    (*a)->state = (uint8_t *)(*a) + sizeof(srtp_auth_t);
    (*a)->type = &srtp_hmac;
    (*a)->out_len = out_len;
    (*a)->key_len = key_len;
    (*a)->prefix_len = 0;
    return srtp_err_status_ok;
}

static srtp_err_status_t vp_hmac_dealloc(srtp_auth_t *a)
{
    /* Key-derived state: wipe it with the object (srtp_crypto_free does not). */
    octet_string_set_to_zero(a, sizeof(srtp_auth_t) + sizeof(vp_hmac_state_t));
    srtp_crypto_free(a);
    return srtp_err_status_ok;
}

static srtp_err_status_t vp_hmac_init(void *statev, const uint8_t *key, int key_len)
{
    vp_hmac_state_t *s = (vp_hmac_state_t *)statev;
    uint8_t pad[VP_SHA1_BLOCK];
    int i;

    /* SRTP keys are 20 bytes; a key longer than a block would be hashed first (RFC 2104),
     * which SRTP never needs: refuse it rather than get it subtly wrong. */
    if (key_len < 0 || key_len > VP_SHA1_BLOCK) {
        return srtp_err_status_bad_param;
    }
    for (i = 0; i < VP_SHA1_BLOCK; i++) {
        pad[i] = (uint8_t)((i < key_len ? key[i] : 0) ^ 0x36);
    }
    if (!SHA1_Init(&s->inner_start) || !SHA1_Update(&s->inner_start, pad, sizeof pad)) {
        return srtp_err_status_auth_fail;
    }
    for (i = 0; i < VP_SHA1_BLOCK; i++) {
        pad[i] = (uint8_t)((i < key_len ? key[i] : 0) ^ 0x5c);
    }
    if (!SHA1_Init(&s->outer_start) || !SHA1_Update(&s->outer_start, pad, sizeof pad)) {
        return srtp_err_status_auth_fail;
    }
    octet_string_set_to_zero(pad, sizeof pad);
    s->running = s->inner_start;
    return srtp_err_status_ok;
}

static srtp_err_status_t vp_hmac_start(void *statev)
{
    vp_hmac_state_t *s = (vp_hmac_state_t *)statev;
    s->running = s->inner_start;
    return srtp_err_status_ok;
}

static srtp_err_status_t vp_hmac_update(void *statev, const uint8_t *message, int msg_octets)
{
    vp_hmac_state_t *s = (vp_hmac_state_t *)statev;
    if (msg_octets < 0) {
        return srtp_err_status_bad_param;
    }
    if (!SHA1_Update(&s->running, message, (size_t)msg_octets)) {
        return srtp_err_status_auth_fail;
    }
    return srtp_err_status_ok;
}

static srtp_err_status_t vp_hmac_compute(void *statev, const uint8_t *message, int msg_octets,
                                         int tag_len, uint8_t *result)
{
    vp_hmac_state_t *s = (vp_hmac_state_t *)statev;
    uint8_t inner[VP_SHA1_DIGEST];
    uint8_t tag[VP_SHA1_DIGEST];
    SHA_CTX outer;

    if (tag_len < 0 || tag_len > VP_SHA1_DIGEST || msg_octets < 0) {
        return srtp_err_status_bad_param;
    }
    if (!SHA1_Update(&s->running, message, (size_t)msg_octets) || !SHA1_Final(inner, &s->running)) {
        return srtp_err_status_auth_fail;
    }
    outer = s->outer_start;
    if (!SHA1_Update(&outer, inner, sizeof inner) || !SHA1_Final(tag, &outer)) {
        return srtp_err_status_auth_fail;
    }
    memcpy(result, tag, (size_t)tag_len);
    octet_string_set_to_zero(inner, sizeof inner);
    octet_string_set_to_zero(&outer, sizeof outer);
    return srtp_err_status_ok;
}

static const char vp_hmac_description[] = "hmac sha-1 authentication function";

/* libsrtp2 finds the HMAC by this name (crypto_kernel.c) and self-tests it with the same
 * RFC 2202 case as its own implementations. */
const srtp_auth_type_t srtp_hmac = {
    vp_hmac_alloc,
    vp_hmac_dealloc,
    vp_hmac_init,
    vp_hmac_compute,
    vp_hmac_update,
    vp_hmac_start,
    vp_hmac_description,
    &srtp_hmac_test_case_0,
    SRTP_HMAC_SHA1
};
