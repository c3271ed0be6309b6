#ifndef CAVCODEC_SHIM_H
#define CAVCODEC_SHIM_H
#include <stdint.h>
#include <stddef.h>
#include <libavcodec/avcodec.h>
#include <libavutil/frame.h>
#include <libavutil/log.h>
#include <libavutil/error.h>

/* libavcodec (with libavutil and the rest of FFmpeg's tree) is loaded when a decoder is made
 * (avcodec.c): 0, or -1 with the reason in err. */
int cavc_load(char *err, size_t err_len);
/* The soname loaded (libavcodec.so.N of these headers, or VIDEOPHONE_DLOPEN_AVCODEC). */
const char *cavc_soname(void);

/* AVERROR(EAGAIN) and AVERROR_EOF are macros Swift cannot import. */
static inline int cavc_error_eagain(void) { return AVERROR(EAGAIN); }
static inline int cavc_error_eof(void) { return AVERROR_EOF; }
/* The decoder's flags are set through fields whose macros Swift sees only as Int32. */
static inline void cavc_set_low_delay(AVCodecContext *c) {
    c->flags |= AV_CODEC_FLAG_LOW_DELAY;
    c->flags2 |= AV_CODEC_FLAG2_FAST;
    c->thread_count = 1;
    c->thread_type = FF_THREAD_SLICE;
    c->err_recognition = 0;
    c->skip_frame = AVDISCARD_DEFAULT;
    c->has_b_frames = 0;
}
/* Frames with decode_error_flags or corrupt flag set: concealment was applied. */
static inline int cavc_frame_is_corrupt(const AVFrame *f) {
    return (f->flags & AV_FRAME_FLAG_CORRUPT) != 0 || f->decode_error_flags != 0;
}
static inline int cavc_frame_is_key(const AVFrame *f) { return f->key_frame; }
#endif
