// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "StepFlow",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "StepFlow", targets: ["StepFlow"]),
        .library(name: "StepFlowMPI", targets: ["StepFlowMPI"]),
        .executable(name: "ImportMovies", targets: ["ImportMovies"]),
        .executable(name: "stepflow", targets: ["stepflow"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
    ],
    targets: [
        .target(
            name: "StepFlow",
            dependencies: [
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Collections", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "GRDBSQLite", package: "GRDB.swift"),
            ]
        ),
        .systemLibrary(
            name: "CMPI",
            pkgConfig: "ompi-c",
            providers: [.apt(["libopenmpi-dev"])]
        ),
        .target(
            name: "StepFlowMPI",
            dependencies: ["StepFlow", "CMPI"]
        ),
        .executableTarget(
            name: "ImportMovies",
            dependencies: [
                "StepFlow",
                "StepFlowMPI",
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        .target(
            name: "StepFlowCommand",
            dependencies: ["StepFlow", .product(name: "Yams", package: "Yams"),
                           .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .target(name: "CTaskBenchKernel"),
        .target(name: "CTerminal"),
        .target(
            name: "StepFlowTaskBench",
            dependencies: ["StepFlow", "CTaskBenchKernel", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .target(
            name: "StepFlowServe",
            dependencies: ["StepFlow", .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
                           .product(name: "NIOHTTP1", package: "swift-nio")]
        ),
        .executableTarget(
            name: "stepflow",
            dependencies: ["StepFlow", "StepFlowMPI", "StepFlowCommand", "StepFlowTaskBench", "StepFlowServe", "CTerminal",
                           .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .executableTarget(
            name: "StepFlowProbe",
            dependencies: ["StepFlow", "StepFlowMPI", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .testTarget(
            name: "StepFlowTests",
            dependencies: ["StepFlow", "StepFlowCommand", "StepFlowTaskBench", "StepFlowServe", .product(name: "GRDB", package: "GRDB.swift")],
            // Read by the tests from their place in the source tree, not bundled.
            exclude: ["TaskBenchReference", "Support/scripts"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
