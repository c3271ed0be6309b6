#ifndef CDRM_SHIM_H
#define CDRM_SHIM_H
#include <stdint.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include <xf86drm.h>
#include <xf86drmMode.h>
#include <drm_fourcc.h>

/* The page-flip event arrives through a callback table: a flag the caller polls. */
static void cdrm_flip_done(int fd, unsigned int seq, unsigned int sec, unsigned int usec, void *data) {
    (void)fd; (void)seq; (void)sec; (void)usec;
    if (data) *(volatile int *)data = 0;
}
/* Reads pending DRM events; clears *pending when the flip completed. */
static inline int cdrm_handle_events(int fd, int *pending) {
    drmEventContext ev;
    memset(&ev, 0, sizeof ev);
    ev.version = 2;
    ev.page_flip_handler = cdrm_flip_done;
    (void)pending;
    return drmHandleEvent(fd, &ev);
}
static inline uint32_t cdrm_format_xrgb8888(void) { return DRM_FORMAT_XRGB8888; }
static inline uint32_t cdrm_flip_event_flag(void) { return DRM_MODE_PAGE_FLIP_EVENT; }
static inline int cdrm_mode_preferred(const drmModeModeInfo *m) { return (m->type & DRM_MODE_TYPE_PREFERRED) != 0; }
static inline int cdrm_create_dumb(int fd, uint32_t w, uint32_t h, uint32_t *handle, uint32_t *pitch, uint64_t *size) {
    struct drm_mode_create_dumb c;
    memset(&c, 0, sizeof c);
    c.width = w; c.height = h; c.bpp = 32;
    if (drmIoctl(fd, DRM_IOCTL_MODE_CREATE_DUMB, &c) < 0) return -1;
    *handle = c.handle; *pitch = c.pitch; *size = c.size;
    return 0;
}
static inline int cdrm_map_dumb(int fd, uint32_t handle, uint64_t *offset) {
    struct drm_mode_map_dumb m;
    memset(&m, 0, sizeof m);
    m.handle = handle;
    if (drmIoctl(fd, DRM_IOCTL_MODE_MAP_DUMB, &m) < 0) return -1;
    *offset = m.offset;
    return 0;
}
static inline void cdrm_destroy_dumb(int fd, uint32_t handle) {
    struct drm_mode_destroy_dumb d;
    memset(&d, 0, sizeof d);
    d.handle = handle;
    drmIoctl(fd, DRM_IOCTL_MODE_DESTROY_DUMB, &d);
}
static inline void *cdrm_mmap(int fd, uint64_t size, uint64_t offset) {
    void *p = mmap(0, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)offset);
    return p == MAP_FAILED ? NULL : p;
}
#endif
