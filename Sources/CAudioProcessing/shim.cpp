// The C API of vp_apm.h over either webrtc-audio-processing. 0.3 ships its headers under
// webrtc/…; 1.x under modules/… in its own include directory: __has_include tells them apart.
#include "vp_apm.h"

#include <cstdio>
#include <cstring>
#include <new>
#include <type_traits>
#include <utility>

// The .pc files' -D flags do not reach a SwiftPM target (it drops -D from pkg-config for
// safety), so the defines both versions' headers expect are set here.
#ifndef WEBRTC_POSIX
#define WEBRTC_POSIX 1
#endif
#ifndef WEBRTC_AUDIO_PROCESSING_ONLY_BUILD
#define WEBRTC_AUDIO_PROCESSING_ONLY_BUILD 1
#endif

#if __has_include(<webrtc/modules/audio_processing/include/audio_processing.h>)
#define VP_APM_V03 1
#include <webrtc/common.h>
#include <webrtc/modules/audio_processing/include/audio_processing.h>
#elif __has_include(<modules/audio_processing/include/audio_processing.h>)
#define VP_APM_V1 1
#include <modules/audio_processing/include/audio_processing.h>
#else
#error "webrtc-audio-processing headers not found (libwebrtc-audio-processing-dev)"
#endif

struct vp_apm {
#if VP_APM_V03
    webrtc::AudioProcessing *apm = nullptr;
#else
    rtc::scoped_refptr<webrtc::AudioProcessing> apm;
#endif
    webrtc::StreamConfig stream{VP_APM_RATE, 1};
    bool echo = false;
    // Float buffers for the float API (the int16 one differs between versions).
    float in[VP_APM_FRAME];
    float out[VP_APM_FRAME];
};

static inline void to_float(const int16_t *s, float *f) {
    for (int i = 0; i < VP_APM_FRAME; i++) f[i] = s[i] * (1.0f / 32768.0f);
}

static inline void to_int16(const float *f, int16_t *s) {
    for (int i = 0; i < VP_APM_FRAME; i++) {
        float v = f[i] * 32768.0f;
        s[i] = v >= 32767.0f ? 32767 : v <= -32768.0f ? -32768 : (int16_t)(v + (v >= 0 ? 0.5f : -0.5f));
    }
}

extern "C" const char *vp_apm_library(void) {
#if VP_APM_V03
    return "webrtc-audio-processing 0.3";
#else
    return "webrtc-audio-processing 1.x";
#endif
}

#if VP_APM_V03
// Options keyed by the library's own Config::identifier<T>() statics (see apm_load.c), so
// the library finds them whether or not it was bound to the executable's copies.
extern "C" void *vp_apm_option_id(int which);
namespace webrtc {
template <> void *Config::identifier<ExtendedFilter>() { return vp_apm_option_id(0); }
template <> void *Config::identifier<DelayAgnostic>() { return vp_apm_option_id(1); }
template <> void *Config::identifier<ExperimentalAgc>() { return vp_apm_option_id(2); }
}  // namespace webrtc

