/// Why bytes could not be decoded as a frame (or as stored step arguments). Every case names what was
/// being read and the byte offset where it starts. Ranks exchange frames of one build, so this means
/// a bug, a version mismatch between ranks, or a damaged run database — never bad user input.
package enum WireError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The bytes end inside `field`, which starts at `offset` and needs `needed` bytes where `left` remain.
    case truncated(field: String, offset: Int, needed: Int, left: Int)
    /// A LEB128 integer for `field` does not fit in 64 bits (more than 10 bytes, or a 10th byte above 1).
    case varintOverflow(field: String, offset: Int)
    /// A length or count claims more items than the bytes left could hold (each takes at least `minimumBytes`).
    case countPastEnd(field: String, count: UInt64, offset: Int, left: Int, minimumBytes: Int)
    /// Arrays and objects nested deeper than `WireCodec.maximumNesting`.
    case nestedTooDeep(offset: Int, limit: Int)
    /// A kind byte this build does not know (an event, a value, a report, an edit, a reply).
    case unknownKind(field: String, kind: UInt8, offset: Int)
    /// A presence or boolean byte that is neither 0 nor 1.
    case invalidFlag(field: String, value: UInt8, offset: Int)
    /// A number that does not fit its field (a reply token above UInt32.max).
    case outOfRange(field: String, value: UInt64, offset: Int)
    /// A string whose bytes are not valid UTF-8.
    case invalidUTF8(field: String, offset: Int, length: Int)
    /// An object that names the same key twice.
    case duplicateKey(String, offset: Int)
    /// Bytes left over after the last event (or argument) the header announced.
    case trailingBytes(count: Int, offset: Int)

    /// Where in the bytes the problem starts.
    package var offset: Int {
        switch self {
        case .truncated(_, let o, _, _), .varintOverflow(_, let o), .countPastEnd(_, _, let o, _, _),
             .nestedTooDeep(let o, _), .unknownKind(_, _, let o), .invalidFlag(_, _, let o),
             .outOfRange(_, _, let o), .invalidUTF8(_, let o, _), .duplicateKey(_, let o), .trailingBytes(_, let o):
            return o
        }
    }

    /// What is wrong, without the advice.
    package var problem: String {
        switch self {
        case .truncated(let field, _, let needed, let left):
            return "it ends inside the \(field) (needs \(needed) byte\(needed == 1 ? "" : "s"), \(left) left)"
        case .varintOverflow(let field, _):
            return "the \(field) is an integer longer than 64 bits"
        case .countPastEnd(let field, let count, _, let left, let minimumBytes):
            return "the \(field) says \(count), but only \(left) byte\(left == 1 ? "" : "s") follow"
                + (minimumBytes > 1 ? " and each item takes at least \(minimumBytes)" : "")
        case .nestedTooDeep(_, let limit):
            return "arrays/objects are nested more than \(limit) levels deep"
        case .unknownKind(let field, let kind, _):
            return "unknown \(field) \(kind)"
        case .invalidFlag(let field, let value, _):
            return "the \(field) is \(value), not 0 or 1"
        case .outOfRange(let field, let value, _):
            return "the \(field) \(value) is out of range"
        case .invalidUTF8(let field, _, let length):
            return "the \(field) (\(length) bytes) is not valid UTF-8"
        case .duplicateKey(let key, _):
            return "an object repeats the key \"\(key)\""
        case .trailingBytes(let count, _):
            return "\(count) byte\(count == 1 ? "" : "s") left over after the last item"
        }
    }

    package var description: String {
        "malformed StepFlow message at byte \(offset): \(problem). Ranks and run databases must come from the same StepFlow build; rebuild, relaunch every rank, and report it if it persists."
    }
}

/// Why step arguments cannot travel between ranks (nested too deep): the user's to fix, at insertion.
package enum StepNestingError: Error, CustomStringConvertible, Equatable, Sendable {
    /// Argument `index` (0-based) nests arrays/objects `depth` levels deep, more than `limit`.
    case nestedTooDeep(index: Int, depth: Int, limit: Int)

    package var description: String {
        switch self {
        case .nestedTooDeep(let index, let depth, let limit):
            return "argument \(index + 1) nests arrays/objects \(depth) levels deep; a step argument may nest at most \(limit). Flatten it, or write it to a file in the run directory and pass the file's path."
        }
    }
}

