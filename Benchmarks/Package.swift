// swift-tools-version:6.1
import PackageDescription

/// Micro-benchmarks of the firmware's hot paths (`make perf-audit`, BENCHMARKS.md).
///
/// A package of its own, depending on the firmware by path, so that the firmware's build and
/// CI's `swift build` never resolve or build package-benchmark.
let package = Package(
    name: "videophone-benchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "videophone", path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark.git", exact: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "HotPath",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "VideophoneHotPath", package: "videophone"),
            ],
            path: "Benchmarks/HotPath",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ]
)
