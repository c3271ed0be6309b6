/*
 * Exercises Sources/CGPIOD/gpiod.c, the one place where libgpiod 1.x and 2.x differ, on a
 * real GPIO chip (gpio-sim on the emulated board), with the library loaded by dlopen as the
 * daemon loads it (Sources/CLoader). board-test.sh builds it twice: against Debian 12's
 * libgpiod 1.6 headers (libgpiod.so.2 from the package) and against libgpiod 2.x (its
 * sources from PyPI's gpiod sdist, built into a libgpiod.so.3 that VIDEOPHONE_DLOPEN_GPIOD
 * names), and scenarios/board-call.sh runs both the way GPIO.swift uses the shim:
 *
 *   gpio-shim-test SIM_LINES_DIR BUTTON_NAME LED_NAME
 *
 * SIM_LINES_DIR is gpio-sim's sysfs directory (sim_gpioN/pull drives an input, value
 * reads an output). Prints one line per check; exits non-zero if any failed.
 */
#include "../../Sources/CGPIOD/include/shim.h"
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *dir;
static int failed;

static void expect(int ok, const char *what) {
    printf("%s %s: %s\n", vp_gpio_api(), what, ok ? "ok" : "FAIL");
    if (!ok) failed = 1;
}

static void sim_write(int line, const char *file, const char *value) {
    char path[512];
    snprintf(path, sizeof path, "%s/sim_gpio%d/%s", dir, line, file);
    FILE *f = fopen(path, "w");
    if (f) { fputs(value, f); fclose(f); }
}

static int sim_read(int line) {
    char path[512], buf[8] = "";
    snprintf(path, sizeof path, "%s/sim_gpio%d/value", dir, line);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    if (!fgets(buf, sizeof buf, f)) buf[0] = 0;
    fclose(f);
    return atoi(buf);
}

static int wait_edge(vp_gpio_line *l, int *rising) {
    struct pollfd p = { .fd = vp_gpio_event_fd(l), .events = POLLIN };
    uint64_t ns;
    if (poll(&p, 1, 2000) != 1) return -1;
    return vp_gpio_read_edge(l, rising, &ns) == 0 && ns > 0 ? 0 : -1;
}

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: %s SIM_LINES_DIR BUTTON LED\n", argv[0]); return 2; }
    dir = argv[1];
    char err[400] = "";
    int loaded = cgpiod_load(err, sizeof err) == 0;
    if (!loaded) printf("%s\n", err);
    expect(loaded, cgpiod_soname());
    if (!loaded) return 1;
    /* Button: by name, pull-up as GPIO.swift asks; pressing pulls it down. */
    sim_write(0, "pull", "pull-up");
    vp_gpio_line *button = vp_gpio_request_input(NULL, 0, argv[2], "shim-test", VP_GPIO_BIAS_PULL_UP);
    expect(button != NULL, "request the button by name with edge events");
    if (!button) return 1;
    expect(vp_gpio_get(button) == 1, "idle button reads high");
    int rising = -1;
    sim_write(0, "pull", "pull-down");
    expect(wait_edge(button, &rising) == 0 && rising == 0, "press gives a falling edge with a timestamp");
    sim_write(0, "pull", "pull-up");
    expect(wait_edge(button, &rising) == 0 && rising == 1, "release gives a rising edge");
    errno = 0;
    vp_gpio_line *again = vp_gpio_request_input(NULL, 0, argv[2], "shim-test-2", VP_GPIO_BIAS_AS_IS);
    expect(again == NULL && errno == EBUSY, "a line already in use fails with EBUSY");
    vp_gpio_release(again);

    /* LED: by name, then by chip and offset. */
    vp_gpio_line *led = vp_gpio_request_output(NULL, 0, argv[3], "shim-test", 0);
    expect(led != NULL, "request the LED by name as an output");
    if (!led) return 1;
    expect(vp_gpio_set(led, 1) == 0 && sim_read(1) == 1, "LED on drives the line high");
    expect(vp_gpio_set(led, 0) == 0 && sim_read(1) == 0, "LED off drives it low");
    char chip[256];
    snprintf(chip, sizeof chip, "%s", vp_gpio_chip_name(led));
    unsigned offset = vp_gpio_offset(led);
    vp_gpio_release(led);
    led = vp_gpio_request_output(chip, (int)offset, NULL, "shim-test", 1);
    expect(led != NULL && sim_read(1) == 1, "request by chip name and offset, initially high");
    vp_gpio_release(led);
    errno = 0;
    expect(vp_gpio_request_output(NULL, 0, "no-such-line", "shim-test", 0) == NULL && errno == ENOENT, "a missing line fails with ENOENT");
    vp_gpio_release(button);
    return failed;
}
