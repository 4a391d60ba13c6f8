/// JSON text built as UTF-8 bytes, for documents with a record per step: appending bytes costs a few
/// instructions where `String` appends and Foundation's serializer cost thousands per step.
///
/// The bytes live in a buffer of its own, written through a pointer: `Array.append(contentsOf:)` cost
/// ~90 instructions a call, and a step's record in `report.json` makes ~25 of them (callgrind).
package struct JSONBytes {
    private let buffer = Buffer()

    package init() {}

    /// `text` as a JSON string literal, quotes included.
    package static func quoted(_ text: String) -> String {
        var out = JSONBytes()
        out.string(text)
        return out.text
    }

    /// The bytes written so far.
    var bytes: [UInt8] { Array(UnsafeRawBufferPointer(start: buffer.base, count: buffer.count)) }

    /// The text written so far.
    var text: String { String(decoding: UnsafeRawBufferPointer(start: buffer.base, count: buffer.count), as: UTF8.self) }

    /// How many bytes are written.
    var count: Int { buffer.count }

    /// Forgets what was written, keeping the room.
    mutating func removeAll() { buffer.count = 0 }

    mutating func reserve(_ capacity: Int) { buffer.ensure(room: capacity - buffer.count) }

    /// Appends text that is already JSON (punctuation, key names).
    mutating func raw(_ text: StaticString) {
        buffer.append(text.utf8Start, text.utf8CodeUnitCount)
    }

    mutating func int(_ value: Int?) {
        guard let value else { return raw("null") }
        buffer.int(value)
    }

    /// A number, or null for nil and for values JSON cannot hold (infinities, NaN).
    mutating func double(_ value: Double?) {
        guard let value, value.isFinite else { return raw("null") }
        buffer.double(value)
    }

    mutating func string(_ value: String?) {
        guard let value else { return raw("null") }
        buffer.string(value)
    }

    /// `bytes` as a JSON string of their base64 (RFC 4648, with padding), quotes included.
    mutating func base64<Bytes: Collection<UInt8>>(_ bytes: Bytes) {
        buffer.base64(bytes)
    }

    /// A step's arguments and results: the same text `StepValue.jsonText` is.
    mutating func value(_ value: StepValue) { buffer.value(value) }

    mutating func values(_ values: [StepValue]) { buffer.values(values) }
}

/// The bytes of a `JSONBytes`, grown by doubling. A class, so that its memory is freed with it; a
/// `JSONBytes` is a local of the function that writes a document, never shared between threads.
private final class Buffer {
    var base: UnsafeMutablePointer<UInt8>
    var count = 0
    var capacity: Int

    init() {
        capacity = 256
        base = .allocate(capacity: capacity)
    }

    deinit { base.deallocate() }

    /// Makes room for `n` more bytes.
    @inline(__always)
    func ensure(room n: Int) {
        if count + n > capacity { grow(to: count + n) }
    }

    private func grow(to needed: Int) {
        var newCapacity = capacity * 2
        while newCapacity < needed { newCapacity *= 2 }
        let newBase = UnsafeMutablePointer<UInt8>.allocate(capacity: newCapacity)
        newBase.update(from: base, count: count)
        base.deallocate()
        base = newBase
        capacity = newCapacity
    }

    @inline(__always)
    func byte(_ b: UInt8) {
        ensure(room: 1)
        base[count] = b
        count += 1
    }

    func append(_ source: UnsafePointer<UInt8>, _ n: Int) {
        guard n > 0 else { return }
        ensure(room: n)
        (base + count).update(from: source, count: n)
        count += n
    }

    func int(_ value: Int) {
        // 20 digits and a sign hold any Int.
        ensure(room: 21)
        if value < 0 {
            base[count] = UInt8(ascii: "-")
            count += 1
        }
        var magnitude = value.magnitude
        var digits = 1
        var probe = magnitude
        while probe >= 10 {
            probe /= 10
            digits += 1
        }
        var i = count + digits - 1
        repeat {
            base[i] = UInt8(ascii: "0") + UInt8(truncatingIfNeeded: magnitude % 10)
            magnitude /= 10
            i -= 1
        } while magnitude > 0
        count += digits
    }

