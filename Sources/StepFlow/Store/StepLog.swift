/// How the run database keeps steps (schema 3): every transaction of the writer appends one row to
/// `step_log` holding, as bytes, every step it changed; the run is the rows applied in order.
///
/// A row per step (the `step` table of schemas 1 and 2) cost SQLite ~7,000 instructions a step, a
/// core on its own at 400,000 steps a second; appending the same records as one value per commit
/// costs a few hundred. The bytes are `WireWriter`'s: the codec ranks already use, checked on read.
///
/// Layout 2 (written since layout 1's 45 bytes for an empty finished step made SQLite's copies and
/// checksums, and the encoding under the scheduler's lock, most of what the database cost a run)
/// writes only the fields that differ from a new step's: a mask says which follow. A step's function
/// is left out when it is the one of the entry before it in the row, its start is XORed with the
/// previous start in the row and its end with its start, so close times share their high bits and
/// take 1 to 3 bytes instead of 9, exactly. An empty finished step takes ~13 bytes. Rows of layout 1
/// (databases of older builds) are still read.
enum StepLog {
    /// The first byte of every row written: a later layout gets a new number, and this build refuses it.
    static let layout: UInt8 = 2
    /// The layout of rows written by builds before the compact one.
    static let firstLayout: UInt8 = 1

    /// What one row says about one step.
    enum Entry {
        case step(StepRecord)
        /// Its inserter no longer inserts it (S12): it is out of the run.
        case dropped(StepID)
    }

    /// Which fields of a layout-2 step entry follow its mask; a field left out has a new step's value.
    /// The frequent ones come first, so a finished step's mask fits one byte.
    struct Fields: OptionSet {
        let rawValue: UInt32
        /// Its function differs from the entry's before it in the row (the first entry always has it).
        static let function = Fields(rawValue: 1 << 0)
        static let prerequisites = Fields(rawValue: 1 << 1)
        /// Inserted by anything but `insertAllSteps`.
        static let inserter = Fields(rawValue: 1 << 2)
        static let rank = Fields(rawValue: 1 << 3)
        static let slot = Fields(rawValue: 1 << 4)
        static let attempts = Fields(rawValue: 1 << 5)
        static let start = Fields(rawValue: 1 << 6)
        static let end = Fields(rawValue: 1 << 7)
        static let logPath = Fields(rawValue: 1 << 8)
        static let error = Fields(rawValue: 1 << 9)
        static let arguments = Fields(rawValue: 1 << 10)
        /// Threads other than 1.
        static let threads = Fields(rawValue: 1 << 11)
        static let retries = Fields(rawValue: 1 << 12)
        static let expectedSeconds = Fields(rawValue: 1 << 13)
        /// Fewer prerequisites at insertion than it has now (`addPrerequisites`).
        static let insertPrerequisiteCount = Fields(rawValue: 1 << 14)
        static let releasedBy = Fields(rawValue: 1 << 15)
        static let crashes = Fields(rawValue: 1 << 16)
        /// Flags without a value.
        static let wait = Fields(rawValue: 1 << 17)
        static let needsGPU = Fields(rawValue: 1 << 18)
        /// The GPU ids it was given (written since this field came; older rows have none).
        static let gpus = Fields(rawValue: 1 << 19)
        /// The result it handed its dependents (S13).
        static let result = Fields(rawValue: 1 << 20)
        static let known: UInt64 = 1 << 21 - 1
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
        /// The function of the last step entry, which the next one leaves out if it is the same.
        @exclusivity(unchecked) private var lastFunction: String?
        /// The bits of the last start written, which the next start is XORed with.
        @exclusivity(unchecked) private var lastStartBits: UInt64 = 0
        /// A step's arguments, encoded here first to bound the record, then copied in: its memory is
        /// reused, where an array of them per record cost an allocation and ~500 instructions a step
        /// (Task Bench's steps all have arguments).
        @exclusivity(unchecked) private var argumentBytes = WireWriter(capacity: 256)

        init() { clear() }

