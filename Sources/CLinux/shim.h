#ifndef CLINUX_SHIM_H
#define CLINUX_SHIM_H
/* glibc calls Swift's Glibc module does not bring in. */
#include <malloc.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Gives the heap's free pages back to the kernel (malloc_trim: the top of each arena and
 * whole free pages inside it). Returns 1 when memory was released. */
static inline int clinux_malloc_trim(void) { return malloc_trim(0); }

/* Caps glibc's malloc arenas (M_ARENA_MAX): returns 1 on success. */
static inline int clinux_limit_malloc_arenas(int n) { return mallopt(M_ARENA_MAX, n); }

/* Fixes malloc's mmap threshold (M_MMAP_THRESHOLD; also stops its dynamic growth):
   returns 1 on success. */
static inline int clinux_set_mmap_threshold(int bytes) { return mallopt(M_MMAP_THRESHOLD, bytes); }

/* Turns transparent huge pages off for this process (PR_SET_THP_DISABLE): x264 asks for
   huge pages for its frame buffers (madvise MADV_HUGEPAGE), and each 2 MiB page is resident
   whole however little of it the buffer uses. Returns 0 on success. */
static inline int clinux_disable_transparent_huge_pages(void) { return prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0); }

/* Names the calling thread (PR_SET_NAME: 15 bytes and a NUL; prctl is variadic). */
static inline int clinux_set_thread_name(const char *name) { return prctl(PR_SET_NAME, (unsigned long)name, 0, 0, 0); }

/* Gives back the pages of the executable and its libraries that start-up mapped but the
   daemon does not use: every read-only file mapping whose pages are all still the file's
   (no copy-on-write page; RELRO and data segments have some and are left alone) is
   unmapped with MADV_DONTNEED. The pages stay in the page cache; the ones the daemon
   touches again come back as minor faults. Call once, before other threads start.
   Returns the kilobytes that were resident in the mappings given back, or -1. */
static inline long clinux_trim_file_mappings(void) {
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f) return -1;
    char line[512];
    unsigned long lo = 0, hi = 0;
    int candidate = 0;
    long rss = 0, total = 0;
    unsigned long los[256], his[256];
    long rsss[256];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long a, b;
        char perms[8];
        if (sscanf(line, "%lx-%lx %7s", &a, &b, perms) == 3 && strchr(line, '-') < strchr(line, ' ')) {
            lo = a; hi = b; rss = 0;
            /* Read-only (r--p or r-xp), private, backed by a file. */
            candidate = perms[0] == 'r' && perms[1] == '-' && perms[3] == 'p' && strchr(line, '/') != NULL;
            continue;
        }
        if (!candidate) continue;
        long kb;
        if (sscanf(line, "Rss: %ld kB", &kb) == 1) { rss = kb; continue; }
        if (sscanf(line, "Anonymous: %ld kB", &kb) == 1) {
            if (kb == 0 && rss > 0 && n < 256) { los[n] = lo; his[n] = hi; rsss[n] = rss; n++; }
            candidate = 0;
        }
    }
    fclose(f);
    for (int i = 0; i < n; i++) {
        if (madvise((void *)los[i], his[i] - los[i], MADV_DONTNEED) == 0) total += rsss[i];
    }
    return total;
}

/* One datagram of a sendmmsg batch: struct mmsghdr's layout (which glibc declares only
   under _GNU_SOURCE, and Swift's Glibc module leaves out). */
struct clinux_mmsghdr {
    struct msghdr msg_hdr;
    unsigned int msg_len;
};

/* sendmmsg(2): sends `count` datagrams with one system call. Returns how many went out
   (the first failed one ends the call) or -1 with errno when the first one failed. */
static inline int clinux_sendmmsg(int fd, struct clinux_mmsghdr *messages, unsigned int count, int flags) {
    return (int)syscall(SYS_sendmmsg, fd, messages, count, flags);
}
#endif
