#include "vp_loader.h"

#include <ctype.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pthread_mutex_t vp_loader_lock = PTHREAD_MUTEX_INITIALIZER;

const char *vp_library_soname(const vp_library *lib) {
    char var[64];
    snprintf(var, sizeof var, "VIDEOPHONE_DLOPEN_%s", lib->tag);
    const char *forced = getenv(var);
    return forced && forced[0] ? forced : lib->soname;
}

int vp_library_loaded(const vp_library *lib) {
    return __atomic_load_n(&lib->state, __ATOMIC_ACQUIRE) == 1;
}

static void vp_copy(char *dst, size_t n, const char *src) {
    if (dst && n) snprintf(dst, n, "%s", src);
}

/* state is read without the lock (vp_library_loaded), so every write to it is atomic too:
 * a plain store of -1 after a failed load raced a reader on another thread (TSan). */
static void vp_set_state(vp_library *lib, int state) {
    __atomic_store_n(&lib->state, state, __ATOMIC_RELEASE);
}

int vp_library_load(vp_library *lib, char *err, size_t err_len) {
    if (vp_library_loaded(lib)) return 0;
    pthread_mutex_lock(&vp_loader_lock);
    if (!vp_library_loaded(lib)) {
        const char *soname = vp_library_soname(lib);
        /* RTLD_LOCAL: its symbols stay out of the global scope (nothing else binds to them). */
        void *h = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
        if (!h) {
            const char *why = dlerror();
            snprintf(lib->error, sizeof lib->error, "%s (Debian package %s) did not load: %s", soname, lib->package, why ? why : "unknown reason");
            vp_set_state(lib, -1);
        } else {
            size_t i;
            for (i = 0; i < lib->count; i++) {
                dlerror();
                void *p = dlsym(h, lib->names[i]);
                if (!p) {
                    snprintf(lib->error, sizeof lib->error, "%s (Debian package %s) has no %s: not the version this build expects", soname, lib->package, lib->names[i]);
                    break;
                }
                lib->slots[i] = p;
            }
            if (i < lib->count) {
                dlclose(h);
                memset(lib->slots, 0, lib->count * sizeof lib->slots[0]);
                vp_set_state(lib, -1);
            } else {
                lib->handle = h;
                lib->error[0] = 0;
                vp_set_state(lib, 1);
            }
        }
    }
    int ok = vp_library_loaded(lib);
    if (!ok) vp_copy(err, err_len, lib->error);
    pthread_mutex_unlock(&vp_loader_lock);
    return ok ? 0 : -1;
}

void vp_library_unavailable(vp_library *lib, const char *symbol) {
    fprintf(stderr, "videophoned: %s called but %s\n", symbol, lib->error);
    abort();
}
