// How each message is laid out on the wire. Kind bytes are unique across both directions:
// rank 0 → rank: 1 assign, 2 takeBackUnstarted, 3 reply, 4 shutdown, 7 abort, 9 takeBack, 10 ping;
// rank → rank 0: 5 ended, 6 request, 8 started, 11 alive.

extension ToRank: WireMessage {
    func write(to w: inout WireWriter) {
        switch self {
        case .assign(let a):
            Self.writeAssign(a, to: &w)
        case .takeBackUnstarted:
            w.byte(2)
        case .takeBack(let ids):
            w.byte(9); w.ints(ids)
        case .reply(let token, let result):
            w.byte(3); w.varint(UInt64(token))
            switch result {
            // nil has a kind of its own, so every id (0 included) comes back as it went.
            case .success(let id?): w.byte(0); w.int(id)
            case .success(nil): w.byte(2)
            case .failure(let error): w.byte(1); w.string(error.message)
            }
        case .shutdown:
            w.byte(4)
        case .abort:
            w.byte(7)
        case .ping:
            w.byte(10)
        }
    }

    /// `.assign(a)` as `write(to:)` lays it out, without making the message first. Rank 0 also writes
    /// assignments straight from its graph (`writeAssign(_:in:to:)`); both go through the parts below,
    /// so the layout is written once.
    static func writeAssign(_ a: borrowing StepAssignment, to w: inout WireWriter) {
        writeAssignHead(id: a.id, function: a.function, args: a.args, to: &w)
        writeAssignRun(threads: a.threads, gpus: a.gpus, attempt: a.attempt, startBy: a.startBy, to: &w)
        writeInputCount(a.inputs?.count, to: &w)
        for input in a.inputs ?? [] {
            input.result.withUnsafeBytes { writeInput(input.id, name: input.name, result: $0, to: &w) }
        }
        writeAssignTail(behind: a.behind, inputsOnlyForBehind: a.inputsOnlyForBehind, sendEndsFirst: a.sendEndsFirst, to: &w)
    }

    // The parts of an assignment, in order. Each is bounded and written through one cursor: field by
    // field, each with its own check for room, cost rank 0 ~1,500 instructions an assignment
    // (callgrind, Task Bench). Varints take at most 10 bytes, a double 9 with its flag.

    /// Kind, id, function, then the arguments with their count.
    static func writeAssignHead(id: StepID, function: String, args: [StepValue], to w: inout WireWriter) {
        w.withRoom(31 + function.utf8.count) { c in
            c.byte(1); c.int(id); c.string(function)
            c.varint(UInt64(args.count))
        }
        for v in args { w.value(v) }
    }

    /// What the step runs with: threads, GPUs, attempt, start-by time.
    static func writeAssignRun(threads: Int, gpus: [Int], attempt: Int, startBy: Double?, to w: inout WireWriter) {
        w.withRoom(10 * (4 + gpus.count) + 9) { c in
            c.int(threads)
            c.varint(UInt64(gpus.count))
            for g in gpus { c.int(g) }
            c.int(attempt); c.optionalDouble(startBy)
        }
    }

    /// 0: no inputs sent; n + 1: n of them, each written by `writeInput`.
    static func writeInputCount(_ n: Int?, to w: inout WireWriter) { w.varint(n.map { UInt64($0) + 1 } ?? 0) }

    /// One input: its id, its name, its result.
    static func writeInput(_ id: StepID, name: String, result: UnsafeRawBufferPointer, to w: inout WireWriter) {
        w.withRoom(30 + name.utf8.count + result.count) { c in
            c.int(id); c.string(name)
            c.varint(UInt64(result.count))
            c.raw(result)
        }
    }

    /// The steps it goes behind, then (only if any) its flags: bit 0 inputsOnlyForBehind, bit 1 sendEndsFirst.
    static func writeAssignTail(behind: [StepID], inputsOnlyForBehind: Bool, sendEndsFirst: Bool, to w: inout WireWriter) {
        w.withRoom(10 * (1 + behind.count) + 1) { c in
            c.varint(UInt64(behind.count))
            for b in behind { c.int(b) }
            if !behind.isEmpty { c.byte((inputsOnlyForBehind ? 1 : 0) | (sendEndsFirst ? 2 : 0)) }
        }
    }

    static func read(from r: inout WireReader) throws(WireError) -> ToRank {
        let at = r.offset
        switch try r.byte("message kind") {
        case 1:
            let id = try r.int("step id"), function = try r.string("function name"), args = try r.values("argument count")
            let threads = try r.int("threads"), gpus = try r.ints("gpu"), attempt = try r.int("attempt")
            let startBy = try r.optionalDouble("start-by time")
            let sent = try r.varint("input count")
            var inputs: [StepInput]?
            if sent > 0 {
                guard sent - 1 <= UInt64(r.left / 3) else {
                    throw .countPastEnd(field: "input count", count: sent - 1, offset: r.offset, left: r.left, minimumBytes: 3)
                }
                var list: [StepInput] = []
                list.reserveCapacity(Int(sent - 1))
                for _ in 0..<(sent - 1) {
                    list.append(StepInput(id: try r.int("input step id"), name: try r.string("input step name"), result: try r.blob("input result")))
                }
                inputs = list
            }
            let behind = try r.ints("behind step id")
            var flags: UInt8 = 0
            if !behind.isEmpty {
                let flagsAt = r.offset
                flags = try r.byte("sent-behind flags")
                guard flags < 4 else { throw .unknownKind(field: "sent-behind flags", kind: flags, offset: flagsAt) }
            }
            // Built in one go, straight into the message: a `var` filled in and then wrapped was copied
            // into the enum and destroyed (~300 instructions an assignment).
            return .assign(StepAssignment(id: id, function: function, args: args, threads: threads, gpus: gpus, attempt: attempt,
                                          startBy: startBy, inputs: inputs, behind: behind,
                                          inputsOnlyForBehind: flags & 1 != 0, sendEndsFirst: flags & 2 != 0))
        case 2:
            return .takeBackUnstarted
        case 9:
            return .takeBack(try r.ints("take-back step id"))
        case 3:
            let token = try r.token("reply token")
            let kindAt = r.offset
            switch try r.byte("reply kind") {
            case 0: return .reply(token: token, .success(try r.int("inserted step id")))
            case 1: return .reply(token: token, .failure(GraphEditError(try r.string("edit error"))))
            case 2: return .reply(token: token, .success(nil))
            case let k: throw .unknownKind(field: "reply kind", kind: k, offset: kindAt)
            }
        case 4:
            return .shutdown
        case 7:
            return .abort
        case 10:
            return .ping
        case let k:
            throw .unknownKind(field: "message kind (rank 0 to a rank)", kind: k, offset: at)
        }
    }
}