extension StepValue {
    /// How many arrays/objects are nested inside each other in this value: 0 for a scalar, 1 for
    /// `[1, 2]` or `{"a": 1}`, 2 for `[[1]]`. Walks the value without recursion, so any depth is safe
    /// to measure.
    package var nestingDepth: Int {
        var deepest = 0
        var pending: [(value: StepValue, depth: Int)] = [(self, 0)]
        while let (value, depth) = pending.popLast() {
            switch value {
            case .array(let items):
                deepest = max(deepest, depth + 1)
                for item in items { pending.append((item, depth + 1)) }
            case .object(let fields):
                deepest = max(deepest, depth + 1)
                for item in fields.values { pending.append((item, depth + 1)) }
            case .null, .bool, .int, .double, .string:
                break
            }
        }
        return deepest
    }
}

/// A compact binary codec: little-endian fixed-width integers, LEB128 lengths, length-prefixed UTF-8.
/// No JSON on the hot path. Decoding checks every length, count, kind and the nesting depth against
/// the bytes at hand, so any input either decodes or throws `WireError`; it never traps.
package enum WireCodec {
    /// How deep arrays/objects may nest in a step argument. The decoder refuses deeper values (its
    /// recursion, and a hostile frame's, stays bounded); the engine should refuse them at insertion
    /// with `checkNesting(_:)`, so they never reach the wire.
    package static let maximumNesting = 64

    /// Throws `StepNestingError.nestedTooDeep` for the first argument nested deeper than
    /// `maximumNesting`, which the decoder on the other rank would refuse.
    package static func checkNesting(_ arguments: [StepValue]) throws(StepNestingError) {
        for (index, value) in arguments.enumerated() {
            let depth = value.nestingDepth
            if depth > maximumNesting { throw .nestedTooDeep(index: index, depth: depth, limit: maximumNesting) }
        }
    }

    /// One frame carrying `messages` in order. Arguments nested deeper than `maximumNesting` are
    /// encoded but the receiver refuses the frame; check them with `checkNesting(_:)` first.
    static func encode<Message: WireMessage>(_ messages: [Message]) -> [UInt8] {
        encode(messages, skipping: nil)
    }

    /// One frame carrying the messages whose position in `skipping` is not true (all of them when
    /// it is nil), in order: what a rank sends without first building a filtered copy.
    static func encode<Message: WireMessage>(_ messages: [Message], skipping: [Bool]?) -> [UInt8] {
        var w = WireWriter()
        w.varint(UInt64(skipping.map { flags in flags.lazy.filter { !$0 }.count } ?? messages.count))
        for i in messages.indices where skipping?[i] != true { messages[i].write(to: &w) }
        return w.bytes
    }

    /// Step arguments as bytes (the run database keeps them so: exact, types included).
    package static func encode(arguments: [StepValue]) -> [UInt8] {
        var w = WireWriter()
        w.arguments(arguments)
        return w.bytes
    }

    /// Decodes what `encode(arguments:)` wrote. Throws `WireError` for anything else.
    package static func decode(arguments bytes: [UInt8]) throws(WireError) -> [StepValue] {
        try bytes.withUnsafeBufferPointer { buffer throws(WireError) in
            var r = WireReader(buffer: buffer)
            let values = try r.values("argument count")
            try r.expectEnd()
            return values
        }
    }

    /// Decodes a frame written by `encode(_:)` with messages of one direction. Throws `WireError` for
    /// anything else: short, long, overflowing, too deeply nested or unknown content (a message of the
    /// other direction is an unknown kind).
    static func decode<Message: WireMessage>(_ bytes: [UInt8], as: Message.Type) throws(WireError) -> [Message] {
        try bytes.withUnsafeBufferPointer { buffer throws(WireError) in
            var r = WireReader(buffer: buffer)
            let n = try r.count("message count", minimumBytes: 1)
            var out: [Message] = []
            out.reserveCapacity(n)
            for _ in 0..<n { out.append(try Message.read(from: &r)) }
            try r.expectEnd()
            return out
        }
    }
}

/// One rank's next frame from rank 0, encoded message by message as they come, laid out as
/// `WireCodec.encode` lays out the same messages. Keeping `ToRank` values until the frame left, and
/// encoding them then, copied each step's assignment twice more on rank 0 (callgrind: ~1,200
/// instructions a step sent to another rank).
package final class ToRankFrame {
    private var body = WireWriter()
    package private(set) var count = 0

    package init() {}

    package var isEmpty: Bool { count == 0 }

    package func append(_ message: ToRank) {
        message.write(to: &body)
        count += 1
    }

    /// Appends `.assign(step)`.
    package func append(assignment step: borrowing StepAssignment) {
        appendMessage { ToRank.writeAssign(step, to: &$0) }
    }

    /// Appends the one message `write` lays out.
    func appendMessage(_ write: (inout WireWriter) -> Void) {
        write(&body)
        count += 1
    }

    /// The frame (the messages' count, then the messages), leaving this one empty.
    package func take() -> [UInt8] {
        var frame = WireWriter(capacity: body.count + 10)
        frame.varint(UInt64(count))
        frame.raw(body.written)
        body.removeAll()
        count = 0
        return frame.bytes
    }
}

