import Foundation
import Testing
@testable import StepFlow

/// A frame of either direction: the fuzz tests draw both and check both decoders.
enum AnyFrame: Equatable {
    case toRank([ToRank])
    case fromRank([FromRank])

    var bytes: [UInt8] {
        switch self {
        case .toRank(let m): return WireCodec.encode(m)
        case .fromRank(let m): return WireCodec.encode(m)
        }
    }

    /// The case names of the messages, e.g. "assign".
    var kinds: [String] {
        let names: [Any] = switch self {
        case .toRank(let m): m
        case .fromRank(let m): m
        }
        return names.map { String(describing: $0).prefix { $0 != "(" }.description }
    }
}

/// Random messages of both directions and `StepValue` trees of every kind, from a seed.
struct WireMessageGenerator {
    var rng: SeededRandom
    /// Set once a NaN was generated: NaN != NaN, so such values are compared by their bytes only.
    var sawNaN = false

    init(seed: UInt64) { rng = SeededRandom(seed: seed) }

    mutating func below(_ n: Int) -> Int { Int.random(in: 0..<n, using: &rng) }
    mutating func chance(_ p: Double) -> Bool { Double.random(in: 0..<1, using: &rng) < p }

    mutating func int() -> Int {
        switch below(6) {
        case 0: return below(10)
        case 1: return below(1 << 20)
        case 2: return -below(1 << 20)
        case 3: return [Int.min, Int.max, Int.min + 1, Int.max - 1, -1, 0, 1 << 62, Int(Int32.max), Int(Int32.min)][below(9)]
        default: return Int(truncatingIfNeeded: rng.next())
        }
    }

    mutating func double() -> Double {
        let d: Double
        switch below(4) {
        case 0: d = [0.0, -0.0, .infinity, -.infinity, .leastNonzeroMagnitude, .greatestFiniteMagnitude, .nan, 1.5, -2.25][below(9)]
        case 1: d = Double(below(1000)) / 8
        default: d = Double(bitPattern: rng.next())
        }
        if d.isNaN { sawNaN = true }
        return d
    }

    static let characters: [String] = ["a", "b", "Z", "0", " ", "\"", "\\", "\n", "\u{0}", "é", "e\u{301}", "ß", "日本",
                                       "🧪", "👩‍👩‍👧", "\u{FFFD}", "\u{10FFFF}", "\u{7F}", "\u{80}", "/", "{", "]"]

    mutating func string() -> String {
        var s = ""
        let n = chance(0.1) ? 20 + below(200) : below(8)
        for _ in 0..<n { s += Self.characters[below(Self.characters.count)] }
        return s
    }

    mutating func value(depth: Int = 0, maxDepth: Int = 4) -> StepValue {
        let containers = depth < maxDepth
        switch below(containers ? 9 : 6) {
        case 0: return .null
        case 1: return .bool(chance(0.5))
        case 2: return .int(int())
        case 3: return .double(double())
        case 4, 5: return .string(string())
        case 6, 7: return .array((0..<below(5)).map { _ in value(depth: depth + 1, maxDepth: maxDepth) })
        default:
            var o: [String: StepValue] = [:]
            for _ in 0..<below(5) { o[string()] = value(depth: depth + 1, maxDepth: maxDepth) }
            return .object(o)
        }
    }

    mutating func values() -> [StepValue] { (0..<below(5)).map { _ in value() } }
    mutating func ints() -> [Int] { (0..<below(chance(0.05) ? 300 : 5)).map { _ in int() } }
    mutating func optionalDouble() -> Double? { chance(0.3) ? nil : double() }
    mutating func location() -> StepFlow.SourceLocation? { chance(0.3) ? nil : StepFlow.SourceLocation(file: string(), line: int()) }
    mutating func token() -> UInt32 { chance(0.2) ? [0, 1, .max][below(3)] : UInt32(truncatingIfNeeded: rng.next()) }

