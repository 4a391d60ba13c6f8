import ArgumentParser
import Crypto
import Foundation
import StepFlow

/// The protocol of Scipion's "Parallelization" page, in Swift: download (list) the movies, read the
/// acquisition metadata, register every movie in parallel, then close the set.
struct ImportMovies: StepProtocol {
    struct Params: ParsableArguments, Sendable {
        @Option(help: "Folder of movies to import (default: generate --samples sample movies under the run dir).")
        var input: String?

        @Option(help: "How many sample movies to generate when --input is not given.")
        var samples: Int = 20

        func validate() throws {
            if samples < 0 { throw ValidationError("--samples must be 0 or more (got \(samples)).") }
            guard let input else { return }
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: input, isDirectory: &isDir), isDir.boolValue else {
                throw ValidationError("--input '\(input)' is not a folder. Give a folder of movie files.")
            }
            guard FileManager.default.isReadableFile(atPath: input),
                  (try? FileManager.default.contentsOfDirectory(atPath: input)) != nil else {
                throw ValidationError("--input '\(input)' cannot be read. Check its permissions.")
            }
        }
    }

    let params: Params
    /// The close step's id, set in insertAllSteps and the same on every rank (S3).
    var closeSetStep: StepID = 0

    init(params: Params) { self.params = params }

    static let functions: StepFunctions<ImportMovies> = [
        "downloadMoviesStep": { p, step in try p.downloadMoviesStep(step) },
        "readXmlFileStep": { p, step in try p.readXmlFileStep(step) },
        "registerImageStep": { p, step in try p.registerImageStep(step) },
        "closeSetStep": { p, step in try p.closeSetStep(step) },
    ]

    func defineParams(_ form: inout ProtocolForm) {
        form.addParallelSection(threads: 2, mpi: 1)
    }

    mutating func insertAllSteps(_ steps: StepInserter) throws {
        try steps.insertFunctionStep("downloadMoviesStep")
        closeSetStep = try steps.insertFunctionStep("closeSetStep", wait: true)
    }

    func downloadMoviesStep(_ step: StepContext) throws {
        let folder = try inputFolder(step.runDirectory)
        let files = try FileManager.default.contentsOfDirectory(atPath: folder.path)
            .filter { !$0.hasPrefix(".") && !$0.hasSuffix(".xml") }
            .sorted()
        step.logger.info("found \(files.count) movies in \(folder.path)")
        let readXml = try step.insertFunctionStep("readXmlFileStep", .string(folder.path))
        var registerSteps: [StepID] = []
        for file in files {
            registerSteps.append(try step.insertFunctionStep("registerImageStep", .string(folder.appendingPathComponent(file).path),
                                                             prerequisites: [readXml]))
        }
        try step.addPrerequisites(to: closeSetStep, registerSteps)
        try step.release(closeSetStep)
    }

    func readXmlFileStep(_ step: StepContext) throws {
        let folder = URL(fileURLWithPath: try step.stringArg(0))
        let xml = folder.appendingPathComponent("acquisition.xml")
        if let text = try? String(contentsOf: xml, encoding: .utf8) {
            step.logger.info("read \(text.utf8.count) bytes of acquisition metadata from \(xml.path)")
        } else {
            step.logger.info("no acquisition.xml in \(folder.path); using defaults")
        }
    }

    func registerImageStep(_ step: StepContext) throws {
        let url = URL(fileURLWithPath: try step.stringArg(0))
        let data = try Data(contentsOf: url)
        let digest = SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined()
        let entry = RegisteredMovie(name: url.lastPathComponent, size: data.count, sha256: digest)
        let out = step.runDirectory.appendingPathComponent("registered")
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        try JSONEncoder.sorted.encode(entry).write(to: out.appendingPathComponent(entry.name + ".json"), options: .atomic)
    }

    func closeSetStep(_ step: StepContext) throws {
        let folder = step.runDirectory.appendingPathComponent("registered")
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
        let movies = try names.filter { $0.hasSuffix(".json") }.sorted().map {
            try JSONDecoder().decode(RegisteredMovie.self, from: Data(contentsOf: folder.appendingPathComponent($0)))
        }.sorted { $0.name < $1.name }
        try JSONEncoder.sorted.encode(MovieSet(count: movies.count, files: movies))
            .write(to: step.runDirectory.appendingPathComponent("set.json"), options: .atomic)
        step.logger.info("closed the set with \(movies.count) movies")
    }

    /// The input folder, or a folder of generated sample movies under the run directory.
    private func inputFolder(_ runDirectory: URL) throws -> URL {
        if let input = params.input { return URL(fileURLWithPath: input) }
        let folder = runDirectory.appendingPathComponent("movies")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        for i in 1...max(params.samples, 1) where i <= params.samples {
            let name = String(format: "movie_%04d.mrc", i)
            // Deterministic bytes of varying length, so every movie has its own checksum.
            let bytes = (0..<(1024 + 37 * i)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ i) }
            try Data(bytes).write(to: folder.appendingPathComponent(name))
        }
        return folder
    }
}

struct RegisteredMovie: Codable, Equatable {
    var name: String
    var size: Int
    var sha256: String
}

struct MovieSet: Codable {
    var count: Int
    var files: [RegisteredMovie]
}

extension JSONEncoder {
    static var sorted: JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .prettyPrinted]
        return e
    }
}
