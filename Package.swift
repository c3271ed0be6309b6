// swift-tools-version:6.0
import PackageDescription
import Foundation

/// webrtc-audio-processing's pkg-config name: 1.x (Debian 13) when installed, else 0.3
/// (Debian 12). VP_APM_PKGCONFIG overrides. The shim compiles against either.
let apmPkgConfig: String = {
    if let forced = ProcessInfo.processInfo.environment["VP_APM_PKGCONFIG"], !forced.isEmpty { return forced }
    let dirs = ["/usr/lib/x86_64-linux-gnu/pkgconfig", "/usr/lib/aarch64-linux-gnu/pkgconfig", "/usr/lib/pkgconfig", "/usr/share/pkgconfig", "/usr/local/lib/pkgconfig"]
    return dirs.contains { FileManager.default.fileExists(atPath: $0 + "/webrtc-audio-processing-1.pc") } ? "webrtc-audio-processing-1" : "webrtc-audio-processing"
}()

/// webrtc-audio-processing's headers (libwebrtc-audio-processing-dev), for the shim alone: the
/// library itself is loaded with dlopen, so it is not a systemLibrary (that would link it).
/// A cross build's pkg-config sysroot (PKG_CONFIG_SYSROOT_DIR) applies to it as to the rest.
let apmIncludeDir: String = {
    let sysroot = ProcessInfo.processInfo.environment["PKG_CONFIG_SYSROOT_DIR"] ?? ""
    return sysroot + (apmPkgConfig == "webrtc-audio-processing-1" ? "/usr/include/webrtc-audio-processing-1" : "/usr/include/webrtc_audio_processing")
}()

