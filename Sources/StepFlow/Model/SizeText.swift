/// Sizes as people write them: `100MB`, `1GB`, `512KB`, `64KiB`, or a number of bytes (units of 1024).
package enum SizeText {
    private static let units: [String: Int] = [
        "b": 1, "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20,
        "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30, "t": 1 << 40, "tb": 1 << 40, "tib": 1 << 40,
    ]

    /// The bytes `text` stands for, rounded; nil when it is not a size. Callers check the range (it
    /// may be past what an Int holds).
    package static func bytes(_ text: String) -> Double? {
        let text = text.filter { $0 != " " }
        let digits = text.prefix { $0.isNumber || $0 == "." }
        guard !digits.isEmpty, let value = Double(digits), value.isFinite else { return nil }
        let unitText = text.dropFirst(digits.count).lowercased()
        guard let unit = unitText.isEmpty ? 1 : units[unitText] else { return nil }
        return (value * Double(unit)).rounded()
    }
}
