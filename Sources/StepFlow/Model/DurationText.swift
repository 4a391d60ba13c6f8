import Foundation

/// Durations as people write them on a command line or in a workflow file: `90s`, `10m`, `1h`,
/// `1h30m`, `500ms`, `1.5h`, or a number of seconds.
package enum DurationText {
    /// Units, `ms` before `m` so it matches first; `order` is the largest-first rank of each.
    private static let units: [(suffix: String, seconds: Double, order: Int)] = [("ms", 0.001, 3), ("h", 3600, 0), ("m", 60, 1), ("s", 1, 2)]

    /// Seconds, or nil when `text` is not a duration. The units come largest first, each once
    /// (`1h30m`, not `30m1h` or `1m1m`). Zero and negative values are the caller's to refuse.
    package static func seconds(_ text: String) -> Double? {
        let text = text.filter { $0 != " " }
        if let plain = decimal(text) { return plain }
        var seconds = 0.0
        var rest = Substring(text)
        var last = -1
        while !rest.isEmpty {
            let digits = rest.prefix { $0.isNumber || $0 == "." }
            rest = rest.dropFirst(digits.count)
            guard let value = decimal(digits), let unit = units.first(where: { rest.hasPrefix($0.suffix) }), unit.order > last else {
                return nil
            }
            last = unit.order
            rest = rest.dropFirst(unit.suffix.count)
            seconds += value * unit.seconds
        }
        return last >= 0 ? seconds : nil
    }

    /// A plain decimal number (no hex, no infinities, no `nan`).
    static func decimal<S: StringProtocol>(_ text: S) -> Double? {
        guard let first = text.first, first.isNumber || first == "." || first == "-" || first == "+",
              text.allSatisfy({ $0.isASCII && ($0.isNumber || ".eE+-".contains($0)) }) else { return nil }
        return Double(String(text)).flatMap { $0.isFinite ? $0 : nil }
    }

    /// Seconds as a person writes them: `1s`, `1.5s`, `10m`, `1h30m`.
    package static func text(_ seconds: Double) -> String {
        if seconds < 60 || seconds.rounded() != seconds {
            return seconds.rounded() == seconds ? "\(Int(seconds))s" : String(format: "%gs", seconds)
        }
        let s = Int(seconds)
        let (h, m, r) = (s / 3600, s % 3600 / 60, s % 60)
        return (h > 0 ? "\(h)h" : "") + (m > 0 ? "\(m)m" : "") + (r > 0 ? "\(r)s" : "")
    }
}
