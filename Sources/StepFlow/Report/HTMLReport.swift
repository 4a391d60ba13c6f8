import Foundation

/// A run as one self-contained HTML page: summary, a timeline of ranks × slots (inline SVG), the
/// critical path, and the failed steps with the end of their logs. The page loads nothing from
/// anywhere (no scripts, fonts or styles from a network); everything that comes from the run is
/// HTML-escaped. Past `Options.aggregateAbove` started steps the timeline is drawn per time bin
/// instead of per step, so a 20,000-step run stays a small page.
package enum HTMLReport {
    package struct Options: Sendable {
        /// Shown under the title (the run directory, say).
        package var subtitle: String?
        /// Above this many started steps the timeline aggregates them into time bins.
        package var aggregateAbove: Int
        /// Bins per lane when aggregated, at most.
        package var binsPerLane: Int
        /// Bins in the whole timeline, at most: many lanes get fewer bins each.
        package var maxBins: Int
        /// Failed steps shown with their error and log; the rest are listed in a table.
        package var detailedFailures: Int
        /// Steps listed in the critical path table before the middle is left out.
        package var criticalPathRows: Int

        package init(subtitle: String? = nil, aggregateAbove: Int = 2000, binsPerLane: Int = 600, maxBins: Int = 6000,
                    detailedFailures: Int = 50, criticalPathRows: Int = 200) {
            self.subtitle = subtitle
            self.aggregateAbove = aggregateAbove
            self.binsPerLane = binsPerLane
            self.maxBins = maxBins
            self.detailedFailures = detailedFailures
            self.criticalPathRows = criticalPathRows
        }
    }

    /// The page for `run`. `label` names each step (its function by default); `logs` holds the log
    /// tails of failed steps by id (`LogTail.failedSteps` reads them), and a failed step without one
    /// says its log was not read. Pure: reads nothing, throws nothing.
    package static func html(_ run: StoredRun, label: (StepRecord) -> String = { $0.spec.function },
                            logs: [StepID: LogTail] = [:], options: Options = Options()) -> String {
        let timeline = RunTimeline(run)
        let path = timeline.criticalPath(run)
        let labels = run.steps.map { label($0) }
        var page = Page()
        page.add("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n")
        page.add("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\n")
        page.add("<title>" + HTMLText.escape("\(run.protocolName) run — \(run.status)") + "</title>\n")
        page.add("<style>\n" + css + "</style>\n</head>\n<body>\n")
        summary(run, timeline, options, &page)
        launches(run, &page)
        TimelineSVG(run: run, timeline: timeline, labels: labels, criticalPath: path, options: options).write(&page)
        criticalPath(run, timeline, path, labels, options, &page)
        failures(run, labels, logs, options, &page)
        page.add("<footer>Written by stepflow report from the run database. Times are UTC; durations are each step's last attempt.</footer>\n")
        page.add("</body>\n</html>\n")
        return page.text
    }

    /// The timeline section alone (`serve`'s live page redraws it as the run goes), and the style
    /// sheet it needs (`css`).
    package static func timelineSection(_ run: StoredRun, label: (StepRecord) -> String = { $0.spec.function },
                                        options: Options = Options()) -> String {
        let timeline = RunTimeline(run)
        var page = Page()
        TimelineSVG(run: run, timeline: timeline, labels: run.steps.map { label($0) }, criticalPath: timeline.criticalPath(run),
                    options: options).write(&page)
        return page.text
    }

    /// The report's style sheet.
    package static var styleSheet: String { css }

    /// The page being written.
    struct Page {
        var text = ""
        mutating func add(_ s: String) { text += s }
    }

    static func statusNote(_ s: StepStatus) -> String {
        switch s {
        case .new: return "not run"
        case .waiting: return "waiting, never released"
        case .running: return "running (or its rank died)"
        default: return s.rawValue
        }
    }

    private static func summary(_ run: StoredRun, _ timeline: RunTimeline, _ options: Options, _ page: inout Page) {
        let e = HTMLText.escape
        page.add("<header>\n<h1>" + e(run.protocolName) + " <span class=\"badge " + e(run.status) + "\">" + e(run.status) + "</span></h1>\n")
        if let subtitle = options.subtitle { page.add("<p class=\"sub\">" + e(subtitle) + "</p>\n") }
        page.add("</header>\n<section id=\"summary\">\n<h2>Summary</h2>\n<div class=\"facts\">\n")
        var wall = "—"
        if let s = run.started, let end = run.ended { wall = HTMLText.duration(end - s) }
        else if run.started != nil { wall = "no end recorded (live, or its launch died)" }
        let slots = run.mpi * run.threads
        let busy = timeline.slices.reduce(0.0) { $0 + $1.duration }
        let use = timeline.span > 0 && slots > 0 ? busy / (timeline.span * Double(slots)) * 100 : 0
        let facts: [(String, String)] = [
            ("status", run.status),
            ("steps", HTMLText.count(run.steps.count)),
            ("wall time", wall + (run.launches > 1 ? " (latest of \(run.launches) launches)" : "")),
            ("mpi × threads", "\(run.mpi) × \(run.threads) = \(slots) slot" + (slots == 1 ? "" : "s")),
            ("slots busy", String(format: "%.0f%%", use) + " of the step time span (" + HTMLText.duration(timeline.span) + ")"),
            ("started", HTMLText.moment(run.started)),
            ("ended", HTMLText.moment(run.ended)),
        ]
        for (name, value) in facts {
            page.add("<div class=\"fact\"><span class=\"k\">" + e(name) + "</span><span class=\"v\">" + e(value) + "</span></div>\n")
        }
        page.add("</div>\n<ul class=\"counts\">\n")
        for status in StepStatus.allCases {
            let n = run.count(status)
            page.add("<li class=\"count " + status.rawValue + (n == 0 ? " zero" : "") + "\"><span class=\"n\">" + HTMLText.count(n)
                     + "</span> " + e(statusNote(status)) + "</li>\n")
        }
        page.add("</ul>\n</section>\n")
    }

    /// The launches of a continued or relaunched run: shape, hosts, and how each ended.
    private static func launches(_ run: StoredRun, _ page: inout Page) {
        guard LaunchRecord.worthShowing(run.launchRecords) else { return }
        let e = HTMLText.escape
        page.add("<section id=\"launches\">\n<h2>Launches</h2>\n<table class=\"steps\">\n<thead><tr><th>#</th><th>started</th><th>ended</th><th>ranks × threads</th><th>hosts</th><th>ending</th></tr></thead>\n<tbody>\n")
        for l in run.launchRecords {
            page.add("<tr><td>\(l.number)</td><td>" + e(HTMLText.moment(l.started)) + "</td><td>" + e(HTMLText.moment(l.ended)) + "</td><td>\(l.mpi) × \(l.threads)</td><td>"
                     + e(HTMLText.clip(l.hostSummary, 200)) + "</td><td>" + e(HTMLText.clip(l.endingText, 400)) + "</td></tr>\n")
        }
        page.add("</tbody>\n</table>\n</section>\n")
    }

    private static func criticalPath(_ run: StoredRun, _ timeline: RunTimeline, _ path: [Int], _ labels: [String],
                                     _ options: Options, _ page: inout Page) {
        let e = HTMLText.escape
        page.add("<section id=\"critical-path\">\n<h2>Critical path</h2>\n")
        guard !path.isEmpty else {
            page.add("<p>No step started, so there is no critical path.</p>\n</section>\n")
            return
        }
        let total = path.reduce(0.0) { sum, i in sum + (timeline.sliceOfStep[i].map { timeline.slices[$0].duration } ?? 0) }
        page.add("<p>The chain of prerequisites (a step inserted at run time counts its inserter as one) that ends at the last step to end and takes the most step time: "
                 + HTMLText.count(path.count) + " step" + (path.count == 1 ? "" : "s") + ", " + e(HTMLText.duration(total))
                 + " of step time in a span of " + e(HTMLText.duration(timeline.span))
                 + ". Outlined in black in the timeline. Time between its steps is time spent waiting for a free slot or for the scheduler.</p>\n")
        page.add("<table class=\"steps\">\n<thead><tr><th>#</th><th>step</th><th>label</th><th>status</th><th>rank/slot</th><th>start</th><th>duration</th><th>after</th></tr></thead>\n<tbody>\n")
        let limit = max(options.criticalPathRows, 2)
        let shown: [Int?] = path.count <= limit
            ? Array(0..<path.count)
            : Array(0..<(limit / 2)) + [nil] + Array((path.count - limit / 2)..<path.count)
        for position in shown {
            guard let position else {
                page.add("<tr class=\"gap\"><td colspan=\"8\">… " + HTMLText.count(path.count - limit / 2 * 2) + " more steps …</td></tr>\n")
                continue
            }
            let i = path[position]
            let r = run.steps[i]
            let slice = timeline.sliceOfStep[i].map { timeline.slices[$0] }
            page.add("<tr><td>\(position + 1)</td><td>\(r.id)</td><td>" + e(HTMLText.clip(labels[i], 120)) + "</td><td class=\"st "
                     + r.status.rawValue + "\">" + r.status.rawValue + "</td><td>" + place(r) + "</td><td>"
                     + (slice.map { "+" + HTMLText.duration($0.start) } ?? "—") + "</td><td>"
                     + (slice.map { HTMLText.duration($0.duration) } ?? "—") + "</td><td>" + link(run, path, position) + "</td></tr>\n")
        }
        page.add("</tbody>\n</table>\n</section>\n")
    }

    private static func failures(_ run: StoredRun, _ labels: [String], _ logs: [StepID: LogTail], _ options: Options, _ page: inout Page) {
        let e = HTMLText.escape
        let failed = run.steps.indices.filter { run.steps[$0].status == .failed }
        page.add("<section id=\"failed\">\n<h2>Failed steps (" + HTMLText.count(failed.count) + ")</h2>\n")
        if failed.isEmpty { page.add("<p>No step failed.</p>\n") }
        for i in failed.prefix(options.detailedFailures) {
            let r = run.steps[i]
            page.add("<article class=\"failure\" id=\"step-\(r.id)\">\n<h3>step \(r.id): " + e(HTMLText.clip(labels[i], 200)) + "</h3>\n")
            page.add("<p class=\"meta\">function " + e(r.spec.function) + " · " + place(r) + " · \(r.attempts) attempt"
                     + (r.attempts == 1 ? "" : "s") + (r.start.flatMap { s in r.end.map { " · " + HTMLText.duration($0 - s) } } ?? "") + "</p>\n")
            page.add("<pre class=\"error\">" + e(r.error ?? "no error text recorded") + "</pre>\n")
            guard let log = logs[r.id] else {
                page.add("<p class=\"nolog\">Log not read" + (r.logPath.map { ": " + e($0) } ?? "") + "</p>\n</article>\n")
                continue
            }
            let where_ = log.path.map { " <code>" + e($0) + "</code>" } ?? ""
            if let problem = log.problem {
                page.add("<p class=\"nolog\">" + e(problem) + where_ + "</p>\n</article>\n")
                continue
            }
            page.add("<p class=\"logpath\">" + (log.earlierLinesOmitted ? "last \(log.lines.count) lines of" : "log") + where_ + "</p>\n")
            page.add("<pre class=\"log\">" + e(log.lines.joined(separator: "\n")) + "</pre>\n</article>\n")
        }
        if failed.count > options.detailedFailures {
            let rest = failed.dropFirst(options.detailedFailures)
            page.add("<table class=\"steps\">\n<thead><tr><th>step</th><th>label</th><th>rank/slot</th><th>error</th></tr></thead>\n<tbody>\n")
            for i in rest.prefix(500) {
                let r = run.steps[i]
                page.add("<tr><td>\(r.id)</td><td>" + e(HTMLText.clip(labels[i], 80)) + "</td><td>" + place(r) + "</td><td>"
                         + e(HTMLText.clip(r.error ?? "", 160)) + "</td></tr>\n")
            }
            page.add("</tbody>\n</table>\n")
            if rest.count > 500 {
                page.add("<p>… and " + HTMLText.count(rest.count - 500) + " more failed steps: <code>stepflow status DIR</code> lists them all.</p>\n")
            }
        }
        page.add("</section>\n")
    }

    /// How a critical step follows the one before it: as its prerequisite, or as its inserter.
    private static func link(_ run: StoredRun, _ path: [Int], _ position: Int) -> String {
        guard position > 0 else { return "—" }
        let previous = run.steps[path[position - 1]].id, r = run.steps[path[position]]
        return r.prerequisites.contains(previous) ? "needs \(previous)" : "inserted by \(previous)"
    }

    static func place(_ r: StepRecord) -> String {
        guard let rank = r.rank else { return "—" }
        return "rank \(rank)" + (r.slot.map { " slot \($0)" } ?? "")
    }

    /// Status colours, shared by the counts, the timeline and the legend. No `<` or `&` in here: the page
    /// stays well-formed XML.
    static let statusColours: [(StepStatus, String)] = [
        (.finished, "#3f9a5b"), (.failed, "#d7263d"), (.aborted, "#f08a24"), (.running, "#3b7dd8"),
        (.skipped, "#a0a4ab"), (.waiting, "#c9b458"), (.new, "#c7cbd1"),
    ]

    static var css: String {
        var s = """
        :root { color-scheme: light; }
        body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", "Liberation Sans", Arial, sans-serif;
               margin: 24px 32px; color: #1d2430; background: #fff; font-size: 14px; line-height: 1.45; }
        h1 { font-size: 22px; margin: 0 0 4px; }
        h2 { font-size: 17px; margin: 28px 0 10px; border-bottom: 1px solid #dde1e6; padding-bottom: 4px; }
        h3 { font-size: 14px; margin: 0 0 4px; }
        .sub { color: #5b6472; margin: 0; font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12px; }
        .badge { font-size: 13px; padding: 2px 9px; border-radius: 10px; color: #fff; background: #5b6472; vertical-align: middle; }
        .badge.finished { background: #3f9a5b; } .badge.failed, .badge.stalled { background: #d7263d; }
        .badge.aborted, .badge.stopped, .badge.interrupted { background: #f08a24; } .badge.running { background: #3b7dd8; }
        .facts { display: flex; flex-wrap: wrap; gap: 8px 28px; margin-bottom: 12px; }
        .fact { display: flex; flex-direction: column; }
        .fact .k { color: #5b6472; font-size: 11px; text-transform: uppercase; letter-spacing: .04em; }
        .fact .v { font-size: 15px; font-weight: 600; }
        ul.counts { list-style: none; padding: 0; margin: 0; display: flex; flex-wrap: wrap; gap: 8px; }
        li.count { border: 1px solid #dde1e6; border-left: 6px solid #999; border-radius: 4px; padding: 3px 10px; }
        li.count .n { font-weight: 700; font-size: 15px; }
        li.count.zero { opacity: .45; }
        .note { background: #fff8e1; border: 1px solid #f0d98c; padding: 6px 10px; border-radius: 4px; }
        figure { margin: 0; }
        svg.timeline { width: 100%; height: auto; display: block; font-size: 11px; }
        svg .lanebg { fill: #f6f7f9; } svg .lanebg.odd { fill: #eef0f3; }
        svg .grid { stroke: #d4d8de; stroke-width: 0.6; }
        svg .axis { fill: #3a4350; } svg .rankname { font-weight: 700; fill: #1d2430; }
        svg .slotname { fill: #5b6472; } svg .ranksep { stroke: #9aa2ad; stroke-width: 0.8; }
        svg rect.step { stroke: #fff; stroke-width: 0.5; } svg rect.step.failed { stroke: #7a0012; stroke-width: 0.8; }
        svg rect.step:hover, svg rect.bin:hover { stroke: #000; stroke-width: 1; }
        svg rect.o1, .legend .sw.o1 { opacity: .3; } svg rect.o2 { opacity: .45; } svg rect.o3, .legend .sw.o3 { opacity: .6; }
        svg rect.o4 { opacity: .8; }
        svg rect.crit { stroke: #111; stroke-width: 1.6; }
        svg rect.critband { fill: none; stroke: #111; stroke-width: 1.6; }
        svg polyline.critlink { fill: none; stroke: #111; stroke-width: 0.9; stroke-dasharray: 3 2; opacity: .7; }
        .legend { display: flex; flex-wrap: wrap; gap: 6px 18px; margin: 6px 0 2px; font-size: 12px; color: #3a4350; }
        .legend .sw { display: inline-block; width: 14px; height: 10px; vertical-align: middle; margin-right: 4px; border-radius: 2px; }
        .legend .sw.cp { background: #fff; border: 2px solid #111; width: 10px; height: 6px; }
        table.steps { border-collapse: collapse; font-size: 12.5px; }
        table.steps th, table.steps td { border-bottom: 1px solid #e6e9ed; padding: 3px 10px; text-align: left; vertical-align: top; }
        table.steps th { background: #f3f5f7; }
        tr.gap td { color: #5b6472; text-align: center; font-style: italic; }
        td.st { font-weight: 600; }
        article.failure { border: 1px solid #f1c4ca; border-left: 5px solid #d7263d; border-radius: 4px; padding: 10px 14px; margin: 12px 0; }
        .meta, .logpath, .nolog { color: #5b6472; margin: 2px 0 6px; font-size: 12.5px; }
        pre { font-family: ui-monospace, "DejaVu Sans Mono", "Liberation Mono", monospace; font-size: 12px; white-space: pre-wrap;
              word-break: break-all; margin: 4px 0; padding: 8px 10px; border-radius: 4px; }
        pre.error { background: #fdecee; color: #8a1020; }
        pre.log { background: #1f2430; color: #e6e9ef; }
        footer { margin-top: 32px; color: #8a929e; font-size: 11.5px; }

        """
        for (status, colour) in statusColours {
            let name = status.rawValue
            s += "svg .\(name) { fill: \(colour); } li.count.\(name) { border-left-color: \(colour); } td.st.\(name) { color: \(colour); } "
            s += ".legend .sw.\(name) { background: \(colour); }\n"
        }
        return s
    }
}
