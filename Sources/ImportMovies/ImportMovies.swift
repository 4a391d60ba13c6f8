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

        @Option(name: .customLong("sample-kb"), help: "Size of each generated sample movie in KiB (default: about 1 to 40 KiB, varying).")
        var sampleKB: Int?

        @Option(name: .customLong("register-ms"), help: "Milliseconds each register step works beyond reading its movie (to stand for real processing; default 0).")
        var registerMilliseconds: Int = 0

        static let maximumSamples = 100_000
        static let maximumSampleKB = 1 << 20

        func validate() throws {
            if samples < 0 { throw ValidationError("--samples must be 0 or more (got \(samples)).") }
            if samples > Self.maximumSamples {
                throw ValidationError("--samples must be at most \(Self.maximumSamples) (got \(samples)); for more movies, point --input at a folder of them.")
            }
            if registerMilliseconds < 0 || registerMilliseconds > 3_600_000 {
                throw ValidationError("--register-ms must be between 0 and 3600000 (an hour) (got \(registerMilliseconds)).")
            }
            if let sampleKB, sampleKB < 1 || sampleKB > Self.maximumSampleKB {
                throw ValidationError("--sample-kb must be between 1 and \(Self.maximumSampleKB) (1 GiB) (got \(sampleKB)).")
            }
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

    /// Lists (or, without --input, "downloads": generates) the movies and inserts a register step for
    /// each as it arrives, as the seed page's download step does; then makes the close step wait for
    /// them all and releases it. Run again after a crash, it inserts the same steps in the same order,
    /// so the ones that finished stay finished (S12).
    func downloadMoviesStep(_ step: StepContext) throws {
        let folder = try inputFolder(step.runDirectory)
        let readXml = try step.insertFunctionStep("readXmlFileStep", .string(folder.path))
        var registerSteps: [StepID] = []
        let names = params.input == nil ? (1...max(params.samples, 1)).filter { $0 <= params.samples }.map(Self.sampleName)
                                        : try movieFiles(in: folder)
        for (i, name) in names.enumerated() {
            let path = folder.appendingPathComponent(name)
            if params.input == nil { try downloadSample(i + 1, to: path) }
            registerSteps.append(try step.insertFunctionStep("registerImageStep", .string(path.path), prerequisites: [readXml]))
        }
        step.logger.info("found \(names.count) movies in \(folder.path)")
        try step.addPrerequisites(to: closeSetStep, registerSteps)
        try step.release(closeSetStep)
    }

    /// The movie files of an input folder, sorted: subfolders and hidden files are skipped, names are
    /// taken as they are (spaces, quotes, any Unicode).
    private func movieFiles(in folder: URL) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { name in
            guard !name.hasPrefix("."), !name.hasSuffix(".xml") else { return false }
            var isDirectory: ObjCBool = false
            return FileManager.default.fileExists(atPath: folder.appendingPathComponent(name).path, isDirectory: &isDirectory)
                && !isDirectory.boolValue
        }.sorted()
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
        let out = step.runDirectory.appendingPathComponent("registered")
        // Declared before reading: a --continue after the movie changed registers it again.
        try step.declareFiles(inputs: [url.path], outputs: [out.appendingPathComponent(url.lastPathComponent + ".json").path])
        let data = try Data(contentsOf: url)
        let digest = SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined()
        if params.registerMilliseconds > 0 { usleep(UInt32(params.registerMilliseconds) * 1000) }
        let entry = RegisteredMovie(name: url.lastPathComponent, size: data.count, sha256: digest)
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        try JSONEncoder.sorted.encode(entry).write(to: out.appendingPathComponent(entry.name + ".json"), options: .atomic)
    }

    func closeSetStep(_ step: StepContext) throws {
        let folder = step.runDirectory.appendingPathComponent("registered")
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []).filter { $0.hasSuffix(".json") }.sorted()
        try step.declareFiles(inputs: names.map { folder.appendingPathComponent($0).path },
                              outputs: [step.runDirectory.appendingPathComponent("set.json").path])
        let movies = try names.map {
            try JSONDecoder().decode(RegisteredMovie.self, from: Data(contentsOf: folder.appendingPathComponent($0)))
        }.sorted { $0.name < $1.name }
        try JSONEncoder.sorted.encode(MovieSet(count: movies.count, files: movies))
            .write(to: step.runDirectory.appendingPathComponent("set.json"), options: .atomic)
        step.logger.info("closed the set with \(movies.count) movies")
    }

    /// The input folder, or the folder the sample movies are "downloaded" to, under the run directory.
    private func inputFolder(_ runDirectory: URL) throws -> URL {
        if let input = params.input { return URL(fileURLWithPath: input) }
        let folder = runDirectory.appendingPathComponent("movies")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        return folder
    }

    static func sampleName(_ i: Int) -> String { String(format: "movie_%04d.mrc", i) }

    /// Writes sample movie `i`: deterministic bytes, each movie its own length and checksum. An existing
    /// file of the right size is kept, as a download would skip it (a register step may be reading it).
    private func downloadSample(_ i: Int, to url: URL) throws {
        let size = params.sampleKB.map { $0 * 1024 + 37 * i } ?? 1024 + 37 * i
        if let existing = try? FileManager.default.attributesOfItem(atPath: url.path)[.size] as? Int, existing == size { return }
        var bytes = [UInt8](repeating: 0, count: size)
        for k in 0..<size { bytes[k] = UInt8(truncatingIfNeeded: k &* 31 &+ i) }
        try Data(bytes).write(to: url, options: .atomic)
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
