/* libavcodec through dlopen (see vp_loader.h): the functions VideoDecoder.swift calls. Only a
 * device with a screen decodes; Debian's libavcodec pulls in some ninety libraries (every
 * codec FFmpeg is built with), whose relocated data is resident in every process that maps
 * them. libavutil's functions resolve through libavcodec's dependencies. */
#include <stddef.h>
#include "vp_loader.h"
#include "shim.h"

#define VP_STR2(x) #x
#define VP_STR(x) VP_STR2(x)

#define AVCODEC_FUNCTIONS(F, V) \
    F(AVFrame *, av_frame_alloc, (void), ()) \
    V(void, av_frame_free, (AVFrame **frame), (frame)) \
    V(void, av_frame_unref, (AVFrame *frame), (frame)) \
    V(void, av_log_set_level, (int level), (level)) \
    F(AVPacket *, av_packet_alloc, (void), ()) \
    V(void, av_packet_free, (AVPacket **pkt), (pkt)) \
    F(int, av_strerror, (int errnum, char *errbuf, size_t errbuf_size), (errnum, errbuf, errbuf_size)) \
    F(AVCodecContext *, avcodec_alloc_context3, (const AVCodec *codec), (codec)) \
    F(const AVCodec *, avcodec_find_decoder, (enum AVCodecID id), (id)) \
    V(void, avcodec_flush_buffers, (AVCodecContext *avctx), (avctx)) \
    V(void, avcodec_free_context, (AVCodecContext **avctx), (avctx)) \
    F(int, avcodec_open2, (AVCodecContext *avctx, const AVCodec *codec, AVDictionary **options), (avctx, codec, options)) \
    F(int, avcodec_receive_frame, (AVCodecContext *avctx, AVFrame *frame), (avctx, frame)) \
    F(int, avcodec_send_packet, (AVCodecContext *avctx, const AVPacket *avpkt), (avctx, avpkt))

VP_LIBRARY(avcodec, "AVCODEC", "libavcodec.so." VP_STR(LIBAVCODEC_VERSION_MAJOR),
           "libavcodec" VP_STR(LIBAVCODEC_VERSION_MAJOR), AVCODEC_FUNCTIONS)

#define AVCODEC_F(...) VP_LIB_TRAMPOLINE(avcodec, __VA_ARGS__)
#define AVCODEC_V(...) VP_LIB_TRAMPOLINE_VOID(avcodec, __VA_ARGS__)
AVCODEC_FUNCTIONS(AVCODEC_F, AVCODEC_V)

int cavc_load(char *err, size_t err_len) { return vp_library_load(&avcodec, err, err_len); }
const char *cavc_soname(void) { return vp_library_soname(&avcodec); }
