import ArgumentParser
import Foundation
import StepFlow

/// Word statistics over a folder of text files, written against StepFlow's public API only.
///
/// The steps, in the order `insertAllSteps` inserts them:
/// 1. `prepare` writes `--files` text files of `--words` words each under `<run-dir>/inputs`
///    (deterministic: every run with the same parameters writes the same words).
/// 2. `scan` lists the inputs and inserts a `count` step per file at run time; each writes
///    `<run-dir>/counts/<file>.json`. It makes `merge` wait for them.
/// 3. `merge` is inserted waiting: the `stepsCheck` hook releases it once `scan` has finished, that
///    is once every `count` step exists. It writes `<run-dir>/stats.json`.
/// 4. `summary` (its prerequisite is the step inserted just before it, `merge`) writes
///    `<run-dir>/summary.txt`.
struct TextStats: StepProtocol {
    struct Params: ParsableArguments, Sendable {
        @Option(help: "How many text files to write and count.")
        var files: Int = 6

        @Option(help: "Words in each file.")
        var words: Int = 500

        @Option(name: .customLong("min-length"), help: "Count only words of at least this many letters.")
        var minLength: Int = 1

        func validate() throws {
            guard (1...10_000).contains(files) else { throw ValidationError("--files must be 1...10000 (got \(files)).") }
            guard words >= 0 else { throw ValidationError("--words must be 0 or more (got \(words)).") }
            guard minLength >= 1 else { throw ValidationError("--min-length must be at least 1 (got \(minLength)).") }
        }
    }

    let params: Params
    /// Set by `insertAllSteps`, the same on every rank, read by steps and the hook.
    var scanStep: StepID = 0
    var mergeStep: StepID = 0

    init(params: Params) { self.params = params }

    static let functions: StepFunctions<TextStats> = [
        "prepare": { p, step in try p.prepare(step) },
        "scan": { p, step in try p.scan(step) },
        "count": { p, step in try p.count(step) },
        "merge": { p, step in try p.merge(step) },
        "summary": { p, step in try p.summary(step) },
    ]

    func defineParams(_ form: inout ProtocolForm) {
        form.addParallelSection(threads: 2, mpi: 1)
    }

    mutating func insertAllSteps(_ steps: StepInserter) throws {
        let prepare = try steps.insertFunctionStep("prepare")
        scanStep = try steps.insertFunctionStep("scan", prerequisites: [prepare])
        mergeStep = try steps.insertFunctionStep("merge", prerequisites: [scanStep], wait: true)
        try steps.insertFunctionStep("summary")
    }

    /// The hook (rank 0, every `stepsCheckInterval`): once `scan` finished, every `count` step exists
    /// and is a prerequisite of `merge`, so `merge` may be released.
    func stepsCheck(_ run: StepsCheck) throws {
        if run.status(of: scanStep) == .finished, run.status(of: mergeStep) == .waiting {
            try run.release(mergeStep)
        }
    }

    var stepsCheckInterval: Duration { .milliseconds(200) }

    func prepare(_ step: StepContext) throws {
        let folder = try folder("inputs", in: step.runDirectory)
        let vocabulary = ["a", "an", "the", "step", "rank", "graph", "worker", "thread", "protocol", "movie",
                          "micrograph", "particle", "volume", "class", "set", "run", "mpi", "slot", "hook", "release"]
        for file in 1...params.files {
            // A small linear congruential generator: the same words on every run.
            var state = UInt64(file) &* 6364136223846793005 &+ 1442695040888963407
            var words: [String] = []
            for _ in 0..<params.words {
                state = state &* 6364136223846793005 &+ 1442695040888963407
                words.append(vocabulary[Int(state >> 33) % vocabulary.count])
            }
            try (words.joined(separator: " ") + "\n")
                .write(to: folder.appendingPathComponent(String(format: "text-%03d.txt", file)), atomically: true, encoding: .utf8)
        }
        step.logger.info("wrote \(params.files) files of \(params.words) words to \(folder.path)")
    }

    /// Inserts a `count` step per input file, at run time, and makes `merge` wait for them all.
    /// Inserted again (a `--continue` after a crash), it inserts the same steps, which keep their
    /// results.
    func scan(_ step: StepContext) throws {
        let folder = try folder("inputs", in: step.runDirectory)
        let names = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".txt") }.sorted()
        var counts: [StepID] = []
        for name in names {
            counts.append(try step.insertFunctionStep("count", .string(name), .int(params.minLength), prerequisites: []))
        }
        try step.addPrerequisites(to: mergeStep, counts)
        step.logger.info("inserted \(counts.count) count steps")
    }

    func count(_ step: StepContext) throws {
        let name = try step.stringArg(0)
        let minLength = step.arg(1)?.intValue ?? 1
        let text = try String(contentsOf: try folder("inputs", in: step.runDirectory).appendingPathComponent(name), encoding: .utf8)
        var counts: [String: Int] = [:]
        for word in text.split(whereSeparator: { $0 == " " || $0 == "\n" }) where word.count >= minLength {
            counts[String(word), default: 0] += 1
        }
        let result = FileCount(file: name, words: counts.values.reduce(0, +), counts: counts, rank: step.rank)
        try JSONEncoder.sorted.encode(result)
            .write(to: try folder("counts", in: step.runDirectory).appendingPathComponent(name + ".json"), options: .atomic)
    }

    func merge(_ step: StepContext) throws {
        let folder = try folder("counts", in: step.runDirectory)
        let files = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".json") }.sorted()
        var total: [String: Int] = [:]
        var words = 0
        for file in files {
            let count = try JSONDecoder().decode(FileCount.self, from: Data(contentsOf: folder.appendingPathComponent(file)))
            words += count.words
            total.merge(count.counts, uniquingKeysWith: +)
        }
        let top = total.sorted { ($0.value, $1.key) > ($1.value, $0.key) }.prefix(5).map(\.key)
        let stats = Stats(files: files.count, words: words, distinct: total.count, top: Array(top))
        try JSONEncoder.sorted.encode(stats).write(to: step.runDirectory.appendingPathComponent("stats.json"), options: .atomic)
    }

    func summary(_ step: StepContext) throws {
        let stats = try JSONDecoder().decode(Stats.self, from: Data(contentsOf: step.runDirectory.appendingPathComponent("stats.json")))
        let text = "\(stats.words) words in \(stats.files) files, \(stats.distinct) distinct; most frequent: \(stats.top.joined(separator: ", "))\n"
        try text.write(to: step.runDirectory.appendingPathComponent("summary.txt"), atomically: true, encoding: .utf8)
        step.logger.info("\(text)")
    }

    /// `<run-dir>/<name>`, created if missing.
    private func folder(_ name: String, in runDirectory: URL) throws -> URL {
        let url = runDirectory.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }
}

/// What a `count` step writes.
struct FileCount: Codable {
    var file: String
    var words: Int
    var counts: [String: Int]
    var rank: Int
}

/// What `merge` writes.
struct Stats: Codable {
    var files: Int
    var words: Int
    var distinct: Int
    var top: [String]
}

extension JSONEncoder {
    static var sorted: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        return encoder
    }
}
