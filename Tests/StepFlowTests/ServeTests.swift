import Foundation
import Testing
@testable import StepFlow
@testable import StepFlowServe

/// `stepflow serve`'s routes (issue 22), without sockets: read-only, only their own names, a step's
/// log by id and only from the run's logs folder, the token, the Host check, and what changed since a
/// generation.
@Suite struct ServeRouteTests {
    /// A run with a finished, a failed (log in logs/) and a step whose recorded log points outside the
    /// run; and a secret file beside the run directory.
    static func makeRun(_ label: String) throws -> (dir: URL, parent: URL, store: RunStore) {
        let parent = Executables.temporaryFolder(label)
        let dir = parent.appendingPathComponent("run-a")
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("logs"), withIntermediateDirectories: true)
        try "TOP SECRET\n".write(to: parent.appendingPathComponent("secret.txt"), atomically: true, encoding: .utf8)
        try "starting\nboom: exit 3\n".write(to: dir.appendingPathComponent("logs/step-2.log"), atomically: true, encoding: .utf8)
        let store = try RunStore.create(runDirectory: dir, protocolName: "P<script>", params: [], threads: 1, mpi: 2)
        var failed = RunViewTests.record(2, .failed, rank: 1, slot: 0, start: 1, end: 2, error: "exit 3")
        failed.logPath = dir.appendingPathComponent("logs/step-2.log").path
        var planted = RunViewTests.record(3, .failed, start: 1, end: 2, error: "x")
        planted.logPath = parent.appendingPathComponent("secret.txt").path
        store.record([RunViewTests.record(1, .finished, start: 1, end: 2), failed, planted, RunViewTests.record(4, .new)])
        store.sync()
        return (dir, parent, store)
    }

    static func get(_ routes: RunRoutes, _ target: String, method: String = "GET", host: String = "127.0.0.1:8080",
                    headers: [(String, String)] = []) -> (status: Int, body: String, headers: [(String, String)]) {
        let r = routes.respond(ServeRequest(method: method, target: target, headers: [("Host", host)] + headers))
        return (r.status, String(decoding: r.body, as: UTF8.self), r.headers)
    }

    @Test("Paths outside the routes, encoded or not, and every method but GET/HEAD are refused and read nothing")
    func hostileRequests() throws {
        let (dir, parent, store) = try Self.makeRun("serve-hostile")
        defer { _ = store.finish(status: "finished"); try? FileManager.default.removeItem(at: parent) }
        let routes = RunRoutes(catalog: try RunCatalog(paths: [dir.path]), token: nil, allowedHosts: ["127.0.0.1", "localhost", "::1"])
        let hostile = ["/../run.db", "/run.db", "/runs/1/../../run.db", "/logs/../../etc/passwd", "/%2e%2e/run.db", "/%2E%2E%2Frun.db",
                       "/runs/1/log/..%2f..%2fetc%2fpasswd", "/runs/1/log/../../../etc/passwd", "/runs/1/log/%2e%2e", "//etc/passwd",
                       "/runs/1/log/-1", "/runs/1/log/0x2", "/runs/1/log/2.0", "/runs/01/state", "/runs/2/state", "/runs/1/log/99",
                       "/runs/1/log/step-2.log", "/secret.txt", "/..%5c..%5csecret.txt", "/runs/1/..\\..\\secret.txt", "/etc/passwd",
                       "/runs/1/log/99999999999999999999"]
        for target in hostile {
            let r = Self.get(routes, "\(target)")
            #expect(r.status == 404, "\(target) → \(r.status)")
            #expect(!r.body.contains("SQLite format") && !r.body.contains("root:") && !r.body.contains("TOP SECRET"), "\(target)")
        }
        for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT", "PROPFIND"] {
            let r = Self.get(routes, "/runs/1/state", method: method)
            #expect(r.status == 405 && r.headers.contains { $0 == ("Allow", "GET, HEAD") }, "\(method) → \(r.status)")
        }
        // A recorded log outside the run's logs folder is not read, even for a step the run has.
        let planted = Self.get(routes, "/runs/1/log/3")
        #expect(planted.status == 200 && !planted.body.contains("TOP SECRET") && planted.body.contains("not in this run's logs folder"), "\(planted.body)")
        // The failed step's log is.
        let log = Self.get(routes, "/runs/1/log/2")
        #expect(log.status == 200 && log.body.contains("boom: exit 3"), "\(log.body)")
        // Names from the run reach the page escaped.
        let page = Self.get(routes, "/")
        #expect(page.status == 200 && !page.body.contains("P<script>"))
        #expect(Self.get(routes, "/", method: "HEAD").status == 200)
    }

    @Test("A token, when set, is needed on every route (query, bearer or the page's cookie); a wrong one is refused")
    func token() throws {
        let (dir, parent, store) = try Self.makeRun("serve-token")
        defer { _ = store.finish(status: "finished"); try? FileManager.default.removeItem(at: parent) }
        let routes = RunRoutes(catalog: try RunCatalog(paths: [dir.path]), token: "s3cret-token-123", allowedHosts: [])
        for target in ["/", "/metrics", "/api/runs", "/runs/1/state", "/runs/1/log/2", "/runs/1/report"] {
            #expect(Self.get(routes, target, host: "10.0.0.5:8080").status == 401, "\(target)")
            #expect(Self.get(routes, target + "?token=wrong-token-123").status == 401, "\(target)")
            #expect(Self.get(routes, target, headers: [("Authorization", "Bearer s3cret-token-12")]).status == 401, "\(target)")
        }
        #expect(Self.get(routes, "/runs/1/state?token=s3cret-token-123").status == 200)
        #expect(Self.get(routes, "/metrics", headers: [("Authorization", "Bearer s3cret-token-123")]).status == 200)
        #expect(Self.get(routes, "/runs/1/log/2", headers: [("Cookie", "a=b; stepflow_token=s3cret-token-123")]).status == 200)
        let page = Self.get(routes, "/?token=s3cret-token-123")
        #expect(page.status == 200 && page.headers.contains { $0.0 == "Set-Cookie" && $0.1.contains("HttpOnly") })
        // Still read-only, and still only its names, with the token.
        #expect(Self.get(routes, "/../run.db?token=s3cret-token-123").status == 404)
        #expect(Self.get(routes, "/?token=s3cret-token-123", method: "POST").status == 405)
    }

    @Test("On loopback a request naming another host is refused (DNS rebinding), names of this host are served")
    func hostCheck() throws {
        let (dir, parent, store) = try Self.makeRun("serve-host")
        defer { _ = store.finish(status: "finished"); try? FileManager.default.removeItem(at: parent) }
        let routes = RunRoutes(catalog: try RunCatalog(paths: [dir.path]), token: nil, allowedHosts: ["127.0.0.1", "localhost", "::1"])
        #expect(Self.get(routes, "/", host: "evil.example:8080").status == 421)
        #expect(Self.get(routes, "/", host: "").status == 421)
        for host in ["127.0.0.1:8080", "localhost:8080", "[::1]:8080", "LOCALHOST"] { #expect(Self.get(routes, "/", host: host).status == 200, "\(host)") }
    }

    @Test("state?since=G holds only the steps changed after G; a parent folder lists its runs; /metrics parses with Prometheus's own parser")
    func stateListAndMetrics() throws {
        let (dir, parent, store) = try Self.makeRun("serve-state")
        defer { _ = store.finish(status: "finished"); try? FileManager.default.removeItem(at: parent) }
        let routes = RunRoutes(catalog: try RunCatalog(paths: [parent.path]), token: nil, allowedHosts: [])
        let first = Self.get(routes, "/runs/1/state")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(first.body.utf8)) as? [String: Any])
        #expect(json["full"] as? Bool == true && (json["steps"] as? [Any])?.count == 4)
        let generation = try #require(json["generation"] as? Int)
        store.record([RunViewTests.record(4, .running, rank: 0, slot: 0, start: Date().timeIntervalSince1970)])
        store.sync()
        Thread.sleep(forTimeInterval: 0.3)  // the run's view is read again after 0.25 s
        let next = try #require(try JSONSerialization.jsonObject(with: Data(Self.get(routes, "/runs/1/state?since=\(generation)").body.utf8)) as? [String: Any])
        let changed = try #require(next["steps"] as? [[String: Any]])
        #expect(next["full"] as? Bool == false && changed.map { $0["id"] as? Int } == [4] && changed.first?["status"] as? String == "running")
        // A second run appears in the folder: the list finds it.
        let other = parent.appendingPathComponent("run-b")
        try FileManager.default.createDirectory(at: other, withIntermediateDirectories: true)
        let store2 = try RunStore.create(runDirectory: other, protocolName: "Q", params: [], threads: 1, mpi: 1)
        defer { _ = store2.finish(status: "finished") }
        let list = try #require(try JSONSerialization.jsonObject(with: Data(Self.get(routes, "/api/runs").body.utf8)) as? [[String: Any]])
        #expect(list.compactMap { $0["name"] as? String } == ["run-a", "run-b"])
        let metrics = Self.get(routes, "/metrics")
        #expect(metrics.status == 200)
        let parsed = try Executables.runProcess("/usr/bin/env", [Executables.python3, ScriptFolder.path("parse_metrics.py")], stdin: metrics.body)
        #expect(parsed.code == 0, "\(parsed.stderr)\n\(metrics.body)")
        let families = try #require(try JSONSerialization.jsonObject(with: Data(parsed.stdout.utf8)) as? [String: [String: Any]])
        for name in ["stepflow_steps", "stepflow_running_steps", "stepflow_failed_steps", "stepflow_run_state", "stepflow_db_commit_seconds"] {
            #expect(families[name] != nil, "\(name) missing from \(families.keys.sorted())")
        }
        let samples = (families["stepflow_steps"]?["samples"] as? [[String: Any]]) ?? []
        let failedA = samples.first { ($0["labels"] as? [String: String]) == ["run": "run-a", "status": "failed"] }
        #expect(failedA?["value"] as? Double == 2)
    }
}

/// Where the test scripts live.
enum ScriptFolder {
    static func path(_ name: String) -> String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Support/scripts/\(name)").path
    }
}
