#ifndef CX264_SHIM_H
#define CX264_SHIM_H
#include <stdint.h>
#include <stddef.h>
#include <x264.h>

/* x264_encoder_open is a macro that names the ABI-versioned symbol. */
static inline x264_t *cx264_encoder_open(x264_param_t *param) {
    return x264_encoder_open(param);
}
#endif
