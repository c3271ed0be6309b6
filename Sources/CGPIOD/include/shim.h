#ifndef CGPIOD_SHIM_H
#define CGPIOD_SHIM_H
/*
 * One small API over libgpiod 1.x and 2.x (gpiod.c), the library loaded with dlopen when
 * the config has a [gpio] table.
 *
 * A line is found by chip ("gpiochip0", "/dev/gpiochip0", or the chip's label) and
 * offset, or by line name across all chips. Every function returns -1 (or NULL) with errno
 * set on failure (EBUSY: another consumer holds the line; ENOENT: no such chip or line).
 * Call cgpiod_load() first.
 */
#include <stddef.h>
#include <stdint.h>

typedef struct vp_gpio_line vp_gpio_line;

enum { VP_GPIO_BIAS_AS_IS = 0, VP_GPIO_BIAS_NONE = 1, VP_GPIO_BIAS_PULL_UP = 2, VP_GPIO_BIAS_PULL_DOWN = 3 };

/* Loads libgpiod: 0, or -1 with the reason in err. */
int cgpiod_load(char *err, size_t err_len);
/* The soname loaded (libgpiod.so.2 or .3, or the VIDEOPHONE_DLOPEN_GPIOD override). */
const char *cgpiod_soname(void);

/* "libgpiod 1.x" or "libgpiod 2.x": the API this build was compiled against. */
const char *vp_gpio_api(void);
/* Input with events on both edges. */
vp_gpio_line *vp_gpio_request_input(const char *chip, int offset, const char *name, const char *consumer, int bias);
vp_gpio_line *vp_gpio_request_output(const char *chip, int offset, const char *name, const char *consumer, int value);
int vp_gpio_event_fd(vp_gpio_line *l);
/* Reads one pending edge: 1 rising, 0 falling; the kernel's timestamp in ns. */
int vp_gpio_read_edge(vp_gpio_line *l, int *rising, uint64_t *ns);
int vp_gpio_get(vp_gpio_line *l);
int vp_gpio_set(vp_gpio_line *l, int value);
unsigned vp_gpio_offset(vp_gpio_line *l);
const char *vp_gpio_chip_name(vp_gpio_line *l);
void vp_gpio_release(vp_gpio_line *l);
#endif