        /// Empties the row, keeping its memory, and starts it with the layout byte: a row is read
        /// on its own, so nothing refers to an earlier one.
        func clear() {
            w.removeAll()
            w.byte(layout)
            lastFunction = nil
            lastStartBits = 0
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
            var fields: Fields = []
            let newFunction = lastFunction.map { $0 != p.pointee.spec.function } ?? true
            if newFunction {
                fields.insert(.function)
                lastFunction = p.pointee.spec.function
            }
            let prerequisiteCount = p.pointee.prerequisites.count
            if prerequisiteCount > 0 { fields.insert(.prerequisites) }
            if case .protocolSteps = p.pointee.insertedBy {} else { fields.insert(.inserter) }
            let rank = p.pointee.rank, slot = p.pointee.slot, attempts = p.pointee.attempts
            if rank != nil { fields.insert(.rank) }
            if slot != nil { fields.insert(.slot) }
            if attempts != 0 { fields.insert(.attempts) }
            let start = p.pointee.start, end = p.pointee.end
            if start != nil { fields.insert(.start) }
            if end != nil { fields.insert(.end) }
            if p.pointee.logPath != nil { fields.insert(.logPath) }
            if p.pointee.error != nil { fields.insert(.error) }
            // Arguments nest: the wire codec writes them, the same bytes as `WireCodec.encode(arguments:)`.
            let hasArgs = !p.pointee.spec.args.isEmpty
            if hasArgs {
                fields.insert(.arguments)
                argumentBytes.removeAll()
                argumentBytes.arguments(p.pointee.spec.args)
            }
            if p.pointee.spec.threads != 1 { fields.insert(.threads) }
            if p.pointee.spec.retries != 0 { fields.insert(.retries) }
            if p.pointee.spec.expectedSeconds != nil { fields.insert(.expectedSeconds) }
            if p.pointee.insertPrerequisiteCount != prerequisiteCount { fields.insert(.insertPrerequisiteCount) }
            if p.pointee.releasedBy != nil { fields.insert(.releasedBy) }
            if p.pointee.crashes != 0 { fields.insert(.crashes) }
            if p.pointee.spec.wait { fields.insert(.wait) }
            if p.pointee.spec.needsGPU { fields.insert(.needsGPU) }
            let gpuCount = p.pointee.gpus.count
            if gpuCount > 0 { fields.insert(.gpus) }
            let resultCount = p.pointee.result?.count
            if resultCount != nil { fields.insert(.result) }
            // Every fixed field at its largest (10 bytes a varint, 8 the expected time): ~175 bytes.
            var bound = 200 + 10 * (prerequisiteCount + gpuCount)
            if newFunction { bound += p.pointee.spec.function.utf8.count }
            if hasArgs { bound += argumentBytes.count }
            if let error = p.pointee.error { bound += error.utf8.count }
            if let logPath = p.pointee.logPath { bound += logPath.utf8.count }
            if let resultCount { bound += resultCount }
            let startBits = start?.bitPattern
            w.withRoom(bound) { c in
                c.byte(1)
                c.varint(UInt64(p.pointee.id))
                c.byte(UInt8(p.pointee.status.ordinal))
                c.varint(UInt64(fields.rawValue))
                if newFunction { c.string(p.pointee.spec.function) }
                if prerequisiteCount > 0 {
                    c.varint(UInt64(prerequisiteCount))
                    for p in p.pointee.prerequisites { c.int(p) }
                }
                if fields.contains(.inserter) { c.int(code(p.pointee.insertedBy)) }
                if let rank { c.int(rank) }
                if let slot { c.int(slot) }
                if attempts != 0 { c.int(attempts) }
                if let startBits { c.varint(startBits ^ lastStartBits) }
                if let end { c.varint(end.bitPattern ^ (startBits ?? lastStartBits)) }
                if let logPath = p.pointee.logPath { c.string(logPath) }
                if let error = p.pointee.error { c.string(error) }
                if hasArgs { c.raw(argumentBytes.written) }
                if fields.contains(.threads) { c.int(p.pointee.spec.threads) }
                if fields.contains(.retries) { c.int(p.pointee.spec.retries) }
                if let expected = p.pointee.spec.expectedSeconds { c.double(expected) }
                if fields.contains(.insertPrerequisiteCount) { c.int(p.pointee.insertPrerequisiteCount) }
                if let releasedBy = p.pointee.releasedBy { c.int(code(releasedBy)) }
                if fields.contains(.crashes) { c.int(p.pointee.crashes) }
                if gpuCount > 0 {
                    c.varint(UInt64(gpuCount))
                    for g in p.pointee.gpus { c.int(g) }
                }
                if let result = p.pointee.result {
                    c.varint(UInt64(result.count))
                    result.withUnsafeBytes { c.raw($0) }
                }
            }
            if let startBits { lastStartBits = startBits }
        }
    }