    /// Swift's shortest text that reads back as the same Double (`description`).
    func double(_ value: Double) {
        var text = value.description
        text.withUTF8 { append($0.baseAddress!, $0.count) }
    }

    func string(_ value: String) {
        byte(UInt8(ascii: "\""))
        var copy = value
        copy.withUTF8 { utf8 in
            // Runs of bytes that need no escape are copied at once.
            guard let start = utf8.baseAddress else { return }
            var runStart = 0
            for i in 0..<utf8.count {
                let b = utf8[i]
                guard b == UInt8(ascii: "\"") || b == UInt8(ascii: "\\") || b < 0x20 else { continue }
                append(start + runStart, i - runStart)
                escape(b)
                runStart = i + 1
            }
            append(start + runStart, utf8.count - runStart)
        }
        byte(UInt8(ascii: "\""))
    }

    private func raw(_ text: StaticString) { append(text.utf8Start, text.utf8CodeUnitCount) }

    private func escape(_ b: UInt8) {
        switch b {
        case UInt8(ascii: "\""): raw("\\\"")
        case UInt8(ascii: "\\"): raw("\\\\")
        case UInt8(ascii: "\n"): raw("\\n")
        case UInt8(ascii: "\r"): raw("\\r")
        case UInt8(ascii: "\t"): raw("\\t")
        default:
            raw("\\u00")
            byte(Self.hex[Int(b >> 4)])
            byte(Self.hex[Int(b & 0xF)])
        }
    }

    private static let hex = Array("0123456789abcdef".utf8)
    private static let base64Alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    func base64<Bytes: Collection<UInt8>>(_ bytes: Bytes) {
        let n = bytes.count
        ensure(room: (n + 2) / 3 * 4 + 2)
        base[count] = UInt8(ascii: "\"")
        count += 1
        Self.base64Alphabet.withUnsafeBufferPointer { alphabet in
            var i = bytes.startIndex
            var left = n
            while left >= 3 {
                let b0 = bytes[i]; bytes.formIndex(after: &i)
                let b1 = bytes[i]; bytes.formIndex(after: &i)
                let b2 = bytes[i]; bytes.formIndex(after: &i)
                base[count] = alphabet[Int(b0 >> 2)]
                base[count + 1] = alphabet[Int((b0 & 0x3) << 4 | b1 >> 4)]
                base[count + 2] = alphabet[Int((b1 & 0xF) << 2 | b2 >> 6)]
                base[count + 3] = alphabet[Int(b2 & 0x3F)]
                count += 4
                left -= 3
            }
            if left > 0 {
                let b0 = bytes[i]
                var b1: UInt8 = 0
                if left == 2 { bytes.formIndex(after: &i); b1 = bytes[i] }
                base[count] = alphabet[Int(b0 >> 2)]
                base[count + 1] = alphabet[Int((b0 & 0x3) << 4 | b1 >> 4)]
                base[count + 2] = left == 2 ? alphabet[Int((b1 & 0xF) << 2)] : UInt8(ascii: "=")
                base[count + 3] = UInt8(ascii: "=")
                count += 4
            }
        }
        base[count] = UInt8(ascii: "\"")
        count += 1
    }

    /// A value's compact JSON text (`StepValue.jsonText`): keys of objects sorted, numbers as Swift prints them,
    /// infinities and NaN as null.
    func value(_ v: StepValue) {
        switch v {
        case .null: raw("null")
        case .bool(let b): b ? raw("true") : raw("false")
        case .int(let i): int(i)
        case .double(let d): d.isFinite ? double(d) : raw("null")
        case .string(let s): string(s)
        case .array(let a): values(a)
        case .object(let o):
            byte(UInt8(ascii: "{"))
            for (i, (k, x)) in o.sorted(by: { $0.key < $1.key }).enumerated() {
                if i > 0 { byte(UInt8(ascii: ",")) }
                string(k)
                byte(UInt8(ascii: ":"))
                value(x)
            }
            byte(UInt8(ascii: "}"))
        }
    }

    func values(_ values: [StepValue]) {
        byte(UInt8(ascii: "["))
        for (i, v) in values.enumerated() {
            if i > 0 { byte(UInt8(ascii: ",")) }
            value(v)
        }
        byte(UInt8(ascii: "]"))
    }
}
