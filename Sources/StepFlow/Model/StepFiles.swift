import Foundation

/// A file as a step saw it: its size and modification time, and with `--fingerprint content` a hash
/// of its bytes. `--continue` compares it with the file as it is now (S9 with files).
package struct FileFingerprint: Sendable, Equatable {
    /// The path as the step declared it (relative to its folder, or absolute): what messages show.
    package var path: String
    /// The absolute path, read again by `--continue`.
    package var absolute: String
    package var size: Int64
    /// Modification time, nanoseconds since 1970.
    package var modified: Int64
    /// XXH64 of the bytes, when the content was hashed.
    package var hash: UInt64?

    package init(path: String, absolute: String, size: Int64, modified: Int64, hash: UInt64? = nil) {
        self.path = path
        self.absolute = absolute
        self.size = size
        self.modified = modified
        self.hash = hash
    }

    /// The file at `absolute` now (links followed), or nil when there is none.
    /// - Throws: `StepFilesError.unreadable` when it is not a regular file (a folder, a device), or
    ///   its bytes were asked for and cannot be read.
    package static func take(path: String, absolute: String, content: Bool) throws(StepFilesError) -> FileFingerprint? {
        var info = stat()
        guard stat(absolute, &info) == 0 else { return nil }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw .unreadable(path: path, reason: (info.st_mode & S_IFMT) == S_IFDIR
                ? "it is a folder; declare the files in it, or a glob like \(path)/*" : "it is not a regular file")
        }
        let modified = Int64(info.st_mtim.tv_sec) * 1_000_000_000 + Int64(info.st_mtim.tv_nsec)
        var hash: UInt64?
        if content {
            guard let h = XXH64.file(absolute) else {
                throw .unreadable(path: path, reason: "\(String(cString: strerror(errno))); check its permissions, or run without --fingerprint content")
            }
            hash = h
        }
        return FileFingerprint(path: path, absolute: absolute, size: Int64(info.st_size), modified: modified, hash: hash)
    }

    /// How `now` differs from this, in words ("size 1,024 → 2,048"); nil when it does not. Hashes
    /// decide when both have one (a file rewritten with the same bytes is unchanged); otherwise size
    /// and modification time.
    package func difference(to now: FileFingerprint) -> String? {
        if size != now.size { return "size \(HTMLText.count(Int(size))) → \(HTMLText.count(Int(now.size)))" }
        if let hash, let other = now.hash {
            return hash == other ? nil : "content (same size, other bytes)"
        }
        if modified != now.modified {
            return "modified \(Self.time(modified)) → \(Self.time(now.modified))"
        }
        return nil
    }

    private static func time(_ nanoseconds: Int64) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.string(from: Date(timeIntervalSince1970: Double(nanoseconds) / 1e9))
    }
}

/// The files a step declared, as they were: inputs when it started, outputs when it finished.
package struct StepFiles: Sendable, Equatable {
    package var inputs: [FileFingerprint]
    package var outputs: [FileFingerprint]
    /// Whether inputs were hashed (`--fingerprint content`).
    package var content: Bool

    package init(inputs: [FileFingerprint], outputs: [FileFingerprint], content: Bool) {
        self.inputs = inputs
        self.outputs = outputs
        self.content = content
    }

    /// Why a finished step with these files must run again now, each in words ("input movies/a.mrc
    /// changed (size 1,024 → 2,048)", "output registered/a.json is missing"); empty when nothing changed.
    package func problems() -> [String] {
        var out: [String] = []
        for f in inputs {
            guard let now = try? FileFingerprint.take(path: f.path, absolute: f.absolute, content: f.hash != nil) else {
                out.append("input \(f.path) is missing")
                continue
            }
            if let d = f.difference(to: now) { out.append("input \(f.path) changed (\(d))") }
        }
        for f in outputs {
            guard let now = try? FileFingerprint.take(path: f.path, absolute: f.absolute, content: false) else {
                out.append("output \(f.path) is missing")
                continue
            }
            if let d = f.difference(to: now) { out.append("output \(f.path) changed (\(d))") }
        }
        return out
    }

    package var encoded: [UInt8] {
        var w = WireWriter()
        w.byte(content ? 1 : 0)
        for list in [inputs, outputs] {
            w.int(list.count)
            for f in list {
                w.string(f.path)
                w.string(f.absolute)
                w.int(Int(f.size))
                w.int(Int(f.modified))
                if let h = f.hash { w.byte(1); w.varint(h) } else { w.byte(0) }
            }
        }
        return w.bytes
    }

    package init?(encoded: ArraySlice<UInt8>) {
        let decoded: StepFiles? = Array(encoded).withUnsafeBufferPointer { buffer in
            var r = WireReader(buffer: buffer)
            do throws(WireError) {
                let content = try r.byte("fingerprint mode") == 1
                var lists: [[FileFingerprint]] = []
                for _ in 0..<2 {
                    let n = try r.int("file count")
                    guard n >= 0, n <= r.left else { return nil }
                    var list: [FileFingerprint] = []
                    for _ in 0..<n {
                        let path = try r.string("file path"), absolute = try r.string("file path")
                        let size = try r.int("file size"), modified = try r.int("file time")
                        let hash: UInt64? = try r.byte("hash flag") == 1 ? try r.varint("file hash") : nil
                        list.append(FileFingerprint(path: path, absolute: absolute, size: Int64(size), modified: Int64(modified), hash: hash))
                    }
                    lists.append(list)
                }
                try r.expectEnd()
                return StepFiles(inputs: lists[0], outputs: lists[1], content: content)
            } catch {
                return nil
            }
        }
        guard let decoded else { return nil }
        self = decoded
    }
}

