/*
 * libgpiod through dlopen (see vp_loader.h), and one small API over libgpiod 1.6 (Debian 12,
 * Raspberry Pi OS bookworm) and libgpiod 2.x (Debian 13): the two are not source
 * compatible. The 1.x header defines GPIOD_LINE_BULK_MAX_LINES; 2.x removed line bulks, so
 * that macro tells them apart.
 *
 * The library's calls below go through the resolved pointers: each gpiod_* name is a macro
 * for its slot (libgpiod 1.x marks its declarations visibility("default"), so same-named
 * trampolines, as the other libraries have, would not compile).
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <dirent.h>
#include <gpiod.h>
#include "vp_loader.h"
#include "shim.h"

#define VP_GPIOD_INDEX(name) vp_slot_##name,
#define VP_GPIOD_NAME(name) #name,
#define VP_GPIOD(name) ((__typeof__(&name))vp_library_slot(&gpiod, vp_slot_##name, #name))

#ifdef GPIOD_LINE_BULK_MAX_LINES
/* ---------------------------------------------------------------- libgpiod 1.x */
#define GPIOD_SONAME "libgpiod.so.2"
#define GPIOD_PACKAGE "libgpiod2"
#define GPIOD_FUNCTIONS(X) \
    X(gpiod_chip_close) \
    X(gpiod_chip_find_line) \
    X(gpiod_chip_get_line) \
    X(gpiod_chip_name) \
    X(gpiod_chip_open_lookup) \
    X(gpiod_line_event_get_fd) \
    X(gpiod_line_event_read) \
    X(gpiod_line_find) \
    X(gpiod_line_get_chip) \
    X(gpiod_line_get_value) \
    X(gpiod_line_offset) \
    X(gpiod_line_release) \
    X(gpiod_line_request_both_edges_events_flags) \
    X(gpiod_line_request_output) \
    X(gpiod_line_set_value)
#define gpiod_chip_close VP_GPIOD(gpiod_chip_close)
#define gpiod_chip_find_line VP_GPIOD(gpiod_chip_find_line)
#define gpiod_chip_get_line VP_GPIOD(gpiod_chip_get_line)
#define gpiod_chip_name VP_GPIOD(gpiod_chip_name)
#define gpiod_chip_open_lookup VP_GPIOD(gpiod_chip_open_lookup)
#define gpiod_line_event_get_fd VP_GPIOD(gpiod_line_event_get_fd)
#define gpiod_line_event_read VP_GPIOD(gpiod_line_event_read)
#define gpiod_line_find VP_GPIOD(gpiod_line_find)
#define gpiod_line_get_chip VP_GPIOD(gpiod_line_get_chip)
#define gpiod_line_get_value VP_GPIOD(gpiod_line_get_value)
#define gpiod_line_offset VP_GPIOD(gpiod_line_offset)
#define gpiod_line_release VP_GPIOD(gpiod_line_release)
#define gpiod_line_request_both_edges_events_flags VP_GPIOD(gpiod_line_request_both_edges_events_flags)
#define gpiod_line_request_output VP_GPIOD(gpiod_line_request_output)
#define gpiod_line_set_value VP_GPIOD(gpiod_line_set_value)
#else
/* ---------------------------------------------------------------- libgpiod 2.x */
#define GPIOD_SONAME "libgpiod.so.3"
#define GPIOD_PACKAGE "libgpiod3"
#define GPIOD_FUNCTIONS(X) \
    X(gpiod_chip_close) \
    X(gpiod_chip_get_info) \
    X(gpiod_chip_get_line_offset_from_name) \
    X(gpiod_chip_info_free) \
    X(gpiod_chip_info_get_label) \
    X(gpiod_chip_open) \
    X(gpiod_chip_request_lines) \
    X(gpiod_edge_event_buffer_free) \
    X(gpiod_edge_event_buffer_get_event) \
    X(gpiod_edge_event_buffer_new) \
    X(gpiod_edge_event_get_event_type) \
    X(gpiod_edge_event_get_timestamp_ns) \
    X(gpiod_line_config_add_line_settings) \
    X(gpiod_line_config_free) \
    X(gpiod_line_config_new) \
    X(gpiod_line_request_get_fd) \
    X(gpiod_line_request_get_value) \
    X(gpiod_line_request_read_edge_events) \
    X(gpiod_line_request_release) \
    X(gpiod_line_request_set_value) \
    X(gpiod_line_settings_free) \
    X(gpiod_line_settings_new) \
    X(gpiod_line_settings_set_bias) \
    X(gpiod_line_settings_set_direction) \
    X(gpiod_line_settings_set_edge_detection) \
    X(gpiod_line_settings_set_output_value) \
    X(gpiod_request_config_free) \
    X(gpiod_request_config_new) \
    X(gpiod_request_config_set_consumer)
