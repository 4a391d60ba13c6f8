import ArgumentParser
import Foundation
import StepFlow

/// Why `trace` or `report` wrote nothing.
enum ReportOutputError: Error, CustomStringConvertible {
    case cannotWrite(path: String, reason: String)

    var description: String {
        switch self {
        case .cannotWrite(let path, let reason):
            return "cannot write '\(path)': \(reason). Give -o a path in a folder that exists and that you can write to."
        }
    }
}

/// Reading the run and writing what `trace` and `report` make of it.
enum ReportOutput {
    /// Reads the run of `directory` through the read model every view shares (a run whose launch died
    /// shows as interrupted); a missing or unreadable database is reported and exits 2.
    static func readRun(_ directory: URL) throws -> StoredRun {
        do {
            return try RunWatcher(runDirectory: directory).refresh().stored
        } catch {
            FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            throw ExitCode(2)
        }
    }

    /// Writes `text` to `path` atomically, or to standard output for "-"; a failure is reported and exits 2.
    static func write(_ text: String, to path: String) throws {
        do {
            try writeFile(text, to: path)
        } catch {
            FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            throw ExitCode(2)
        }
    }

    static func writeFile(_ text: String, to path: String) throws(ReportOutputError) {
        if path == "-" {
            FileHandle.standardOutput.write(Data(text.utf8))
            return
        }
        do {
            try Data(text.utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            throw .cannotWrite(path: path, reason: ErrorText.sentence(error))
        }
    }
}