extension FromRank: WireMessage {
    func write(to w: inout WireWriter) {
        switch self {
        case .alive:
            w.byte(11)
        case .started(let s):
            w.withRoom(39) { c in c.byte(8); c.int(s.id); c.int(s.rank); c.int(s.slot); c.double(s.start) }
        case .ended(let o):
            // Bounded once and written through one cursor, as `ToRank.writeAssign`: a worker rank
            // writes one for every step it runs. Varints take at most 10 bytes, doubles 9 with their flag.
            var bound = 1 + 30 + 1 + 18 + 11 + 11
            if case .failed(let error) = o.report { bound += 10 + error.utf8.count }
            if let logPath = o.logPath { bound += logPath.utf8.count }
            if let result = o.result { bound += result.count }
            w.withRoom(bound) { c in
                c.byte(5); c.int(o.id); c.int(o.rank); c.int(o.slot)
                switch o.report {
                case .finished: c.byte(0)
                case .failed(let error): c.byte(1); c.string(error)
                case .notStarted: c.byte(2)
                case .aborted: c.byte(3)
                }
                c.optionalDouble(o.start); c.optionalDouble(o.end); c.optionalString(o.logPath)
                if let result = o.result {
                    c.byte(1)
                    c.varint(UInt64(result.count))
                    result.withUnsafeBytes { c.raw($0) }
                } else {
                    c.byte(0)
                }
            }
        case .request(let token, let request):
            w.byte(6); w.varint(UInt64(token)); w.int(request.from)
            switch request.edit {
            case .insert(let spec, let prerequisites, let at):
                w.byte(0); w.string(spec.function)
                w.varint(UInt64(spec.args.count))
                for v in spec.args { w.value(v) }
                w.int(spec.threads); w.byte(spec.needsGPU ? 1 : 0); w.int(spec.retries); w.byte(spec.wait ? 1 : 0)
                w.optionalDouble(spec.expectedSeconds)
                w.ints(prerequisites); w.location(at)
            case .addPrerequisites(let target, let prerequisites, let at):
                w.byte(1); w.int(target); w.ints(prerequisites); w.location(at)
            case .release(let id, let at):
                w.byte(2); w.int(id); w.location(at)
            }
        }
    }

    static func read(from r: inout WireReader) throws(WireError) -> FromRank {
        let at = r.offset
        switch try r.byte("message kind") {
        case 11:
            return .alive
        case 8:
            let id = try r.int("step id"), rank = try r.int("rank"), slot = try r.int("slot")
            return .started(StepStart(id: id, rank: rank, slot: slot, start: try r.double("start time")))
        case 5:
            let id = try r.int("step id"), rank = try r.int("rank"), slot = try r.int("slot")
            let report: Scheduler.Report
            let kindAt = r.offset
            switch try r.byte("report kind") {
            case 0: report = .finished
            case 1: report = .failed(error: try r.string("step error"))
            case 2: report = .notStarted
            case 3: report = .aborted
            case let k: throw .unknownKind(field: "report kind", kind: k, offset: kindAt)
            }
            return .ended(StepOutcome(id: id, rank: rank, slot: slot, report: report, start: try r.optionalDouble("start time"),
                                      end: try r.optionalDouble("end time"), logPath: try r.optionalString("log path"),
                                      result: try r.optionalBlob("step result")))
        case 6:
            let token = try r.token("request token"), from = try r.int("requesting step id")
            let edit: GraphEdit
            let kindAt = r.offset
            switch try r.byte("edit kind") {
            case 0:
                let function = try r.string("function name"), args = try r.values("argument count")
                let spec = StepSpec(function: function, args: args, threads: try r.int("threads"), needsGPU: try r.flag("needsGPU flag"),
                                    retries: try r.int("retries"), wait: try r.flag("wait flag"),
                                    expectedSeconds: try r.optionalDouble("expected duration"))
                edit = .insert(spec, prerequisites: try r.ints("prerequisite"), at: try r.location("source location"))
            case 1:
                edit = .addPrerequisites(to: try r.int("target step id"), try r.ints("prerequisite"), at: try r.location("source location"))
            case 2:
                edit = .release(try r.int("released step id"), at: try r.location("source location"))
            case let k: throw .unknownKind(field: "edit kind", kind: k, offset: kindAt)
            }
            return .request(token: token, StepRequest(from: from, edit: edit))
        case let k:
            throw .unknownKind(field: "message kind (a rank to rank 0)", kind: k, offset: at)
        }
    }
}
