import Foundation
import Testing
@testable import StepFlow

/// The live views against real runs (issue 22): `serve` over a socket and in headless Chromium while a
/// sleepy workflow runs on 2 ranks, and `top` in a pseudo-terminal and in a pipe.
@Suite(.serialized) struct LiveViewTests {
    /// A workflow of `count` sleepy steps (0.15 s each) and one that fails after printing to its log.
    static func sleepyWorkflow(_ dir: URL, count: Int = 40) throws -> URL {
        let file = dir.appendingPathComponent("sleepy.yaml")
        try """
        parallel: {threads: 1, mpi: 2}
        steps:
          - name: nap
            foreach: {from: 1, to: \(count)}
            shell: sleep 0.15; echo napped {item:q}
            after: []
          - name: broken
            shell: echo "the broken step's last words"; exit 3
            after: []
        """.write(to: file, atomically: true, encoding: .utf8)
        return file
    }

    /// Starts `stepflow serve` on a free port; returns it and the port it printed.
    static func serve(_ args: [String]) throws -> (Background, Int) {
        let server = try Background.launch(np: 0, "stepflow", ["serve", "--port", "0"] + args)
        var port: Int?
        Background.waitUntil(timeout: 30) {
            if let m = server.text.firstMatch(of: /at http:\/\/[^:]+:(\d+)\//) { port = Int(m.1) }
            return port != nil || !server.isRunning
        }
        guard let port else {
            server.signal(SIGKILL)
            throw TestFailure("serve did not print its address: \(server.text)")
        }
        return (server, port)
    }

    /// Sends `request` as written (no client normalising the path) and returns the whole answer.
    static func raw(port: Int, _ request: String) throws -> String {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket: \(errno)") }
        defer { close(fd) }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw TestFailure("connect: \(errno)") }
        _ = request.withCString { send(fd, $0, strlen($0), 0) }
        var answer = Data()
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n <= 0 { break }
            answer.append(contentsOf: buffer[0..<n])
        }
        return String(decoding: answer, as: UTF8.self)
    }

    static func get(port: Int, _ target: String, method: String = "GET", host: String = "127.0.0.1") throws -> (status: Int, body: String) {
        let answer = try raw(port: port, "\(method) \(target) HTTP/1.1\r\nHost: \(host):\(port)\r\nConnection: close\r\n\r\n")
        let status = answer.firstMatch(of: /^HTTP\/1\.1 (\d+)/).flatMap { Int($0.1) } ?? -1
        let body = answer.components(separatedBy: "\r\n\r\n").dropFirst().joined(separator: "\r\n\r\n")
        return (status, body)
    }

    @Test("serve binds 127.0.0.1 by default and refuses hostile requests over a real socket; on 0.0.0.0 it makes up a token and asks for it")
    func liveServer() throws {
        let (dir, parent, store) = try ServeRouteTests.makeRun("serve-live")
        defer { _ = store.finish(status: "finished"); try? FileManager.default.removeItem(at: parent) }
        let (server, port) = try Self.serve([dir.path])
        defer { server.signal(SIGTERM); _ = server.wait(timeout: 10) }
        #expect(server.text.contains("at http://127.0.0.1:\(port)/"), "\(server.text)")
        // The listening socket is on 127.0.0.1 only (/proc/net/tcp: local address 0100007F, state 0A LISTEN).
        let table = (try? String(contentsOfFile: "/proc/net/tcp", encoding: .utf8)) ?? ""
        let hexPort = String(format: "%04X", port)
        #expect(table.contains("0100007F:\(hexPort) 00000000:0000 0A"), "not listening on 127.0.0.1:\(port)")
        #expect(!table.contains("00000000:\(hexPort) 00000000:0000 0A"), "listening on every address")
        #expect(try Self.get(port: port, "/runs/1/state").status == 200)
        for target in ["/../run.db", "/logs/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/runs/1/log/..%2F..%2Fsecret.txt", "/runs/1/../../../etc/passwd"] {
            let r = try Self.get(port: port, target)
            #expect(r.status == 404 && !r.body.contains("SQLite format") && !r.body.contains("root:") && !r.body.contains("TOP SECRET"), "\(target): \(r.status)")
        }
        let post = try Self.raw(port: port, "POST /runs/1/state HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
        #expect(post.hasPrefix("HTTP/1.1 405"), "\(post.prefix(80))")
        #expect(try Self.get(port: port, "/", host: "rebinding.example").status == 421)
        #expect(try Self.get(port: port, "/", method: "HEAD").status == 200)

        let (open, openPort) = try Self.serve(["--bind", "0.0.0.0", dir.path])
        defer { open.signal(SIGTERM); _ = open.wait(timeout: 10) }
        let token = try #require(open.text.firstMatch(of: /\?token=([0-9a-f]+)/).map { String($0.1) }, "\(open.text)")
        #expect(token.count >= 32 && open.text.contains("not loopback"))
        #expect(try Self.get(port: openPort, "/runs/1/state").status == 401)
        #expect(try Self.get(port: openPort, "/runs/1/state?token=\(token)x").status == 401)
        #expect(try Self.get(port: openPort, "/runs/1/state?token=\(token)").status == 200)
    }

    @Test("Chromium on serve's page while a sleepy workflow runs on 2 ranks: the finished count rises, a click on the failed step shows its log, the end equals status --json")
    func browser() throws {
        let dir = Executables.temporaryFolder("serve-browser")
        defer { try? FileManager.default.removeItem(at: dir) }
        let runDir = dir.appendingPathComponent("run")
        let workflow = try Self.sleepyWorkflow(dir)
        let run = try Background.launch(np: 2, "stepflow", ["run", workflow.path, "--run-dir", runDir.path, "--keep-going"])
        #expect(Background.waitUntil(timeout: 60) { FileManager.default.fileExists(atPath: RunStore.path(in: runDir)) }, "\(run.text)")
        let (server, port) = try Self.serve([runDir.path])
        defer { server.signal(SIGTERM); _ = server.wait(timeout: 10) }
        let shot = dir.appendingPathComponent("page.png")
        let result = try Executables.runProcess("/usr/bin/env", [Executables.python3, ScriptFolder.path("browser.py"), "http://127.0.0.1:\(port)/", shot.path])
        #expect(result.code == 0, "\(result.stderr)")
        #expect(run.wait(timeout: 120) == 1, "the run (one step fails): \(run.text)")
        let seen = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any], "\(result.stdout)")
        let first = seen["first"] as? Int ?? -1, second = seen["second"] as? Int ?? -1, final = seen["final"] as? Int ?? -1
        #expect(first >= 0 && second > first, "the finished count did not rise: \(first) then \(second)")
        #expect(seen["clicked"] as? Bool == true && (seen["log"] as? String ?? "").contains("the broken step's last words"), "\(seen)")
        let status = try Executables.run("stepflow", ["status", "--json", runDir.path])
        let document = try #require(try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any])
        let counts = (document["run"] as? [String: Any])?["counts"] as? [String: Int]
        #expect(counts?["finished"] == final && final == 40, "page \(final), status --json \(String(describing: counts))")
        #expect(seen["status"] as? String == "failed")
        #expect(FileManager.default.fileExists(atPath: shot.path))
        if let keep = ProcessInfo.processInfo.environment["STEPFLOW_KEEP_SCREENSHOT"] {
            try? FileManager.default.removeItem(atPath: keep)
            try FileManager.default.copyItem(atPath: shot.path, toPath: keep)
        }
    }

    @Test("top in a pseudo-terminal: frames fit 80×24 and 200×60 after a resize; q and Ctrl-C both restore the screen and the terminal's settings")
    func topInTerminal() throws {
        let dir = Executables.temporaryFolder("top-pty")
        defer { try? FileManager.default.removeItem(at: dir) }
        let runDir = dir.appendingPathComponent("run")
        let run = try Background.launch(np: 2, "stepflow", ["run", try Self.sleepyWorkflow(dir, count: 400).path, "--run-dir", runDir.path, "--keep-going"])
        defer { run.signal(SIGTERM); _ = run.wait(timeout: 60) }
        #expect(Background.waitUntil(timeout: 60) { FileManager.default.fileExists(atPath: RunStore.path(in: runDir)) })
        let stepflow = Executables.buildFolder.appendingPathComponent("stepflow").path
        let result = try Executables.runProcess("/usr/bin/env", [Executables.python3, ScriptFolder.path("pty_top.py"), stepflow, runDir.path])
        #expect(result.code == 0, "\(result.stderr)")
        let seen = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: [String: Any]], "\(result.stdout)")
        for (how, code) in [("q", 0), ("ctrl_c", 130)] {
            let s = try #require(seen[how])
            #expect(s["exit"] as? Int == code, "\(how): exit \(String(describing: s["exit"]))")
            #expect(s["entered_alternate_screen"] as? Bool == true && s["restored_screen"] as? Bool == true, "\(how)")
            #expect(s["raw_while_running"] as? Bool == true && s["settings_restored"] as? Bool == true, "\(how)")
            let small = try #require(s["small"] as? [String: Any]), large = try #require(s["large"] as? [String: Any])
            #expect(small["lines"] as? Int == 24 && (small["widest"] as? Int ?? 99) <= 80, "\(how) 80×24: \(small)")
            #expect(large["lines"] as? Int == 60 && large["widest"] as? Int == 200, "\(how) 200×60: \(large)")
            let text = (small["text"] as? [String] ?? []).joined(separator: "\n")
            #expect(text.contains("stepflow top") && text.contains("finished") && text.contains("r1/s0"), "\(text)")
        }
    }

    @Test("top without a terminal prints a line a second and ends with the run")
    func topLines() throws {
        let dir = Executables.temporaryFolder("top-lines")
        defer { try? FileManager.default.removeItem(at: dir) }
        let runDir = dir.appendingPathComponent("run")
        let run = try Background.launch(np: 2, "stepflow", ["run", try Self.sleepyWorkflow(dir, count: 30).path, "--run-dir", runDir.path, "--keep-going"])
        let top = try Background.launch(np: 0, "stepflow", ["top", runDir.path])
        _ = run.wait(timeout: 120)
        #expect(top.wait(timeout: 30) == 0, "\(top.text)")
        let lines = top.text.split(separator: "\n").filter { $0.contains(" finished (") }
        #expect(lines.count >= 2, "\(top.text)")
        #expect(lines.last?.contains("30/31 finished") == true && lines.last?.contains("1 failed") == true, "\(top.text)")
        // About one a second: the run took at least as many seconds as lines, less the first.
        let times = lines.compactMap { line in line.split(separator: " ").first.flatMap { ISO8601DateFormatter().date(from: String($0)) } }
        if let a = times.first, let b = times.last, times.count >= 3 {
            #expect(b.timeIntervalSince(a) >= Double(times.count - 2) * 0.9, "\(times)")
        }
    }
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