    mutating func toRank() -> ToRank {
        switch below(8) {
        case 0:
            // Sent behind other steps (with its two flags) or not: the flags travel only with a list.
            let behind = chance(0.5) ? [] : ints()
            // Prerequisites' results (none sent, or a few with names and blobs, empty ones included).
            let inputs: [StepInput]? = chance(0.5) ? nil : (0..<below(4)).map { _ in
                StepInput(id: int(), name: string(), result: (0..<(chance(0.2) ? 0 : below(40))).map { _ in UInt8(truncatingIfNeeded: rng.next()) })
            }
            return .assign(StepAssignment(id: int(), function: string(), args: values(), threads: int(), gpus: ints(), attempt: int(),
                                          startBy: optionalDouble(), inputs: inputs, behind: behind,
                                          inputsOnlyForBehind: !behind.isEmpty && chance(0.5), sendEndsFirst: !behind.isEmpty && chance(0.5)))
        case 1: return .takeBackUnstarted
        case 2: return .reply(token: token(), [.success(int()), .success(nil), .failure(GraphEditError(string()))][below(3)])
        case 3: return .shutdown
        case 4: return .abort
        case 5: return .ping
        default: return .takeBack(ints())
        }
    }

    mutating func fromRank() -> FromRank {
        switch below(9) {
        case 0: return .alive
        case 1: return .started(StepStart(id: int(), rank: int(), slot: int(), start: double()))
        case 2:
            let report: Scheduler.Report = [.finished, .failed(error: string()), .notStarted, .aborted][below(4)]
            return .ended(StepOutcome(id: int(), rank: int(), slot: int(), report: report, start: optionalDouble(),
                                      end: optionalDouble(), logPath: chance(0.3) ? nil : string()))
        case 3, 4:
            let spec = StepSpec(function: string(), args: values(), threads: int(), needsGPU: chance(0.5), retries: int(), wait: chance(0.5))
            return .request(token: token(), StepRequest(from: int(), edit: .insert(spec, prerequisites: ints(), at: location())))
        case 5, 6:
            return .request(token: token(), StepRequest(from: int(), edit: .addPrerequisites(to: int(), ints(), at: location())))
        default:
            return .request(token: token(), StepRequest(from: int(), edit: .release(int(), at: location())))
        }
    }

    /// A frame of 0 to 6 messages (rarely 0), one direction drawn at random.
    mutating func frame() -> AnyFrame {
        let n = chance(0.05) ? 0 : 1 + below(6)
        if chance(0.5) { return .toRank((0..<n).map { _ in toRank() }) }
        return .fromRank((0..<n).map { _ in fromRank() })
    }

    mutating func bytes(_ n: Int) -> [UInt8] { (0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) } }
}

/// Failures collected over many cases, reported once: `#expect` on every one of 100,000 cases
/// would make the test slow in a debug build.
struct FuzzLedger {
    var cases = 0
    var failures: [String] = []

    mutating func fail(_ text: String) { if failures.count < 20 { failures.append(text) } else { failures[19] = "… and more" } }

    /// Decodes `bytes` as both directions; a thrown error must name an offset inside the bytes.
    /// Returns the frame of the first direction that decodes, or nil.
    mutating func decode(_ bytes: [UInt8], _ label: String) -> AnyFrame? {
        cases += 1
        var decoded: AnyFrame?
        do {
            decoded = .toRank(try WireCodec.decode(bytes, as: ToRank.self))
        } catch {
            check(error, bytes, label)
        }
        do {
            let from = try WireCodec.decode(bytes, as: FromRank.self)
            if decoded == nil { decoded = .fromRank(from) }
        } catch {
            check(error, bytes, label)
        }
        return decoded
    }

    mutating func check(_ error: WireError, _ bytes: [UInt8], _ label: String) {
        if !(0...bytes.count).contains(error.offset) || !error.description.contains("at byte \(error.offset)") {
            fail("\(label): error offset \(error.offset) outside 0...\(bytes.count) or not in '\(error)'")
        }
    }

    /// A decoded frame must come back byte for byte when encoded again, and decode to the same messages.
    mutating func checkStable(_ frame: AnyFrame, _ label: String) {
        let again = frame.bytes
        let redecoded: AnyFrame?
        switch frame {
        case .toRank: redecoded = (try? WireCodec.decode(again, as: ToRank.self)).map { .toRank($0) }
        case .fromRank: redecoded = (try? WireCodec.decode(again, as: FromRank.self)).map { .fromRank($0) }
        }
        guard let redecoded else { return fail("\(label): re-encoded frame does not decode") }
        if redecoded.bytes != again { fail("\(label): re-encoding is not stable") }
    }
}

@Suite struct WireCodecFuzzTests {
    static let randomByteCases = 100_000
    static let mutationCases = 100_000
    static let roundTripFrames = 600

