import Foundation
import GRDB
import Testing
@testable import StepFlow

/// The host name as the lock writes it.
private func localHostName() -> String {
    var buffer = [CChar](repeating: 0, count: 256)
    _ = gethostname(&buffer, buffer.count - 1)
    return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// A child process (`sleep`) that holds the lock of `dir`, the way a launch in another process would:
/// this process takes the OFD lock on an open of run.lock, hands that open to the child as its standard
/// input, writes the child's name into the file and closes its own descriptor. From then on only the
/// child's descriptor keeps the lock, and the kernel drops it when the child dies.
private func childHoldingLock(_ dir: URL) throws -> Process {
    let path = RunDirectoryLock.path(in: dir)
    let fd = open(path, O_RDWR | O_CREAT, 0o644)
    try #require(fd >= 0)
    defer { close(fd) }
    var request = flock()
    request.l_type = Int16(F_WRLCK)
    request.l_whence = Int16(SEEK_SET)
    try #require(fcntl(fd, 37 /* F_OFD_SETLK */, &request) == 0, "\(String(cString: strerror(errno)))")
    let child = Process()
    child.executableURL = URL(fileURLWithPath: "/bin/sleep")
    child.arguments = ["600"]
    child.standardInput = FileHandle(fileDescriptor: fd, closeOnDealloc: false)
    try child.run()
    let text = LockHolder(host: localHostName(), pid: child.processIdentifier, started: Date(timeIntervalSince1970: 1_800_000_000)).fileText
    _ = ftruncate(fd, 0)
    _ = Array(text.utf8).withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
    return child
}

private func kill9(_ child: Process) {
    guard child.isRunning else { return }
    kill(child.processIdentifier, SIGKILL)
    child.waitUntilExit()
}

@Suite(.serialized) struct RunDirectoryLockTests {
    @Test("A second acquire, even in the same process, is refused with the holder's pid, host and start")
    func acquireTwice() throws {
        let dir = Executables.temporaryFolder("lock-twice")
        defer { try? FileManager.default.removeItem(at: dir) }
        let before = Date().addingTimeInterval(-1)
        let lock = try RunDirectoryLock.acquire(runDirectory: dir)
        let error = #expect(throws: RunDirectoryLockError.self) { try RunDirectoryLock.acquire(runDirectory: dir) }
        guard case .held(let path, let holder?) = error else {
            Issue.record("expected .held with a holder, got \(String(describing: error))")
            return
        }
        #expect(path == dir.path)
        #expect(holder.pid == getpid() && holder.host == localHostName())
        #expect(try #require(holder.started) >= before.addingTimeInterval(-1))
        let text = try #require(error).description
        #expect(text.hasPrefix("another StepFlow launch (pid \(getpid()) on host \(localHostName()), since 20"), "\(text)")
        #expect(text.hasSuffix("owns run directory \(dir.path); wait for it to end or stop it, then retry."), "\(text)")
        withExtendedLifetime(lock) {}
    }

    @Test("release() lets the lock go (the file then names nobody); deinit does too; release twice is harmless")
    func releaseThenAcquire() throws {
        let dir = Executables.temporaryFolder("lock-release")
        defer { try? FileManager.default.removeItem(at: dir) }
        let first = try RunDirectoryLock.acquire(runDirectory: dir)
        let file = try String(contentsOfFile: first.path, encoding: .utf8)
        #expect(file.contains("pid=\(getpid())\n") && file.contains("host=\(localHostName())\n") && file.contains("started=20"), "\(file)")
        first.release()
        first.release()
        #expect(try String(contentsOfFile: first.path, encoding: .utf8).isEmpty)
        do {
            let second = try RunDirectoryLock.acquire(runDirectory: dir)
            #expect(RunDirectoryLock.holder(runDirectory: dir)?.pid == getpid())
            withExtendedLifetime(second) {}
        }
        // `second` is gone: its deinit released the lock.
        let third = try RunDirectoryLock.acquire(runDirectory: dir)
        third.release()
    }

    @Test("holder() is nil without a lock file and for a free lock, and names a live holder without taking it")
    func holder() throws {
        let dir = Executables.temporaryFolder("lock-holder")
        defer { try? FileManager.default.removeItem(at: dir) }
        #expect(RunDirectoryLock.holder(runDirectory: dir) == nil)
        #expect(RunDirectoryLock.probe(runDirectory: dir) == .noLockFile)
        let lock = try RunDirectoryLock.acquire(runDirectory: dir)
        let holder = try #require(RunDirectoryLock.holder(runDirectory: dir))
        #expect(holder.pid == getpid() && holder.host == localHostName() && holder.started != nil)
        #expect(RunDirectoryLock.holder(runDirectory: dir) != nil, "asking does not take or drop it")
        lock.release()
        #expect(RunDirectoryLock.holder(runDirectory: dir) == nil)
        #expect(RunDirectoryLock.probe(runDirectory: dir) == .free)
    }

    @Test("A lock held by another process is refused naming it; once that process is SIGKILLed the lock is taken")
    func heldByChildThenKilled() throws {
        let dir = Executables.temporaryFolder("lock-child")
        defer { try? FileManager.default.removeItem(at: dir) }
        let child = try childHoldingLock(dir)
        defer { kill9(child) }
        let error = #expect(throws: RunDirectoryLockError.self) { try RunDirectoryLock.acquire(runDirectory: dir) }
        #expect(error == .held(runDirectory: dir.path, holder: LockHolder(host: localHostName(), pid: child.processIdentifier,
                                                                          started: Date(timeIntervalSince1970: 1_800_000_000))))
        #expect(error?.description.contains("(pid \(child.processIdentifier) on host \(localHostName()), since 2027-01-15T08:00:00Z)") == true,
                "\(String(describing: error))")
        #expect(RunDirectoryLock.holder(runDirectory: dir)?.pid == child.processIdentifier)

        kill9(child)
        #expect(RunDirectoryLock.holder(runDirectory: dir) == nil, "the kernel dropped the dead holder's lock")
        let lock = try RunDirectoryLock.acquire(runDirectory: dir)
        #expect(RunDirectoryLock.holder(runDirectory: dir)?.pid == getpid())
        lock.release()
    }

    @Test("A lock file that cannot be created: the error names the path and why")
    func cannotCreate() {
        let dir = Executables.temporaryFolder("lock-missing").appendingPathComponent("not-there")
        defer { try? FileManager.default.removeItem(at: dir.deletingLastPathComponent()) }
        let error = #expect(throws: RunDirectoryLockError.self) { try RunDirectoryLock.acquire(runDirectory: dir) }
        #expect(error == .cannotCreate(path: dir.path + "/run.lock", errno: ENOENT))
        #expect(error?.description == "cannot create the lock file '\(dir.path)/run.lock': the run directory does not exist; create it first.")
        let notADir = RunDirectoryLockError.cannotCreate(path: "/x/run.lock", errno: EROFS).description
        #expect(notADir.contains("'/x/run.lock'") && notADir.contains("read-only"))
    }

    /// `stepflow status` of `dir`: the table's first lines and the JSON document's run object.
    func status(_ dir: URL) throws -> (table: String, run: [String: Any]) {
        let table = try Executables.run("stepflow", ["status", dir.path])
        #expect(table.code == 0, "\(table.stderr)")
        let json = try Executables.run("stepflow", ["status", "--json", "--run-dir", dir.path])
        #expect(json.code == 0, "\(json.stderr)")
        let doc = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        return (table.stdout, try #require(doc["run"] as? [String: Any]))
    }

    @Test("status: a run recorded as running shows its owner while the lock is held, and interrupted once nobody holds it")
    func statusInterrupted() throws {
        let dir = Executables.temporaryFolder("lock-status")
        defer { try? FileManager.default.removeItem(at: dir) }
        let run = try Executables.run("ImportMovies", ["--samples", "3", "--run-dir", dir.path, "--progress", "never"])
        #expect(run.code == 0, "\(run.stderr)")
        let db = try DatabaseQueue(path: RunStore.path(in: dir))
        try db.write { try $0.execute(sql: "UPDATE run SET status = 'running', ended = NULL WHERE id = 1") }
        try db.close()

        // No lock file: a StepFlow that takes no lock ran it, so nothing tells it apart from a live run.
        try? FileManager.default.removeItem(atPath: RunDirectoryLock.path(in: dir))
        var shown = try status(dir)
        #expect(shown.table.hasPrefix("ImportMovies: running, "), "\(shown.table)")
        #expect(shown.run["status"] as? String == "running" && shown.run["owner"] is NSNull)

        let child = try childHoldingLock(dir)
        defer { kill9(child) }
        shown = try status(dir)
        #expect(shown.table.hasPrefix("ImportMovies: running (pid \(child.processIdentifier) on host \(localHostName()), since "), "\(shown.table)")
        #expect(shown.run["status"] as? String == "running")
        let owner = try #require(shown.run["owner"] as? [String: Any])
        #expect(owner["pid"] as? Int == Int(child.processIdentifier) && owner["host"] as? String == localHostName())

        kill9(child)
        shown = try status(dir)
        #expect(shown.table.hasPrefix("ImportMovies: interrupted, "), "\(shown.table)")
        #expect(shown.table.contains("Finish it with --continue"), "\(shown.table)")
        #expect(shown.run["status"] as? String == "interrupted" && shown.run["owner"] is NSNull)

        // A run that ended on record stays as recorded, whatever the lock.
        let reopened = try DatabaseQueue(path: RunStore.path(in: dir))
        try reopened.write { try $0.execute(sql: "UPDATE run SET status = 'finished' WHERE id = 1") }
        try reopened.close()
        #expect(try status(dir).run["status"] as? String == "finished")
    }
}