#define gpiod_chip_close VP_GPIOD(gpiod_chip_close)
#define gpiod_chip_get_info VP_GPIOD(gpiod_chip_get_info)
#define gpiod_chip_get_line_offset_from_name VP_GPIOD(gpiod_chip_get_line_offset_from_name)
#define gpiod_chip_info_free VP_GPIOD(gpiod_chip_info_free)
#define gpiod_chip_info_get_label VP_GPIOD(gpiod_chip_info_get_label)
#define gpiod_chip_open VP_GPIOD(gpiod_chip_open)
#define gpiod_chip_request_lines VP_GPIOD(gpiod_chip_request_lines)
#define gpiod_edge_event_buffer_free VP_GPIOD(gpiod_edge_event_buffer_free)
#define gpiod_edge_event_buffer_get_event VP_GPIOD(gpiod_edge_event_buffer_get_event)
#define gpiod_edge_event_buffer_new VP_GPIOD(gpiod_edge_event_buffer_new)
#define gpiod_edge_event_get_event_type VP_GPIOD(gpiod_edge_event_get_event_type)
#define gpiod_edge_event_get_timestamp_ns VP_GPIOD(gpiod_edge_event_get_timestamp_ns)
#define gpiod_line_config_add_line_settings VP_GPIOD(gpiod_line_config_add_line_settings)
#define gpiod_line_config_free VP_GPIOD(gpiod_line_config_free)
#define gpiod_line_config_new VP_GPIOD(gpiod_line_config_new)
#define gpiod_line_request_get_fd VP_GPIOD(gpiod_line_request_get_fd)
#define gpiod_line_request_get_value VP_GPIOD(gpiod_line_request_get_value)
#define gpiod_line_request_read_edge_events VP_GPIOD(gpiod_line_request_read_edge_events)
#define gpiod_line_request_release VP_GPIOD(gpiod_line_request_release)
#define gpiod_line_request_set_value VP_GPIOD(gpiod_line_request_set_value)
#define gpiod_line_settings_free VP_GPIOD(gpiod_line_settings_free)
#define gpiod_line_settings_new VP_GPIOD(gpiod_line_settings_new)
#define gpiod_line_settings_set_bias VP_GPIOD(gpiod_line_settings_set_bias)
#define gpiod_line_settings_set_direction VP_GPIOD(gpiod_line_settings_set_direction)
#define gpiod_line_settings_set_edge_detection VP_GPIOD(gpiod_line_settings_set_edge_detection)
#define gpiod_line_settings_set_output_value VP_GPIOD(gpiod_line_settings_set_output_value)
#define gpiod_request_config_free VP_GPIOD(gpiod_request_config_free)
#define gpiod_request_config_new VP_GPIOD(gpiod_request_config_new)
#define gpiod_request_config_set_consumer VP_GPIOD(gpiod_request_config_set_consumer)
#endif

enum { GPIOD_FUNCTIONS(VP_GPIOD_INDEX) gpiod_count };
static const char *const gpiod_names[] = { GPIOD_FUNCTIONS(VP_GPIOD_NAME) };
static void *gpiod_slots[gpiod_count];
static const char gpiod_soname[] = VP_DLOPEN_SONAME GPIOD_SONAME;
static vp_library gpiod = { .tag = "GPIOD", .soname = VP_SONAME_FROM(gpiod_soname), .package = GPIOD_PACKAGE,
                            .names = gpiod_names, .slots = gpiod_slots, .count = gpiod_count };

