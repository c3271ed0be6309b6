/* Carries webrtc-audio-processing's pkg-config flags (include path, defines, libraries) to
 * the C++ shim (Sources/CAudioProcessing); Swift code uses the shim's C API instead. */