    @Test("Random bytes decode or throw WireError with an offset inside the input")
    func randomBytes() {
        var gen = WireMessageGenerator(seed: 0xB17E5)
        var ledger = FuzzLedger()
        var decodedCount = 0
        for i in 0..<Self.randomByteCases {
            var bytes = gen.bytes(gen.below(48))
            // Often a plausible header (a small message count, a known kind) so decoding goes deeper.
            if !bytes.isEmpty && gen.chance(0.6) { bytes[0] = UInt8(1 + gen.below(4)) }
            if bytes.count > 1 && gen.chance(0.6) { bytes[1] = UInt8(1 + gen.below(11)) }
            if let frame = ledger.decode(bytes, "random #\(i)") {
                decodedCount += 1
                ledger.checkStable(frame, "random #\(i)")
            }
        }
        print("WireCodecFuzzTests.randomBytes: \(ledger.cases) cases, \(decodedCount) decoded")
        #expect(ledger.failures.isEmpty, "\(ledger.failures.joined(separator: "\n"))")
        #expect(ledger.cases == Self.randomByteCases)
    }

    @Test("Valid frames of random messages of both directions round-trip exactly, and every shorter prefix throws")
    func roundTripAndTruncation() {
        var gen = WireMessageGenerator(seed: 0xF4A3E)
        var ledger = FuzzLedger()
        var kinds = Set<String>()
        for i in 0..<Self.roundTripFrames {
            gen.sawNaN = false
            let frame = gen.frame()
            kinds.formUnion(frame.kinds)
            let bytes = frame.bytes
            ledger.cases += 1
            do {
                let decoded: AnyFrame = switch frame {
                case .toRank: .toRank(try WireCodec.decode(bytes, as: ToRank.self))
                case .fromRank: .fromRank(try WireCodec.decode(bytes, as: FromRank.self))
                }
                if !gen.sawNaN && decoded != frame { ledger.fail("frame #\(i): decoded messages differ") }
                if decoded.bytes != bytes { ledger.fail("frame #\(i): bytes differ after a round trip") }
            } catch {
                ledger.fail("frame #\(i): a valid frame of \(bytes.count) bytes throws \(error)")
            }
            // Long frames: a random sample of cut points; short ones: all of them.
            let cuts = bytes.count <= 400 ? Array(0..<bytes.count) : (0..<400).map { _ in gen.below(bytes.count) }
            for cut in cuts {
                if ledger.decode(Array(bytes[..<cut]), "frame #\(i) cut at \(cut)") != nil {
                    ledger.fail("frame #\(i) (\(bytes.count) bytes) cut at \(cut) decodes")
                }
            }
        }
        #expect(ledger.failures.isEmpty, "\(ledger.failures.joined(separator: "\n"))")
        #expect(kinds == ["assign", "takeBackUnstarted", "takeBack", "reply", "shutdown", "abort", "ping", "started", "ended", "request", "alive"])
        #expect(ledger.cases >= 30_000, "only \(ledger.cases) cases")
        print("WireCodecFuzzTests.roundTripAndTruncation: \(ledger.cases) cases")
    }

    @Test("A frame rank 0 builds message by message (ToRankFrame, assignments written as they are handed out) is byte for byte the frame WireCodec.encode makes of the same messages, frame after frame")
    func framesBuiltAsMessagesCome() {
        var gen = WireMessageGenerator(seed: 0x70F7A)
        let building = ToRankFrame()
        var assignments = 0, withInputs = 0
        for i in 0..<2_000 {
            gen.sawNaN = false
            let messages = (0..<gen.below(7)).map { _ in gen.toRank() }
            for m in messages {
                if case .assign(let a) = m {
                    building.append(assignment: a)
                    assignments += 1
                    if a.inputs?.isEmpty == false { withInputs += 1 }
                } else {
                    building.append(m)
                }
            }
            #expect(building.count == messages.count)
            let built = building.take()
            #expect(built == WireCodec.encode(messages), "frame #\(i)")
            #expect(building.isEmpty)
            // NaN never equals itself, so a frame that holds one is compared by its bytes alone.
            #expect(gen.sawNaN || (try? WireCodec.decode(built, as: ToRank.self)) == messages, "frame #\(i)")
        }
        #expect(assignments > 500 && withInputs > 150, "\(assignments) assignments, \(withInputs) with inputs")
    }