/// The videophone firmware: one daemon (`videophoned`), its control tool
/// (`videophonectl`) and a benchmark runner, over an embedded WebRTC-compatible stack.
///
/// Layering (see docs/ARCHITECTURE.md):
/// C library targets → I/O-free protocol modules → transport/peer connection → media → app.
let package = Package(
    name: "videophone",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "videophoned", targets: ["videophoned"]),
        .executable(name: "videophonectl", targets: ["videophonectl"]),
        .executable(name: "videophone-bench", targets: ["videophone-bench"]),
        .executable(name: "videophone-toml", targets: ["videophone-toml"]),
        // The I/O-free hot-path modules, for the micro-benchmarks in Benchmarks/ (a separate
        // package, so this one's build never fetches package-benchmark).
        .library(name: "VideophoneHotPath", targets: ["NetworkCore", "RTP", "SRTP", "STUN", "SDP", "Codecs", "MediaDevices"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.5.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.1.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.5.0"),
    ],
    targets: [
        // C libraries, found through pkg-config; shim.h wraps macros and variadic calls.
        .systemLibrary(name: "CX264", pkgConfig: "x264", providers: [.apt(["libx264-dev"])]),
        .systemLibrary(name: "COpus", pkgConfig: "opus", providers: [.apt(["libopus-dev"])]),
        // libsrtp2 on OpenSSL, built from Debian's source by toolchain/libsrtp2.sh: `make` puts its
        // .pc first on PKG_CONFIG_PATH (a bare `swift build` needs that too, or Debian's libsrtp2-dev).
        .systemLibrary(name: "CSRTP", pkgConfig: "libsrtp2", providers: [.apt(["libsrtp2-dev"])]),
        .systemLibrary(name: "COpenSSL", pkgConfig: "openssl", providers: [.apt(["libssl-dev"])]),
        // Board-only and display-only libraries, loaded with dlopen when the config uses them
        // (Sources/CLoader): their headers come from the -dev packages (libasound2-dev,
        // libv4l-dev, libgpiod-dev, libavcodec-dev), nothing is linked.
        .target(name: "CLoader"),
        .target(name: "CALSA", dependencies: ["CLoader"]),
        .target(name: "CV4L2", dependencies: ["CLoader"]),
        .target(name: "CGPIOD", dependencies: ["CLoader"]),
        .systemLibrary(name: "CMosquitto", pkgConfig: "libmosquitto", providers: [.apt(["libmosquitto-dev"])]),
        .systemLibrary(name: "CLinux"),
        .target(name: "CAVCodec", dependencies: ["CLoader"]),
        .systemLibrary(name: "CDRM", pkgConfig: "libdrm", providers: [.apt(["libdrm-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        // C API over webrtc-audio-processing 0.3 or 1.x (C++): echo cancellation, NS, AGC. The
        // library is loaded with dlopen too (apm_load.c): only its headers are used here.
        .target(name: "CAudioProcessing", dependencies: ["CLoader"],
                cSettings: [.unsafeFlags(["-I", apmIncludeDir])], cxxSettings: [.unsafeFlags(["-I", apmIncludeDir])],
                linkerSettings: [.linkedLibrary("stdc++")]),

        // Shared value types with no I/O: bytes, addresses, clocks.
        .target(name: "NetworkCore", dependencies: ["CLinux"]),
        // The version and the git commit (GitCommit plugin), for --version.
        .plugin(name: "GitCommit", capability: .buildTool()),
        .target(name: "BuildInfo", plugins: ["GitCommit"]),
        // TOML 1.0 with line numbers (the config file and its drop-ins). No I/O.
        .target(name: "TOML"),
        // I/O-free protocol modules.
        .target(name: "RTP", dependencies: ["NetworkCore"]),
        .target(name: "STUN", dependencies: ["NetworkCore", "COpenSSL"]),
        .target(name: "SDP", dependencies: ["NetworkCore"]),
        .target(name: "ICE", dependencies: ["NetworkCore", "STUN"]),
        .target(name: "MDNS", dependencies: ["NetworkCore"]),
        .target(name: "TURN", dependencies: ["NetworkCore", "STUN"]),
        .target(name: "CallControl", dependencies: ["NetworkCore"]),
        // Signed signalling messages for an untrusted broker: format, signature check, replay cache.
        .target(name: "SignedSignalling", dependencies: ["COpenSSL"]),
        // Bytes in, bytes out over OpenSSL and libsrtp2.
        .target(name: "DTLS", dependencies: ["COpenSSL"]),
        .target(name: "SRTP", dependencies: ["CSRTP"]),
        // Codecs and capture/playback devices.
        .target(name: "Codecs", dependencies: ["CX264", "COpus", "CAVCodec"]),
        // The screen: framebuffer, scaling, bitmap font, screens, PNG, audio/video sync. No I/O.
        .target(name: "Display", dependencies: ["NetworkCore", "Codecs", "CZlib"]),
        .target(name: "MediaDevices", dependencies: ["NetworkCore"]),
        // The microphone's processing stage (AEC → NS → AGC) and the simulator's echo room.
        .target(name: "AudioProcessing", dependencies: ["CAudioProcessing", "MediaDevices", "NetworkCore"]),
        // Real devices: V4L2 cameras (libv4l2), ALSA capture and playback.
        .target(name: "MediaDevicesLinux", dependencies: ["MediaDevices", "NetworkCore", "Codecs", "Display", "CV4L2", "CALSA", "CGPIOD", "CDRM"]),
        // Sockets, demultiplexing and the W3C-shaped peer connection.
        .target(name: "PeerConnection", dependencies: [
            "NetworkCore", "RTP", "STUN", "SDP", "ICE", "MDNS", "TURN", "DTLS", "SRTP", "CLinux",
            .product(name: "Logging", package: "swift-log"),
        ]),
        // The device application: config, signalling, call control, status.
        .target(name: "VideoPhone", dependencies: [
            "PeerConnection", "Codecs", "Display", "MediaDevices", "MediaDevicesLinux", "AudioProcessing", "SDP", "RTP", "CallControl", "TOML", "BuildInfo", "CLinux",
            "SignedSignalling", "CMosquitto", "STUN",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
        ]),
        .executableTarget(name: "videophoned", dependencies: [
            "NetworkCore", "CLinux",
            "VideoPhone", "BuildInfo", .product(name: "Logging", package: "swift-log"),
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "videophonectl", dependencies: [
            "VideoPhone", "BuildInfo", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        // TOML to toml-test JSON: the firmware's half of the differential test (Tests/TOML).
        .executableTarget(name: "videophone-toml", dependencies: ["TOML"]),
        // libFuzzer targets for every parser of network or user input (Tests/Fuzz, toolchain/fuzz.sh);
        // built plainly it replays the seed corpus instead.
        .executableTarget(name: "videophone-fuzz", dependencies: [
            "NetworkCore", "RTP", "STUN", "SDP", "ICE", "MDNS", "TURN", "DTLS", "VideoPhone", "MediaDevices", "SignedSignalling", "Codecs", "Display",
        ]),
        .executableTarget(name: "videophone-bench", dependencies: [
            "VideoPhone", "Codecs", "Display", "MediaDevices", "MediaDevicesLinux", "RTP", "SRTP", "AudioProcessing",
            .product(name: "Logging", package: "swift-log"),
        ]),

        .testTarget(name: "RTPTests", dependencies: ["RTP"]),
        .testTarget(name: "TOMLTests", dependencies: ["TOML"]),
        .testTarget(name: "TURNTests", dependencies: ["TURN", "STUN", "NetworkCore"]),
        .testTarget(name: "CallControlTests", dependencies: ["CallControl", "NetworkCore"]),
        .testTarget(name: "STUNTests", dependencies: ["STUN", "NetworkCore"]),
        .testTarget(name: "SDPTests", dependencies: ["SDP"], resources: [.copy("Fixtures")]),
        .testTarget(name: "PeerConnectionTests", dependencies: ["PeerConnection", "DTLS", "ICE", "SDP", "RTP", "NetworkCore",
                                                             .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "ICETests", dependencies: ["ICE", "STUN", "MDNS", "NetworkCore"]),
        .testTarget(name: "SecurityTests", dependencies: ["DTLS", "SRTP"]),
        .testTarget(name: "CodecsTests", dependencies: ["Codecs", "MediaDevices", "RTP"]),
        .testTarget(name: "DisplayTests", dependencies: ["Display", "Codecs", "MediaDevices", "NetworkCore", "RTP"]),
        .testTarget(name: "AudioProcessingTests", dependencies: ["AudioProcessing", "Codecs", "MediaDevices", "NetworkCore"]),
        .testTarget(name: "SignedSignallingTests", dependencies: ["SignedSignalling", "DTLS"]),
        .testTarget(name: "VideoPhoneTests", dependencies: ["VideoPhone", "PeerConnection", "SDP", "NetworkCore", "DTLS", "AudioProcessing", "CLoader"]),
        .testTarget(name: "IntegrationTests", dependencies: ["VideoPhone", "NetworkCore", "AudioProcessing", "CallControl", "BuildInfo", "CLinux"]),
    ],
    cxxLanguageStandard: .cxx17
)
