#ifndef VP_APM_H
#define VP_APM_H
/*
 * One small C API over webrtc-audio-processing 0.3 (Debian 12: the classic AEC, NS and
 * AGC1) and 1.x (Debian 13: AEC3, NS, AGC1/AGC2). The two are not source compatible;
 * shim.cpp picks the version at compile time from which header exists.
 *
 * Frames are 10 ms of 48 kHz mono S16 (480 samples). One thread drives an instance:
 * vp_apm_analyze_reverse() with each far-end frame, then vp_apm_process_capture() with
 * each microphone frame. No call allocates after vp_apm_create().
 */
#include <stdint.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

enum { VP_APM_FRAME = 480, VP_APM_RATE = 48000 };

typedef struct vp_apm vp_apm;

typedef struct {
    int echo_cancellation;   /* 0/1 */
    int echo_level;          /* suppression: 0 low, 1 moderate, 2 high */
    int noise_suppression;   /* 0/1 */
    int noise_level;         /* 0 low, 1 moderate, 2 high, 3 very high */
    int gain_control;        /* 0/1: adaptive digital gain with a limiter */
    int gain_target_dbfs;    /* 0...31: the level aimed for, dB below full scale */
} vp_apm_settings;

typedef struct {
    /* Echo return loss enhancement, dB (the library's running average). */
    double erle_db; int has_erle;
    /* The delay the canceller estimated between reference and microphone, ms. */
    double delay_ms; int has_delay;
    /* 0...1 (1.x only). */
    double residual_echo_likelihood; int has_residual_echo_likelihood;
    /* Share of delay estimates the canceller found unreliable, 0...1 (0.3 only). */
    double fraction_poor_delays; int has_fraction_poor_delays;
    /* The last capture frame held echo. */
    int echo_present;
} vp_apm_stats;

/* Loads the library (dlopen, apm_load.c); vp_apm_create() does it too. 0, or -1 with the
 * soname, its package and the reason in err. */
int vp_apm_load(char *err, size_t err_len);
/* The soname loaded (or the VIDEOPHONE_DLOPEN_APM override). */
const char *vp_apm_soname(void);

/* "webrtc-audio-processing 0.3" or "webrtc-audio-processing 1.x". */
const char *vp_apm_library(void);

/* NULL on failure with a reason in err. */
vp_apm *vp_apm_create(const vp_apm_settings *settings, char *err, size_t err_len);
void vp_apm_destroy(vp_apm *apm);

/* One 10 ms far-end frame, as it goes to the speaker. 0 or the library's error code. */
int vp_apm_analyze_reverse(vp_apm *apm, const int16_t *frame);

/* One 10 ms microphone frame, processed in place. delay_ms: the system's reference→
 * capture delay (speaker and microphone buffering); the canceller refines it. */
int vp_apm_process_capture(vp_apm *apm, int16_t *frame, int delay_ms);

void vp_apm_get_stats(vp_apm *apm, vp_apm_stats *stats);

#ifdef __cplusplus
}
#endif
#endif
