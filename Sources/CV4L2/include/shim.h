#ifndef CV4L2_SHIM_H
#define CV4L2_SHIM_H
#include <stddef.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <linux/videodev2.h>
#include <libv4l2.h>
#include <libv4lconvert.h>
#include <sys/mman.h>

/* libv4l2 (with libv4lconvert and libjpeg) is loaded when a V4L2 camera is opened
 * (v4l2.c): 0, or -1 with the reason in err. The mem2mem codecs use plain ioctl only. */
int cv4l2_load(char *err, size_t err_len);
/* The soname loaded (libv4l2.so.0, or the VIDEOPHONE_DLOPEN_V4L2 override). */
const char *cv4l2_soname(void);

/* v4l2_open and v4l2_ioctl are variadic (defined in v4l2.c); the ioctl numbers are macros. */
int cv4l2_open(const char *path);
int cv4l2_ioctl(int fd, unsigned long request, void *arg);
static const unsigned long CV4L2_VIDIOC_QUERYCAP = VIDIOC_QUERYCAP;
static const unsigned long CV4L2_VIDIOC_S_FMT = VIDIOC_S_FMT;
static const unsigned long CV4L2_VIDIOC_G_FMT = VIDIOC_G_FMT;
static const unsigned long CV4L2_VIDIOC_S_PARM = VIDIOC_S_PARM;
static const unsigned long CV4L2_VIDIOC_REQBUFS = VIDIOC_REQBUFS;
static const unsigned long CV4L2_VIDIOC_QUERYBUF = VIDIOC_QUERYBUF;
static const unsigned long CV4L2_VIDIOC_QBUF = VIDIOC_QBUF;
static const unsigned long CV4L2_VIDIOC_DQBUF = VIDIOC_DQBUF;
static const unsigned long CV4L2_VIDIOC_STREAMON = VIDIOC_STREAMON;
static const unsigned long CV4L2_VIDIOC_STREAMOFF = VIDIOC_STREAMOFF;
static const unsigned long CV4L2_VIDIOC_ENUM_FMT = VIDIOC_ENUM_FMT;
static const unsigned long CV4L2_VIDIOC_G_PARM = VIDIOC_G_PARM;
static const unsigned int CV4L2_CAP_VIDEO_CAPTURE = V4L2_CAP_VIDEO_CAPTURE;
static const unsigned int CV4L2_CAP_VIDEO_M2M = V4L2_CAP_VIDEO_M2M;
static const unsigned int CV4L2_CAP_VIDEO_M2M_MPLANE = V4L2_CAP_VIDEO_M2M_MPLANE;
static const unsigned int CV4L2_CAP_STREAMING = V4L2_CAP_STREAMING;
static const unsigned int CV4L2_CAP_DEVICE_CAPS = V4L2_CAP_DEVICE_CAPS;
static const unsigned int CV4L2_BUF_FLAG_TIMESTAMP_MASK = V4L2_BUF_FLAG_TIMESTAMP_MASK;
static const unsigned int CV4L2_BUF_FLAG_TIMESTAMP_MONOTONIC = V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC;
static const unsigned int CV4L2_BUF_FLAG_KEYFRAME = V4L2_BUF_FLAG_KEYFRAME;
/* NULL on failure. */
void *cv4l2_mmap(int fd, size_t length, long offset);
/* Plain ioctl (no libv4l2) for mem2mem encoders, which need no format conversion. */
static inline int cv4l2_raw_ioctl(int fd, unsigned long request, void *arg) { return ioctl(fd, request, arg); }
static inline int cv4l2_set_ctrl(int fd, unsigned int id, int value) {
    struct v4l2_control c = { .id = id, .value = value };
    return ioctl(fd, VIDIOC_S_CTRL, &c);
}
static const unsigned long CV4L2_VIDIOC_S_CTRL = VIDIOC_S_CTRL;
static const unsigned int CV4L2_CID_BITRATE = V4L2_CID_MPEG_VIDEO_BITRATE;
static const unsigned int CV4L2_CID_BITRATE_MODE = V4L2_CID_MPEG_VIDEO_BITRATE_MODE;
static const unsigned int CV4L2_BITRATE_MODE_CBR = V4L2_MPEG_VIDEO_BITRATE_MODE_CBR;
static const unsigned int CV4L2_CID_GOP_SIZE = V4L2_CID_MPEG_VIDEO_GOP_SIZE;
static const unsigned int CV4L2_CID_B_FRAMES = V4L2_CID_MPEG_VIDEO_B_FRAMES;
static const unsigned int CV4L2_CID_REPEAT_SEQ_HEADER = V4L2_CID_MPEG_VIDEO_REPEAT_SEQ_HEADER;
static const unsigned int CV4L2_CID_FORCE_KEY_FRAME = V4L2_CID_MPEG_VIDEO_FORCE_KEY_FRAME;
static const unsigned int CV4L2_CID_H264_PROFILE = V4L2_CID_MPEG_VIDEO_H264_PROFILE;
static const unsigned int CV4L2_H264_PROFILE_CONSTRAINED_BASELINE = V4L2_MPEG_VIDEO_H264_PROFILE_CONSTRAINED_BASELINE;
static const unsigned int CV4L2_CID_H264_LEVEL = V4L2_CID_MPEG_VIDEO_H264_LEVEL;
static const unsigned int CV4L2_CID_H264_I_PERIOD = V4L2_CID_MPEG_VIDEO_H264_I_PERIOD;
static const unsigned int CV4L2_PIX_FMT_FWHT = V4L2_PIX_FMT_FWHT;
static const unsigned int CV4L2_BUF_FLAG_PFRAME = V4L2_BUF_FLAG_PFRAME;
static const unsigned int CV4L2_PIX_FMT_YUV420 = V4L2_PIX_FMT_YUV420;
static const unsigned int CV4L2_PIX_FMT_YUYV = V4L2_PIX_FMT_YUYV;
static const unsigned int CV4L2_PIX_FMT_NV12 = V4L2_PIX_FMT_NV12;
static const unsigned int CV4L2_PIX_FMT_MJPEG = V4L2_PIX_FMT_MJPEG;
static const unsigned int CV4L2_PIX_FMT_H264 = V4L2_PIX_FMT_H264;
/* Stateful decoders: the source-change event (the stream's size is known or changed),
   the minimum capture buffers, errors on a decoded buffer. */