    @Test("A step sent from the graph (RankLink's send: read from the records, no assignment made) is byte for byte the assignment made of the same decision, with and without results, files, names, GPUs, deadlines and steps sent behind")
    func assignmentsSentFromTheGraph() throws {
        var gen = WireMessageGenerator(seed: 0x5E17)
        var sent = 0, withInputs = 0, behind = 0, withFiles = 0
        for round in 0..<40 {
            var graph = StepGraph()
            let files = StepFiles(inputs: [], outputs: [], content: false)
            for id in 1...30 {
                // Some steps named by their first argument, as workflows name theirs.
                var args = gen.values()
                if gen.chance(0.3) { args.insert(.object(["name": .string(gen.string())]), at: 0) }
                let prerequisites = id == 1 ? [] : (0..<gen.below(4)).map { _ in 1 + gen.below(id - 1) }
                try graph.insert(StepSpec(function: gen.string(), args: args, threads: 1 + gen.below(3)),
                                 prerequisites: prerequisites, insertedBy: .protocolSteps)
            }
            // Half the rounds set no result at all (inputs then go only with steps sent behind).
            if round % 2 == 1 {
                for id in 1...30 where gen.chance(0.6) {
                    let result = StepResult.bytes(gen.bytes(gen.below(40))).encoded
                    let withFileBlob = gen.chance(0.3)
                    if withFileBlob { withFiles += 1 }
                    graph.noteResult(id, withFileBlob ? StepOutcomeBlob.make(result: result, files: files) : result)
                }
            }
            let made = ToRankFrame(), direct = ToRankFrame()
            for _ in 0..<50 {
                let step = 1 + gen.below(30)
                let prerequisites = graph.records[step - 1].prerequisites
                let sentBehind = gen.chance(0.4) ? Array(prerequisites.prefix(gen.below(prerequisites.count + 1))) : []
                let a = Assignment(step: step, rank: 1, gpus: gen.chance(0.3) ? gen.ints() : [], attempt: gen.below(4),
                                   startBy: gen.chance(0.2) ? gen.double() : nil, behind: sentBehind,
                                   sendEndsFirst: !sentBehind.isEmpty && gen.chance(0.5))
                let assignment = StepAssignment(a, in: graph)
                made.append(assignment: assignment)
                direct.append(a, in: graph)
                sent += 1
                if assignment.inputs?.isEmpty == false { withInputs += 1 }
                if !sentBehind.isEmpty { behind += 1 }
            }
            #expect(direct.count == made.count)
            let bytes = direct.take(), expected = made.take()
            // Compared whole, reported by where they part: the frames run to thousands of bytes.
            let parted = bytes.indices.first { $0 >= expected.count || bytes[$0] != expected[$0] } ?? (bytes.count == expected.count ? nil : bytes.count)
            #expect(parted == nil, "round \(round): the frames part at byte \(parted ?? -1) of \(expected.count)")
            #expect(try WireCodec.decode(bytes, as: ToRank.self).count == 50)
        }
        #expect(sent == 2_000 && withInputs > 300 && behind > 300 && withFiles > 20, "\(sent) sent, \(withInputs) with inputs, \(behind) behind, \(withFiles) with files")
    }

    @Test("Valid frames with random mutations, insertions and deletions decode or throw")
    func mutations() {
        var gen = WireMessageGenerator(seed: 0x3017A7E)
        var ledger = FuzzLedger()
        var decodedCount = 0
        var frame: [UInt8] = []
        for i in 0..<Self.mutationCases {
            if i % 50 == 0 { frame = gen.frame().bytes }
            var bytes = frame
            for _ in 0..<(1 + gen.below(3)) {
                let at = gen.below(bytes.count + 1)
                switch gen.below(6) {
                case 0 where at < bytes.count: bytes[at] = UInt8(truncatingIfNeeded: gen.rng.next())
                case 1 where at < bytes.count: bytes[at] = [0, 1, 2, 0x7F, 0x80, 0xFF][gen.below(6)]
                case 2 where at < bytes.count: bytes[at] ^= 1 << UInt8(gen.below(8))
                case 3: bytes.insert(contentsOf: gen.bytes(1 + gen.below(4)), at: at)
                case 4 where at < bytes.count: bytes.removeSubrange(at..<min(bytes.count, at + 1 + gen.below(4)))
                default:
                    let end = min(bytes.count, at + 1 + gen.below(8))
                    bytes.insert(contentsOf: bytes[at..<end], at: at)
                }
            }
            if let decoded = ledger.decode(bytes, "mutation #\(i)") {
                decodedCount += 1
                ledger.checkStable(decoded, "mutation #\(i)")
            }
        }
        #expect(ledger.failures.isEmpty, "\(ledger.failures.joined(separator: "\n"))")
        // Some mutations land on payload bytes and still decode; the rest throw. Both paths are exercised.
        print("WireCodecFuzzTests.mutations: \(ledger.cases) cases, \(decodedCount) decoded")
        #expect(decodedCount > 0 && decodedCount < Self.mutationCases, "\(decodedCount) of \(Self.mutationCases) decoded")
    }

