import Foundation
import Synchronization

/// A command's output in its step's log, capped: past `limit` bytes the log keeps its first half and
/// its last half, and says how much was cut between them. The tail is kept in a ring file beside the
/// log, so neither memory nor disk grows past the limit whatever the command prints.
///
/// The command's output thread writes and the step's thread finishes, under one lock: once
/// `finish` has run, a write is dropped, so output that comes after the step ended (a process that
/// left the step's group and kept the pipe) can never reach a descriptor number that was reused.
final class CappedLog: Sendable {
    private struct Files {
        var fd: Int32
        var headWritten = 0
        var ringFD: Int32 = -1
        var ringTotal = 0
        var finished = false
    }
    private let path: String
    private let headLimit: Int
    private let tailLimit: Int
    private let files: Mutex<Files>

    /// Opens the log for appending (the step's logger appends to the same file).
    /// - Throws: `CommandError.cannotStart` when the log cannot be opened.
    init(path: String, limit: Int) throws(CommandError) {
        self.path = path
        try? FileManager.default.createDirectory(at: URL(fileURLWithPath: path).deletingLastPathComponent(), withIntermediateDirectories: true)
        // O_NOFOLLOW: never through a link planted in the run directory.
        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o644)
        guard fd >= 0 else { throw .cannotStart("cannot open the step's log \(path): \(String(cString: strerror(errno)))") }
        files = Mutex(Files(fd: fd))
        headLimit = max(limit / 2, 0)
        tailLimit = max(limit - limit / 2, 1)
    }

    /// Adds output; output after `finish` is dropped.
    func write(_ bytes: UnsafeRawBufferPointer) {
        files.withLock { f in
            guard !f.finished else { return }
            var rest = bytes
            if f.headWritten < headLimit {
                let n = min(headLimit - f.headWritten, rest.count)
                Self.writeAll(f.fd, UnsafeRawBufferPointer(rebasing: rest[0..<n]))
                f.headWritten += n
                rest = UnsafeRawBufferPointer(rebasing: rest[n...])
            }
            guard !rest.isEmpty else { return }
            if f.ringFD < 0 {
                // A file of its own, made here and unnamed at once: nothing in the run directory
                // (a link, a stale tail) can stand in for it, and nothing is left behind.
                let tail = path + ".tail"
                unlink(tail)
                f.ringFD = open(tail, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
                guard f.ringFD >= 0 else { return }
                unlink(tail)
            }
            // Only the last tailLimit bytes can survive: skip what a big write would overwrite anyway.
            if rest.count > tailLimit {
                f.ringTotal += rest.count - tailLimit
                rest = UnsafeRawBufferPointer(rebasing: rest[(rest.count - tailLimit)...])
            }
            while !rest.isEmpty {
                let at = f.ringTotal % tailLimit
                let n = min(tailLimit - at, rest.count)
                _ = pwrite(f.ringFD, rest.baseAddress, n, off_t(at))
                f.ringTotal += n
                rest = UnsafeRawBufferPointer(rebasing: rest[n...])
            }
        }
    }

    /// Writes the kept tail after the head (with a line saying what was cut) and closes the log.
    /// Later writes are dropped; a second call does nothing.
    func finish() {
        files.withLock { f in
            guard !f.finished else { return }
            f.finished = true
            finishLocked(f)
        }
    }

    private func finishLocked(_ f: Files) {
        let fd = f.fd, ringFD = f.ringFD, ringTotal = f.ringTotal, headWritten = f.headWritten
        defer {
            close(fd)
            if ringFD >= 0 { close(ringFD) }
        }
        guard ringFD >= 0, ringTotal > 0 else { return }
        let kept = min(ringTotal, tailLimit)
        let cut = ringTotal - kept
        if cut > 0 {
            let note = "\n[stepflow: \(cut) bytes of output cut here; the log keeps the first \(headWritten) and the last \(kept) bytes (log_limit)]\n"
            Array(note.utf8).withUnsafeBytes { Self.writeAll(fd, $0) }
        }
        var buffer = [UInt8](repeating: 0, count: min(kept, 1 << 20))
        // In order: the oldest kept byte sits where the ring will write next.
        let start = ringTotal > tailLimit ? ringTotal % tailLimit : 0
        var copied = 0
        while copied < kept {
            let at = (start + copied) % tailLimit
            let n = min(buffer.count, kept - copied, tailLimit - at)
            let got = buffer.withUnsafeMutableBytes { pread(ringFD, $0.baseAddress, n, off_t(at)) }
            guard got > 0 else { break }
            buffer.withUnsafeBytes { Self.writeAll(fd, UnsafeRawBufferPointer(rebasing: $0[0..<got])) }
            copied += got
        }
    }

    private static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) {
        var offset = 0
        while offset < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return }
            offset += n
        }
    }
}
