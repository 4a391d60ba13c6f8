import Foundation
import Testing
@testable import StepFlow

/// `JSONBytes` writes `report.json`, `status --json`, the live page's state and the store's JSON
/// columns. These check its text against Foundation and against a plain `String` writer, on random
/// values, so a faster writer cannot change a byte of what users and scripts read.
@Suite struct JSONBytesTests {
    /// What the writer wrote before it wrote through a pointer: `String` appends, Swift's own number
    /// texts, the escapes of the contract's JSON (quote, backslash, \n \r \t, other controls as \u00XX).
    static func reference(_ v: StepValue) -> String {
        switch v {
        case .null: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .int(let i): return String(i)
        case .double(let d): return d.isFinite ? "\(d)" : "null"
        case .string(let s): return referenceString(s)
        case .array(let a): return "[" + a.map(reference).joined(separator: ",") + "]"
        case .object(let o):
            return "{" + o.sorted { $0.key < $1.key }.map { referenceString($0.key) + ":" + reference($0.value) }.joined(separator: ",") + "}"
        }
    }

    static func referenceString(_ s: String) -> String {
        var out = "\""
        for ch in s.unicodeScalars {
            switch ch {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where ch.value < 0x20: out += String(format: "\\u%04x", ch.value)
            default: out.unicodeScalars.append(ch)
            }
        }
        return out + "\""
    }

    static let pieces = ["a", "Z", "0", " ", "\"", "\\", "\n", "\r", "\t", "\u{01}", "\u{1F}", "é", "漢", "🙂", "/", "{", "]", ",", ":"]

    static func randomString(_ g: inout SeededRandom) -> String {
        (0..<Int.random(in: 0...12, using: &g)).map { _ in pieces.randomElement(using: &g)! }.joined()
    }

    static func randomValue(_ g: inout SeededRandom, depth: Int = 0) -> StepValue {
        switch Int.random(in: 0...(depth < 3 ? 7 : 5), using: &g) {
        case 0: return .null
        case 1: return .bool(Bool.random(using: &g))
        case 2: return .int([Int.min, Int.max, 0, -1, 9, 10, 99, 100, Int.random(in: Int.min...Int.max, using: &g)].randomElement(using: &g)!)
        case 3: return .double([0.1, -2.5, 1e300, 5e-324, 1796661127.0902224, .nan, .infinity, -.infinity,
                                Double.random(in: -1e9...1e9, using: &g)].randomElement(using: &g)!)
        case 4, 5: return .string(randomString(&g))
        case 6: return .array((0..<Int.random(in: 0...4, using: &g)).map { _ in randomValue(&g, depth: depth + 1) })
        default:
            var o: [String: StepValue] = [:]
            for _ in 0..<Int.random(in: 0...4, using: &g) { o[randomString(&g)] = randomValue(&g, depth: depth + 1) }
            return .object(o)
        }
    }

