import Foundation

/// The report's timeline: one lane per rank and slot, time left to right, a rect per step (or, past
/// `aggregateAbove` steps, per time bin of each lane), the critical path outlined on top.
struct TimelineSVG {
    let run: StoredRun
    let timeline: RunTimeline
    let labels: [String]
    let criticalPath: [Int]
    let options: HTMLReport.Options

    // Layout, in SVG user units; the SVG scales to the page's width.
    let width = 1200.0
    let left = 132.0
    let right = 18.0
    let top = 30.0
    var plotWidth: Double { width - left - right }

    var aggregated: Bool { timeline.slices.count > options.aggregateAbove }

    func x(_ t: Double) -> Double { left + t / max(timeline.span, 1e-9) * plotWidth }

    func write(_ page: inout HTMLReport.Page) {
        let e = HTMLText.escape
        page.add("<section id=\"timeline\">\n<h2>Timeline</h2>\n")
        guard !timeline.slices.isEmpty else {
            page.add("<p>No step started, so there is nothing to draw.</p>\n</section>\n")
            return
        }
        let started = timeline.slices.count
        let lanes = timeline.lanes
        let laneHeight = lanes.count <= 12 ? 24.0 : max(5, min(24, (520.0 / Double(lanes.count)).rounded(.down)))
        let rankGap = laneHeight >= 10 ? 6.0 : 2.0
        var laneTop: [RunTimeline.Lane: Double] = [:]
        var groups: [(rank: Int, top: Double, bottom: Double)] = []
        var y = top
        for lane in lanes {
            if let last = groups.last, last.rank != lane.rank { y += rankGap }
            if groups.last?.rank != lane.rank { groups.append((lane.rank, y, y)) }
            laneTop[lane] = y
            y += laneHeight
            groups[groups.count - 1].bottom = y
        }
        let plotBottom = y
        let bottomAxis = lanes.count > 16
        let height = plotBottom + (bottomAxis ? 24 : 8)
        let bins = aggregated ? max(60, min(options.binsPerLane, options.maxBins / max(lanes.count, 1))) : 0

        if aggregated {
            page.add("<p class=\"note\"><b>Aggregated view.</b> " + HTMLText.count(started) + " steps started, more than "
                     + HTMLText.count(options.aggregateAbove) + " can be drawn one by one: each lane is cut into " + HTMLText.count(bins)
                     + " time bins of " + e(HTMLText.duration(timeline.span / Double(bins)))
                     + ", each coloured by the status that took most of its time, lighter when the slot was idle for part of it. "
                     + "Hover over a bin for its counts. Failed steps and the critical path are drawn on top, one by one.</p>\n")
        } else {
            page.add("<p>" + HTMLText.count(started) + " started step" + (started == 1 ? "" : "s") + " on " + HTMLText.count(lanes.count)
                     + " lane" + (lanes.count == 1 ? "" : "s") + " (rank × slot), one rect each; hover over a step for its details."
                     + (started < run.steps.count ? " Steps that never started (" + HTMLText.count(run.steps.count - started) + ") are not drawn." : "")
                     + "</p>\n")
        }
        legend(&page)
        page.add("<figure>\n<svg class=\"timeline\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 \(Int(width)) \(Int(height.rounded(.up)))\" role=\"img\">\n")
        page.add("<title>Timeline of \(HTMLText.count(started)) steps on \(lanes.count) lanes</title>\n")

        // Lane backgrounds and names.
        let minLabelGap = 11.0
        let rankEvery = max(1, Int((minLabelGap / max(groups.map { $0.bottom - $0.top }.min() ?? minLabelGap, 1)).rounded(.up)))
        for (n, g) in groups.enumerated() {
            page.add("<rect class=\"lanebg" + (n % 2 == 1 ? " odd" : "") + "\" x=\"\(c(left))\" y=\"\(c(g.top))\" width=\"\(c(plotWidth))\" height=\"\(c(g.bottom - g.top))\"/>\n")
            if n > 0 { page.add("<line class=\"ranksep\" x1=\"4\" x2=\"\(c(width - right))\" y1=\"\(c(g.top - rankGap / 2))\" y2=\"\(c(g.top - rankGap / 2))\"/>\n") }
            if n % rankEvery == 0 {
                let labelY = laneHeight >= 10 ? g.top + laneHeight / 2 : (g.top + g.bottom) / 2
                page.add("<text class=\"rankname\" x=\"6\" y=\"\(c(labelY))\" dominant-baseline=\"middle\">" + (g.rank < 0 ? "rank ?" : "rank \(g.rank)") + "</text>\n")
            }
        }
        if laneHeight >= 10 {
            let size = min(11, laneHeight - 3)
            for lane in lanes {
                page.add("<text class=\"slotname\" x=\"\(c(left - 6))\" y=\"\(c(laneTop[lane]! + laneHeight / 2))\" text-anchor=\"end\" dominant-baseline=\"middle\" font-size=\"\(c(size))\">"
                         + (lane.slot < 0 ? "slot ?" : "slot \(lane.slot)") + "</text>\n")
            }
        }

        // Time axis: ticks and labels on top (and below a tall chart), grid lines across the lanes.
        let axis = TimeAxis(span: timeline.span)
        page.add("<text class=\"axis\" x=\"6\" y=\"14\">time since start</text>\n")
        for t in axis.ticks {
            let tx = c(x(t))
            page.add("<line class=\"grid\" x1=\"\(tx)\" x2=\"\(tx)\" y1=\"\(c(top - 5))\" y2=\"\(c(plotBottom))\"/>")
            page.add("<text class=\"axis\" x=\"\(tx)\" y=\"\(c(top - 9))\" text-anchor=\"middle\">" + axis.label(t) + "</text>\n")
            if bottomAxis {
                page.add("<text class=\"axis\" x=\"\(tx)\" y=\"\(c(plotBottom + 16))\" text-anchor=\"middle\">" + axis.label(t) + "</text>\n")
            }
        }

        let onPath = Set(criticalPath)
        let linkPath = criticalPath.count >= 2 && criticalPath.count <= (aggregated ? 300 : 1000)
        if linkPath { criticalLink(laneTop, laneHeight, &page) }
        if aggregated {
            binned(laneTop, laneHeight, bins, &page)
            criticalBands(laneTop, laneHeight, &page)
            // Last, so a failure is never hidden under a bin or the critical path's outline.
            for slice in timeline.slices.lazy.filter({ $0.status == .failed }).prefix(options.aggregateAbove) {
                step(slice, laneTop, laneHeight, critical: onPath.contains(slice.index), minimumWidth: 2.5, &page)
            }
        } else {
            for slice in timeline.slices {
                step(slice, laneTop, laneHeight, critical: onPath.contains(slice.index), minimumWidth: 0.8, &page)
            }
        }
        page.add("</svg>\n</figure>\n</section>\n")
    }

