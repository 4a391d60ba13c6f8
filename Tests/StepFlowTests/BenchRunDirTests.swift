import Foundation
import Testing
@testable import StepFlow

/// `stepflow bench --run-dir DIR` replaces a previous benchmark there and refuses anything else.
/// Without mpirun the built binary is a world of one rank.
@Suite(.serialized) struct BenchRunDirTests {
    func bench(_ dir: URL, _ extra: [String] = []) throws -> ProcessResult {
        try Executables.run("stepflow", ["bench", "--steps", "200", "--idle-ms", "20", "--raw-tasks", "10", "--run-dir", dir.path] + extra)
    }

    func snapshot(_ dir: URL) -> [String: Data?] { FolderSnapshot.of(dir) }

    @Test("A folder holding a file the benchmark did not write is refused (exit 2); the file stays")
    func foreignFileRefused() throws {
        let dir = Executables.temporaryFolder("bench-foreign")
        defer { try? FileManager.default.removeItem(at: dir) }
        try Data("precious\n".utf8).write(to: dir.appendingPathComponent("keep.txt"))
        let before = snapshot(dir)
        let result = try bench(dir)
        #expect(result.code == 2, "\(result.stderr)")
        #expect(result.stderr.contains("keep.txt") && result.stderr.contains("--run-dir"), "\(result.stderr)")
        #expect(snapshot(dir) == before)
    }

    @Test("A new folder runs (exit 0); running again replaces the previous benchmark (exit 0)")
    func freshThenAgain() throws {
        let parent = Executables.temporaryFolder("bench-fresh")
        defer { try? FileManager.default.removeItem(at: parent) }
        let dir = parent.appendingPathComponent("run")
        let first = try bench(dir)
        #expect(first.code == 0, "\(first.stderr)")
        let run1 = try RunStore.read(runDirectory: dir)
        #expect(run1.protocolName == "Bench" && run1.steps.count == 200)

        // A step log, a report and a set-aside database of an earlier benchmark go too.
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("logs"), withIntermediateDirectories: true)
        try Data("log\n".utf8).write(to: dir.appendingPathComponent("logs/step-7.log"))
        try FileManager.default.copyItem(at: dir.appendingPathComponent("run.db"), to: dir.appendingPathComponent("run-20260101T000000Z.db"))
        Thread.sleep(forTimeInterval: 0.05)
        let second = try bench(dir)
        #expect(second.code == 0, "\(second.stderr)")
        let run2 = try RunStore.read(runDirectory: dir)
        #expect(run2.protocolName == "Bench" && run2.steps.count == 200)
        #expect((run2.started ?? 0) > (run1.started ?? 0), "the second run replaced the first")
        let left = Set(try FileManager.default.contentsOfDirectory(atPath: dir.path))
        #expect(!left.contains("run-20260101T000000Z.db"))
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("logs/step-7.log").path))
    }

    @Test("An empty folder runs; a benchmark without its database (--no-store) can be run again")
    func emptyAndNoStore() throws {
        let dir = Executables.temporaryFolder("bench-empty")
        defer { try? FileManager.default.removeItem(at: dir) }
        for _ in 0..<2 {
            let result = try bench(dir, ["--no-store"])
            #expect(result.code == 0, "\(result.stderr)")
        }
    }

    @Test("A run database of another protocol is refused (exit 2), its bytes unchanged")
    func otherProtocolRefused() throws {
        let dir = Executables.temporaryFolder("bench-other")
        defer { try? FileManager.default.removeItem(at: dir) }
        let store = try RunStore.create(runDirectory: dir, protocolName: "ImportMovies", params: [], threads: 1, mpi: 1)
        #expect(store.finish(status: "finished") == nil)
        let before = snapshot(dir)
        #expect(before["run.db"] != nil)
        let result = try bench(dir)
        #expect(result.code == 2, "\(result.stderr)")
        #expect(result.stderr.contains("ImportMovies"), "\(result.stderr)")
        #expect(snapshot(dir) == before, "nothing added, changed or removed")
    }

    @Test("A previous benchmark with a stray file beside it is refused whole: nothing is deleted")
    func benchPlusStrayRefused() throws {
        let dir = Executables.temporaryFolder("bench-stray")
        defer { try? FileManager.default.removeItem(at: dir) }
        #expect(try bench(dir).code == 0)
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("logs"), withIntermediateDirectories: true)
        try Data("mine".utf8).write(to: dir.appendingPathComponent("logs/notes.txt"))
        let before = snapshot(dir)
        let result = try bench(dir)
        #expect(result.code == 2, "\(result.stderr)")
        #expect(result.stderr.contains("notes.txt"), "\(result.stderr)")
        #expect(snapshot(dir) == before)
    }

    @Test("A previous benchmark whose run.lock a live launch holds is refused; nothing is deleted")
    func liveLockRefused() throws {
        let dir = Executables.temporaryFolder("bench-locked")
        defer { try? FileManager.default.removeItem(at: dir) }
        #expect(try bench(dir).code == 0)
        let lock = try RunDirectoryLock.acquire(runDirectory: dir)
        defer { lock.release() }
        let before = snapshot(dir)
        let result = try bench(dir)
        #expect(result.code == 2, "\(result.stderr)")
        #expect(result.stderr.contains("(pid \(getpid()) on host"), "\(result.stderr)")
        #expect(snapshot(dir) == before)
    }

    @Test("A --run-dir that is a file is refused (exit 2)")
    func fileRefused() throws {
        let dir = Executables.temporaryFolder("bench-file")
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("run")
        try Data("x".utf8).write(to: file)
        let result = try bench(file)
        #expect(result.code == 2, "\(result.stderr)")
        #expect(result.stderr.contains("is a file"), "\(result.stderr)")
        #expect(FileManager.default.contents(atPath: file.path) == Data("x".utf8))
    }
}
