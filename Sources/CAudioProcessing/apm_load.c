/*
 * webrtc-audio-processing through dlopen (see vp_loader.h). The library is C++: shim.cpp
 * compiles against its headers as before, and the few functions of it that are not inline
 * or virtual (the factory and a few constructors and destructors, called by their mangled
 * names) are defined here as trampolines into the loaded library. Everything else shim.cpp
 * calls goes through the objects' vtables, into the library. A symbol missing here fails
 * the link (the library is not linked), never the running daemon.
 *
 * Why not a separate shared object for the shim: it would have to be built, installed and
 * found next to the daemon (and the cross build and the .deb would carry it), for the same
 * handful of symbols. The two versions' symbol lists differ and are chosen by the same header test
 * as shim.cpp's.
 */
#include <stddef.h>
#include "vp_loader.h"
#include "vp_apm.h"

#if __has_include(<webrtc/modules/audio_processing/include/audio_processing.h>)
/* 0.3 (Debian 12). AudioProcessing* AudioProcessing::Create(const Config&). */
#define APM_SONAME "libwebrtc_audio_processing.so.1"
#define APM_PACKAGE "libwebrtc-audio-processing1"
#define APM_FUNCTIONS(F, V) \
    F(void *, vp_apm_create_03, _ZN6webrtc15AudioProcessing6CreateERKNS_6ConfigE, (const void *config), (config)) \
    APM_OPTION_IDS(V)
/* webrtc::Config keys its options by the address of a static in an inline template
 * (Config::identifier<T>), one copy per module: the library reads them by its own copy. A
 * linked library was bound to the executable's copy (exported for it); a dlopened one is
 * not, when the executable exports nothing (debug builds). shim.cpp keys its options by
 * the library's copies instead, resolved here (data, no trampoline). */
#define APM_OPTION_IDS(V) \
    V(void, vp_apm_id_extended_filter, _ZZN6webrtc6Config10identifierINS_14ExtendedFilterEEEPvvE14id_placeholder, (), ()) \
    V(void, vp_apm_id_delay_agnostic, _ZZN6webrtc6Config10identifierINS_13DelayAgnosticEEEPvvE14id_placeholder, (), ()) \
    V(void, vp_apm_id_experimental_agc, _ZZN6webrtc6Config10identifierINS_15ExperimentalAgcEEEPvvE14id_placeholder, (), ())
#else
/* 1.x (Debian 13). Constructors and destructors take `this` first and return nothing, and
 * AudioProcessingBuilder::Create() returns AudioProcessing* (shim.cpp asserts it), on both
 * x86-64 and AArch64's C++ ABI. */
#define APM_SONAME "libwebrtc-audio-processing-1.so.3"
#define APM_PACKAGE "libwebrtc-audio-processing-1-3"
#define APM_FUNCTIONS(F, V) \
    V(void, vp_apm_pipeline_ctor, _ZN6webrtc15AudioProcessing6Config8PipelineC1Ev, (void *self), (self)) \
    V(void, vp_apm_stats_dtor, _ZN6webrtc20AudioProcessingStatsD1Ev, (void *self), (self)) \
    V(void, vp_apm_builder_ctor, _ZN6webrtc22AudioProcessingBuilderC1Ev, (void *self), (self)) \
    V(void, vp_apm_builder_dtor, _ZN6webrtc22AudioProcessingBuilderD1Ev, (void *self), (self)) \
    F(void *, vp_apm_builder_create, _ZN6webrtc22AudioProcessingBuilder6CreateEv, (void *self), (self))
#endif

#define APM_INDEX(ret, local, symbol, params, args) vp_slot_##local,
#define APM_NAME(ret, local, symbol, params, args) #symbol,
enum { APM_FUNCTIONS(APM_INDEX, APM_INDEX) apm_count };
static const char *const apm_names[] = { APM_FUNCTIONS(APM_NAME, APM_NAME) };
static void *apm_slots[apm_count];
static const char apm_soname[] = VP_DLOPEN_SONAME APM_SONAME;
static vp_library apm = { .tag = "APM", .soname = VP_SONAME_FROM(apm_soname), .package = APM_PACKAGE,
                          .names = apm_names, .slots = apm_slots, .count = apm_count };

/* Hidden: the executable exports its symbols, and these must not stand in for the library's. */
#define APM_NONE(ret, local, symbol, params, args)
#define APM_F(ret, local, symbol, params, args) \
    __attribute__((visibility("hidden"))) ret local params __asm__(#symbol); \
    ret local params { return ((ret (*) params)vp_library_slot(&apm, vp_slot_##local, #symbol)) args; }
#define APM_V(ret, local, symbol, params, args) \
    __attribute__((visibility("hidden"))) void local params __asm__(#symbol); \
    void local params { ((void (*) params)vp_library_slot(&apm, vp_slot_##local, #symbol)) args; }
#ifdef APM_OPTION_IDS
/* The option identifiers are data: no trampolines for them. */
#define APM_FUNCTIONS_CODE(F, V) F(void *, vp_apm_create_03, _ZN6webrtc15AudioProcessing6CreateERKNS_6ConfigE, (const void *config), (config))
APM_FUNCTIONS_CODE(APM_F, APM_NONE)

/* The library's Config::identifier<T>() address for T = 0 ExtendedFilter, 1 DelayAgnostic,
 * 2 ExperimentalAgc (0.3 only; after vp_apm_load). */
void *vp_apm_option_id(int which) {
    size_t slot = which == 0 ? vp_slot_vp_apm_id_extended_filter : which == 1 ? vp_slot_vp_apm_id_delay_agnostic : vp_slot_vp_apm_id_experimental_agc;
    return vp_library_slot(&apm, slot, apm_names[slot]);
}
#else
APM_FUNCTIONS(APM_F, APM_V)
#endif

int vp_apm_load(char *err, size_t err_len) { return vp_library_load(&apm, err, err_len); }
const char *vp_apm_soname(void) { return vp_library_soname(&apm); }
