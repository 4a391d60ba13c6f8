import Synchronization

/// A digest of what `insertAllSteps` did (every insert, prerequisite edit and release, in order), so
/// ranks can check that they all numbered the same steps (S3: it must be deterministic).
public final class InsertDigest: Sendable {
    private let state = Mutex<(hash: UInt64, steps: Int)>((0xCBF2_9CE4_8422_2325, 0))

    public init() {}

    /// The digest and the number of steps inserted so far.
    public var value: (hash: UInt64, steps: Int) { state.withLock { $0 } }

    func add(_ edit: GraphEdit) {
        var w = WireWriter()
        switch edit {
        case .insert(let spec, let prerequisites, _):
            w.byte(0); w.string(spec.function)
            w.varint(UInt64(spec.args.count))
            for v in spec.args { w.value(v) }
            w.int(spec.threads); w.byte(spec.needsGPU ? 1 : 0); w.int(spec.retries); w.byte(spec.wait ? 1 : 0)
            w.ints(prerequisites)
        case .addPrerequisites(let target, let prerequisites, _):
            w.byte(1); w.int(target); w.ints(prerequisites)
        case .release(let id, _):
            w.byte(2); w.int(id)
        }
        state.withLock { s in
            // FNV-1a: not for security, only to tell two ranks' sequences apart.
            for b in w.bytes { s.hash = (s.hash ^ UInt64(b)) &* 0x100_0000_01B3 }
            if case .insert = edit { s.steps += 1 }
        }
    }
}

/// A graph editor that records every edit in a digest before passing it on.
public struct DigestingEditor: GraphEditor {
    public let inner: any GraphEditor
    public let digest: InsertDigest

    public init(_ inner: any GraphEditor, digest: InsertDigest) {
        self.inner = inner
        self.digest = digest
    }

    public func apply(_ edit: GraphEdit, by inserter: Inserter) throws -> StepID? {
        digest.add(edit)
        return try inner.apply(edit, by: inserter)
    }
}
