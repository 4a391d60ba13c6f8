import Foundation

/// What `stepflow top` shows and how the keys change it: pure, so a test renders any run at any size
/// without a terminal. The command reads keys, refreshes the `RunView` and draws the lines this makes.
package struct TopScreen: Sendable {
    package enum Mode: Sendable, Equatable {
        /// One lane per rank and slot, the slowest running steps, the latest failures.
        case lanes
        /// Failed steps only, with the selected one's log tail.
        case failures
    }

    /// The log of one step, paged full-screen (Enter on a step).
    package struct Pager: Sendable, Equatable {
        package var step: StepID
        package var title: String
        package var lines: [String]
        /// The first line shown; nil follows the end as the log grows.
        package var top: Int?

        package init(step: StepID, title: String, lines: [String], top: Int?) {
            self.step = step
            self.title = title
            self.lines = lines
            self.top = top
        }
    }

    package var mode = Mode.lanes
    /// Shows steps whose function or name holds this text (case-insensitive); empty shows all.
    package var filter = ""
    /// The filter being typed after `/`, until Enter or Esc.
    package var typing: String?
    /// The selected row of the list (lanes or failures).
    package var selected = 0
    package var pager: Pager?
    /// Set by `q` (outside the pager).
    package private(set) var quit = false

    package init() {}

    /// A key the terminal sent.
    package enum Key: Sendable, Equatable {
        case character(Character)
        case enter, escape, backspace, up, down, pageUp, pageDown, home, end
    }

    /// Splits what the terminal sent into keys (arrows and page keys are escape sequences).
    package static func keys(_ bytes: [UInt8]) -> [Key] {
        var out: [Key] = []
        var i = 0
        while i < bytes.count {
            let b = bytes[i]
            if b == 0x1B {
                // ESC [ A … or ESC O A …; a lone ESC is the Esc key.
                if i + 2 < bytes.count, bytes[i + 1] == 0x5B || bytes[i + 1] == 0x4F {
                    let c = bytes[i + 2]
                    switch c {
                    case 0x41: out.append(.up); i += 3; continue
                    case 0x42: out.append(.down); i += 3; continue
                    case 0x48: out.append(.home); i += 3; continue
                    case 0x46: out.append(.end); i += 3; continue
                    case 0x35, 0x36, 0x31, 0x34:
                        if i + 3 < bytes.count, bytes[i + 3] == 0x7E {
                            out.append(c == 0x35 ? .pageUp : c == 0x36 ? .pageDown : c == 0x31 ? .home : .end)
                            i += 4
                            continue
                        }
                    default: break
                    }
                    // Another sequence (function keys, mouse): skip to its final byte.
                    var j = i + 2
                    while j < bytes.count, !(0x40...0x7E).contains(bytes[j]) { j += 1 }
                    i = j + 1
                    continue
                }
                out.append(.escape)
            } else if b == 0x0D || b == 0x0A {
                out.append(.enter)
            } else if b == 0x7F || b == 0x08 {
                out.append(.backspace)
            } else if b >= 0x20 && b < 0x7F {
                out.append(.character(Character(UnicodeScalar(b))))
            }
            i += 1
        }
        return out
    }

    /// What to do after a key: nothing more, or open the log of a step (the command reads it).
    package enum Action: Sendable, Equatable {
        case none
        case openLog(StepID)
    }

    /// Applies a key, given the run as last drawn and the screen's height.
    package mutating func press(_ key: Key, view: RunView, height: Int) -> Action {
        if var p = pager {
            let page = max(height - 2, 1)
            let last = max(p.lines.count - page, 0)
            let top = p.top ?? last
            switch key {
            case .character("q"), .escape, .backspace: pager = nil; return .none
            case .up, .character("k"): p.top = max(top - 1, 0)
            case .down, .character("j"): p.top = top + 1 >= last ? nil : top + 1
            case .pageUp: p.top = max(top - page, 0)
            case .pageDown, .character(" "): p.top = top + page >= last ? nil : top + page
            case .home, .character("g"): p.top = 0
            case .end, .character("G"): p.top = nil
            default: break
            }
            pager = p
            return .none
        }
        if let text = typing {
            switch key {
            case .enter: filter = text; typing = nil; selected = 0
            case .escape: typing = nil
            case .backspace: typing = String(text.dropLast())
            case .character(let c): typing = text + String(c)
            default: break
            }
            return .none
        }
        let rows = listRows(view)
        switch key {
        case .character("q"): quit = true
        case .character("f"): mode = mode == .lanes ? .failures : .lanes; selected = 0
        case .character("/"): typing = filter
        case .escape: filter = ""
        case .up, .character("k"): selected = max(selected - 1, 0)
        case .down, .character("j"): selected = min(selected + 1, max(rows.count - 1, 0))
        case .pageUp: selected = max(selected - max(height / 2, 1), 0)
        case .pageDown: selected = min(selected + max(height / 2, 1), max(rows.count - 1, 0))
        case .home: selected = 0
        case .end: selected = max(rows.count - 1, 0)
        case .enter:
            if rows.indices.contains(selected), let id = rows[selected].step?.id { return .openLog(id) }
        default: break
        }
        return .none
    }

    /// A row of the list: a lane (rank, slot and what runs there) or a failed step.
    struct Row {
        var lane: (rank: Int, slot: Int)?
        var step: StepRecord?
    }

    func matches(_ r: StepRecord) -> Bool {
        filter.isEmpty || r.displayName.localizedCaseInsensitiveContains(filter) || r.spec.function.localizedCaseInsensitiveContains(filter)
    }

    func listRows(_ view: RunView) -> [Row] {
        switch mode {
        case .failures:
            return view.failures().filter(matches).map { Row(lane: nil, step: $0) }
        case .lanes:
            var bySlot: [Int: StepRecord] = [:]
            let slots = view.header.threads
            for r in view.running {
                guard let rank = r.rank, let slot = r.slot, rank >= 0, slot >= 0, slot < slots else { continue }
                bySlot[rank * slots + slot] = r
            }
            // Every lane of the launch's shape (capped: a screen cannot show 100,000 lanes anyway).
            let lanes = min(view.header.mpi * slots, 4096)
            var rows: [Row] = []
            for lane in 0..<lanes {
                let step = bySlot[lane]
                if !filter.isEmpty && !(step.map(matches) ?? false) { continue }
                rows.append(Row(lane: (lane / slots, lane % slots), step: step))
            }
            return rows
        }
    }

    // MARK: Drawing

    /// The screen: exactly `height` lines, none wider than `width` characters. Text from the run is
    /// made visible (`TerminalText`); `highlight` marks the selected row and title for the command to
    /// draw in reverse video.
    package func lines(_ view: RunView, width: Int, height: Int, now: Double = Date().timeIntervalSince1970) -> [Line] {
        let width = max(width, 20), height = max(height, 5)
        if let pager { return pagerLines(pager, width: width, height: height) }
        var out: [Line] = []
        func add(_ text: String, _ style: Line.Style = .plain) { out.append(Line(text: Self.fit(text, width), style: style)) }
        let run = view.header
        let owner = view.liveness.owner.map { " — \($0)" } ?? ""
        add("stepflow top · \(run.protocolName) · \(view.status)\(owner)", .title)
        let launch = run.launches > 1 ? ", launch \(run.launches)" : ""
        add("\(view.runDirectory.path) · mpi=\(run.mpi) × threads=\(run.threads)\(launch) · " + Self.clock(now))
        add(progressLine(view, width: width))
        var counts: [String] = []
        for status in [StepStatus.running, .failed, .waiting, .new, .skipped, .aborted] {
            let n = view.count(status)
            if n > 0 || status == .running || status == .failed { counts.append("\(status.rawValue) \(Self.count(n))") }
        }
        add(counts.joined(separator: "  "), view.count(.failed) > 0 ? .alert : .plain)
        if let typing {
            add("filter: \(typing)█   (Enter apply, Esc cancel)", .title)
        } else if !filter.isEmpty {
            add("filter: \(filter)   (/ to change, Esc to clear)")
        } else {
            add("")
        }
        let footer = "q quit  f " + (mode == .lanes ? "failures" : "lanes") + "  / filter  ↑↓ select  ⏎ log"
        let body = height - out.count - 1
        let rows = listRows(view)
        let selected = min(self.selected, max(rows.count - 1, 0))
        switch mode {
        case .lanes:
            let slowest = view.running.filter(matches).prefix(5)
            let failures = view.failures(limit: 3).filter(matches)
            // The lanes get what the two short lists leave, and at least half the body.
            var slowHeight = slowest.isEmpty ? 0 : slowest.count + 1
            var failHeight = failures.isEmpty ? 0 : min(failures.count * 2, 4) + 1
            while slowHeight + failHeight > body / 2, slowHeight + failHeight > 0 {
                if failHeight > 2 { failHeight -= 1 } else if slowHeight > 2 { slowHeight -= 1 } else { break }
            }
            if slowHeight + failHeight > body / 2 { slowHeight = 0; failHeight = 0 }
            let laneHeight = body - slowHeight - failHeight
            out += listLines(title: "RANK/SLOT  STEP     NAME", rows: rows, selected: selected, height: laneHeight, width: width, now: now) { row in
                guard let lane = row.lane else { return "" }
                let place = "r\(lane.rank)/s\(lane.slot)".padding(toLength: 10, withPad: " ", startingAt: 0)
                guard let r = row.step else { return place + " idle" }
                return place + " " + Self.stepText(r, width: width - 11, now: now)
            }
            if slowHeight > 0 {
                out.append(Line(text: Self.fit("Slowest running", width), style: .heading))
                for r in slowest.prefix(slowHeight - 1) {
                    let place = r.rank.map { "r\($0)/s\(r.slot.map(String.init) ?? "-")" } ?? "?"
                    out.append(Line(text: Self.fit("  \(place.padding(toLength: 8, withPad: " ", startingAt: 0)) " + Self.stepText(r, width: width - 11, now: now), width), style: .plain))
                }
            }
            if failHeight > 0 {
                out.append(Line(text: Self.fit("Latest failures", width), style: .heading))
                var left = failHeight - 1
                for r in failures where left > 0 {
                    out.append(Line(text: Self.fit("  step \(r.id) \(TerminalText.visible(r.displayName)): \(TerminalText.visible(Self.oneLine(r.error ?? "failed")))", width), style: .alert))
                    left -= 1
                    if left > 0, let tail = view.logTail(r.id, lines: 1).flatMap({ $0.lines.last }) {
                        out.append(Line(text: Self.fit("      │ " + TerminalText.visible(tail), width), style: .plain))
                        left -= 1
                    }
                }
            }
        case .failures:
            let tailHeight = rows.isEmpty ? 1 : min(max(body / 3, 3), 12)
            out += listLines(title: "STEP     NAME / ERROR", rows: rows, selected: selected, height: body - tailHeight, width: width, now: now) { row in
                guard let r = row.step else { return "" }
                let place = r.rank.map { " r\($0)/s\(r.slot.map(String.init) ?? "-")" } ?? ""
                return "\(String(r.id).padding(toLength: 8, withPad: " ", startingAt: 0)) \(TerminalText.visible(r.displayName))\(place): \(TerminalText.visible(Self.oneLine(r.error ?? "failed")))"
            }
            if !rows.isEmpty, rows.indices.contains(selected), let r = rows[selected].step {
                let tail = view.logTail(r.id, lines: tailHeight - 1)
                out.append(Line(text: Self.fit("log of step \(r.id)" + (tail?.path.map { ": \($0)" } ?? ""), width), style: .heading))
                let shown = tail?.problem.map { [$0] } ?? tail?.lines ?? []
                for l in shown.suffix(tailHeight - 1) { out.append(Line(text: Self.fit("  " + TerminalText.visible(l), width), style: .plain)) }
            } else if rows.isEmpty {
                out.append(Line(text: Self.fit(filter.isEmpty ? "  no step failed" : "  no failed step matches the filter", width), style: .plain))
            }
        }
        while out.count < height - 1 { out.append(Line(text: "", style: .plain)) }
        out = Array(out.prefix(height - 1))
        out.append(Line(text: Self.fit(footer, width), style: .title))
        return out
    }

    /// One line of the screen.
    package struct Line: Sendable, Equatable {
        package enum Style: Sendable { case plain, title, heading, selected, alert }
        package var text: String
        package var style: Style

        package init(text: String, style: Style) {
            self.text = text
            self.style = style
        }
    }

    private func listLines(title: String, rows: [Row], selected: Int, height: Int, width: Int, now: Double,
                           _ text: (Row) -> String) -> [Line] {
        guard height > 0 else { return [] }
        var out = [Line(text: Self.fit(title + (rows.count > height - 1 ? "   (\(selected + 1)/\(rows.count))" : ""), width), style: .heading)]
        let visible = height - 1
        guard visible > 0 else { return out }
        // Keep the selected row in sight.
        let first = min(max(selected - visible / 2, 0), max(rows.count - visible, 0))
        for i in first..<min(first + visible, rows.count) {
            out.append(Line(text: Self.fit(text(rows[i]), width), style: i == selected ? .selected : (rows[i].step?.status == .failed ? .alert : .plain)))
        }
        while out.count < height { out.append(Line(text: "", style: .plain)) }
        return out
    }

    private func pagerLines(_ p: Pager, width: Int, height: Int) -> [Line] {
        let page = height - 2
        let last = max(p.lines.count - page, 0)
        let top = min(p.top ?? last, last)
        var out = [Line(text: Self.fit(p.title + "  (lines \(p.lines.isEmpty ? 0 : top + 1)–\(min(top + page, p.lines.count)) of \(p.lines.count))", width), style: .title)]
        for l in p.lines.dropFirst(top).prefix(page) { out.append(Line(text: Self.fit(TerminalText.visible(l), width), style: .plain)) }
        while out.count < height - 1 { out.append(Line(text: "", style: .plain)) }
        out.append(Line(text: Self.fit("q back  ↑↓ PgUp PgDn scroll  g top  G end (follows the log)", width), style: .title))
        return out
    }

    /// The progress bar and figures: finished/total, percent, rate, time left.
    func progressLine(_ view: RunView, width: Int) -> String {
        let total = view.total, finished = view.count(.finished)
        let percent = total > 0 ? Double(finished) / Double(total) * 100 : 0
        var figures = "\(Self.count(finished))/\(Self.count(total)) finished " + String(format: "%.1f%%", percent)
        if let rate = view.stepsPerSecond { figures += "  " + Self.rate(rate) }
        if let left = view.secondsLeft { figures += "  ~" + Self.duration(left) + " left" }
        let barWidth = max(min(width - figures.count - 3, 50), 10)
        let filled = total > 0 ? Int((Double(finished) / Double(total) * Double(barWidth)).rounded(.down)) : 0
        let ended = total > 0 ? Int((Double(view.ended) / Double(total) * Double(barWidth)).rounded(.down)) : 0
        // Finished, then failed or skipped, then what is left.
        let bar = String(repeating: "█", count: filled) + String(repeating: "▒", count: max(ended - filled, 0))
            + String(repeating: "·", count: max(barWidth - max(ended, filled), 0))
        return "[" + bar + "] " + figures
    }

    /// The non-terminal form: one line a second for a batch log.
    package static func statusLine(_ view: RunView, now: Double = Date().timeIntervalSince1970) -> String {
        let total = view.total, finished = view.count(.finished)
        let percent = total > 0 ? Double(finished) / Double(total) * 100 : 0
        var parts = ["\(count(finished))/\(count(total)) finished (" + String(format: "%.1f%%", percent) + ")",
                     "\(count(view.count(.running))) running", "\(count(view.count(.failed))) failed"]
        if let rate = view.stepsPerSecond { parts.append(Self.rate(rate)) }
        if let left = view.secondsLeft { parts.append("~" + duration(left) + " left") }
        return TerminalText.visible("\(clock(now)) \(view.header.protocolName) \(view.status): " + parts.joined(separator: ", "))
    }

    static func stepText(_ r: StepRecord, width: Int, now: Double) -> String {
        let running = r.status == .running ? r.start.map { duration(max(now - $0, 0)) } ?? "" : ""
        let head = String(r.id).padding(toLength: 8, withPad: " ", startingAt: 0)
        let nameWidth = max(width - head.count - running.count - 1, 4)
        let name = fit(TerminalText.visible(r.displayName), nameWidth)
        return head + name.padding(toLength: nameWidth, withPad: " ", startingAt: 0) + " " + running
    }

    /// `s` cut to `width` terminal columns, with an ellipsis when cut.
    static func fit(_ s: String, _ width: Int) -> String {
        if s.utf8.count <= width { return s }  // ASCII and narrow text, the common case
        if columns(s) <= width { return s }
        var out = "", used = 0
        for c in s {
            let w = columns(String(c))
            if used + w > width - 1 { break }
            out.append(c)
            used += w
        }
        return out + "…"
    }

    /// How many terminal columns `s` takes: East Asian wide characters and emoji two, combining marks
    /// none, everything else one.
    package static func columns(_ s: String) -> Int {
        var n = 0
        for u in s.unicodeScalars {
            switch u.value {
            case 0x300...0x36F, 0x200B...0x200F, 0xFE00...0xFE0F: break
            case 0x1100...0x115F, 0x2E80...0xA4CF, 0xAC00...0xD7A3, 0xF900...0xFAFF, 0xFE30...0xFE4F, 0xFF00...0xFF60,
                 0xFFE0...0xFFE6, 0x1F300...0x1F64F, 0x1F900...0x1F9FF, 0x20000...0x3FFFD: n += 2
            default: n += 1
            }
        }
        return n
    }

    static func oneLine(_ s: String) -> String { s.replacingOccurrences(of: "\n", with: " ⏎ ") }

    static func count(_ n: Int) -> String { HTMLText.count(n) }

    static func rate(_ perSecond: Double) -> String {
        perSecond >= 100 ? String(format: "%.0f steps/s", perSecond) : String(format: "%.2f steps/s", perSecond)
    }

    static func duration(_ s: Double) -> String {
        guard s.isFinite else { return "—" }
        let t = Int(min(max(s, 0), 1e9).rounded())
        if t < 60 { return "\(t)s" }
        if t < 3600 { return "\(t / 60)m\(String(format: "%02d", t % 60))s" }
        return "\(t / 3600)h\(String(format: "%02d", t % 3600 / 60))m"
    }

    static func clock(_ t: Double) -> String {
        var time = time_t(t.rounded(.down))
        var parts = tm()
        gmtime_r(&time, &parts)
        return String(format: "%04d-%02d-%02dT%02d:%02d:%02dZ", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1,
                      Int(parts.tm_mday), Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec))
    }
}
