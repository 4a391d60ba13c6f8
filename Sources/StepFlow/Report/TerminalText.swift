/// Text from a run (step names, errors, a command's words) made safe to print to a terminal: control
/// characters other than newline and tab are shown, not sent, so a name or an error cannot clear the
/// screen, retitle the window or write the clipboard through escape sequences.
package enum TerminalText {
    /// `text` with each C0 control (but `\n` and `\t`), DEL and each C1 control written visibly:
    /// ESC as `^[`, DEL as `^?`, a C1 control as `<U+009B>`.
    package static func visible(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: needsShowing) else { return text }
        var out = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            guard needsShowing(scalar) else {
                out.append(scalar)
                continue
            }
            let shown: String
            switch scalar.value {
            case 0x7F: shown = "^?"
            case 0..<0x20: shown = "^" + String(UnicodeScalar(UInt8(scalar.value + 0x40)))
            default: shown = "<U+" + String(scalar.value, radix: 16, uppercase: true).leftPadded(to: 4) + ">"
            }
            out.append(contentsOf: shown.unicodeScalars)
        }
        return String(out)
    }

    private static func needsShowing(_ s: Unicode.Scalar) -> Bool {
        (s.value < 0x20 && s != "\n" && s != "\t") || s.value == 0x7F || (0x80...0x9F).contains(s.value)
    }
}

private extension String {
    func leftPadded(to width: Int) -> String { count >= width ? self : String(repeating: "0", count: width - count) + self }
}