int cgpiod_load(char *err, size_t err_len) { return vp_library_load(&gpiod, err, err_len); }
const char *cgpiod_soname(void) { return vp_library_soname(&gpiod); }

#ifdef GPIOD_LINE_BULK_MAX_LINES
/* ---------------------------------------------------------------- libgpiod 1.x */
struct vp_gpio_line { struct gpiod_chip *chip; struct gpiod_line *line; unsigned offset; };

const char *vp_gpio_api(void) { return "libgpiod 1.x"; }

static vp_gpio_line *vp_gpio_lookup(const char *chip, int offset, const char *name) {
    vp_gpio_line *l = calloc(1, sizeof *l);
    if (!l) return NULL;
    if (name && !chip) {
        l->line = gpiod_line_find(name);
        if (!l->line) { if (errno == 0) errno = ENOENT; free(l); return NULL; }
        l->chip = gpiod_line_get_chip(l->line);
    } else {
        l->chip = gpiod_chip_open_lookup(chip);
        if (!l->chip) { free(l); return NULL; }
        if (name) {
            l->line = gpiod_chip_find_line(l->chip, name);
        } else {
            l->line = gpiod_chip_get_line(l->chip, (unsigned)offset);
        }
        if (!l->line) { int e = errno ? errno : ENOENT; gpiod_chip_close(l->chip); free(l); errno = e; return NULL; }
    }
    l->offset = gpiod_line_offset(l->line);
    return l;
}

static int vp_gpio_bias_flags(int bias) {
    switch (bias) {
    case VP_GPIO_BIAS_NONE: return GPIOD_LINE_REQUEST_FLAG_BIAS_DISABLE;
    case VP_GPIO_BIAS_PULL_UP: return GPIOD_LINE_REQUEST_FLAG_BIAS_PULL_UP;
    case VP_GPIO_BIAS_PULL_DOWN: return GPIOD_LINE_REQUEST_FLAG_BIAS_PULL_DOWN;
    default: return 0;
    }
}

/* Input with events on both edges. */
vp_gpio_line *vp_gpio_request_input(const char *chip, int offset, const char *name, const char *consumer, int bias) {
    vp_gpio_line *l = vp_gpio_lookup(chip, offset, name);
    if (!l) return NULL;
    if (gpiod_line_request_both_edges_events_flags(l->line, consumer, vp_gpio_bias_flags(bias)) < 0) {
        int e = errno; gpiod_chip_close(l->chip); free(l); errno = e; return NULL;
    }
    return l;
}

vp_gpio_line *vp_gpio_request_output(const char *chip, int offset, const char *name, const char *consumer, int value) {
    vp_gpio_line *l = vp_gpio_lookup(chip, offset, name);
    if (!l) return NULL;
    if (gpiod_line_request_output(l->line, consumer, value) < 0) {
        int e = errno; gpiod_chip_close(l->chip); free(l); errno = e; return NULL;
    }
    return l;
}

int vp_gpio_event_fd(vp_gpio_line *l) { return gpiod_line_event_get_fd(l->line); }

/* Reads one pending edge: 1 rising, 0 falling; the kernel's timestamp in ns. */
int vp_gpio_read_edge(vp_gpio_line *l, int *rising, uint64_t *ns) {
    struct gpiod_line_event ev;
    if (gpiod_line_event_read(l->line, &ev) < 0) return -1;
    *rising = ev.event_type == GPIOD_LINE_EVENT_RISING_EDGE;
    *ns = (uint64_t)ev.ts.tv_sec * 1000000000ull + (uint64_t)ev.ts.tv_nsec;
    return 0;
}

int vp_gpio_get(vp_gpio_line *l) { return gpiod_line_get_value(l->line); }
int vp_gpio_set(vp_gpio_line *l, int value) { return gpiod_line_set_value(l->line, value); }
unsigned vp_gpio_offset(vp_gpio_line *l) { return l->offset; }
const char *vp_gpio_chip_name(vp_gpio_line *l) { return gpiod_chip_name(l->chip); }