/// A message of one direction, as the wire codec writes and reads it. The kind bytes of both
/// directions are distinct, so a frame read as the wrong direction fails with `unknownKind`.
protocol WireMessage: Sendable, Equatable {
    func write(to w: inout WireWriter)
    static func read(from r: inout WireReader) throws(WireError) -> Self
}

/// Writes a frame into memory of its own, grown as needed: appending to an array checked its
/// capacity and uniqueness at every byte, and every step crosses the codec twice each way.
/// Not copyable: it owns its memory.
struct WireWriter: ~Copyable {
    private var base: UnsafeMutableRawPointer
    private var capacity: Int
    /// Bytes written so far.
    private(set) var count = 0

    init(capacity: Int = 256) {
        self.capacity = max(capacity, 16)
        base = UnsafeMutableRawPointer.allocate(byteCount: self.capacity, alignment: 8)
    }

    deinit { base.deallocate() }

    /// What was written.
    var bytes: [UInt8] { Array(written) }

    /// What was written, valid until the next write.
    var written: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }

    /// Forgets what was written, keeping the memory.
    mutating func removeAll() { count = 0 }

    @inline(__always)
    private mutating func reserve(_ n: Int) {
        guard count + n > capacity else { return }
        let grown = max(capacity * 2, count + n)
        let moved = UnsafeMutableRawPointer.allocate(byteCount: grown, alignment: 8)
        moved.copyMemory(from: base, byteCount: count)
        base.deallocate()
        base = moved
        capacity = grown
    }

    /// Makes room for at most `bound` bytes, then lets `body` write them through a cursor that does
    /// not check for room byte by byte (what a writer of many fields bounds once).
    @inline(__always)
    mutating func withRoom(_ bound: Int, _ body: (inout WireCursor) -> Void) {
        reserve(bound)
        var cursor = WireCursor(at: base + count)
        body(&cursor)
        // Past the bound, the cursor has written past the memory: a writer's bound is wrong.
        assert(cursor.at - (base + count) <= bound, "wrote \(cursor.at - (base + count)) bytes in room for \(bound)")
        count = cursor.at - base
    }

    @inline(__always)
    mutating func byte(_ b: UInt8) { withRoom(1) { $0.byte(b) } }

    @inline(__always)
    mutating func varint(_ v: UInt64) { withRoom(10) { $0.varint(v) } }

    @inline(__always)
    mutating func int(_ v: Int) { withRoom(10) { $0.int(v) } }

    @inline(__always)
    mutating func double(_ d: Double) { withRoom(8) { $0.double(d) } }

    /// Bytes as they are, without a length.
    @inline(__always)
    mutating func raw(_ bytes: UnsafeRawBufferPointer) { withRoom(bytes.count) { $0.raw(bytes) } }

    @inline(__always)
    mutating func optionalDouble(_ d: Double?) {
        if let d { byte(1); double(d) } else { byte(0) }
    }

    mutating func string(_ s: String) { withRoom(10 + s.utf8.count) { $0.string(s) } }

    mutating func optionalString(_ s: String?) { withRoom(11 + (s?.utf8.count ?? 0)) { $0.optionalString(s) } }

    /// A length, then the bytes.
    mutating func blob(_ bytes: [UInt8]) {
        varint(UInt64(bytes.count))
        bytes.withUnsafeBytes { raw($0) }
    }

    mutating func optionalBlob(_ bytes: [UInt8]?) {
        if let bytes { byte(1); blob(bytes) } else { byte(0) }
    }

    mutating func ints(_ a: [Int]) {
        varint(UInt64(a.count))
        for i in a { int(i) }
    }

    mutating func value(_ v: StepValue) {
        switch v {
        case .null: byte(0)
        case .bool(let b): byte(b ? 2 : 1)
        // The frequent kinds in one bounded write each.
        case .int(let i): withRoom(11) { c in c.byte(3); c.int(i) }
        case .double(let d): withRoom(9) { c in c.byte(4); c.double(d) }
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

    /// Step arguments as `WireCodec.encode(arguments:)` lays them out: a count, then each value.
    mutating func arguments(_ args: [StepValue]) {
        varint(UInt64(args.count))
        for v in args { value(v) }
    }

    mutating func location(_ l: SourceLocation?) {
        if let l { byte(1); string(l.file); int(l.line) } else { byte(0) }
    }
}

/// Writes `WireWriter`'s encodings (LEB128 counts, zigzag integers, little-endian doubles,
/// length-prefixed UTF-8) into room `WireWriter.withRoom` made: nothing is checked here.
struct WireCursor {
    fileprivate(set) var at: UnsafeMutableRawPointer

    @inline(__always)
    mutating func byte(_ b: UInt8) {
        at.storeBytes(of: b, as: UInt8.self)
        at += 1
    }

    @inline(__always)
    mutating func varint(_ v: UInt64) {
        var v = v
        while v >= 0x80 {
            byte(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        byte(UInt8(v))
    }

    @inline(__always)
    mutating func int(_ v: Int) { varint(UInt64(bitPattern: Int64(v)) << 1 ^ UInt64(bitPattern: Int64(v) >> 63)) }

    @inline(__always)
    mutating func double(_ d: Double) {
        at.storeBytes(of: d.bitPattern.littleEndian, as: UInt64.self)
        at += 8
    }

    @inline(__always)
    mutating func optionalDouble(_ d: Double?) {
        if let d { byte(1); double(d) } else { byte(0) }
    }

    @inline(__always)
    mutating func raw(_ bytes: UnsafeRawBufferPointer) {
        guard let from = bytes.baseAddress, bytes.count > 0 else { return }
        at.copyMemory(from: from, byteCount: bytes.count)
        at += bytes.count
    }

    /// At most 10 bytes and the string's UTF-8.
    mutating func string(_ s: String) {
        var s = s
        s.withUTF8 { utf8 in
            varint(UInt64(utf8.count))
            raw(UnsafeRawBufferPointer(utf8))
        }
    }

    mutating func optionalString(_ s: String?) {
        if let s { byte(1); string(s) } else { byte(0) }
    }
}

/// Reads a frame. Every read checks the bytes left first; `field` names what is read, for the error,
/// and is only evaluated for one: composing names such as "function name length" on every read cost
/// a string concatenation, often an allocation, per field.
struct WireReader {
    let buffer: UnsafeBufferPointer<UInt8>
    var offset = 0
    /// Arrays/objects open around the value being read.
    var depth = 0

    init(buffer: UnsafeBufferPointer<UInt8>) { self.buffer = buffer }

    var left: Int { buffer.count - offset }

    mutating func expectEnd() throws(WireError) {
        guard offset == buffer.count else { throw .trailingBytes(count: left, offset: offset) }
    }

    mutating func byte(_ field: @autoclosure () -> String) throws(WireError) -> UInt8 {
        guard offset < buffer.count else { throw .truncated(field: field(), offset: offset, needed: 1, left: 0) }
        defer { offset += 1 }
        return buffer[offset]
    }

    /// A 0/1 byte.
    mutating func flag(_ field: @autoclosure () -> String) throws(WireError) -> Bool {
        let at = offset
        switch try byte(field()) {
        case 0: return false
        case 1: return true
        case let v: throw .invalidFlag(field: field(), value: v, offset: at)
        }
    }

    mutating func varint(_ field: @autoclosure () -> String) throws(WireError) -> UInt64 {
        let start = offset
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard offset < buffer.count else { throw .truncated(field: field(), offset: start, needed: offset - start + 1, left: left + offset - start) }
            let b = buffer[offset]
            offset += 1
            // The 10th byte holds bit 63 only: anything above 1 would be shifted out silently.
            if shift == 63 && b > 1 { throw .varintOverflow(field: field(), offset: start) }
            result |= UInt64(b & 0x7F) << shift
            if b < 0x80 { return result }
            shift += 7
        }
    }

    mutating func int(_ field: @autoclosure () -> String) throws(WireError) -> Int {
        let z = try varint(field())
        return Int(Int64(bitPattern: (z >> 1) ^ (0 &- (z & 1))))
    }

    mutating func token(_ field: @autoclosure () -> String) throws(WireError) -> UInt32 {
        let at = offset
        let v = try varint(field())
        guard let t = UInt32(exactly: v) else { throw .outOfRange(field: field(), value: v, offset: at) }
        return t
    }

    /// A count of items that take at least `minimumBytes` each, checked against the bytes left, so a
    /// hostile count never makes the reader allocate or loop past what the frame can hold.
    mutating func count(_ field: @autoclosure () -> String, minimumBytes: Int) throws(WireError) -> Int {
        let at = offset
        let n = try varint(field())
        guard n <= UInt64(left / minimumBytes) else {
            throw .countPastEnd(field: field(), count: n, offset: at, left: left, minimumBytes: minimumBytes)
        }
        return Int(n)
    }

    mutating func double(_ field: @autoclosure () -> String) throws(WireError) -> Double {
        guard left >= 8 else { throw .truncated(field: field(), offset: offset, needed: 8, left: left) }
        var bits: UInt64 = 0
        for i in 0..<8 { bits |= UInt64(buffer[offset + i]) << (8 * UInt64(i)) }
        offset += 8
        return Double(bitPattern: bits)
    }

    mutating func optionalDouble(_ field: @autoclosure () -> String) throws(WireError) -> Double? {
        try flag(field() + " flag") ? try double(field()) : nil
    }

    mutating func string(_ field: @autoclosure () -> String) throws(WireError) -> String {
        let n = try count(field() + " length", minimumBytes: 1)
        let at = offset
        let bytes = UnsafeBufferPointer(rebasing: buffer[at..<at + n])
        offset += n
        // ASCII needs no validation, and names and paths are ASCII: String(validating:) costs ~3× more.
        if !bytes.contains(where: { $0 >= 0x80 }) { return String(decoding: bytes, as: UTF8.self) }
        // Strict: a repaired string (U+FFFD) would decode "successfully" into something never sent.
        guard let s = String(validating: bytes, as: UTF8.self) else { throw .invalidUTF8(field: field(), offset: at, length: n) }
        return s
    }

    mutating func optionalString(_ field: @autoclosure () -> String) throws(WireError) -> String? {
        try flag(field() + " flag") ? try string(field()) : nil
    }

    /// A length, then that many bytes (checked against the bytes left).
    mutating func blob(_ field: @autoclosure () -> String) throws(WireError) -> [UInt8] {
        let n = try count(field() + " length", minimumBytes: 1)
        defer { offset += n }
        return Array(buffer[offset..<offset + n])
    }

    mutating func optionalBlob(_ field: @autoclosure () -> String) throws(WireError) -> [UInt8]? {
        try flag(field() + " flag") ? try blob(field()) : nil
    }

    mutating func ints(_ field: @autoclosure () -> String) throws(WireError) -> [Int] {
        let n = try count(field() + " count", minimumBytes: 1)
        if n == 0 { return [] }
        var out: [Int] = []
        out.reserveCapacity(n)
        for _ in 0..<n { out.append(try int(field())) }
        return out
    }

    /// A count-prefixed list of values (arguments, or an array's items).
    mutating func values(_ field: @autoclosure () -> String) throws(WireError) -> [StepValue] {
        let n = try count(field(), minimumBytes: 1)
        // Most steps have no arguments (and no GPUs): an empty list needs no storage.
        if n == 0 { return [] }
        var out: [StepValue] = []
        // Capped: up to `maximumNesting` lists are open at once, and each count is only checked
        // against the bytes left, so reserving it all at every level would multiply the frame's size.
        out.reserveCapacity(min(n, 1024))
        for _ in 0..<n { out.append(try value()) }
        return out
    }

    mutating func value() throws(WireError) -> StepValue {
        let at = offset
        switch try byte("value kind") {
        case 0: return .null
        case 1: return .bool(false)
        case 2: return .bool(true)
        case 3: return .int(try int("integer value"))
        case 4: return .double(try double("double value"))
        case 5: return .string(try string("string value"))
        case 6:
            try enter(at)
            defer { depth -= 1 }
            return .array(try values("array length"))
        case 7:
            try enter(at)
            defer { depth -= 1 }
            let n = try count("object size", minimumBytes: 2)
            var o: [String: StepValue] = Dictionary(minimumCapacity: min(n, 1024))
            for _ in 0..<n {
                let keyAt = offset
                let k = try string("object key")
                if o.updateValue(try value(), forKey: k) != nil { throw .duplicateKey(k, offset: keyAt) }
            }
            return .object(o)
        case let k: throw .unknownKind(field: "value kind", kind: k, offset: at)
        }
    }

    /// Opens an array/object, refusing to go deeper than `WireCodec.maximumNesting`: the reader
    /// recurses once per level, and a frame of nested arrays costs 2 bytes a level.
    private mutating func enter(_ at: Int) throws(WireError) {
        guard depth < WireCodec.maximumNesting else { throw .nestedTooDeep(offset: at, limit: WireCodec.maximumNesting) }
        depth += 1
    }

    mutating func location(_ field: @autoclosure () -> String) throws(WireError) -> SourceLocation? {
        try flag(field() + " flag") ? SourceLocation(file: try string(field() + " file"), line: try int(field() + " line")) : nil
    }
}