/// What a finished step hands rank 0 and the run database: its result (S13) and the fingerprints of
/// its declared files, in one blob where the result goes, so both travel, are stored and are restored
/// by `--continue` the same way. A step that declared no files stores its result exactly as before.
/// Layout with files: a kind byte 2, the files' length (varint), the files, then the result as
/// `StepResult.encoded` (nothing when it set none).
package enum StepOutcomeBlob {
    static let filesKind: UInt8 = 2

    package static func make(result: [UInt8]?, files: StepFiles?) -> [UInt8]? {
        guard let files else { return result }
        var w = WireWriter()
        let encoded = files.encoded
        w.byte(filesKind)
        w.varint(UInt64(encoded.count))
        return w.bytes + encoded + (result ?? [])
    }

    /// Where the files' bytes lie in a blob that leads with them; nil when its head does not parse.
    private static func filesSpan(_ blob: [UInt8]) -> Range<Int>? {
        blob.withUnsafeBufferPointer { buffer in
            var r = WireReader(buffer: buffer)
            guard (try? r.byte("kind")) != nil, let n = try? r.varint("files length"), n <= UInt64(r.left) else { return nil }
            return r.offset..<(r.offset + Int(n))
        }
    }

    /// Where `split(blob).result` lies in `blob`, for a reader that need not copy it.
    static func resultRange(_ blob: [UInt8]) -> Range<Int> {
        guard blob.first == filesKind else { return blob.indices }
        return filesSpan(blob).map { $0.upperBound..<blob.count } ?? 0..<0
    }

    /// The result alone (`StepResult.encoded`, empty for none) and the files, from a stored blob.
    package static func split(_ blob: [UInt8]) -> (result: [UInt8], files: StepFiles?) {
        guard blob.first == filesKind else { return (blob, nil) }
        guard let files = filesSpan(blob) else { return ([], nil) }
        return (Array(blob[files.upperBound...]), StepFiles(encoded: blob[files]))
    }

    /// The result part of a stored blob, nil when the step set none.
    package static func result(_ blob: [UInt8]?) -> [UInt8]? {
        guard let blob else { return nil }
        let r = split(blob).result
        return r.isEmpty ? nil : r
    }
}

/// Why a step's declared files cannot be used (`StepContext.declareFiles`), with a message naming the
/// step and the file and saying what to do.
public enum StepFilesError: Error, CustomStringConvertible, Sendable, Equatable {
    /// A declared input is not there when the step is due.
    case missingInput(step: StepID, name: String, path: String, producer: String?)
    /// A declared output is not there when the step finished.
    case missingOutput(step: StepID, name: String, path: String)
    /// A file's bytes could not be read for its hash.
    case unreadable(path: String, reason: String)

    /// The message.
    public var description: String {
        switch self {
        case .missingInput(let step, let name, let path, let producer):
            let made = producer.map { " It is an output of step '\($0)', which should have made it: look at that step's log." }
                ?? " No step of the run declares it as an output: put it there, or add the step that makes it."
            return "step \(step) ('\(name)'): its input \(path) does not exist.\(made)"
        case .missingOutput(let step, let name, let path):
            return "step \(step) ('\(name)') finished without making its declared output \(path). Make the command write it, or remove it from outputs."
        case .unreadable(let path, let reason):
            return "cannot fingerprint \(path): \(reason)."
        }
    }
}

