/// What a step hands the steps that depend on it (S13): bytes, or a `StepValue`. A step sets it with
/// `StepContext.setResult`; a dependent reads a prerequisite's with `StepContext.result(of:)`.
public enum StepResult: Sendable, Equatable {
    /// Bytes, as they were set.
    case bytes([UInt8])
    /// A value, as it was set.
    case value(StepValue)

    /// The bytes of a `.bytes` result; nil for a value.
    public var bytes: [UInt8]? {
        if case .bytes(let b) = self { return b }
        return nil
    }

    /// The value of a `.value` result; nil for bytes.
    public var value: StepValue? {
        if case .value(let v) = self { return v }
        return nil
    }

    /// The default largest result, in bytes as stored (`--result-limit` changes it).
    public static let defaultLimit = 64 * 1024

    /// How the engine carries and stores it: a kind byte (0 bytes, 1 a value), then the bytes or the
    /// value as the wire codec writes it.
    package var encoded: [UInt8] {
        switch self {
        case .bytes(let b): return [0] + b
        case .value(let v):
            var w = WireWriter()
            w.byte(1)
            w.value(v)
            return w.bytes
        }
    }

    /// What `encoded` wrote, or nil for anything else.
    package init?(encoded: [UInt8]) {
        guard let kind = encoded.first else { return nil }
        switch kind {
        case 0: self = .bytes(Array(encoded.dropFirst()))
        case 1:
            let decoded: StepValue? = encoded.withUnsafeBufferPointer { buffer in
                var r = WireReader(buffer: UnsafeBufferPointer(rebasing: buffer[1...]))
                guard let v = try? r.value(), (try? r.expectEnd()) != nil else { return nil }
                return v
            }
            guard let decoded else { return nil }
            self = .value(decoded)
        default: return nil
        }
    }
}

/// A prerequisite's result as rank 0 hands it to a dependent with its assignment.
@usableFromInline package struct StepInput: Sendable, Equatable {
    @usableFromInline package var id: StepID
    /// The prerequisite's name (its display name), for command steps' input files.
    package var name: String
    /// `StepResult.encoded`; empty when the prerequisite set no result.
    @usableFromInline package var result: [UInt8]

    package init(id: StepID, name: String, result: [UInt8]) {
        self.id = id
        self.name = name
        self.result = result
    }
}

/// Why a step's result cannot be set or read.
public enum StepResultError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The result is larger than the run's limit.
    case tooLarge(step: StepID, function: String, bytes: Int, limit: Int)
    /// The step asked for the result of a step that is not one of its prerequisites.
    case notAPrerequisite(step: StepID, asked: StepID)

    /// The message, naming the step and saying what to do.
    public var description: String {
        switch self {
        case .tooLarge(let step, let function, let bytes, let limit):
            return "step \(step) '\(function)' set a result of \(bytes) bytes, more than the run's limit of \(limit) (--result-limit). Pass large data through files, or raise --result-limit."
        case .notAPrerequisite(let step, let asked):
            return "step \(step) asked for the result of step \(asked), which is not one of its prerequisites: a step reads only the results of the steps it waits for. Add \(asked) to its prerequisites."
        }
    }
}