void vp_gpio_release(vp_gpio_line *l) {
    if (!l) return;
    gpiod_line_release(l->line);
    gpiod_chip_close(l->chip);
    free(l);
}

#else
/* ---------------------------------------------------------------- libgpiod 2.x */
struct vp_gpio_line {
    struct gpiod_chip *chip;
    struct gpiod_line_request *request;
    struct gpiod_edge_event_buffer *events;
    unsigned offset;
    char chip_name[256];
};

const char *vp_gpio_api(void) { return "libgpiod 2.x"; }

/* Tells whether a chip is the one looked for; may set *offset (a line found on it). */
typedef int (*vp_gpio_chip_test)(struct gpiod_chip *chip, const char *what, unsigned *offset);

/* Opens /dev/gpiochip* in turn and returns the first chip passing `test` (its node name
 * in `name`); ENOENT when none does. 2.x has no lookup by label or line name of its own. */
static struct gpiod_chip *vp_gpio_scan(vp_gpio_chip_test test, const char *what, unsigned *offset, char *name, size_t n) {
    char path[300];
    DIR *d = opendir("/dev");
    if (!d) return NULL;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, "gpiochip", 8) != 0) continue;
        snprintf(path, sizeof path, "/dev/%s", e->d_name);
        struct gpiod_chip *c = gpiod_chip_open(path);
        if (!c) continue;
        if (test(c, what, offset)) { snprintf(name, n, "%s", e->d_name); closedir(d); return c; }
        gpiod_chip_close(c);
    }
    closedir(d);
    errno = ENOENT;
    return NULL;
}

static int vp_gpio_has_label(struct gpiod_chip *c, const char *label, unsigned *offset) {
    (void)offset;
    struct gpiod_chip_info *info = gpiod_chip_get_info(c);
    int match = info && strcmp(gpiod_chip_info_get_label(info), label) == 0;
    if (info) gpiod_chip_info_free(info);
    return match;
}

static int vp_gpio_has_line(struct gpiod_chip *c, const char *line, unsigned *offset) {
    int off = gpiod_chip_get_line_offset_from_name(c, line);
    if (off >= 0) *offset = (unsigned)off;
    return off >= 0;
}

/* A chip by path, by node name ("gpiochip0") or by label. */
static struct gpiod_chip *vp_gpio_open_chip(const char *descr, char *name, size_t n) {
    if (!descr) { errno = ENOENT; return NULL; }
    if (descr[0] == '/') return gpiod_chip_open(descr);
    if (strncmp(descr, "gpiochip", 8) == 0) {
        char path[300];
        snprintf(path, sizeof path, "/dev/%s", descr);
        struct gpiod_chip *c = gpiod_chip_open(path);
        if (c) snprintf(name, n, "%s", descr);
        return c;
    }
    return vp_gpio_scan(vp_gpio_has_label, descr, NULL, name, n);
}

/* Finds the chip holding a named line (all chips when `chip` is NULL). */
static struct gpiod_chip *vp_gpio_find_named(const char *chip, const char *line, unsigned *offset, char *name, size_t n) {
    if (!chip) return vp_gpio_scan(vp_gpio_has_line, line, offset, name, n);
    struct gpiod_chip *c = vp_gpio_open_chip(chip, name, n);
    if (c && !vp_gpio_has_line(c, line, offset)) { gpiod_chip_close(c); errno = ENOENT; return NULL; }
    return c;
}