    private func c(_ v: Double) -> String { HTMLText.coordinate(v) }

    private func legend(_ page: inout HTMLReport.Page) {
        let present = Set(timeline.slices.map(\.status))
        page.add("<div class=\"legend\">")
        for (status, _) in HTMLReport.statusColours where present.contains(status) {
            page.add("<span><span class=\"sw \(status.rawValue)\"></span>" + HTMLText.escape(HTMLReport.statusNote(status)) + "</span>")
        }
        if !criticalPath.isEmpty { page.add("<span><span class=\"sw cp\"></span>critical path</span>") }
        if aggregated {
            page.add("<span><span class=\"sw finished o1\"></span><span class=\"sw finished o3\"></span><span class=\"sw finished\"></span>"
                     + "slot busy for part of a bin … all of it</span>")
        }
        page.add("</div>\n")
    }

    private func step(_ slice: RunTimeline.Slice, _ laneTop: [RunTimeline.Lane: Double], _ laneHeight: Double, critical: Bool,
                      minimumWidth: Double, _ page: inout HTMLReport.Page) {
        let r = run.steps[slice.index]
        let x0 = x(slice.start), x1 = x(slice.end)
        let inset = laneHeight >= 10 ? 2.0 : 0.5
        var tip = labels[slice.index] + "\nstep \(r.id) · \(r.status.rawValue) · " + HTMLReport.place(r)
        tip += "\nstart +" + HTMLText.duration(slice.start) + " · duration " + HTMLText.duration(slice.duration)
        if !slice.endKnown { tip += " (no end recorded)" }
        if r.attempts > 1 { tip += " · \(r.attempts) attempts" }
        if let error = r.error { tip += "\nerror: " + HTMLText.clip(error, 300) }
        page.add("<rect class=\"step \(r.status.rawValue)" + (critical ? " crit" : "") + "\" x=\"\(c(x0))\" y=\"\(c(laneTop[slice.lane]! + inset))\" width=\"\(c(max(x1 - x0, minimumWidth)))\" height=\"\(c(laneHeight - 2 * inset))\"><title>"
                 + HTMLText.escape(tip) + "</title></rect>\n")
    }

