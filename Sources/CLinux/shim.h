#ifndef CLINUX_SHIM_H
#define CLINUX_SHIM_H
/* glibc calls Swift's Glibc module does not bring in. */
#include <malloc.h>
#include <sys/prctl.h>

/* Caps glibc's malloc arenas (M_ARENA_MAX): returns 1 on success. */
static inline int clinux_limit_malloc_arenas(int n) { return mallopt(M_ARENA_MAX, n); }

/* Fixes malloc's mmap threshold (M_MMAP_THRESHOLD; also stops its dynamic growth):
   returns 1 on success. */
static inline int clinux_set_mmap_threshold(int bytes) { return mallopt(M_MMAP_THRESHOLD, bytes); }

/* Names the calling thread (PR_SET_NAME: 15 bytes and a NUL; prctl is variadic). */
static inline int clinux_set_thread_name(const char *name) { return prctl(PR_SET_NAME, (unsigned long)name, 0, 0, 0); }
#endif