    /// Reads one row, of either layout. Throws `WireError` for anything `encode` (or layout 1's
    /// writer) did not write.
    static func decode(_ bytes: [UInt8]) throws(WireError) -> [Entry] {
        try bytes.withUnsafeBufferPointer { buffer throws(WireError) in
            var r = WireReader(buffer: buffer)
            let version = try r.byte("step log layout")
            guard version == layout || version == firstLayout else { throw .unknownKind(field: "step log layout", kind: version, offset: 0) }
            var out: [Entry] = []
            var row = RowContext()
            while r.left > 0 { out.append(version == layout ? try read(from: &r, &row) : try readFirstLayout(from: &r)) }
            return out
        }
    }

    /// What a layout-2 entry refers back to: the function and the start before it in the row.
    private struct RowContext {
        var lastFunction: String?
        var lastStartBits: UInt64 = 0
    }

    /// An entry's kind and step id, the same in both layouts: whether it is a dropped step, and its id.
    private static func head(from r: inout WireReader) throws(WireError) -> (dropped: Bool, id: StepID) {
        let kindAt = r.offset
        let kind = try r.byte("step entry kind")
        let idAt = r.offset
        let rawID = try r.varint("step id")
        guard rawID >= 1, rawID <= UInt64(Int32.max) else { throw .outOfRange(field: "step id", value: rawID, offset: idAt) }
        switch kind {
        case 0: return (true, Int(rawID))
        case 1: return (false, Int(rawID))
        default: throw .unknownKind(field: "step entry kind", kind: kind, offset: kindAt)
        }
    }

    private static func status(from r: inout WireReader) throws(WireError) -> StepStatus {
        let statusAt = r.offset
        let statusByte = try r.byte("step status")
        guard Int(statusByte) < StepStatus.allCases.count else { throw .unknownKind(field: "step status", kind: statusByte, offset: statusAt) }
        return StepStatus.allCases[Int(statusByte)]
    }

    private static func inserter(from r: inout WireReader, _ field: String) throws(WireError) -> Inserter {
        let at = r.offset
        let code = try r.int(field)
        guard let by = inserter(code) else { throw .outOfRange(field: field, value: UInt64(bitPattern: Int64(code)), offset: at) }
        return by
    }