    /// Each lane cut into `bins` equal bins; a run of neighbouring bins with the same dominant status
    /// and about the same occupancy is drawn as one rect, with the counts of all of them.
    private func binned(_ laneTop: [RunTimeline.Lane: Double], _ laneHeight: Double, _ bins: Int, _ page: inout HTMLReport.Page) {
        let statuses = StepStatus.allCases.count
        let binWidth = max(timeline.span, 1e-9) / Double(bins)
        var laneIndex: [RunTimeline.Lane: Int] = [:]
        for (i, lane) in timeline.lanes.enumerated() { laneIndex[lane] = i }
        // busy[lane][bin][status]: seconds of the bin the lane spent on steps of that status;
        // started[…]: steps that started in the bin, so merged bins count every step once.
        var busy = [Double](repeating: 0, count: timeline.lanes.count * bins * statuses)
        var started = [Int](repeating: 0, count: timeline.lanes.count * bins * statuses)
        for slice in timeline.slices {
            let base = laneIndex[slice.lane]! * bins
            let s = slice.status.ordinal
            let first = min(Int(slice.start / binWidth), bins - 1), last = min(Int(slice.end / binWidth), bins - 1)
            started[(base + first) * statuses + s] += 1
            for b in first...max(first, last) {
                let overlap = min(slice.end, Double(b + 1) * binWidth) - max(slice.start, Double(b) * binWidth)
                if overlap > 0 { busy[(base + b) * statuses + s] += overlap }
            }
        }
        let inset = laneHeight >= 10 ? 2.0 : 0.5
        for (li, lane) in timeline.lanes.enumerated() {
            var b = 0
            while b < bins {
                let (dominant, level) = look(busy, started, li * bins + b, statuses, binWidth)
                guard dominant >= 0 else { b += 1; continue }
                var end = b + 1
                while end < bins, look(busy, started, li * bins + end, statuses, binWidth) == (dominant, level) { end += 1 }
                var busyBy = [Double](repeating: 0, count: statuses), countBy = [Int](repeating: 0, count: statuses)
                for k in b..<end {
                    for s in 0..<statuses {
                        busyBy[s] += busy[(li * bins + k) * statuses + s]
                        countBy[s] += started[(li * bins + k) * statuses + s]
                    }
                }
                let t0 = Double(b) * binWidth, t1 = min(Double(end) * binWidth, timeline.span)
                let total = countBy.reduce(0, +)
                let busyShare = busyBy.reduce(0, +) / max(t1 - t0, 1e-12) * 100
                var tip = "rank \(lane.rank) slot \(lane.slot) · +" + HTMLText.duration(t0) + " to +" + HTMLText.duration(t1)
                    + (end - b > 1 ? " (\(end - b) bins)" : "")
                tip += "\n" + HTMLText.count(total) + " step" + (total == 1 ? "" : "s") + " started"
                let parts = StepStatus.allCases.filter { countBy[$0.ordinal] > 0 }.map { HTMLText.count(countBy[$0.ordinal]) + " " + $0.rawValue }
                if !parts.isEmpty { tip += ": " + parts.joined(separator: ", ") }
                tip += String(format: "\nbusy %.0f%% of the time", min(busyShare, 100))
                let name = StepStatus.allCases[dominant].rawValue
                page.add("<rect class=\"bin \(name) o\(level)\" x=\"\(c(x(t0)))\" y=\"\(c(laneTop[lane]! + inset))\" width=\"\(c(x(t1) - x(t0)))\" height=\"\(c(laneHeight - 2 * inset))\"><title>"
                         + HTMLText.escape(tip) + "</title></rect>\n")
                b = end
            }
        }
    }