static bool configure(vp_apm *a, const vp_apm_settings *s, char *err, size_t n) {
    webrtc::Config config;
    // The reported delay is a hint on Linux (ALSA and a drifting second card): the
    // extended filter (128 ms) and the internal delay estimator tolerate it being off.
    config.Set<webrtc::ExtendedFilter>(new webrtc::ExtendedFilter(true));
    config.Set<webrtc::DelayAgnostic>(new webrtc::DelayAgnostic(true));
    // The "experimental" AGC drives an analog mixer level; this device uses digital gain.
    config.Set<webrtc::ExperimentalAgc>(new webrtc::ExperimentalAgc(false));
    a->apm = webrtc::AudioProcessing::Create(config);
    if (!a->apm) { snprintf(err, n, "AudioProcessing::Create failed"); return false; }
    webrtc::ProcessingConfig pc = {{a->stream, a->stream, a->stream, a->stream}};
    int r = a->apm->Initialize(pc);
    if (r != 0) { snprintf(err, n, "Initialize: error %d", r); return false; }
    a->apm->high_pass_filter()->Enable(s->echo_cancellation || s->noise_suppression || s->gain_control);
    if (s->echo_cancellation) {
        auto *ec = a->apm->echo_cancellation();
        static const webrtc::EchoCancellation::SuppressionLevel levels[] = {
            webrtc::EchoCancellation::kLowSuppression, webrtc::EchoCancellation::kModerateSuppression,
            webrtc::EchoCancellation::kHighSuppression};
        int l = s->echo_level < 0 ? 0 : s->echo_level > 2 ? 2 : s->echo_level;
        if ((r = ec->Enable(true)) != 0 || (r = ec->set_suppression_level(levels[l])) != 0 ||
            (r = ec->enable_metrics(true)) != 0 || (r = ec->enable_delay_logging(true)) != 0) {
            snprintf(err, n, "echo canceller: error %d", r); return false;
        }
        a->echo = true;
    }
    if (s->noise_suppression) {
        static const webrtc::NoiseSuppression::Level levels[] = {
            webrtc::NoiseSuppression::kLow, webrtc::NoiseSuppression::kModerate,
            webrtc::NoiseSuppression::kHigh, webrtc::NoiseSuppression::kVeryHigh};
        int l = s->noise_level < 0 ? 0 : s->noise_level > 3 ? 3 : s->noise_level;
        if ((r = a->apm->noise_suppression()->set_level(levels[l])) != 0 || (r = a->apm->noise_suppression()->Enable(true)) != 0) {
            snprintf(err, n, "noise suppression: error %d", r); return false;
        }
    }
    if (s->gain_control) {
        auto *gc = a->apm->gain_control();
        int t = s->gain_target_dbfs < 0 ? 0 : s->gain_target_dbfs > 31 ? 31 : s->gain_target_dbfs;
        if ((r = gc->set_mode(webrtc::GainControl::kAdaptiveDigital)) != 0 || (r = gc->set_target_level_dbfs(t)) != 0 ||
            (r = gc->set_compression_gain_db(9)) != 0 || (r = gc->enable_limiter(true)) != 0 || (r = gc->Enable(true)) != 0) {
            snprintf(err, n, "gain control: error %d", r); return false;
        }
    }
    return true;
}
#else
static bool configure(vp_apm *a, const vp_apm_settings *s, char *err, size_t n) {
    a->apm = webrtc::AudioProcessingBuilder().Create();
    if (!a->apm) { snprintf(err, n, "AudioProcessingBuilder::Create failed"); return false; }
    webrtc::AudioProcessing::Config c;
    c.pipeline.maximum_internal_processing_rate = 48000;
    c.high_pass_filter.enabled = s->echo_cancellation || s->noise_suppression || s->gain_control;
    c.echo_canceller.enabled = s->echo_cancellation != 0;
    c.echo_canceller.mobile_mode = false;
    c.noise_suppression.enabled = s->noise_suppression != 0;
    static const webrtc::AudioProcessing::Config::NoiseSuppression::Level levels[] = {
        webrtc::AudioProcessing::Config::NoiseSuppression::kLow, webrtc::AudioProcessing::Config::NoiseSuppression::kModerate,
        webrtc::AudioProcessing::Config::NoiseSuppression::kHigh, webrtc::AudioProcessing::Config::NoiseSuppression::kVeryHigh};
    int l = s->noise_level < 0 ? 0 : s->noise_level > 3 ? 3 : s->noise_level;
    c.noise_suppression.level = levels[l];
    // AEC3 has no suppression level of its own; echo_level is kept for 0.3.
    c.gain_controller1.enabled = s->gain_control != 0;
    c.gain_controller1.mode = webrtc::AudioProcessing::Config::GainController1::kAdaptiveDigital;
    c.gain_controller1.target_level_dbfs = s->gain_target_dbfs < 0 ? 0 : s->gain_target_dbfs > 31 ? 31 : s->gain_target_dbfs;
    c.gain_controller1.compression_gain_db = 9;
    c.gain_controller1.enable_limiter = true;
    a->apm->ApplyConfig(c);
    webrtc::ProcessingConfig pc = {{a->stream, a->stream, a->stream, a->stream}};
    int r = a->apm->Initialize(pc);
    if (r != 0) { snprintf(err, n, "Initialize: error %d", r); return false; }
    a->echo = s->echo_cancellation != 0;
    return true;
}
#endif