    /// A layout-2 entry: the fields its mask names, the others a new step's.
    private static func read(from r: inout WireReader, _ row: inout RowContext) throws(WireError) -> Entry {
        let (dropped, id) = try head(from: &r)
        if dropped { return .dropped(id) }
        let status = try status(from: &r)
        let fieldsAt = r.offset
        let rawFields = try r.varint("step field mask")
        guard rawFields <= Fields.known else { throw .outOfRange(field: "step field mask", value: rawFields, offset: fieldsAt) }
        let fields = Fields(rawValue: UInt32(rawFields))
        let function: String
        if fields.contains(.function) {
            function = try r.string("step function")
            row.lastFunction = function
        } else if let last = row.lastFunction {
            function = last
        } else {
            throw .outOfRange(field: "step field mask (no function in a row's first entry)", value: rawFields, offset: fieldsAt)
        }
        let prerequisites = fields.contains(.prerequisites) ? try stepIDs(from: &r, "step prerequisites") : []
        let insertedBy = fields.contains(.inserter) ? try inserter(from: &r, "step inserter") : .protocolSteps
        let rank = fields.contains(.rank) ? try r.int("step rank") : nil
        let slot = fields.contains(.slot) ? try r.int("step slot") : nil
        let attempts = fields.contains(.attempts) ? try r.int("step attempts") : 0
        var startBits: UInt64?
        if fields.contains(.start) {
            let bits = try r.varint("step start") ^ row.lastStartBits
            row.lastStartBits = bits
            startBits = bits
        }
        let endBits = fields.contains(.end) ? try r.varint("step end") ^ (startBits ?? row.lastStartBits) : nil
        let logPath = fields.contains(.logPath) ? try r.string("step log path") : nil
        let error = fields.contains(.error) ? try r.string("step error") : nil
        let args = fields.contains(.arguments) ? try r.values("step argument count") : []
        let threads = fields.contains(.threads) ? try r.int("step threads") : 1
        let retries = fields.contains(.retries) ? try r.int("step retries") : 0
        let expected = fields.contains(.expectedSeconds) ? try r.double("step expected time") : nil
        let insertCount = fields.contains(.insertPrerequisiteCount) ? try r.int("step insert-time prerequisite count") : prerequisites.count
        let releasedBy = fields.contains(.releasedBy) ? try inserter(from: &r, "step releaser") : nil
        let crashes = fields.contains(.crashes) ? try r.int("step crashes") : 0
        let gpus = fields.contains(.gpus) ? try r.ints("step GPUs") : []
        let result = fields.contains(.result) ? try r.blob("step result") : nil
        let spec = StepSpec(function: function, args: args, threads: threads, needsGPU: fields.contains(.needsGPU),
                            retries: retries, wait: fields.contains(.wait), expectedSeconds: expected)
        var record = StepRecord(id: id, spec: spec, prerequisites: prerequisites, insertedBy: insertedBy, status: status,
                                insertPrerequisiteCount: min(max(insertCount, 0), prerequisites.count))
        record.releasedBy = releasedBy
        record.crashes = max(crashes, 0)
        record.rank = rank.flatMap { $0 < 0 ? nil : $0 }
        record.slot = slot.flatMap { $0 < 0 ? nil : $0 }
        record.attempts = max(attempts, 0)
        record.start = startBits.map { Double(bitPattern: $0) }
        record.end = endBits.map { Double(bitPattern: $0) }
        record.error = error
        record.logPath = logPath
        record.gpus = gpus.filter { $0 >= 0 }
        record.result = result
        return .step(record)
    }

    /// A layout-1 entry: every field, in a fixed order.
    private static func readFirstLayout(from r: inout WireReader) throws(WireError) -> Entry {
        let (dropped, id) = try head(from: &r)
        if dropped { return .dropped(id) }
        let status = try status(from: &r)
        let function = try r.string("step function")
        let args = try r.values("step argument count")
        let flagsAt = r.offset
        let flags = try r.byte("step flags")
        guard flags < 4 else { throw .unknownKind(field: "step flags", kind: flags, offset: flagsAt) }
        let spec = StepSpec(function: function, args: args, threads: try r.int("step threads"), needsGPU: flags & 2 != 0,
                            retries: try r.int("step retries"), wait: flags & 1 != 0, expectedSeconds: try r.optionalDouble("step expected time"))
        let prerequisites = try stepIDs(from: &r, "step prerequisites")
        let insertCount = try r.int("step insert-time prerequisite count")
        let insertedBy = try inserter(from: &r, "step inserter")
        let releasedAt = r.offset
        let released = try r.int("step releaser")
        var record = StepRecord(id: id, spec: spec, prerequisites: prerequisites, insertedBy: insertedBy, status: status,
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
        case let id where id > 0 && id <= Int(Int32.max): return .step(id)
        default: return nil
        }
    }

    /// A list of step ids, each one a step id can be (1...Int32.max): a damaged row's negative or
    /// huge id would otherwise index past the graph's arrays.
    private static func stepIDs(from r: inout WireReader, _ field: String) throws(WireError) -> [StepID] {
        let at = r.offset
        let ids = try r.ints(field)
        if let bad = ids.first(where: { $0 < 1 || $0 > Int(Int32.max) }) {
            throw .outOfRange(field: field, value: UInt64(bitPattern: Int64(bad)), offset: at)
        }
        return ids
    }
}
