import Foundation
import Testing

/// The engine's seams (DESIGN: the scheduler and graph know nothing of MPI, threads' launch, SQLite or
/// argument parsing): the core folders import neither the store's library nor the command line's, and
/// name none of their types; only StepFlowMPI imports CMPI.
@Suite struct LayeringTests {
    static let sources = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Sources")

    static func swiftFiles(_ folder: String) throws -> [(String, String)] {
        let dir = sources.appendingPathComponent(folder)
        return try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".swift") }.sorted().map {
            ("\(folder)/\($0)", try String(contentsOf: dir.appendingPathComponent($0), encoding: .utf8))
        }
    }

    @Test("Model, Graph, Scheduling, Wire and Runtime import no GRDB or ArgumentParser and name no store or command type",
          arguments: ["StepFlow/Model", "StepFlow/Graph", "StepFlow/Scheduling", "StepFlow/Wire", "StepFlow/Runtime"])
    func coreKnowsNoStoreOrCommandLine(folder: String) throws {
        let files = try Self.swiftFiles(folder)
        #expect(!files.isEmpty, "no sources in \(folder)")
        let forbidden = ["import GRDB", "import ArgumentParser", "import CMPI", "RunStore", "DatabaseQueue", "ParsableArguments",
                         "ProtocolCommand", "ValidationError"]
        for (path, text) in files {
            for word in forbidden { #expect(!text.contains(word), "\(path) mentions \(word)") }
        }
    }

    @Test("Only StepFlowMPI imports CMPI")
    func onlyTheMPITargetImportsCMPI() throws {
        let enumerator = try #require(FileManager.default.enumerator(atPath: Self.sources.path))
        var importers: [String] = []
        for case let path as String in enumerator where path.hasSuffix(".swift") {
            let text = try String(contentsOf: Self.sources.appendingPathComponent(path), encoding: .utf8)
            if text.contains("import CMPI") { importers.append(path) }
        }
        #expect(!importers.isEmpty && importers.allSatisfy { $0.hasPrefix("StepFlowMPI/") }, "\(importers)")
    }
}
