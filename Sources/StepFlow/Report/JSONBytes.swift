/// JSON text built as UTF-8 bytes, for documents with a record per step: appending bytes costs a few
/// instructions where `String` appends and Foundation's serializer cost thousands per step.
package struct JSONBytes {
    var bytes: [UInt8] = []

    /// `text` as a JSON string literal, quotes included.
    package static func quoted(_ text: String) -> String {
        var out = JSONBytes()
        out.string(text)
        return String(decoding: out.bytes, as: UTF8.self)
    }

    mutating func reserve(_ capacity: Int) { bytes.reserveCapacity(capacity) }

    /// Appends text that is already JSON (punctuation, key names).
    mutating func raw(_ text: StaticString) {
        text.withUTF8Buffer { bytes.append(contentsOf: $0) }
    }

    mutating func int(_ value: Int?) {
        guard let value else { return raw("null") }
        if value < 0 { bytes.append(UInt8(ascii: "-")) }
        var magnitude = value.magnitude
        var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                     UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
            (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var count = 0
        withUnsafeMutableBytes(of: &digits) { buffer in
            repeat {
                buffer[19 - count] = UInt8(ascii: "0") + UInt8(magnitude % 10)
                magnitude /= 10
                count += 1
            } while magnitude > 0
            bytes.append(contentsOf: buffer[(20 - count)...])
        }
    }

    /// A number, or null for nil and for values JSON cannot hold (infinities, NaN).
    mutating func double(_ value: Double?) {
        guard let value, value.isFinite else { return raw("null") }
        var text = value.description
        text.withUTF8 { bytes.append(contentsOf: $0) }
    }

    mutating func string(_ value: String?) {
        guard let value else { return raw("null") }
        bytes.append(UInt8(ascii: "\""))
        var copy = value
        copy.withUTF8 { utf8 in
            // Runs of bytes that need no escape are copied at once.
            var runStart = 0
            for (i, b) in utf8.enumerated() where b == UInt8(ascii: "\"") || b == UInt8(ascii: "\\") || b < 0x20 {
                bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[runStart..<i]))
                escape(b)
                runStart = i + 1
            }
            bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[runStart...]))
        }
        bytes.append(UInt8(ascii: "\""))
    }

    private mutating func escape(_ b: UInt8) {
        switch b {
        case UInt8(ascii: "\""): raw("\\\"")
        case UInt8(ascii: "\\"): raw("\\\\")
        case UInt8(ascii: "\n"): raw("\\n")
        case UInt8(ascii: "\r"): raw("\\r")
        case UInt8(ascii: "\t"): raw("\\t")
        default:
            let hex = Array("0123456789abcdef".utf8)
            raw("\\u00")
            bytes.append(hex[Int(b >> 4)])
            bytes.append(hex[Int(b & 0xF)])
        }
    }

    /// A step's arguments: the same text `JSONText.values` writes.
    mutating func value(_ value: StepValue) {
        var text = value.jsonText
        text.withUTF8 { bytes.append(contentsOf: $0) }
    }

    mutating func values(_ values: [StepValue]) {
        if values.isEmpty { return raw("[]") }
        var text = JSONText.values(values)
        text.withUTF8 { bytes.append(contentsOf: $0) }
    }
}
