/// How the run database keeps steps (schema 3): every transaction of the writer appends one row to
/// `step_log` holding, as bytes, every step it changed; the run is the rows applied in order.
///
/// A row per step (the `step` table of schemas 1 and 2) cost SQLite ~7,000 instructions a step, a
/// core on its own at 400,000 steps a second; appending the same records as one value per commit
/// costs a few hundred. The bytes are `WireWriter`'s: the codec ranks already use, checked on read.
enum StepLog {
    /// The first byte of every row: a later layout gets a new number, and this build refuses it.
    static let layout: UInt8 = 1

    /// What one row says about one step.
    enum Entry {
        case step(StepRecord)
        /// Its inserter no longer inserts it (S12): it is out of the run.
        case dropped(StepID)
    }

    /// One row's bytes: `records` in order (dropped steps as such).
    static func encode(_ records: some Sequence<StepRecord>) -> [UInt8] {
        let row = Row()
        for r in records { row.append(r) }
        return Array(row.bytes)
    }

    /// A row being written: its bytes, grown as records are added, in the wire codec's writer (its
    /// memory reused from one commit to the next). Each record is bounded first and written through
    /// one cursor: the writer encodes every step of the run, under the scheduler's lock.
    final class Row {
        // Unchecked: a row is used by one thread (the writer's, or a caller's local one), and the
        // dynamic exclusivity check on every record was a fifth of its cost.
        @exclusivity(unchecked) private var w = WireWriter(capacity: 1 << 16)

        init() { clear() }

        /// Empties the row, keeping its memory, and starts it with the layout byte.
        func clear() {
            w.removeAll()
            w.byte(layout)
        }

        /// Whether no record was added since `clear`.
        var isEmpty: Bool { w.count <= 1 }

        /// The row's bytes, valid until the next change.
        var bytes: UnsafeRawBufferPointer { w.written }

        func append(_ r: StepRecord) {
            withUnsafePointer(to: r) { append($0) }
        }

        /// Appends the record `p` points to, reading it in place.
        func append(_ p: UnsafePointer<StepRecord>) {
            guard !p.pointee.isDropped else {
                w.withRoom(11) { c in
                    c.byte(0)
                    c.varint(UInt64(p.pointee.id))
                }
                return
            }
            // Arguments are rare on the hot path and nest: the wire codec writes them, the same bytes.
            let args = p.pointee.spec.args.isEmpty ? nil : WireCodec.encode(arguments: p.pointee.spec.args)
            let bound = 200 + p.pointee.spec.function.utf8.count + (args?.count ?? 1) + 10 * p.pointee.prerequisites.count
                + (p.pointee.error?.utf8.count ?? 0) + (p.pointee.logPath?.utf8.count ?? 0)
            w.withRoom(bound) { c in
                c.byte(1)
                c.varint(UInt64(p.pointee.id))
                c.byte(UInt8(p.pointee.status.ordinal))
                c.string(p.pointee.spec.function)
                if let args { args.withUnsafeBytes { c.raw($0) } } else { c.byte(0) }
                c.byte((p.pointee.spec.wait ? 1 : 0) | (p.pointee.spec.needsGPU ? 2 : 0))
                c.int(p.pointee.spec.threads)
                c.int(p.pointee.spec.retries)
                c.optionalDouble(p.pointee.spec.expectedSeconds)
                c.varint(UInt64(p.pointee.prerequisites.count))
                for p in p.pointee.prerequisites { c.int(p) }
                c.int(p.pointee.insertPrerequisiteCount)
                c.int(code(p.pointee.insertedBy))
                c.int(p.pointee.releasedBy.map(code) ?? 0)
                c.int(p.pointee.crashes)
                c.int(p.pointee.rank ?? -1)
                c.int(p.pointee.slot ?? -1)
                c.int(p.pointee.attempts)
                c.optionalDouble(p.pointee.start)
                c.optionalDouble(p.pointee.end)
                c.optionalString(p.pointee.error)
                c.optionalString(p.pointee.logPath)
            }
        }
    }