static vp_gpio_line *vp_gpio_request(const char *chip, int offset, const char *name, const char *consumer, int output, int value, int bias) {
    vp_gpio_line *l = calloc(1, sizeof *l);
    if (!l) return NULL;
    if (name) {
        l->chip = vp_gpio_find_named(chip, name, &l->offset, l->chip_name, sizeof l->chip_name);
    } else {
        l->chip = vp_gpio_open_chip(chip, l->chip_name, sizeof l->chip_name);
        l->offset = (unsigned)offset;
    }
    if (!l->chip) { int e = errno; free(l); errno = e; return NULL; }
    struct gpiod_line_settings *s = gpiod_line_settings_new();
    struct gpiod_line_config *lc = gpiod_line_config_new();
    struct gpiod_request_config *rc = gpiod_request_config_new();
    int ok = s && lc && rc;
    if (ok && output) {
        gpiod_line_settings_set_direction(s, GPIOD_LINE_DIRECTION_OUTPUT);
        gpiod_line_settings_set_output_value(s, value ? GPIOD_LINE_VALUE_ACTIVE : GPIOD_LINE_VALUE_INACTIVE);
    } else if (ok) {
        gpiod_line_settings_set_direction(s, GPIOD_LINE_DIRECTION_INPUT);
        gpiod_line_settings_set_edge_detection(s, GPIOD_LINE_EDGE_BOTH);
        if (bias == VP_GPIO_BIAS_NONE) gpiod_line_settings_set_bias(s, GPIOD_LINE_BIAS_DISABLED);
        if (bias == VP_GPIO_BIAS_PULL_UP) gpiod_line_settings_set_bias(s, GPIOD_LINE_BIAS_PULL_UP);
        if (bias == VP_GPIO_BIAS_PULL_DOWN) gpiod_line_settings_set_bias(s, GPIOD_LINE_BIAS_PULL_DOWN);
    }
    if (ok) ok = gpiod_line_config_add_line_settings(lc, &l->offset, 1, s) == 0;
    if (ok) gpiod_request_config_set_consumer(rc, consumer);
    if (ok) l->request = gpiod_chip_request_lines(l->chip, rc, lc);
    int e = errno;
    if (s) gpiod_line_settings_free(s);
    if (lc) gpiod_line_config_free(lc);
    if (rc) gpiod_request_config_free(rc);
    if (ok && l->request && !output) l->events = gpiod_edge_event_buffer_new(16);
    if (!ok || !l->request || (!output && !l->events)) {
        if (l->request) gpiod_line_request_release(l->request);
        gpiod_chip_close(l->chip);
        free(l);
        errno = e ? e : EINVAL;
        return NULL;
    }
    return l;
}

vp_gpio_line *vp_gpio_request_input(const char *chip, int offset, const char *name, const char *consumer, int bias) {
    return vp_gpio_request(chip, offset, name, consumer, 0, 0, bias);
}

vp_gpio_line *vp_gpio_request_output(const char *chip, int offset, const char *name, const char *consumer, int value) {
    return vp_gpio_request(chip, offset, name, consumer, 1, value, VP_GPIO_BIAS_AS_IS);
}

int vp_gpio_event_fd(vp_gpio_line *l) { return gpiod_line_request_get_fd(l->request); }

int vp_gpio_read_edge(vp_gpio_line *l, int *rising, uint64_t *ns) {
    if (gpiod_line_request_read_edge_events(l->request, l->events, 1) < 1) return -1;
    struct gpiod_edge_event *ev = gpiod_edge_event_buffer_get_event(l->events, 0);
    *rising = gpiod_edge_event_get_event_type(ev) == GPIOD_EDGE_EVENT_RISING_EDGE;
    *ns = gpiod_edge_event_get_timestamp_ns(ev);
    return 0;
}

int vp_gpio_get(vp_gpio_line *l) {
    enum gpiod_line_value v = gpiod_line_request_get_value(l->request, l->offset);
    return v == GPIOD_LINE_VALUE_ERROR ? -1 : (v == GPIOD_LINE_VALUE_ACTIVE);
}
int vp_gpio_set(vp_gpio_line *l, int value) {
    return gpiod_line_request_set_value(l->request, l->offset, value ? GPIOD_LINE_VALUE_ACTIVE : GPIOD_LINE_VALUE_INACTIVE);
}
unsigned vp_gpio_offset(vp_gpio_line *l) { return l->offset; }
const char *vp_gpio_chip_name(vp_gpio_line *l) { return l->chip_name; }

void vp_gpio_release(vp_gpio_line *l) {
    if (!l) return;
    if (l->events) gpiod_edge_event_buffer_free(l->events);
    gpiod_line_request_release(l->request);
    gpiod_chip_close(l->chip);
    free(l);
}
#endif
