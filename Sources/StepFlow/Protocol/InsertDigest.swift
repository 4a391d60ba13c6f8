import Synchronization

/// A digest of what `insertAllSteps` did (every insert, prerequisite edit and release, in order), so
/// ranks can check that they all numbered the same steps (S3: it must be deterministic).
package final class InsertDigest: Sendable {
    private let state = Mutex<(hash: UInt64, steps: Int)>((0xCBF2_9CE4_8422_2325, 0))

    package init() {}

    /// The digest and the number of steps inserted so far.
    package var value: (hash: UInt64, steps: Int) { state.withLock { $0 } }

    func add(_ edit: GraphEdit) {
        // Fed field by field, without building bytes: insertAllSteps may insert a million steps.
        var h = FNV1a()
        switch edit {
        case .insert(let spec, let prerequisites, _):
            h.add(0); h.add(spec.function)
            h.add(spec.args.count)
            for v in spec.args { h.add(v) }
            h.add(spec.threads); h.add(spec.needsGPU ? 1 : 0); h.add(spec.retries); h.add(spec.wait ? 1 : 0)
            h.add(prerequisites.count)
            for p in prerequisites { h.add(p) }
        case .addPrerequisites(let target, let prerequisites, _):
            h.add(1); h.add(target); h.add(prerequisites.count)
            for p in prerequisites { h.add(p) }
        case .release(let id, _):
            h.add(2); h.add(id)
        }
        state.withLock { s in
            s.hash = (s.hash ^ h.value) &* 0x100_0000_01B3
            if case .insert = edit { s.steps += 1 }
        }
    }
}

/// FNV-1a over fields: not for security, only to tell two ranks' sequences apart.
private struct FNV1a {
    var value: UInt64 = 0xCBF2_9CE4_8422_2325

    mutating func add(_ byte: UInt8) { value = (value ^ UInt64(byte)) &* 0x100_0000_01B3 }

    mutating func add(_ n: Int) {
        var x = UInt64(bitPattern: Int64(n))
        for _ in 0..<8 {
            add(UInt8(truncatingIfNeeded: x))
            x >>= 8
        }
    }

    mutating func add(_ s: String) {
        add(s.utf8.count)
        for b in s.utf8 { add(b) }
    }

    mutating func add(_ v: StepValue) {
        switch v {
        case .null: add(UInt8(0))
        case .bool(let b): add(UInt8(b ? 2 : 1))
        case .int(let i): add(UInt8(3)); add(i)
        case .double(let d): add(UInt8(4)); add(Int(bitPattern: UInt(d.bitPattern)))
        case .string(let s): add(UInt8(5)); add(s)
        case .array(let a):
            add(UInt8(6)); add(a.count)
            for x in a { add(x) }
        case .object(let o):
            add(UInt8(7)); add(o.count)
            for (k, x) in o.sorted(by: { $0.key < $1.key }) { add(k); add(x) }
        }
    }
}

/// A graph editor that records every edit in a digest before passing it on.
package struct DigestingEditor: GraphEditor {
    package let inner: any GraphEditor
    package let digest: InsertDigest

    package init(_ inner: any GraphEditor, digest: InsertDigest) {
        self.inner = inner
        self.digest = digest
    }

    package func apply(_ edit: GraphEdit, by inserter: Inserter) throws -> StepID? {
        digest.add(edit)
        return try inner.apply(edit, by: inserter)
    }
}