    /// Reads one row. Throws `WireError` for anything `encode` did not write.
    static func decode(_ bytes: [UInt8]) throws(WireError) -> [Entry] {
        try bytes.withUnsafeBufferPointer { buffer throws(WireError) in
            var r = WireReader(buffer: buffer)
            let version = try r.byte("step log layout")
            guard version == layout else { throw .unknownKind(field: "step log layout", kind: version, offset: 0) }
            var out: [Entry] = []
            while r.left > 0 { out.append(try read(from: &r)) }
            return out
        }
    }

    private static func read(from r: inout WireReader) throws(WireError) -> Entry {
        let kindAt = r.offset
        let kind = try r.byte("step entry kind")
        let idAt = r.offset
        let rawID = try r.varint("step id")
        guard rawID >= 1, rawID <= UInt64(Int32.max) else { throw .outOfRange(field: "step id", value: rawID, offset: idAt) }
        let id = Int(rawID)
        switch kind {
        case 0: return .dropped(id)
        case 1: break
        default: throw .unknownKind(field: "step entry kind", kind: kind, offset: kindAt)
        }
        let statusAt = r.offset
        let statusByte = try r.byte("step status")
        guard Int(statusByte) < StepStatus.allCases.count else { throw .unknownKind(field: "step status", kind: statusByte, offset: statusAt) }
        let function = try r.string("step function")
        let args = try r.values("step argument count")
        let flagsAt = r.offset
        let flags = try r.byte("step flags")
        guard flags < 4 else { throw .unknownKind(field: "step flags", kind: flags, offset: flagsAt) }
        let spec = StepSpec(function: function, args: args, threads: try r.int("step threads"), needsGPU: flags & 2 != 0,
                            retries: try r.int("step retries"), wait: flags & 1 != 0, expectedSeconds: try r.optionalDouble("step expected time"))
        let prerequisites = try r.ints("step prerequisites")
        let insertCount = try r.int("step insert-time prerequisite count")
        let inserterAt = r.offset
        let inserterCode = try r.int("step inserter")
        guard let insertedBy = inserter(inserterCode) else {
            throw .outOfRange(field: "step inserter", value: UInt64(bitPattern: Int64(inserterCode)), offset: inserterAt)
        }
        let releasedAt = r.offset
        let released = try r.int("step releaser")
        var record = StepRecord(id: id, spec: spec, prerequisites: prerequisites, insertedBy: insertedBy,
                                status: StepStatus.allCases[Int(statusByte)],
                                insertPrerequisiteCount: min(max(insertCount, 0), prerequisites.count))
        if released != 0 {
            guard let by = inserter(released) else { throw .outOfRange(field: "step releaser", value: UInt64(bitPattern: Int64(released)), offset: releasedAt) }
            record.releasedBy = by
        }
        record.crashes = max(try r.int("step crashes"), 0)
        let rank = try r.int("step rank")
        record.rank = rank < 0 ? nil : rank
        let slot = try r.int("step slot")
        record.slot = slot < 0 ? nil : slot
        record.attempts = max(try r.int("step attempts"), 0)
        record.start = try r.optionalDouble("step start")
        record.end = try r.optionalDouble("step end")
        record.error = try r.optionalString("step error")
        record.logPath = try r.optionalString("step log path")
        return .step(record)
    }

    /// -1 insertAllSteps, -2 the stepsCheck hook, n > 0 step n (0 stands for "nobody" where it may).
    private static func code(_ inserter: Inserter) -> Int {
        switch inserter {
        case .protocolSteps: return -1
        case .stepsCheck: return -2
        case .step(let id): return id
        }
    }

    private static func inserter(_ code: Int) -> Inserter? {
        switch code {
        case -1: return .protocolSteps
        case -2: return .stepsCheck
        case let id where id > 0: return .step(id)
        default: return nil
        }
    }
}
