import Foundation

/// A run as a Chrome/Perfetto trace (the trace-event "JSON Object Format"), to open in
/// https://ui.perfetto.dev or chrome://tracing: one process per rank and one thread per worker slot,
/// a complete event per started step, and a flow arrow from each step that inserted steps at run time
/// to the steps it inserted.
package enum TraceExport {
    /// What went into a trace, for the command line to report.
    package struct Counts: Sendable, Equatable {
        package var slices: Int
        package var flows: Int
        package var lanes: Int
    }

    /// The trace of `run` as JSON text. `label` names each step's slice (the step's function by
    /// default). Times are microseconds from the run's first start. Steps that never started have no
    /// slice; a step without a recorded end (its launch died, or the run is live) is drawn up to the
    /// run's last known time. Pure: reads nothing, throws nothing.
    package static func json(_ run: StoredRun, label: (StepRecord) -> String = { $0.spec.function }) -> String {
        render(run, label: label).text
    }

    /// `json(_:label:)` with what it holds.
    package static func render(_ run: StoredRun, label: (StepRecord) -> String = { $0.spec.function }) -> (text: String, counts: Counts) {
        let timeline = RunTimeline(run)
        var events: [String] = []
        events.reserveCapacity(timeline.slices.count * 2 + timeline.lanes.count * 2 + 8)

        var ranks: [Int] = []
        for lane in timeline.lanes where ranks.last != lane.rank { ranks.append(lane.rank) }
        for rank in ranks {
            events.append(metadata("process_name", pid: rank, tid: 0, ["name": .string(rank < 0 ? "rank unknown" : "rank \(rank)")]))
            events.append(metadata("process_sort_index", pid: rank, tid: 0, ["sort_index": .int(rank)]))
        }
        for lane in timeline.lanes {
            let name = lane.slot < 0 ? "slot unknown" : "slot \(lane.slot)"
            events.append(metadata("thread_name", pid: lane.rank, tid: lane.slot, ["name": .string(name)]))
            events.append(metadata("thread_sort_index", pid: lane.rank, tid: lane.slot, ["sort_index": .int(lane.slot)]))
        }

        for slice in timeline.slices {
            let r = run.steps[slice.index]
            // Rounded ends, not rounded durations, so back-to-back steps on a slot never overlap.
            let ts = micros(slice.start), end = micros(slice.end)
            var args: [String: StepValue] = [
                "id": .int(r.id), "function": .string(r.spec.function), "status": .string(r.status.rawValue),
                "attempts": .int(r.attempts), "error": r.error.map { .string($0) } ?? .null,
            ]
            if !slice.endKnown { args["end"] = .string("not recorded: drawn to the run's last known time") }
            var name = label(r)
            var category = "step," + r.status.rawValue
            var colour: String?
            switch r.status {
            case .failed:
                name += " (failed)"
                category = "step,failed"
                colour = "terrible"
            case .aborted:
                name += " (aborted)"
                colour = "bad"
            case .running:
                colour = "yellow"
            default:
                break
            }
            var e = "{\"ph\":\"X\",\"name\":" + string(name) + ",\"cat\":" + string(category)
            e += ",\"pid\":\(slice.lane.rank),\"tid\":\(slice.lane.slot),\"ts\":" + number(ts) + ",\"dur\":" + number(max(end - ts, 0))
            if let colour { e += ",\"cname\":" + string(colour) }
            e += ",\"args\":" + object(args) + "}"
            events.append(e)
        }

        var flows = 0
        for slice in timeline.slices {
            guard let parentID = run.steps[slice.index].insertedBy.stepID,
                  let parentIndex = index(of: parentID, in: run), let p = timeline.sliceOfStep[parentIndex] else { continue }
            let parent = timeline.slices[p]
            let parentStart = micros(parent.start), parentEnd = micros(parent.end)
            let childStart = micros(slice.start), childEnd = micros(slice.end)
            // Each end sits strictly inside its slice, so the viewer binds it to that slice and not to a
            // neighbour that ends or starts at the same instant; the arrow never points back in time.
            let sTs = min(max(childStart, parentStart), parentEnd - min(1, (parentEnd - parentStart) / 2))
            let fTs = childStart + min(0.5, max(childEnd - childStart, 0) / 2)
            let common = ",\"name\":\"inserted\",\"cat\":\"insert\",\"id\":\(slice.id)"
            events.append("{\"ph\":\"s\"" + common + ",\"pid\":\(parent.lane.rank),\"tid\":\(parent.lane.slot),\"ts\":" + number(sTs) + "}")
            events.append("{\"ph\":\"f\",\"bp\":\"e\"" + common + ",\"pid\":\(slice.lane.rank),\"tid\":\(slice.lane.slot),\"ts\":" + number(fTs) + "}")
            flows += 1
        }

        let other: [String: StepValue] = [
            "protocol": .string(run.protocolName), "status": .string(run.status), "mpi": .int(run.mpi),
            "threads": .int(run.threads), "steps": .int(run.steps.count), "origin": .double(timeline.origin),
        ]
        var text = "{\"displayTimeUnit\":\"ms\",\"otherData\":" + object(other) + ",\"traceEvents\":[\n"
        text += events.joined(separator: ",\n")
        text += "\n]}\n"
        return (text, Counts(slices: timeline.slices.count, flows: flows, lanes: timeline.lanes.count))
    }

    private static func index(of id: StepID, in run: StoredRun) -> Int? {
        // Steps are in id order; ids of dropped steps leave gaps, so look near id - 1 first.
        let guess = id - 1
        if guess >= 0 && guess < run.steps.count && run.steps[guess].id == id { return guess }
        var lo = 0, hi = run.steps.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if run.steps[mid].id < id { lo = mid + 1 } else { hi = mid }
        }
        return lo < run.steps.count && run.steps[lo].id == id ? lo : nil
    }

    private static func metadata(_ name: String, pid: Int, tid: Int, _ args: [String: StepValue]) -> String {
        "{\"ph\":\"M\",\"name\":" + string(name) + ",\"pid\":\(pid),\"tid\":\(tid),\"args\":" + object(args) + "}"
    }

    /// Seconds to microseconds, rounded to the nanosecond.
    private static func micros(_ seconds: Double) -> Double { (seconds * 1e9).rounded() / 1e3 }

    private static func number(_ v: Double) -> String {
        guard v.isFinite else { return "0" }
        if v == v.rounded() && abs(v) < 1e15 { return String(Int64(v)) }
        return String(format: "%.3f", v)
    }

    private static func string(_ s: String) -> String {
        var out = ""
        JSONText.appendString(s, to: &out)
        return out
    }

    private static func object(_ o: [String: StepValue]) -> String {
        var out = ""
        JSONText.append(.object(o), to: &out)
        return out
    }
}
