/// One event on the wire between rank 0 and a worker rank. A message (a frame) carries one or more,
/// in order, so many ready steps or many results travel in one MPI message.
public enum WireEvent: Sendable, Equatable {
    // rank 0 → worker
    case assign(StepAssignment)
    case takeBackUnstarted
    case reply(token: UInt32, EditResult)
    case shutdown
    /// Stop at once (a signal): do not wait for running steps.
    case abort
    // worker → rank 0
    case started(StepStart)
    case ended(StepOutcome)
    case request(token: UInt32, StepRequest)
}

/// Why a frame could not be decoded: a bug or a version mismatch between ranks, never user input.
public struct WireError: Error, CustomStringConvertible, Equatable {
    public let message: String
    public var description: String { "malformed StepFlow message: \(message). Are all ranks running the same build?" }
}

/// A compact binary codec: little-endian fixed-width integers, LEB128 lengths, length-prefixed UTF-8.
/// No JSON on the hot path.
public enum WireCodec {
    public static func encode(_ events: [WireEvent]) -> [UInt8] {
        var w = WireWriter()
        w.varint(UInt64(events.count))
        for e in events { w.event(e) }
        return w.bytes
    }

    /// Step arguments as bytes (the run database keeps them so: exact, types included).
    public static func encode(arguments: [StepValue]) -> [UInt8] {
        var w = WireWriter()
        w.varint(UInt64(arguments.count))
        for v in arguments { w.value(v) }
        return w.bytes
    }

    public static func decode(arguments bytes: [UInt8]) throws(WireError) -> [StepValue] {
        try bytes.withUnsafeBufferPointer { buffer throws(WireError) in
            var r = WireReader(buffer: buffer)
            let values = try r.values()
            guard r.atEnd else { throw WireError(message: "\(buffer.count - r.offset) trailing bytes") }
            return values
        }
    }

    public static func decode(_ bytes: [UInt8]) throws(WireError) -> [WireEvent] {
        try bytes.withUnsafeBufferPointer { buffer throws(WireError) in
            var r = WireReader(buffer: buffer)
            let n = try r.varint()
            var out: [WireEvent] = []
            out.reserveCapacity(Int(min(n, 1 << 16)))
            for _ in 0..<n { out.append(try r.event()) }
            guard r.atEnd else { throw WireError(message: "\(buffer.count - r.offset) trailing bytes") }
            return out
        }
    }
}

struct WireWriter {
    var bytes: [UInt8] = []

    init() { bytes.reserveCapacity(256) }

    mutating func byte(_ b: UInt8) { bytes.append(b) }

