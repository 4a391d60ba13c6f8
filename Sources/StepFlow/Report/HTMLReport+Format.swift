import Foundation

/// Escaping and number formatting for the HTML report.
package enum HTMLText {
    /// Text from the run (labels, errors, logs) made safe for HTML text and attribute values, and for
    /// an XML parser too: control characters (terminal colour codes in logs, say) become their visible
    /// Unicode pictures, since XML forbids them even escaped.
    package static func escape(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.utf8.count)
        for u in s.unicodeScalars {
            switch u {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            case "\n", "\t": out.unicodeScalars.append(u)
            case "\r": break
            case _ where u.value < 0x20: out.unicodeScalars.append(Unicode.Scalar(0x2400 + u.value)!)
            case "\u{7F}": out += "\u{2421}"
            case _ where u.value == 0xFFFE || u.value == 0xFFFF: out += "\u{FFFD}"
            default: out.unicodeScalars.append(u)
            }
        }
        return out
    }

    /// At most `limit` characters, with an ellipsis when cut.
    static func clip(_ s: String, _ limit: Int) -> String {
        s.count <= limit ? s : String(s.prefix(limit)) + "…"
    }

    /// 20000 → "20,000".
    package static func count(_ n: Int) -> String {
        let digits = String(n.magnitude)
        var out = ""
        for (i, c) in digits.enumerated() {
            if i > 0 && (digits.count - i) % 3 == 0 { out += "," }
            out.append(c)
        }
        return (n < 0 ? "-" : "") + out
    }

    /// A duration a person reads at a glance: "840 µs", "12.3 ms", "4.21 s", "3 min 07 s", "2 h 05 min".
    static func duration(_ seconds: Double) -> String {
        guard seconds.isFinite else { return "—" }
        // Far past any run, and within what Int holds.
        let s = min(max(seconds, 0), 1e12)
        switch s {
        case ..<0.001: return String(format: "%.0f µs", s * 1e6)
        case ..<0.01: return String(format: "%.2f ms", s * 1e3)
        case ..<1: return String(format: "%.1f ms", s * 1e3)
        case ..<60: return String(format: "%.2f s", s)
        case ..<3600: return String(format: "%d min %02d s", Int(s) / 60, Int(s) % 60)
        default: return String(format: "%d h %02d min", Int(s) / 3600, Int(s) % 3600 / 60)
        }
    }

    /// A number for SVG coordinates: two decimals, no trailing zeros.
    static func coordinate(_ v: Double) -> String {
        guard v.isFinite else { return "0" }
        let r = (v * 100).rounded() / 100
        if r == r.rounded() { return String(Int(r)) }
        var s = String(format: "%.2f", r)
        while s.hasSuffix("0") { s.removeLast() }
        return s
    }

    /// A moment as UTC ISO 8601, to the second.
    static func moment(_ secondsSinceEpoch: Double?) -> String {
        guard let t = secondsSinceEpoch, t.isFinite, abs(t) < 1e15 else { return "—" }
        var time = time_t(t.rounded(.down))
        var parts = tm()
        gmtime_r(&time, &parts)
        return String(format: "%04d-%02d-%02d %02d:%02d:%02d UTC", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1,
                      Int(parts.tm_mday), Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec))
    }
}

/// A time axis: a unit that suits the span and round tick positions.
struct TimeAxis {
    let unitName: String
    let unitSeconds: Double
    /// Tick positions in seconds from the origin.
    let ticks: [Double]

    init(span: Double, targetTicks: Int = 10) {
        let span = max(span, 1e-6)
        (unitName, unitSeconds) = switch span {
        case ..<0.002: ("µs", 1e-6)
        case ..<1: ("ms", 1e-3)
        case ..<300: ("s", 1)
        case ..<10_800: ("min", 60)
        default: ("h", 3600)
        }
        // 1, 2 or 5 times a power of ten, in the unit, giving about `targetTicks` ticks.
        let raw = span / unitSeconds / Double(targetTicks)
        let power = pow(10, (log10(raw)).rounded(.down))
        let step = [1.0, 2, 5, 10].map { $0 * power }.first { $0 >= raw } ?? 10 * power
        var ticks: [Double] = []
        var k = 0.0
        while k * step * unitSeconds <= span * 1.0001 {
            ticks.append(k * step * unitSeconds)
            k += 1
        }
        self.ticks = ticks
    }

    func label(_ seconds: Double) -> String {
        let v = seconds / unitSeconds
        let rounded = (v * 1000).rounded() / 1000
        if rounded == rounded.rounded() { return String(Int(rounded)) + " " + unitName }
        var s = String(format: "%.3f", rounded)
        while s.hasSuffix("0") { s.removeLast() }
        return s + " " + unitName
    }
}
