import ArgumentParser
import CTerminal
import Dispatch
import Foundation
import StepFlow
import StepFlowServe
import Synchronization

/// `top`: a live full-screen view of a run, read-only, refreshed from the run database about once a
/// second; a line a second when standard output (or input) is not a terminal.
struct TopCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "top",
        abstract: "Watch a run live: progress, what each rank and slot runs, failures and their logs.",
        discussion: """
            Read-only: it reads the run database as status does, in short read transactions that never hold the run back, at the lowest CPU priority. Keys: q quit, f failed steps \
            only (and back), / filter by function or name (Enter applies, Esc clears), ↑↓ PgUp PgDn select, Enter \
            page the selected step's log (q back). When standard output or input is not a terminal (a batch log, a \
            pipe) it prints one status line per --interval instead, and ends when the run does. Exit codes: 0 \
            done, 2 no readable run database there.
            """)

    @Argument(help: "The run directory (or use --run-dir).")
    var directory: String?

    @Option(name: .customLong("run-dir"), help: "The run directory (default ./run).")
    var runDir: String?

    @Option(help: "Seconds between refreshes.")
    var interval: Double = 1

    @Flag(help: "Print a status line per refresh even on a terminal.")
    var lines = false

    func validate() throws {
        guard interval.isFinite, interval >= 0.05, interval <= 3600 else {
            throw ValidationError("--interval must be between 0.05 and 3600 seconds (got \(interval)).")
        }
    }

    func run() throws {
        let dir = URL(fileURLWithPath: directory ?? runDir ?? "./run")
        let watcher = RunWatcher(runDirectory: dir)
        ViewerPriority.lowerEveryThread()
        if lines || isatty(STDOUT_FILENO) == 0 || isatty(STDIN_FILENO) == 0 {
            try lineMode(watcher)
        } else {
            try TopTerminal(watcher: watcher, interval: interval).run()
        }
    }

    /// One line per refresh until the run is over (or, with no run yet, until it appears and ends).
    private func lineMode(_ watcher: RunWatcher) throws {
        var saidWaiting = false
        while true {
            do {
                let view = try watcher.refresh()
                FileHandle.standardOutput.write(Data((TopScreen.statusLine(view) + "\n").utf8))
                if !view.isLive { return }
            } catch .noRun(let path) {
                if !saidWaiting { FileHandle.standardOutput.write(Data("waiting for a run database at \(path)\n".utf8)) }
                saidWaiting = true
            } catch {
                FileHandle.standardError.write(Data("error: \(error)\n".utf8))
                throw ExitCode(2)
            }
            Thread.sleep(forTimeInterval: interval)
        }
    }
}

/// The full-screen view on a terminal: raw keys, the alternate screen, and the terminal put back as it
/// was on every way out (q, Ctrl-C, SIGTERM, SIGHUP).
final class TopTerminal {
    private let watcher: RunWatcher
    private let interval: Double
    private var screen = TopScreen()
    private var view: RunView?
    private var problem: String?
    private var size = (rows: 24, columns: 80)

    init(watcher: RunWatcher, interval: Double) {
        self.watcher = watcher
        self.interval = interval
    }

    /// The terminal's settings before `top` changed them, restored once on the way out.
    private static let saved = Mutex<termios?>(nil)

    static func restore() {
        saved.withLock { saved in
            guard var original = saved else { return }
            let text = "\u{1B}[0m\u{1B}[?25h\u{1B}[?1049l"
            _ = text.withCString { write(STDOUT_FILENO, $0, strlen($0)) }
            _ = tcsetattr(STDIN_FILENO, TCSAFLUSH, &original)
            saved = nil
        }
    }

