import Foundation
import Synchronization

/// Who holds a run directory's lock, as the holder wrote it into `<run-dir>/run.lock`. A field is nil
/// when the file does not say (the holder has not written it yet, or the file was edited).
package struct LockHolder: Sendable, Equatable, CustomStringConvertible {
    package var host: String?
    package var pid: Int32?
    package var started: Date?

    package init(host: String?, pid: Int32?, started: Date?) {
        self.host = host
        self.pid = pid
        self.started = started
    }

    /// "pid 4242 on host node07, since 2026-11-26T03:31:00Z", with unknown parts left out.
    package var description: String {
        var parts: [String] = []
        parts.append(pid.map { "pid \($0)" } ?? "unknown pid")
        parts.append("on host \(host ?? "unknown")")
        var text = parts.joined(separator: " ")
        if let started { text += ", since \(ISO8601DateFormatter().string(from: started))" }
        return text
    }

    /// The file's text: one `key=value` line each, readable with `cat`.
    var fileText: String {
        "host=\(host ?? "")\npid=\(pid.map(String.init) ?? "")\nstarted=\(started.map { ISO8601DateFormatter().string(from: $0) } ?? "")\n"
    }

    /// Parses `fileText`; nil when the text names nobody (empty, or not written yet).
    init?(fileText text: String) {
        var fields: [Substring: Substring] = [:]
        for line in text.split(separator: "\n") {
            guard let eq = line.firstIndex(of: "=") else { continue }
            fields[line[..<eq]] = line[line.index(after: eq)...]
        }
        host = fields["host"].flatMap { $0.isEmpty ? nil : String($0) }
        pid = fields["pid"].flatMap { Int32($0) }
        started = fields["started"].flatMap { ISO8601DateFormatter().date(from: String($0)) }
        if host == nil && pid == nil && started == nil { return nil }
    }
}

/// Why a run directory's lock could not be taken. Every message names the lock file and what to do.
package enum RunDirectoryLockError: Error, CustomStringConvertible, Sendable, Equatable {
    /// Another launch holds the lock; `holder` is who the lock file names (nil if it names nobody yet).
    case held(runDirectory: String, holder: LockHolder?)
    /// The lock file could not be opened or created; `errno` says why.
    case cannotCreate(path: String, errno: Int32)
    /// The filesystem or kernel refused the lock itself (no lock service, no OFD locks).
    case cannotLock(path: String, errno: Int32)
    /// The lock was taken but who holds it could not be written; the lock was let go again.
    case cannotRecord(path: String, errno: Int32)

    package var description: String {
        switch self {
        case .held(let dir, let holder?):
            return "another StepFlow launch (\(holder)) owns run directory \(dir); wait for it to end or stop it, then retry."
        case .held(let dir, nil):
            return "another StepFlow launch owns run directory \(dir) (its run.lock does not name it yet); wait for it to end or stop it, then retry."
        case .cannotCreate(let path, let code):
            let why: String
            switch code {
            case ENOENT: why = "the run directory does not exist; create it first"
            case ENOTDIR: why = "part of the path is a file, not a folder; choose another run directory"
            case EACCES, EPERM: why = "permission denied; choose a run directory you can write to"
            case EROFS: why = "the filesystem is read-only; choose a run directory on a writable one"
            case EISDIR: why = "a folder has that name; move it away"
            case ELOOP: why = "it is a symbolic link, which StepFlow does not follow (it would write to the file the link names); remove the link"
            case EINVAL: why = "it is not a regular file (a pipe, a device?); remove it"
            default: why = String(cString: strerror(code))
            }
            return "cannot create the lock file '\(path)': \(why)."
        case .cannotLock(let path, let code):
            let why: String
            switch code {
            case ENOLCK: why = "the filesystem offers no locks (an NFS mount without its lock service?); ask for NFS locking, or use a run directory on a filesystem that has it"
            case EINVAL: why = "this kernel or filesystem has no open-file-description locks (Linux 3.15 or later is needed)"
            default: why = String(cString: strerror(code))
            }
            return "cannot lock '\(path)': \(why)."
        case .cannotRecord(let path, let code):
            return "took the lock '\(path)' but could not write who holds it: \(String(cString: strerror(code))). Free space or fix the filesystem, then retry."
        }
    }
}

