// swift-tools-version: 6.1
// A protocol written outside StepFlow, as a user would write one: it depends on StepFlow by path and
// uses only StepFlow's public API (docs/api.md). scripts/check-user-package.sh builds and runs it.
import PackageDescription

let package = Package(
    name: "TextStats",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "StepFlow", path: "../.."),
        // The protocol's own parameters are ArgumentParser options.
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        .executableTarget(
            name: "TextStats",
            dependencies: [
                .product(name: "StepFlow", package: "StepFlow"),
                .product(name: "StepFlowMPI", package: "StepFlow"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
