import Foundation

/// A JSON-compatible argument of a function step. Every rank runs the same binary, so a step travels
/// as a function name plus these values.
public enum StepValue: Hashable, Sendable {
    /// JSON's `null`.
    case null
    /// A boolean.
    case bool(Bool)
    /// A whole number.
    case int(Int)
    /// A floating-point number.
    case double(Double)
    /// A string.
    case string(String)
    /// An array; arrays and objects nest at most 64 deep.
    case array([StepValue])
    /// An object, by key.
    case object([String: StepValue])

    /// The string inside, or nil for any other kind of value.
    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    /// The integer inside, or nil for any other kind of value.
    public var intValue: Int? {
        if case .int(let i) = self { return i }
        return nil
    }

    /// The value as a JSON-compatible Foundation object (`NSNull`, `Bool`, `Int`, `Double`, `String`,
    /// arrays and dictionaries of them), for `JSONSerialization`.
    public var jsonObject: Any {
        switch self {
        case .null: return NSNull()
        case .bool(let b): return b
        case .int(let i): return i
        case .double(let d): return d
        case .string(let s): return s
        case .array(let a): return a.map(\.jsonObject)
        case .object(let o): return o.mapValues(\.jsonObject)
        }
    }
}

extension StepValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByFloatLiteral,
    ExpressibleByBooleanLiteral, ExpressibleByNilLiteral, ExpressibleByArrayLiteral
{
    /// `"text"` is `.string("text")`.
    public init(stringLiteral value: String) { self = .string(value) }
    /// `3` is `.int(3)`.
    public init(integerLiteral value: Int) { self = .int(value) }
    /// `1.5` is `.double(1.5)`.
    public init(floatLiteral value: Double) { self = .double(value) }
    /// `true` is `.bool(true)`.
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    /// `nil` is `.null`.
    public init(nilLiteral: ()) { self = .null }
    /// `[1, "a"]` is `.array([.int(1), .string("a")])`.
    public init(arrayLiteral elements: StepValue...) { self = .array(elements) }
}

extension StepValue: CustomStringConvertible {
    /// A short JSON-like rendering for summaries and error messages.
    public var description: String {
        switch self {
        case .null: return "null"
        case .bool(let b): return String(b)
        case .int(let i): return String(i)
        case .double(let d): return String(d)
        case .string(let s): return "\"\(s)\""
        case .array(let a): return "[" + a.map(\.description).joined(separator: ", ") + "]"
        case .object(let o):
            return "{" + o.sorted { $0.key < $1.key }.map { "\"\($0.key)\": \($0.value)" }.joined(separator: ", ") + "}"
        }
    }
}

extension StepValue: Codable {
    /// Decodes any JSON value.
    /// - Throws: `DecodingError` when the input is not JSON-like.
    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let i = try? c.decode(Int.self) { self = .int(i) }
        else if let d = try? c.decode(Double.self) { self = .double(d) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([StepValue].self) { self = .array(a) }
        else { self = .object(try c.decode([String: StepValue].self)) }
    }

    /// Encodes the value as the JSON value it stands for.
    /// - Throws: what the encoder throws.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case .bool(let b): try c.encode(b)
        case .int(let i): try c.encode(i)
        case .double(let d): try c.encode(d)
        case .string(let s): try c.encode(s)
        case .array(let a): try c.encode(a)
        case .object(let o): try c.encode(o)
        }
    }
}
