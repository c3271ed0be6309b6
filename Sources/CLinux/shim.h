#ifndef CLINUX_SHIM_H
#define CLINUX_SHIM_H
/* glibc calls Swift's Glibc module does not bring in. */
#include <malloc.h>

/* Caps glibc's malloc arenas (M_ARENA_MAX): returns 1 on success. */
static inline int clinux_limit_malloc_arenas(int n) { return mallopt(M_ARENA_MAX, n); }
#endif