    @Test("Step arguments round-trip through encode(arguments:) and decode(arguments:); prefixes throw")
    func arguments() {
        var gen = WireMessageGenerator(seed: 0xA765)
        var cases = 0
        var failures: [String] = []
        for i in 0..<2_000 {
            gen.sawNaN = false
            let args = gen.values()
            let bytes = WireCodec.encode(arguments: args)
            cases += 1
            guard let back = try? WireCodec.decode(arguments: bytes) else { failures.append("args #\(i) do not decode"); continue }
            if !gen.sawNaN && back != args { failures.append("args #\(i) differ") }
            if WireCodec.encode(arguments: back) != bytes { failures.append("args #\(i): bytes differ") }
            for cut in stride(from: 0, to: bytes.count, by: max(1, bytes.count / 8)) {
                cases += 1
                if (try? WireCodec.decode(arguments: Array(bytes[..<cut]))) != nil { failures.append("args #\(i) cut at \(cut) decode") }
            }
        }
        print("WireCodecFuzzTests.arguments: \(cases) cases")
        #expect(failures.isEmpty, "\(failures.prefix(20).joined(separator: "\n"))")
        #expect(cases > 10_000)
    }

    /// `bytes` must throw `expected`, decoded as the direction its first kind byte belongs to (a
    /// rank's messages 5, 6, 8 and 11; otherwise rank 0's).
    func expectThrows(_ bytes: [UInt8], _ expected: WireError, sourceLocation: Testing.SourceLocation = #_sourceLocation) {
        if bytes.count > 1 && [5, 6, 8, 11].contains(bytes[1]) {
            #expect(throws: expected, sourceLocation: sourceLocation) { try WireCodec.decode(bytes, as: FromRank.self) }
        } else {
            #expect(throws: expected, sourceLocation: sourceLocation) { try WireCodec.decode(bytes, as: ToRank.self) }
        }
    }

    static let maxVarint: [UInt8] = Array(repeating: 0xFF, count: 9) + [0x01]

