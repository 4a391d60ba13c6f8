import Foundation
import StepFlow

/// A request as the routes see it: method, target (path and query, as sent) and headers.
package struct ServeRequest: Sendable {
    package var method: String
    package var target: String
    package var headers: [(String, String)]

    package init(method: String, target: String, headers: [(String, String)] = []) {
        self.method = method
        self.target = target
        self.headers = headers
    }

    func header(_ name: String) -> String? {
        headers.first { $0.0.caseInsensitiveCompare(name) == .orderedSame }?.1
    }
}

/// What the routes answer.
package struct ServeResponse: Sendable {
    package var status: Int
    package var contentType: String
    package var body: [UInt8]
    package var headers: [(String, String)] = []

    init(_ status: Int, _ contentType: String, _ body: String, headers: [(String, String)] = []) {
        self.status = status
        self.contentType = contentType
        self.body = Array(body.utf8)
        self.headers = headers
    }

    static func text(_ status: Int, _ message: String, headers: [(String, String)] = []) -> ServeResponse {
        ServeResponse(status, "text/plain; charset=utf-8", message + "\n", headers: headers)
    }
}

/// The server's routes, with no sockets: the same function answers the live server and the tests.
///
/// Read-only, and only its own names: `/`, `/api/runs`, `/metrics`, and under `/runs/<n>/` the page,
/// `state`, `timeline`, `report` and `log/<step id>` — a step's log found through the run's record of
/// it (and only inside the run's logs folder), never a path from the request. No segment is decoded,
/// so `%2e%2e` is a name like any other, and unknown. Only GET and HEAD.
package struct RunRoutes: Sendable {
    package let catalog: RunCatalog
    /// Asked for on every request when set (`?token=`, `Authorization: Bearer`, or the cookie the
    /// page sets).
    package let token: String?
    /// The host names a request may name in its Host header: a page on loopback answers only to
    /// its own names, so a web page elsewhere cannot read it by pointing a name of its own at
    /// 127.0.0.1 (DNS rebinding). Empty: any (a token guards the server instead).
    package let allowedHosts: Set<String>

    package init(catalog: RunCatalog, token: String?, allowedHosts: Set<String>) {
        self.catalog = catalog
        self.token = token
        self.allowedHosts = allowedHosts
    }

    package func respond(_ request: ServeRequest) -> ServeResponse {
        guard request.method == "GET" || request.method == "HEAD" else {
            return .text(405, "method not allowed: this server only reads (GET, HEAD)", headers: [("Allow", "GET, HEAD")])
        }
        guard request.target.utf8.count <= 4096 else { return .text(414, "request target too long") }
        let (path, query) = Self.split(request.target)
        if !allowedHosts.isEmpty {
            let host = Self.hostName(request.header("Host") ?? "")
            guard allowedHosts.contains(host) else {
                return .text(421, "this server answers only to \(allowedHosts.sorted().joined(separator: ", ")); open it by one of those names")
            }
        }
        if let token {
            let given = query["token"] ?? Self.bearer(request.header("Authorization")) ?? Self.cookie(request.header("Cookie"), "stepflow_token")
            guard let given, Self.same(given, token) else {
                return .text(401, "a token is required: open the address serve printed (it ends with ?token=…)",
                             headers: [("WWW-Authenticate", "Bearer realm=\"stepflow\"")])
            }
        }
        let segments = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst().map(String.init)
        // Names only: nothing here is ever a file name, and no segment is decoded.
        if segments.contains(where: { $0 == "." || $0 == ".." || $0.contains("%") || $0.contains("\\") }) {
            return .text(404, "no such page")
        }
        var response = route(segments, query: query)
        if token != nil, response.status == 200, response.contentType.hasPrefix("text/html") {
            // The page's own requests carry the token in a cookie from here on.
            response.headers.append(("Set-Cookie", "stepflow_token=\(token!); Path=/; HttpOnly; SameSite=Strict"))
        }
        response.headers.append(("Cache-Control", "no-store"))
        response.headers.append(("X-Content-Type-Options", "nosniff"))
        response.headers.append(("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'; img-src 'self' data:"))
        return response
    }

    private func route(_ segments: [String], query: [String: String]) -> ServeResponse {
        if segments == [""] {
            let runs = catalog.list()
            if runs.count == 1 { return runPage(runs[0]) }
            return ServeResponse(200, "text/html; charset=utf-8", LivePage.listPage(runs.map { ($0, $0.view().view) }))
        }
        if segments == ["api", "runs"] {
            let rows = catalog.list().map { run -> String in
                let (view, problem) = run.view()
                let summary = view.map { LiveState.summaryJSON($0) } ?? "null"
                return "{\"name\":\(JSONBytes.quoted(run.name)),\"number\":\(run.number),\"problem\":\(problem.map(JSONBytes.quoted) ?? "null"),\"summary\":\(summary)}"
            }
            return ServeResponse(200, "application/json", "[" + rows.joined(separator: ",") + "]")
        }
        if segments == ["metrics"] {
            let views = catalog.list().compactMap { run in run.view().view.map { (name: run.name, view: $0) } }
            return ServeResponse(200, "text/plain; version=0.0.4; charset=utf-8", MetricsText.text(views))
        }
        guard segments.count >= 2, segments[0] == "runs" else { return .text(404, "no such page") }
        let n = segments[1]
        guard let run = number(n).flatMap(catalog.run) else { return .text(404, "no run \(n)") }
        let rest = Array(segments.dropFirst(2))
        if rest.isEmpty || rest == [""] { return runPage(run) }
        if rest == ["state"] {
            let (view, problem) = run.view()
            guard let view else { return ServeResponse(200, "application/json", "{\"problem\":\(JSONBytes.quoted(problem ?? "no run yet"))}") }
            let since = query["since"].flatMap { Int($0) } ?? Int.min
            return ServeResponse(200, "application/json", LiveState.json(view, since: since))
        }
        if rest == ["timeline"] {
            guard let view = run.view().view else { return ServeResponse(200, "text/html; charset=utf-8", "<p>No run database yet.</p>") }
            return ServeResponse(200, "text/html; charset=utf-8", run.timelineHTML(view, label: { $0.displayName }))
        }
        if rest == ["report"] {
            guard let view = run.view().view else { return .text(404, "no run database in \(run.directory.path) yet") }
            let stored = view.stored
            let logs = LogTail.failedSteps(of: stored, runDirectory: run.directory)
            return ServeResponse(200, "text/html; charset=utf-8",
                                 HTMLReport.html(stored, label: { $0.displayName }, logs: logs, options: HTMLReport.Options(subtitle: run.directory.path)))
        }
        if rest.count == 2, rest[0] == "log" {
            guard let id = number(rest[1]), let view = run.view().view, let tail = view.logTail(id, lines: 200) else {
                return .text(404, "no step \(rest[1]) in run \(n)")
            }
            let lines = tail.lines.map(JSONBytes.quoted).joined(separator: ",")
            return ServeResponse(200, "application/json", """
                {"id":\(id),"lines":[\(lines)],"omitted":\(tail.earlierLinesOmitted),"path":\(tail.path.map(JSONBytes.quoted) ?? "null"),"problem":\(tail.problem.map(JSONBytes.quoted) ?? "null")}
                """)
        }
        return .text(404, "no such page")
    }

    private func runPage(_ run: RunCatalog.Run) -> ServeResponse {
        ServeResponse(200, "text/html; charset=utf-8", LivePage.runPage(number: run.number, name: run.name, directory: run.directory.path,
                                                                         runCount: catalog.list().count))
    }

    /// A positive decimal number with no sign, spaces or leading zeros tricks.
    private func number(_ s: String) -> Int? {
        guard !s.isEmpty, s.count <= 10, s.first != "0", s.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let n = Int(s), n >= 1 else { return nil }
        return n
    }

    static func split(_ target: String) -> (path: String, query: [String: String]) {
        let parts = target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        var query: [String: String] = [:]
        if parts.count > 1 {
            for pair in parts[1].split(separator: "&") {
                let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                let key = String(kv[0])
                let value = kv.count > 1 ? String(kv[1]) : ""
                query[key] = value.removingPercentEncoding ?? value
            }
        }
        return (String(parts.first ?? ""), query)
    }

    /// The host name of a Host header: `127.0.0.1:8080` → `127.0.0.1`, `[::1]:8080` → `::1`.
    static func hostName(_ header: String) -> String {
        let h = header.trimmingCharacters(in: .whitespaces).lowercased()
        if h.hasPrefix("["), let end = h.firstIndex(of: "]") { return String(h[h.index(after: h.startIndex)..<end]) }
        return String(h.split(separator: ":", maxSplits: 1).first ?? "")
    }

    static func bearer(_ header: String?) -> String? {
        guard let header, header.lowercased().hasPrefix("bearer ") else { return nil }
        return String(header.dropFirst(7)).trimmingCharacters(in: .whitespaces)
    }

    static func cookie(_ header: String?, _ name: String) -> String? {
        guard let header else { return nil }
        for part in header.split(separator: ";") {
            let kv = part.trimmingCharacters(in: .whitespaces).split(separator: "=", maxSplits: 1)
            if kv.count == 2, kv[0] == name { return String(kv[1]) }
        }
        return nil
    }

    /// Compares in time that does not depend on where they differ.
    static func same(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        var diff = UInt8(x.count == y.count ? 0 : 1)
        for i in 0..<max(x.count, y.count) { diff |= (i < x.count ? x[i] : 0) ^ (i < y.count ? y[i] : 0) }
        return diff == 0
    }
}