    func run() throws {
        var original = termios()
        guard tcgetattr(STDIN_FILENO, &original) == 0 else {
            FileHandle.standardError.write(Data("error: cannot read the terminal's settings (\(String(cString: strerror(errno)))); use --lines.\n".utf8))
            throw ExitCode(2)
        }
        var raw = original
        // Keys one at a time, not echoed; Ctrl-C still interrupts (ISIG), and is handled below.
        raw.c_lflag &= ~tcflag_t(ICANON | ECHO)
        withUnsafeMutableBytes(of: &raw.c_cc) { cc in
            cc[Int(VMIN)] = 0
            cc[Int(VTIME)] = 0
        }
        Self.saved.withLock { $0 = original }
        _ = tcsetattr(STDIN_FILENO, TCSAFLUSH, &raw)
        let sources = [Int32]([SIGINT, SIGTERM, SIGHUP, SIGQUIT]).map { sig -> DispatchSourceSignal in
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler {
                TopTerminal.restore()
                exit(128 + sig)
            }
            source.resume()
            return source
        }
        defer {
            sources.forEach { $0.cancel() }
            Self.restore()
        }
        emit("\u{1B}[?1049h\u{1B}[?25l\u{1B}[2J")
        var nextRefresh = 0.0
        var dirty = true
        while !screen.quit {
            let now = Date().timeIntervalSince1970
            if now >= nextRefresh {
                refresh()
                nextRefresh = now + interval
                dirty = true
            }
            var rows: Int32 = 0, columns: Int32 = 0
            if stepflow_terminal_size(STDOUT_FILENO, &rows, &columns) == 0, (Int(rows), Int(columns)) != size {
                size = (Int(rows), Int(columns))
                emit("\u{1B}[2J")
                dirty = true
            }
            if dirty {
                draw(now: now)
                dirty = false
            }
            var fds = pollfd(fd: STDIN_FILENO, events: Int16(POLLIN), revents: 0)
            let wait = Int32(max(min((nextRefresh - Date().timeIntervalSince1970) * 1000, 100), 0))
            guard poll(&fds, 1, wait) > 0 else { continue }
            if fds.revents & Int16(POLLHUP | POLLERR | POLLNVAL) != 0 && fds.revents & Int16(POLLIN) == 0 { break }
            var buffer = [UInt8](repeating: 0, count: 256)
            let n = read(STDIN_FILENO, &buffer, buffer.count)
            if n == 0 { break }  // the terminal went away
            guard n > 0 else { continue }
            for key in TopScreen.keys(Array(buffer.prefix(n))) {
                guard let view else {
                    if key == .character("q") { return }
                    continue
                }
                if case .openLog(let id) = screen.press(key, view: view, height: size.rows) {
                    openLog(id, in: view)
                }
                dirty = true
            }
        }
    }

    private func refresh() {
        do {
            let fresh = try watcher.refresh()
            view = fresh
            problem = nil
            // A log being followed grows with the run.
            if let pager = screen.pager, pager.top == nil { openLog(pager.step, in: fresh, keepPosition: true) }
        } catch .noRun(let path) {
            problem = "waiting for a run database at \(path)"
        } catch {
            problem = "\(error)"
        }
    }

    private func openLog(_ id: StepID, in view: RunView, keepPosition: Bool = false) {
        guard let record = view.record(id) else { return }
        let tail = LogTail.of(record, runDirectory: view.runDirectory, lines: 20_000, maxBytes: 4 << 20)
        let lines = tail.problem.map { [$0] } ?? (tail.earlierLinesOmitted ? ["… (earlier lines not shown)"] : []) + tail.lines
        let title = "log of step \(id) '\(TerminalText.visible(record.displayName))'" + (tail.path.map { ": \($0)" } ?? "")
        let top = keepPosition ? screen.pager?.top : nil
        screen.pager = TopScreen.Pager(step: id, title: title, lines: lines, top: top)
    }

    private func draw(now: Double) {
        let width = size.columns, height = size.rows
        var lines: [TopScreen.Line]
        if let view {
            lines = screen.lines(view, width: width, height: height, now: now)
            if let problem { lines[max(height - 2, 0)] = TopScreen.Line(text: String(problem.prefix(width)), style: .alert) }
        } else {
            lines = [TopScreen.Line(text: "stepflow top", style: .title), TopScreen.Line(text: String((problem ?? "reading the run").prefix(width)), style: .plain)]
            while lines.count < height - 1 { lines.append(TopScreen.Line(text: "", style: .plain)) }
            lines.append(TopScreen.Line(text: "q quit", style: .title))
        }
        var frame = "\u{1B}[H"
        for (i, line) in lines.prefix(height).enumerated() {
            let pad = String(repeating: " ", count: max(width - TopScreen.columns(line.text), 0))
            switch line.style {
            case .plain: frame += line.text + "\u{1B}[K"
            case .title, .selected: frame += "\u{1B}[7m" + line.text + pad + "\u{1B}[0m"
            case .heading: frame += "\u{1B}[1m" + line.text + "\u{1B}[0m\u{1B}[K"
            case .alert: frame += "\u{1B}[31m" + line.text + "\u{1B}[0m\u{1B}[K"
            }
            if i < height - 1 { frame += "\r\n" }
        }
        emit(frame)
    }

    private func emit(_ text: String) {
        var bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeMutableBytes { write(STDOUT_FILENO, $0.baseAddress! + offset, $0.count - offset) }
            if n <= 0 { if errno == EINTR { continue }; return }
            offset += n
        }
    }
}

