#ifndef VP_LOADER_H
#define VP_LOADER_H
/*
 * Board-only C libraries (libasound, libv4l2, libgpiod, libavcodec, webrtc-audio-processing)
 * are not linked: each C target defines the functions the firmware calls as trampolines
 * into pointers that vp_library_load() resolves with dlopen/dlsym, by soname, the first
 * time a config needs the library. The simulator and boards without a part never map them.
 *
 * VIDEOPHONE_DLOPEN_<TAG> (e.g. VIDEOPHONE_DLOPEN_ASOUND=libnope.so.9) replaces a soname:
 * for tests of the missing-library path.
 */
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vp_library {
    const char *tag;            /* ASOUND, V4L2, GPIOD, AVCODEC, APM */
    const char *soname;         /* libasound.so.2 */
    const char *package;        /* the Debian package that holds it */
    const char *const *names;   /* the symbols, in slot order */
    void **slots;               /* resolved addresses */
    size_t count;
    /* Private. */
    void *handle;
    int state;                  /* 0 not tried, 1 loaded, -1 failed (retried on the next load) */
    char error[320];
} vp_library;

/* Each library's soname is stored as VP_DLOPEN_SONAME "libasound.so.2" and used from after
 * the prefix: toolchain/deb.sh finds the dlopened libraries in the binary by that prefix
 * (dpkg-shlibdeps sees only linked ones) and adds their packages to Depends. */
#define VP_DLOPEN_SONAME "VP_DLOPEN_SONAME="
#define VP_SONAME_FROM(marked) ((marked) + sizeof VP_DLOPEN_SONAME - 1)

/* Loads the library and resolves every symbol, once; 0 on success. On failure, -1 and a
 * sentence naming the soname, its package and the loader's reason in err (if given).
 * Thread-safe; after a failure the next call tries again (a package installed meanwhile). */
int vp_library_load(vp_library *lib, char *err, size_t err_len);

/* Whether the library is loaded (cheap: one atomic load). */
int vp_library_loaded(const vp_library *lib);

/* The soname that is (or would be) opened, after the environment's override. */
const char *vp_library_soname(const vp_library *lib);

/* A trampoline was called before its library loaded and loading now fails: the firmware
 * always loads first, so this is a bug. Prints the reason and aborts. */
void vp_library_unavailable(vp_library *lib, const char *symbol) __attribute__((noreturn));

/* The trampoline's target: loads on first use. */
static inline void *vp_library_slot(vp_library *lib, size_t index, const char *symbol) {
    if (__builtin_expect(!vp_library_loaded(lib), 0) && vp_library_load(lib, NULL, 0) != 0) vp_library_unavailable(lib, symbol);
    return lib->slots[index];
}

/* Declares a library from an X-macro list of its functions:
 *   #define ALSA_FUNCTIONS(F, V) F(int, snd_pcm_open, (...params...), (...args...)) V(void, ...)
 *   VP_LIBRARY(alsa, "ASOUND", "libasound.so.2", "libasound2", ALSA_FUNCTIONS)
 * F: returns a value; V: returns void. Defines `static vp_library alsa`; then
 * FUNCTIONS(VP_LIB_TRAMPOLINE..., VP_LIB_TRAMPOLINE_VOID...) gives one hidden
 * trampoline per function (hidden: the executable exports its symbols, and the library
 * must keep calling its own functions, not these). */
#define VP_LIB_INDEX(ret, name, params, args) vp_slot_##name,
#define VP_LIB_NAME(ret, name, params, args) #name,
/* The library's slot table and descriptor; SONAME may be a concatenation of literals. */
#define VP_LIBRARY(lib, TAG, SONAME, PACKAGE, FUNCTIONS) \
    enum { FUNCTIONS(VP_LIB_INDEX, VP_LIB_INDEX) lib##_count }; \
    static const char *const lib##_names[] = { FUNCTIONS(VP_LIB_NAME, VP_LIB_NAME) }; \
    static void *lib##_slots[lib##_count]; \
    static const char lib##_soname[] = VP_DLOPEN_SONAME SONAME; \
    static vp_library lib = { .tag = TAG, .soname = VP_SONAME_FROM(lib##_soname), .package = PACKAGE, \
                              .names = lib##_names, .slots = lib##_slots, .count = lib##_count };
#define VP_LIB_TRAMPOLINE(lib, ret, name, params, args) \
    __attribute__((visibility("hidden"))) ret name params { \
        return ((__typeof__(&name))vp_library_slot(&lib, vp_slot_##name, #name)) args; \
    }
#define VP_LIB_TRAMPOLINE_VOID(lib, ret, name, params, args) \
    __attribute__((visibility("hidden"))) void name params { \
        ((__typeof__(&name))vp_library_slot(&lib, vp_slot_##name, #name)) args; \
    }

#ifdef __cplusplus
}
#endif
#endif