    @Test("Hostile frames: huge counts, long varints, deep nesting, unknown kinds, bad flags and UTF-8")
    func hostileFrames() throws {
        expectThrows([], .truncated(field: "message count", offset: 0, needed: 1, left: 0))
        expectThrows(Self.maxVarint, .countPastEnd(field: "message count", count: .max, offset: 0, left: 0, minimumBytes: 1))
        expectThrows([0xE8, 0x07, 4, 4, 4], .countPastEnd(field: "message count", count: 1000, offset: 0, left: 3, minimumBytes: 1))
        // The 10th byte carries bit 63 only.
        expectThrows(Array(repeating: 0xFF, count: 9) + [0x02], .varintOverflow(field: "message count", offset: 0))
        expectThrows(Array(repeating: 0x80, count: 10) + [0x00], .varintOverflow(field: "message count", offset: 0))
        expectThrows(Array(repeating: 0x80, count: 5), .truncated(field: "message count", offset: 0, needed: 6, left: 5))
        // A 10-byte varint that fits decodes: Int.min in zigzag is UInt64.max.
        let release: [UInt8] = [1, 6, 0] + [1] + [2] + Self.maxVarint + [0]
        #expect(try WireCodec.decode(release, as: FromRank.self) == [.request(token: 0, StepRequest(from: -1, edit: .release(Int.min, at: nil)))])

        // Lengths and counts past the end, at every level.
        expectThrows([1, 1, 0] + Self.maxVarint, .countPastEnd(field: "function name length", count: .max, offset: 3, left: 0, minimumBytes: 1))
        expectThrows([1, 1, 0, 5, 0x61], .countPastEnd(field: "function name length", count: 5, offset: 3, left: 1, minimumBytes: 1))
        expectThrows([1, 1, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F], .countPastEnd(field: "argument count", count: 0xFFFF_FFFF, offset: 4, left: 0, minimumBytes: 1))
        expectThrows([1, 1, 0, 0, 1, 6, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40],
                     .countPastEnd(field: "array length", count: 1 << 62, offset: 6, left: 0, minimumBytes: 1))
        expectThrows([1, 1, 0, 0, 1, 7, 3, 0, 0, 0], .countPastEnd(field: "object size", count: 3, offset: 6, left: 3, minimumBytes: 2))
        expectThrows([1, 1, 0, 0, 0, 2, 200, 1], .countPastEnd(field: "gpu count", count: 200, offset: 6, left: 0, minimumBytes: 1))
        expectThrows([1, 6, 0, 0, 1, 0, 0xFF, 0x7F], .countPastEnd(field: "prerequisite count", count: 0x3FFF, offset: 6, left: 0, minimumBytes: 1))
        expectThrows([1, 1, 0, 0, 1, 4, 0, 0, 0], .truncated(field: "double value", offset: 6, needed: 8, left: 3))

        // Unknown kinds and flags.
        for kind: UInt8 in [0, 12, 0x7F, 0xFF] { expectThrows([1, kind], .unknownKind(field: "message kind (rank 0 to a rank)", kind: kind, offset: 1)) }
        // A message of the other direction is unknown too: a rank never takes a rank's report, nor rank 0 an order.
        for kind: UInt8 in [5, 6, 8, 11] {
            #expect(throws: WireError.unknownKind(field: "message kind (rank 0 to a rank)", kind: kind, offset: 1)) { try WireCodec.decode([1, kind], as: ToRank.self) }
        }
        for kind: UInt8 in [1, 2, 3, 4, 7, 9, 10] {
            #expect(throws: WireError.unknownKind(field: "message kind (a rank to rank 0)", kind: kind, offset: 1)) { try WireCodec.decode([1, kind], as: FromRank.self) }
        }
        expectThrows([1, 1, 0, 0, 1, 8], .unknownKind(field: "value kind", kind: 8, offset: 5))
        expectThrows([1, 5, 0, 0, 0, 4], .unknownKind(field: "report kind", kind: 4, offset: 5))
        expectThrows([1, 6, 0, 0, 3], .unknownKind(field: "edit kind", kind: 3, offset: 4))
        expectThrows([1, 3, 0, 3], .unknownKind(field: "reply kind", kind: 3, offset: 3))
        expectThrows([1, 5, 0, 0, 0, 0, 2], .invalidFlag(field: "start time flag", value: 2, offset: 6))
        expectThrows([1, 6, 0, 0, 2, 0, 7], .invalidFlag(field: "source location flag", value: 7, offset: 6))
        expectThrows([1, 3, 0x80, 0x80, 0x80, 0x80, 0x10, 2], .outOfRange(field: "reply token", value: 1 << 32, offset: 2))
        expectThrows([1, 1, 0, 2, 0xC3, 0x28], .invalidUTF8(field: "function name", offset: 4, length: 2))
        expectThrows([1, 1, 0, 0, 1, 7, 2, 1, 0x61, 0, 1, 0x61, 1], .duplicateKey("a", offset: 10))
        expectThrows([1, 4, 0], .trailingBytes(count: 1, offset: 2))
        expectThrows([0, 0], .trailingBytes(count: 1, offset: 1))
        #expect(try WireCodec.decode([0], as: ToRank.self) == [] && WireCodec.decode([0], as: FromRank.self) == [])
    }

    /// A frame with one assign event whose only argument is `body`: count, kind, id 0, function "", 1 argument.
    static func assignFrame(argument body: [UInt8]) -> [UInt8] { [1, 1, 0, 0, 1] + body + [0, 0, 0, 0] }

