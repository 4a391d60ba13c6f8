import ArgumentParser
import Dispatch
import Foundation
import StepFlow
import StepFlowServe
import Synchronization

/// `serve`: the runs' live pages, their figures for Prometheus, over HTTP; read-only.
struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve live pages of runs (and /metrics for Prometheus) over HTTP, read-only.",
        discussion: """
            Give run directories, or folders holding run directories (new runs in them are found as they appear). \
            It listens on 127.0.0.1 unless told otherwise; on any other address every request needs the token, \
            given by --token or STEPFLOW_SERVE_TOKEN, or made up and printed at start. From another machine, an \
            SSH tunnel keeps it on loopback: ssh -L 8080:127.0.0.1:8080 login-node. Routes: / (the run, or the \
            list of runs), /runs/<n>/ (a run's page), /runs/<n>/state?since=<generation> (what changed, JSON), \
            /runs/<n>/log/<step id>, /runs/<n>/report, /api/runs, /metrics. Only GET and HEAD. Exit codes: 0 \
            stopped, 2 bad arguments or the address cannot be bound.
            """)

    @Argument(help: "Run directories, or folders of run directories (default ./run).")
    var directories: [String] = []

    @Option(help: "The port to listen on (0: any free port, printed).")
    var port: Int = 8080

    @Option(help: "The address to listen on.")
    var bind: String = "127.0.0.1"

    @Option(help: "The token every request must carry (?token=, or Authorization: Bearer). Default: none on loopback, a new one printed otherwise; STEPFLOW_SERVE_TOKEN also sets it.")
    var token: String?

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be between 0 and 65535 (got \(port)).") }
        if let token, token.count < 8 || !token.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }) {
            throw ValidationError("--token must be at least 8 letters, digits, '-' or '_' (it travels in addresses).")
        }
    }

    static func isLoopback(_ host: String) -> Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }

    func run() throws {
        ViewerPriority.lowerEveryThread()
        let catalog: RunCatalog
        do {
            catalog = try RunCatalog(paths: directories.isEmpty ? ["./run"] : directories)
        } catch {
            FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            throw ExitCode(2)
        }
        let loopback = Self.isLoopback(bind)
        var token = self.token ?? ProcessInfo.processInfo.environment["STEPFLOW_SERVE_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
        if token == nil && !loopback {
            var rng = SystemRandomNumberGenerator()
            token = (0..<4).map { _ in String(rng.next(), radix: 16).leftPadded(16) }.joined()
        }
        let allowed: Set<String> = loopback ? ["127.0.0.1", "localhost", "::1", bind.lowercased()] : []
        let routes = RunRoutes(catalog: catalog, token: token, allowedHosts: allowed)
        let sources = [Int32]([SIGINT, SIGTERM]).map { sig -> DispatchSourceSignal in
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { Glibc.exit(0) }
            source.resume()
            return source
        }
        defer { sources.forEach { $0.cancel() } }
        let count = catalog.list().count
        for path in catalog.notYetThere {
            FileHandle.standardError.write(Data("note: '\(path)' does not exist yet; its page shows the run once it starts there.\n".utf8))
        }
        let failure = Mutex<String?>(nil)
        let done = DispatchSemaphore(value: 0)
        let tokenText = token
        Task {
            do {
                try await RunServer.run(routes: routes, host: bind, port: port) { host, port in
                    let shown = host.contains(":") ? "[\(host)]" : host
                    let query = tokenText.map { "?token=\($0)" } ?? ""
                    var text = "stepflow serve: \(count) run\(count == 1 ? "" : "s") at http://\(shown):\(port)/\(query)\n"
                    if !loopback { text += "stepflow serve: listening on \(host), not loopback: every request needs the token above\n" }
                    FileHandle.standardOutput.write(Data(text.utf8))
                    // The event loops and pools exist now: every one of them yields to the run.
                    ViewerPriority.lowerEveryThread()
                }
            } catch {
                failure.withLock { $0 = "cannot serve on \(bind):\(port): \(error). Choose another --port (0 picks a free one) or --bind." }
            }
            done.signal()
        }
        done.wait()
        if let failure = failure.withLock({ $0 }) {
            FileHandle.standardError.write(Data("error: \(failure)\n".utf8))
            throw ExitCode(2)
        }
    }
}

private extension String {
    func leftPadded(_ width: Int) -> String { count >= width ? self : String(repeating: "0", count: width - count) + self }
}