/// One owner per run directory: an exclusive lock on `<run-dir>/run.lock`, held from `acquire` until
/// `release()` or deinit. The file names the holder (host, pid, start time) for error messages and
/// `status`.
///
/// The lock is a Linux open-file-description lock (`F_OFD_SETLK`): unlike classic POSIX record locks
/// it conflicts between two opens in the same process, and closing some other descriptor of the file
/// does not drop it; like them it is an fcntl lock, so it reaches other nodes over NFS. The kernel drops
/// it when the holder dies, however it dies, so a stale lock is simply taken. The file is never deleted
/// (deleting a lock file races with a process that just opened it).
package final class RunDirectoryLock: Sendable {
    package static let fileName = "run.lock"

    /// The run directory this lock owns.
    package let runDirectory: URL
    /// `<run-dir>/run.lock`.
    package let path: String
    /// The locked descriptor; -1 once released.
    private let descriptor: Mutex<Int32>

    private init(runDirectory: URL, path: String, descriptor: Int32) {
        self.runDirectory = runDirectory
        self.path = path
        self.descriptor = Mutex(descriptor)
    }

    deinit { release() }

    /// The lock file's path in `runDirectory`.
    package static func path(in runDirectory: URL) -> String { runDirectory.appendingPathComponent(fileName).path }

    /// Takes the lock of `runDirectory` (which must exist) without waiting, and writes this process's
    /// host name, pid and start time into the lock file.
    /// - Throws: `RunDirectoryLockError.held` naming the holder when another open holds it (in this
    ///   process too); `.cannotCreate`, `.cannotLock` or `.cannotRecord` when the file system does not
    ///   allow it.
    package static func acquire(runDirectory: URL) throws(RunDirectoryLockError) -> RunDirectoryLock {
        let path = path(in: runDirectory)
        // O_CLOEXEC: a child process spawned by a step must not inherit the descriptor, or the lock
        // would outlive this process for as long as the child lives.
        // O_NOFOLLOW: a link planted as run.lock would have this write (and empty) the file it names.
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0o644)
        guard fd >= 0 else { throw .cannotCreate(path: path, errno: errno) }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFREG else {
            close(fd)
            throw .cannotCreate(path: path, errno: EINVAL)
        }
        if !tryLock(fd) {
            let code = errno
            defer { close(fd) }
            if code == EAGAIN || code == EACCES || code == EWOULDBLOCK {
                throw .held(runDirectory: runDirectory.path, holder: readHolder(fd))
            }
            throw .cannotLock(path: path, errno: code)
        }
        let me = LockHolder(host: hostName(), pid: getpid(), started: Date())
        let bytes = Array(me.fileText.utf8)
        let written = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        var failure: Int32?
        if written < 0 {
            failure = errno
        } else if written != bytes.count {
            failure = ENOSPC
        } else if ftruncate(fd, off_t(bytes.count)) != 0 {
            // (Cutting what a holder that died without releasing left beyond our text.)
            failure = errno
        }
        if let code = failure {
            close(fd)   // the only open of this lock: closing it lets the lock go
            throw .cannotRecord(path: path, errno: code)
        }
        // So that readers on other NFS clients see who holds it.
        _ = fsync(fd)
        return RunDirectoryLock(runDirectory: runDirectory, path: path, descriptor: fd)
    }

    /// Lets the lock go (and empties the file, so it names nobody). Calling it again does nothing.
    package func release() {
        descriptor.withLock { fd in
            guard fd >= 0 else { return }
            // Emptied while still held: after the unlock a new holder may already be writing.
            _ = ftruncate(fd, 0)
            close(fd)
            fd = -1
        }
    }

    /// Whether a live process holds the lock of `runDirectory`, and who (from the file), without taking
    /// it. Nil when nobody holds it, when there is no lock file, or when it cannot be checked.
    package static func holder(runDirectory: URL) -> LockHolder? {
        if case .held(let holder) = probe(runDirectory: runDirectory) { return holder }
        return nil
    }

    /// What can be told about the lock of a run directory without taking it.
    package enum Probe: Sendable, Equatable {
        /// No lock file: no launch that takes the lock has used this directory.
        case noLockFile
        /// The file exists and no live process holds it (its last holder ended, however it ended).
        case free
        /// A live process holds it; the file names it (fields nil where it does not yet).
        case held(LockHolder)
        /// The lock could not be checked (the file cannot be opened, or the filesystem refuses the query).
        case unknown(reason: String)
    }

    /// Checks the lock of `runDirectory` with `F_OFD_GETLK`, which never takes or disturbs it. A lock
    /// held by this very process through another open counts as held.
    package static func probe(runDirectory: URL) -> Probe {
        let path = path(in: runDirectory)
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            let code = errno
            return code == ENOENT ? .noLockFile : .unknown(reason: "cannot open '\(path)': \(String(cString: strerror(code)))")
        }
        defer { close(fd) }
        guard let held = isHeld(fd) else {
            return .unknown(reason: "cannot query the lock on '\(path)': \(String(cString: strerror(errno)))")
        }
        guard held else { return .free }
        return .held(readHolder(fd) ?? LockHolder(host: nil, pid: nil, started: nil))
    }

    #if os(Linux)
    // Linux's F_OFD_* commands (bits/fcntl-linux.h); not every Glibc module map exports them, and their
    // values are part of the kernel ABI.
    private static let F_OFD_GETLK: Int32 = 36
    private static let F_OFD_SETLK: Int32 = 37

    private static func tryLock(_ fd: Int32) -> Bool {
        var request = flock()
        request.l_type = Int16(F_WRLCK)
        request.l_whence = Int16(SEEK_SET)
        return fcntl(fd, F_OFD_SETLK, &request) == 0
    }

    /// Whether another open holds the lock; nil (errno set) when the query fails.
    private static func isHeld(_ fd: Int32) -> Bool? {
        var query = flock()
        query.l_type = Int16(F_WRLCK)
        query.l_whence = Int16(SEEK_SET)
        guard fcntl(fd, F_OFD_GETLK, &query) == 0 else { return nil }
        // l_pid is -1 for an OFD lock (it belongs to an open, not to a process): the file says who.
        return query.l_type != Int16(F_UNLCK)
    }
    #else
    // Elsewhere (untested here) flock(2) has the same ownership: per open file description, conflicting
    // within one process, dropped when the holder dies.
    private static func tryLock(_ fd: Int32) -> Bool { flock(fd, LOCK_EX | LOCK_NB) == 0 }

    private static func isHeld(_ fd: Int32) -> Bool? {
        if flock(fd, LOCK_SH | LOCK_NB) == 0 {
            _ = flock(fd, LOCK_UN)
            return false
        }
        return errno == EWOULDBLOCK ? true : nil
    }
    #endif

    /// Who the lock file names. A holder writes the file right after taking the lock, so an empty
    /// file is read again for up to ~0.1 s before giving up.
    private static func readHolder(_ fd: Int32) -> LockHolder? {
        for attempt in 0..<10 {
            var buffer = [UInt8](repeating: 0, count: 4096)
            let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
            if n > 0, let holder = LockHolder(fileText: String(decoding: buffer[..<n], as: UTF8.self)) { return holder }
            if attempt < 9 { usleep(10_000) }
        }
        return nil
    }

    private static func hostName() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "unknown" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