/// XXH64 (Yann Collet's xxHash, 64 bits, seed 0): a fast, streamed hash for `--fingerprint content`.
package struct XXH64 {
    private static let p1: UInt64 = 0x9E37_79B1_85EB_CA87
    private static let p2: UInt64 = 0xC2B2_AE3D_27D4_EB4F
    private static let p3: UInt64 = 0x1656_67B1_9E37_79F9
    private static let p4: UInt64 = 0x85EB_CA77_C2B2_AE63
    private static let p5: UInt64 = 0x27D4_EB2F_1656_67C5

    private var v1: UInt64 = 0 &+ XXH64.p1 &+ XXH64.p2
    private var v2: UInt64 = XXH64.p2
    private var v3: UInt64 = 0
    private var v4: UInt64 = 0 &- XXH64.p1
    private var buffer: [UInt8] = []
    private var total: UInt64 = 0

    package init() { buffer.reserveCapacity(32) }

    @inline(__always) private static func round(_ acc: UInt64, _ lane: UInt64) -> UInt64 {
        var a = acc &+ lane &* p2
        a = (a << 31) | (a >> 33)
        return a &* p1
    }

    @inline(__always) private static func merge(_ acc: UInt64, _ v: UInt64) -> UInt64 {
        ((acc ^ round(0, v)) &* p1) &+ p4
    }

    package mutating func update(_ bytes: UnsafeRawBufferPointer) {
        total &+= UInt64(bytes.count)
        var i = 0
        if !buffer.isEmpty {
            let take = min(32 - buffer.count, bytes.count)
            buffer += bytes[0..<take]
            i = take
            guard buffer.count == 32 else { return }
            buffer.withUnsafeBytes { stripe($0.baseAddress!) }
            buffer.removeAll(keepingCapacity: true)
        }
        while i + 32 <= bytes.count {
            stripe(bytes.baseAddress! + i)
            i += 32
        }
        if i < bytes.count { buffer += bytes[i...] }
    }

    @inline(__always) private mutating func stripe(_ p: UnsafeRawPointer) {
        v1 = Self.round(v1, UInt64(littleEndian: p.loadUnaligned(as: UInt64.self)))
        v2 = Self.round(v2, UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 8, as: UInt64.self)))
        v3 = Self.round(v3, UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 16, as: UInt64.self)))
        v4 = Self.round(v4, UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 24, as: UInt64.self)))
    }

    package func finish() -> UInt64 {
        var h: UInt64
        if total >= 32 {
            h = ((v1 << 1) | (v1 >> 63)) &+ ((v2 << 7) | (v2 >> 57)) &+ ((v3 << 12) | (v3 >> 52)) &+ ((v4 << 18) | (v4 >> 46))
            h = Self.merge(h, v1)
            h = Self.merge(h, v2)
            h = Self.merge(h, v3)
            h = Self.merge(h, v4)
        } else {
            h = Self.p5
        }
        h &+= total
        buffer.withUnsafeBytes { raw in
            var i = 0
            while i + 8 <= raw.count {
                let k = Self.round(0, UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: i, as: UInt64.self)))
                h ^= k
                h = ((h << 27) | (h >> 37)) &* Self.p1 &+ Self.p4
                i += 8
            }
            if i + 4 <= raw.count {
                h ^= UInt64(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: i, as: UInt32.self))) &* Self.p1
                h = ((h << 23) | (h >> 41)) &* Self.p2 &+ Self.p3
                i += 4
            }
            while i < raw.count {
                h ^= UInt64(raw[i]) &* Self.p5
                h = ((h << 11) | (h >> 53)) &* Self.p1
                i += 1
            }
        }
        h ^= h >> 33
        h &*= Self.p2
        h ^= h >> 29
        h &*= Self.p3
        h ^= h >> 32
        return h
    }

    package static func hash(_ bytes: [UInt8]) -> UInt64 {
        var x = XXH64()
        bytes.withUnsafeBytes { x.update($0) }
        return x.finish()
    }

    /// The hash of the file at `path`, read 1 MiB at a time; nil (errno set) when it cannot be read.
    package static func file(_ path: String) -> UInt64? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var x = XXH64()
        let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 8)
        defer { chunk.deallocate() }
        while true {
            let n = read(fd, chunk.baseAddress, chunk.count)
            if n < 0 {
                if errno == EINTR { continue }
                return nil
            }
            if n == 0 { break }
            x.update(UnsafeRawBufferPointer(rebasing: chunk[0..<n]))
        }
        return x.finish()
    }
}