#if VP_APM_V1
// apm_load.c's trampoline for Create() returns a plain pointer.
static_assert(std::is_same<decltype(std::declval<webrtc::AudioProcessingBuilder &>().Create()), webrtc::AudioProcessing *>::value,
              "AudioProcessingBuilder::Create() no longer returns AudioProcessing*: update apm_load.c");
#endif

extern "C" vp_apm *vp_apm_create(const vp_apm_settings *s, char *err, size_t n) {
    if (err && n) err[0] = 0;
    char scratch[8];
    if (!err || n == 0) { err = scratch; n = sizeof scratch; }
    // The library is loaded on first use (dlopen): not installed → an error, not a crash.
    if (vp_apm_load(err, n) != 0) return nullptr;
    vp_apm *a = new (std::nothrow) vp_apm();
    if (!a) { snprintf(err, n, "out of memory"); return nullptr; }
    if (!configure(a, s, err, n)) { vp_apm_destroy(a); return nullptr; }
    return a;
}

extern "C" void vp_apm_destroy(vp_apm *a) {
    if (!a) return;
#if VP_APM_V03
    delete a->apm;
#endif
    delete a;
}

extern "C" int vp_apm_analyze_reverse(vp_apm *a, const int16_t *frame) {
    to_float(frame, a->in);
    const float *src[1] = {a->in};
    float *dst[1] = {a->out};
    return a->apm->ProcessReverseStream(src, a->stream, a->stream, dst);
}

extern "C" int vp_apm_process_capture(vp_apm *a, int16_t *frame, int delay_ms) {
    if (a->echo) a->apm->set_stream_delay_ms(delay_ms < 0 ? 0 : delay_ms > 500 ? 500 : delay_ms);
#if VP_APM_V03
    if (a->apm->gain_control()->is_enabled()) a->apm->gain_control()->set_stream_analog_level(127);
#endif
    to_float(frame, a->in);
    const float *src[1] = {a->in};
    float *dst[1] = {a->out};
    int r = a->apm->ProcessStream(src, a->stream, a->stream, dst);
    if (r == 0) to_int16(a->out, frame);
    return r;
}

extern "C" void vp_apm_get_stats(vp_apm *a, vp_apm_stats *st) {
    std::memset(st, 0, sizeof *st);
#if VP_APM_V03
    if (!a->echo) return;
    auto *ec = a->apm->echo_cancellation();
    webrtc::EchoCancellation::Metrics m;
    if (ec->GetMetrics(&m) == 0) { st->erle_db = m.echo_return_loss_enhancement.average; st->has_erle = 1; }
    int median = 0, stddev = 0;
    float poor = 0;
    if (ec->GetDelayMetrics(&median, &stddev, &poor) == 0 && median >= 0) {
        st->delay_ms = median; st->has_delay = 1;
        st->fraction_poor_delays = poor; st->has_fraction_poor_delays = poor >= 0;
    }
    st->echo_present = ec->stream_has_echo() ? 1 : 0;
#else
    webrtc::AudioProcessingStats s = a->apm->GetStatistics(true);
    if (s.echo_return_loss_enhancement) { st->erle_db = *s.echo_return_loss_enhancement; st->has_erle = 1; }
    if (s.delay_ms) { st->delay_ms = *s.delay_ms; st->has_delay = 1; }
    if (s.residual_echo_likelihood) { st->residual_echo_likelihood = *s.residual_echo_likelihood; st->has_residual_echo_likelihood = 1; }
    st->echo_present = s.residual_echo_likelihood && *s.residual_echo_likelihood > 0.5;
#endif
}