    @Test("Nesting: 64 levels decode, 65 and 100,000 throw without recursing")
    func deepNesting() throws {
        let deepArrays = Self.assignFrame(argument: (0..<100_000).flatMap { _ in [6, 1] as [UInt8] } + [0])
        // The 65th array starts after the 5 header bytes and 64 two-byte levels.
        #expect(throws: WireError.nestedTooDeep(offset: 5 + 2 * 64, limit: 64)) { try WireCodec.decode(deepArrays, as: ToRank.self) }
        let deepObjects = Self.assignFrame(argument: (0..<100_000).flatMap { _ in [7, 1, 0] as [UInt8] } + [0])
        #expect(throws: WireError.nestedTooDeep(offset: 5 + 3 * 64, limit: 64)) { try WireCodec.decode(deepObjects, as: ToRank.self) }
        let deepArguments: [UInt8] = [1] + (0..<100_000).flatMap { _ in [6, 1] as [UInt8] } + [0]
        #expect(throws: WireError.nestedTooDeep(offset: 1 + 2 * 64, limit: 64)) { try WireCodec.decode(arguments: deepArguments) }

        let limit = WireCodec.maximumNesting
        let atLimit = Self.nested(limit), beyond = Self.nested(limit + 1)
        let event = { (v: StepValue) in ToRank.assign(StepAssignment(id: 1, function: "f", args: [v], threads: 1, gpus: [], attempt: 0)) }
        #expect(try WireCodec.decode(WireCodec.encode([event(atLimit)]), as: ToRank.self) == [event(atLimit)])
        #expect(try WireCodec.decode(arguments: WireCodec.encode(arguments: [atLimit])) == [atLimit])
        #expect(throws: WireError.self) { try WireCodec.decode(WireCodec.encode([event(beyond)]), as: ToRank.self) }
        #expect(throws: WireError.self) { try WireCodec.decode(arguments: WireCodec.encode(arguments: [beyond])) }
        // The limit holds beside siblings too: depth is per path, not per frame.
        let below = Self.nested(limit - 1)
        let wide = StepValue.array([below, below, .object(["k": Self.nested(limit - 2)]), 1])
        #expect(try WireCodec.decode(arguments: WireCodec.encode(arguments: [wide, atLimit])) == [wide, atLimit])
    }

    /// Arrays and objects alternating, `depth` levels, with a scalar at the bottom.
    static func nested(_ depth: Int) -> StepValue {
        var v: StepValue = .int(7)
        for level in 0..<depth { v = level % 2 == 0 ? .array([v]) : .object(["k\(level)": v]) }
        return v
    }

    @Test("nestingDepth measures values; checkNesting refuses arguments deeper than the wire allows")
    func nestingDepth() throws {
        #expect(StepValue.int(1).nestingDepth == 0)
        #expect(StepValue.string("[[[").nestingDepth == 0)
        #expect(StepValue.array([]).nestingDepth == 1)
        #expect(StepValue.array([1, 2]).nestingDepth == 1)
        #expect(StepValue.object(["a": [1]]).nestingDepth == 2)
        #expect(StepValue.array([[], [[[]]]]).nestingDepth == 4)
        #expect(Self.nested(64).nestingDepth == 64)
        let deep = Self.nested(1_000)
        #expect(deep.nestingDepth == 1_000)
        try WireCodec.checkNesting([1, Self.nested(64), .object(["a": "b"])])
        #expect(throws: StepNestingError.nestedTooDeep(index: 2, depth: 65, limit: 64)) {
            try WireCodec.checkNesting([1, Self.nested(64), Self.nested(65), deep])
        }
        let message = StepNestingError.nestedTooDeep(index: 2, depth: 65, limit: 64).description
        #expect(message.contains("argument 3") && message.contains("65 levels") && message.contains("at most 64"))
        // What checkNesting refuses is exactly what the receiving rank would refuse.
        var arrays: StepValue = .null
        for _ in 0..<1_000 { arrays = .array([arrays]) }
        #expect(arrays.nestingDepth == 1_000)
        // Bytes: the argument count, [] as 6 0, then 64 levels of 6 1 before the 65th.
        #expect(throws: WireError.nestedTooDeep(offset: 3 + 64 * 2, limit: 64)) {
            try WireCodec.decode(arguments: WireCodec.encode(arguments: [.array([]), arrays]))
        }
    }

    @Test("WireError messages say what, where, and what to do")
    func errorMessages() {
        let e = WireError.countPastEnd(field: "argument count", count: 9, offset: 12, left: 3, minimumBytes: 1)
        #expect(e.description.contains("at byte 12"))
        #expect(e.description.contains("argument count says 9, but only 3 bytes follow"))
        #expect(e.description.contains("same StepFlow build"))
        #expect(WireError.varintOverflow(field: "message count", offset: 0).description.contains("longer than 64 bits"))
        #expect(WireError.nestedTooDeep(offset: 4, limit: 64).description.contains("more than 64 levels"))
    }
}