    mutating func varint(_ v: UInt64) {
        var v = v
        while v >= 0x80 {
            bytes.append(UInt8(v & 0x7F) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    mutating func int(_ v: Int) { varint(UInt64(bitPattern: Int64(v)) << 1 ^ UInt64(bitPattern: Int64(v) >> 63)) }

    mutating func double(_ d: Double) {
        withUnsafeBytes(of: d.bitPattern.littleEndian) { bytes.append(contentsOf: $0) }
    }

    mutating func optionalDouble(_ d: Double?) {
        if let d { byte(1); double(d) } else { byte(0) }
    }

    mutating func string(_ s: String) {
        var s = s
        s.withUTF8 { utf8 in
            varint(UInt64(utf8.count))
            bytes.append(contentsOf: utf8)
        }
    }

    mutating func optionalString(_ s: String?) {
        if let s { byte(1); string(s) } else { byte(0) }
    }

    mutating func ints(_ a: [Int]) {
        varint(UInt64(a.count))
        for i in a { int(i) }
    }

    mutating func value(_ v: StepValue) {
        switch v {
        case .null: byte(0)
        case .bool(let b): byte(b ? 2 : 1)
        case .int(let i): byte(3); int(i)
        case .double(let d): byte(4); double(d)
        case .string(let s): byte(5); string(s)
        case .array(let a):
            byte(6)
            varint(UInt64(a.count))
            for x in a { value(x) }
        case .object(let o):
            byte(7)
            varint(UInt64(o.count))
            for (k, x) in o.sorted(by: { $0.key < $1.key }) { string(k); value(x) }
        }
    }

    mutating func location(_ l: SourceLocation?) {
        if let l { byte(1); string(l.file); int(l.line) } else { byte(0) }
    }

    mutating func event(_ e: WireEvent) {
        switch e {
        case .assign(let a):
            byte(1); int(a.id); string(a.function)
            varint(UInt64(a.args.count))
            for v in a.args { value(v) }
            int(a.threads); ints(a.gpus); int(a.attempt)
        case .takeBackUnstarted:
            byte(2)
        case .reply(let token, let result):
            byte(3); varint(UInt64(token))
            switch result {
            case .success(let id): byte(0); int(id ?? 0)
            case .failure(let error): byte(1); string(error.message)
            }
        case .shutdown:
            byte(4)
        case .abort:
            byte(7)
        case .started(let s):
            byte(8); int(s.id); int(s.rank); int(s.slot); double(s.start)
        case .ended(let o):
            byte(5); int(o.id); int(o.rank); int(o.slot)
            switch o.report {
            case .finished: byte(0)
            case .failed(let error): byte(1); string(error)
            case .notStarted: byte(2)
            case .aborted: byte(3)
            }
            optionalDouble(o.start); optionalDouble(o.end); optionalString(o.logPath)
        case .request(let token, let r):
            byte(6); varint(UInt64(token)); int(r.from)
            switch r.edit {
            case .insert(let spec, let prerequisites, let at):
                byte(0); string(spec.function)
                varint(UInt64(spec.args.count))
                for v in spec.args { value(v) }
                int(spec.threads); byte(spec.needsGPU ? 1 : 0); int(spec.retries); byte(spec.wait ? 1 : 0)
                ints(prerequisites); location(at)
            case .addPrerequisites(let target, let prerequisites, let at):
                byte(1); int(target); ints(prerequisites); location(at)
            case .release(let id, let at):
                byte(2); int(id); location(at)
            }
        }
    }
}

struct WireReader {
    let buffer: UnsafeBufferPointer<UInt8>
    var offset = 0

    var atEnd: Bool { offset == buffer.count }

    mutating func byte() throws(WireError) -> UInt8 {
        guard offset < buffer.count else { throw WireError(message: "message ends early") }
        defer { offset += 1 }
        return buffer[offset]
    }

    mutating func varint() throws(WireError) -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            let b = try byte()
            result |= UInt64(b & 0x7F) << shift
            if b < 0x80 { return result }
            shift += 7
            if shift > 63 { throw WireError(message: "integer too long") }
        }
    }

    mutating func int() throws(WireError) -> Int {
        let z = try varint()
        return Int(Int64(bitPattern: (z >> 1) ^ (0 &- (z & 1))))
    }

    mutating func count() throws(WireError) -> Int {
        let n = try varint()
        guard n <= UInt64(buffer.count - offset) else { throw WireError(message: "length \(n) past the end") }
        return Int(n)
    }

    mutating func double() throws(WireError) -> Double {
        guard offset + 8 <= buffer.count else { throw WireError(message: "message ends early") }
        var bits: UInt64 = 0
        for i in 0..<8 { bits |= UInt64(buffer[offset + i]) << (8 * UInt64(i)) }
        offset += 8
        return Double(bitPattern: bits)
    }

    mutating func optionalDouble() throws(WireError) -> Double? { try byte() == 0 ? nil : try double() }

    mutating func string() throws(WireError) -> String {
        let n = try count()
        defer { offset += n }
        return String(decoding: UnsafeBufferPointer(rebasing: buffer[offset..<offset + n]), as: UTF8.self)
    }

    mutating func optionalString() throws(WireError) -> String? { try byte() == 0 ? nil : try string() }

    mutating func ints() throws(WireError) -> [Int] {
        let n = try count()
        var out: [Int] = []
        out.reserveCapacity(n)
        for _ in 0..<n { out.append(try int()) }
        return out
    }

    mutating func values() throws(WireError) -> [StepValue] {
        let n = try count()
        var out: [StepValue] = []
        out.reserveCapacity(n)
        for _ in 0..<n { out.append(try value()) }
        return out
    }

    mutating func value() throws(WireError) -> StepValue {
        switch try byte() {
        case 0: return .null
        case 1: return .bool(false)
        case 2: return .bool(true)
        case 3: return .int(try int())
        case 4: return .double(try double())
        case 5: return .string(try string())
        case 6: return .array(try values())
        case 7:
            let n = try count()
            var o: [String: StepValue] = [:]
            for _ in 0..<n {
                let k = try string()
                o[k] = try value()
            }
            return .object(o)
        case let k: throw WireError(message: "unknown value kind \(k)")
        }
    }

    mutating func location() throws(WireError) -> SourceLocation? {
        try byte() == 0 ? nil : SourceLocation(file: try string(), line: try int())
    }

    mutating func event() throws(WireError) -> WireEvent {
        switch try byte() {
        case 1:
            let id = try int(), function = try string(), args = try values()
            return .assign(StepAssignment(id: id, function: function, args: args, threads: try int(), gpus: try ints(), attempt: try int()))
        case 2:
            return .takeBackUnstarted
        case 3:
            let token = UInt32(truncatingIfNeeded: try varint())
            if try byte() == 0 {
                let id = try int()
                return .reply(token: token, .success(id == 0 ? nil : id))
            }
            return .reply(token: token, .failure(GraphEditError(try string())))
        case 4:
            return .shutdown
        case 7:
            return .abort
        case 8:
            let id = try int(), rank = try int(), slot = try int()
            return .started(StepStart(id: id, rank: rank, slot: slot, start: try double()))
        case 5:
            let id = try int(), rank = try int(), slot = try int()
            let report: Scheduler.Report
            switch try byte() {
            case 0: report = .finished
            case 1: report = .failed(error: try string())
            case 2: report = .notStarted
            case 3: report = .aborted
            case let k: throw WireError(message: "unknown report kind \(k)")
            }
            return .ended(StepOutcome(id: id, rank: rank, slot: slot, report: report, start: try optionalDouble(),
                                      end: try optionalDouble(), logPath: try optionalString()))
        case 6:
            let token = UInt32(truncatingIfNeeded: try varint()), from = try int()
            let edit: GraphEdit
            switch try byte() {
            case 0:
                let function = try string(), args = try values()
                let spec = StepSpec(function: function, args: args, threads: try int(), needsGPU: try byte() == 1,
                                    retries: try int(), wait: try byte() == 1)
                edit = .insert(spec, prerequisites: try ints(), at: try location())
            case 1:
                edit = .addPrerequisites(to: try int(), try ints(), at: try location())
            case 2:
                edit = .release(try int(), at: try location())
            case let k: throw WireError(message: "unknown edit kind \(k)")
            }
            return .request(token: token, StepRequest(from: from, edit: edit))
        case let k:
            throw WireError(message: "unknown event kind \(k)")
        }
    }
}
