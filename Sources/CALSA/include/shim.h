#ifndef CALSA_SHIM_H
#define CALSA_SHIM_H
#include <stddef.h>
#include <alsa/asoundlib.h>

/* libasound is loaded when the config uses it (alsa.c): 0, or -1 with the reason in err. */
int calsa_load(char *err, size_t err_len);
/* The soname loaded (libasound.so.2, or the VIDEOPHONE_DLOPEN_ASOUND override). */
const char *calsa_soname(void);
#endif
