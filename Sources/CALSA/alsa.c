/* libasound through dlopen (see vp_loader.h): the functions ALSA.swift calls. */
#include <stddef.h>
#include "vp_loader.h"
#include "shim.h"

#define ALSA_FUNCTIONS(F, V) \
    F(int, snd_pcm_open, (snd_pcm_t **pcm, const char *name, snd_pcm_stream_t stream, int mode), (pcm, name, stream, mode)) \
    F(int, snd_pcm_close, (snd_pcm_t *pcm), (pcm)) \
    F(int, snd_pcm_delay, (snd_pcm_t *pcm, snd_pcm_sframes_t *delayp), (pcm, delayp)) \
    F(int, snd_pcm_drop, (snd_pcm_t *pcm), (pcm)) \
    F(int, snd_pcm_start, (snd_pcm_t *pcm), (pcm)) \
    F(int, snd_pcm_recover, (snd_pcm_t *pcm, int err, int silent), (pcm, err, silent)) \
    F(snd_pcm_sframes_t, snd_pcm_readi, (snd_pcm_t *pcm, void *buffer, snd_pcm_uframes_t size), (pcm, buffer, size)) \
    F(snd_pcm_sframes_t, snd_pcm_writei, (snd_pcm_t *pcm, const void *buffer, snd_pcm_uframes_t size), (pcm, buffer, size)) \
    F(int, snd_pcm_hw_params, (snd_pcm_t *pcm, snd_pcm_hw_params_t *params), (pcm, params)) \
    F(int, snd_pcm_hw_params_any, (snd_pcm_t *pcm, snd_pcm_hw_params_t *params), (pcm, params)) \
    F(int, snd_pcm_hw_params_malloc, (snd_pcm_hw_params_t **ptr), (ptr)) \
    V(void, snd_pcm_hw_params_free, (snd_pcm_hw_params_t *obj), (obj)) \
    F(int, snd_pcm_hw_params_set_access, (snd_pcm_t *pcm, snd_pcm_hw_params_t *params, snd_pcm_access_t access), (pcm, params, access)) \
    F(int, snd_pcm_hw_params_set_format, (snd_pcm_t *pcm, snd_pcm_hw_params_t *params, snd_pcm_format_t val), (pcm, params, val)) \
    F(int, snd_pcm_hw_params_set_channels, (snd_pcm_t *pcm, snd_pcm_hw_params_t *params, unsigned int val), (pcm, params, val)) \
    F(int, snd_pcm_hw_params_set_rate_near, (snd_pcm_t *pcm, snd_pcm_hw_params_t *params, unsigned int *val, int *dir), (pcm, params, val, dir)) \
    F(int, snd_pcm_hw_params_set_period_size_near, (snd_pcm_t *pcm, snd_pcm_hw_params_t *params, snd_pcm_uframes_t *val, int *dir), (pcm, params, val, dir)) \
    F(int, snd_pcm_hw_params_set_buffer_size_near, (snd_pcm_t *pcm, snd_pcm_hw_params_t *params, snd_pcm_uframes_t *val), (pcm, params, val)) \
    F(int, snd_pcm_sw_params, (snd_pcm_t *pcm, snd_pcm_sw_params_t *params), (pcm, params)) \
    F(int, snd_pcm_sw_params_current, (snd_pcm_t *pcm, snd_pcm_sw_params_t *params), (pcm, params)) \
    F(int, snd_pcm_sw_params_malloc, (snd_pcm_sw_params_t **ptr), (ptr)) \
    V(void, snd_pcm_sw_params_free, (snd_pcm_sw_params_t *obj), (obj)) \
    F(int, snd_pcm_sw_params_set_start_threshold, (snd_pcm_t *pcm, snd_pcm_sw_params_t *params, snd_pcm_uframes_t val), (pcm, params, val)) \
    F(const char *, snd_strerror, (int errnum), (errnum))

VP_LIBRARY(alsa, "ASOUND", "libasound.so.2", "libasound2, libasound2t64 on Debian 13", ALSA_FUNCTIONS)

#define ALSA_F(...) VP_LIB_TRAMPOLINE(alsa, __VA_ARGS__)
#define ALSA_V(...) VP_LIB_TRAMPOLINE_VOID(alsa, __VA_ARGS__)
ALSA_FUNCTIONS(ALSA_F, ALSA_V)

int calsa_load(char *err, size_t err_len) { return vp_library_load(&alsa, err, err_len); }
const char *calsa_soname(void) { return vp_library_soname(&alsa); }