static const unsigned long CV4L2_VIDIOC_SUBSCRIBE_EVENT = VIDIOC_SUBSCRIBE_EVENT;
static const unsigned long CV4L2_VIDIOC_DQEVENT = VIDIOC_DQEVENT;
static const unsigned int CV4L2_EVENT_SOURCE_CHANGE = V4L2_EVENT_SOURCE_CHANGE;
static const unsigned int CV4L2_BUF_FLAG_ERROR = V4L2_BUF_FLAG_ERROR;
static const unsigned int CV4L2_BUF_FLAG_LAST = V4L2_BUF_FLAG_LAST;
static inline int cv4l2_get_ctrl(int fd, unsigned int id, int *value) {
    struct v4l2_control c = { .id = id, .value = 0 };
    int r = ioctl(fd, VIDIOC_G_CTRL, &c);
    *value = c.value;
    return r;
}
static const unsigned int CV4L2_CID_MIN_BUFFERS_FOR_CAPTURE = V4L2_CID_MIN_BUFFERS_FOR_CAPTURE;
static inline int cv4l2_subscribe_source_change(int fd) {
    struct v4l2_event_subscription sub = { .type = V4L2_EVENT_SOURCE_CHANGE };
    return ioctl(fd, VIDIOC_SUBSCRIBE_EVENT, &sub);
}
/* The visible part of decoded pictures (compose rectangle); 0 when the driver has none. */
static inline int cv4l2_visible_size(int fd, unsigned int *w, unsigned int *h) {
    struct v4l2_selection sel = { .type = V4L2_BUF_TYPE_VIDEO_CAPTURE, .target = V4L2_SEL_TGT_COMPOSE };
    if (ioctl(fd, VIDIOC_G_SELECTION, &sel) != 0) return -1;
    *w = sel.r.width; *h = sel.r.height;
    return 0;
}
/* Takes one pending event; returns its type, or -1 when none is pending. */
static inline int cv4l2_dequeue_event(int fd) {
    struct v4l2_event ev;
    if (ioctl(fd, VIDIOC_DQEVENT, &ev) != 0) return -1;
    return (int)ev.type;
}
#endif