    /// The bin's dominant status (the one with the most busy time; -1 for an empty bin) and its
    /// occupancy in five levels.
    private func look(_ busy: [Double], _ started: [Int], _ bin: Int, _ statuses: Int, _ binWidth: Double) -> (Int, Int) {
        var dominant = -1, most = 0.0, total = 0.0, any = false
        for s in 0..<statuses {
            let v = busy[bin * statuses + s]
            total += v
            if started[bin * statuses + s] > 0 { any = true }
            if v > most { most = v; dominant = s }
        }
        if dominant < 0 && any { dominant = (0..<statuses).first { started[bin * statuses + $0] > 0 }! }
        guard dominant >= 0 else { return (-1, 0) }
        return (dominant, max(1, min(5, Int((total / binWidth * 5).rounded(.up)))))
    }

    /// The critical path's steps outlined per lane, neighbours closer than two units merged, so even a
    /// path of 20,000 steps stays a few hundred rects.
    private func criticalBands(_ laneTop: [RunTimeline.Lane: Double], _ laneHeight: Double, _ page: inout HTMLReport.Page) {
        var spans: [RunTimeline.Lane: [(Double, Double, Int)]] = [:]
        for i in criticalPath {
            guard let s = timeline.sliceOfStep[i] else { continue }
            let slice = timeline.slices[s]
            spans[slice.lane, default: []].append((x(slice.start), max(x(slice.end), x(slice.start) + 1.5), 1))
        }
        for lane in timeline.lanes {
            guard var list = spans[lane]?.sorted(by: { $0.0 < $1.0 }) else { continue }
            var merged: [(Double, Double, Int)] = [list.removeFirst()]
            for s in list {
                if s.0 - merged[merged.count - 1].1 < 2 {
                    merged[merged.count - 1].1 = max(merged[merged.count - 1].1, s.1)
                    merged[merged.count - 1].2 += 1
                } else {
                    merged.append(s)
                }
            }
            for m in merged {
                let tip = "critical path: \(HTMLText.count(m.2)) step\(m.2 == 1 ? "" : "s") on rank \(lane.rank) slot \(lane.slot)"
                page.add("<rect class=\"critband\" x=\"\(c(m.0))\" y=\"\(c(laneTop[lane]! + 1))\" width=\"\(c(m.1 - m.0))\" height=\"\(c(laneHeight - 2))\"><title>"
                         + tip + "</title></rect>\n")
            }
        }
    }

    /// A dashed line from each critical step's end to the next one's start, under the steps.
    private func criticalLink(_ laneTop: [RunTimeline.Lane: Double], _ laneHeight: Double, _ page: inout HTMLReport.Page) {
        var points: [String] = []
        for i in criticalPath {
            guard let s = timeline.sliceOfStep[i] else { continue }
            let slice = timeline.slices[s]
            let mid = laneTop[slice.lane]! + laneHeight / 2
            points.append("\(c(x(slice.start))),\(c(mid))")
            points.append("\(c(x(slice.end))),\(c(mid))")
        }
        page.add("<polyline class=\"critlink\" points=\"" + points.joined(separator: " ") + "\"/>\n")
    }
}
