/* libv4l2 through dlopen (see vp_loader.h): the functions V4L2Camera.swift calls. libv4l2
 * pulls in libv4lconvert and libjpeg; a board without a USB camera never maps them. */
#include <stddef.h>
#include <sys/mman.h>
#include "vp_loader.h"
#include "shim.h"

/* S: resolved only (variadic: called through cv4l2_open and cv4l2_ioctl below). */
#define V4L2_FUNCTIONS(F, V, S) \
    S(int, v4l2_open, (const char *file, int oflag, ...), ()) \
    S(int, v4l2_ioctl, (int fd, unsigned long int request, ...), ()) \
    S(void *, v4l2_mmap, (void *start, size_t length, int prot, int flags, int fd, int64_t offset), ()) \
    F(int, v4l2_close, (int fd), (fd)) \
    F(int, v4l2_munmap, (void *start, size_t length), (start, length))

enum { V4L2_FUNCTIONS(VP_LIB_INDEX, VP_LIB_INDEX, VP_LIB_INDEX) v4l2_count };
static const char *const v4l2_names[] = { V4L2_FUNCTIONS(VP_LIB_NAME, VP_LIB_NAME, VP_LIB_NAME) };
static void *v4l2_slots[v4l2_count];
static const char v4l2_soname[] = VP_DLOPEN_SONAME "libv4l2.so.0";
static vp_library v4l2 = { .tag = "V4L2", .soname = VP_SONAME_FROM(v4l2_soname), .package = "libv4l-0, libv4l-0t64 on Debian 13",
                           .names = v4l2_names, .slots = v4l2_slots, .count = v4l2_count };

#define V4L2_F(...) VP_LIB_TRAMPOLINE(v4l2, __VA_ARGS__)
#define V4L2_NONE(...)
V4L2_FUNCTIONS(V4L2_F, V4L2_NONE, V4L2_NONE)

int cv4l2_load(char *err, size_t err_len) { return vp_library_load(&v4l2, err, err_len); }
const char *cv4l2_soname(void) { return vp_library_soname(&v4l2); }

int cv4l2_open(const char *path) {
    return ((__typeof__(&v4l2_open))vp_library_slot(&v4l2, vp_slot_v4l2_open, "v4l2_open"))(path, O_RDWR | O_NONBLOCK, 0);
}

int cv4l2_ioctl(int fd, unsigned long request, void *arg) {
    return ((__typeof__(&v4l2_ioctl))vp_library_slot(&v4l2, vp_slot_v4l2_ioctl, "v4l2_ioctl"))(fd, request, arg);
}

void *cv4l2_mmap(int fd, size_t length, long offset) {
    void *p = ((__typeof__(&v4l2_mmap))vp_library_slot(&v4l2, vp_slot_v4l2_mmap, "v4l2_mmap"))(NULL, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, offset);
    return p == MAP_FAILED ? NULL : p;
}