    @Test("Values: the text of 2,000 random values (escapes, unicode, extreme numbers, NaN, nesting) is the String writer's, byte for byte")
    func valuesMatchTheReference() {
        var g = SeededRandom(seed: 21)
        for _ in 0..<2_000 {
            let values = (0..<Int.random(in: 0...3, using: &g)).map { _ in Self.randomValue(&g) }
            var out = JSONBytes()
            out.values(values)
            let expected = "[" + values.map(Self.reference).joined(separator: ",") + "]"
            #expect(out.text == expected)
            #expect(JSONText.values(values) == expected)
            if let v = values.first { #expect(v.jsonText == Self.reference(v)) }
        }
    }

    @Test("Whole numbers: Int.min, Int.max, and every power of ten's neighbours")
    func integers() {
        var cases = [Int.min, Int.max, 0, -1, 1]
        var p = 1
        for _ in 0..<18 {
            p *= 10
            cases += [p - 1, p, p + 1, -p, -(p - 1)]
        }
        for n in cases {
            var out = JSONBytes()
            out.int(n)
            #expect(out.text == String(n))
        }
        var out = JSONBytes()
        out.int(nil)
        #expect(out.text == "null")
    }

    @Test("Base64: equal to Foundation's for every length 0–200, as a quoted JSON string")
    func base64MatchesFoundation() {
        var g = SeededRandom(seed: 7)
        for n in 0...200 {
            let bytes = (0..<n).map { _ in UInt8.random(in: 0...255, using: &g) }
            var out = JSONBytes()
            out.base64(bytes)
            #expect(out.text == "\"" + Data(bytes).base64EncodedString() + "\"", "length \(n)")
            // A slice (a result after its kind byte) is written the same way.
            var sliced = JSONBytes()
            sliced.base64(([0] + bytes).dropFirst())
            #expect(sliced.text == out.text)
        }
    }

    @Test("report.json: many steps (several chunks) with byte and value results read back as written")
    func documentReadsBack() throws {
        var g = SeededRandom(seed: 3)
        var records: [StepRecord] = []
        var results: [StepResult?] = []
        for id in 1...3_000 {
            var r = StepRecord(id: id, spec: StepSpec(function: "f\(id % 7)", args: [.int(id), .string(Self.randomString(&g))]),
                               prerequisites: id > 1 ? [id - 1] : [], insertedBy: .protocolSteps, status: .finished)
            r.rank = id % 3
            r.slot = 0
            r.start = 1796661127.0902224 + Double(id)
            r.end = r.start! + 0.5
            let result: StepResult?
            switch id % 3 {
            case 0: result = .bytes((0..<(id % 40)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ id) })
            case 1: result = .value(Self.randomValue(&g))
            default: result = nil
            }
            r.result = result?.encoded
            records.append(r)
            results.append(result)
        }
        var bytes: [UInt8] = []
        var chunks = 0
        try RunDocument.write(RunDocument.Header(protocolName: "p\"q", status: "finished", threads: 1, mpi: 1, started: 1, ended: 2),
                              steps: records) { chunk in
            bytes += chunk
            chunks += 1
        }
        #expect(chunks > 1)
        let doc = try #require(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
        let run = try #require(doc["run"] as? [String: Any])
        #expect(run["protocol"] as? String == "p\"q")
        let steps = try #require(doc["steps"] as? [[String: Any]])
        #expect(steps.count == records.count)
        for (i, s) in steps.enumerated() {
            #expect(s["id"] as? Int == i + 1)
            // Foundation's parser on Linux reads the last digit of such times loosely; the text itself is
            // Swift's shortest (the values test checks the text of doubles).
            #expect(abs((s["start"] as? Double ?? 0) - records[i].start!) < 1e-6)
            #expect((s["args"] as? [Any])?.count == 2)
            switch results[i] {
            case .bytes(let b)?:
                let text = try #require((s["result"] as? [String: Any])?["base64"] as? String)
                #expect(Data(base64Encoded: text) == Data(b))
            case .value(let v)?:
                let shown = try #require((s["result"] as? [String: Any])?["value"])
                guard !v.containsNonFinite else { continue }
                let again = try JSONSerialization.data(withJSONObject: ["v": shown], options: [.sortedKeys, .fragmentsAllowed])
                let expected = try JSONSerialization.data(withJSONObject: ["v": v.jsonObject], options: [.sortedKeys, .fragmentsAllowed])
                #expect(again == expected)
            case nil:
                #expect(s["result"] is NSNull)
            }
        }
    }
}

private extension StepValue {
    /// NaN and infinities are written as null, so they do not read back as themselves.
    var containsNonFinite: Bool {
        switch self {
        case .double(let d): return !d.isFinite
        case .array(let a): return a.contains { $0.containsNonFinite }
        case .object(let o): return o.values.contains { $0.containsNonFinite }
        default: return false
        }
    }
}
