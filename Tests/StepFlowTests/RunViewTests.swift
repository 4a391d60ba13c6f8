import Foundation
import Testing
@testable import StepFlow

/// The one read model (issue 22): a watcher reads only what the run committed since its last look,
/// and what it shows equals a full read of the database, through continues and restarts; `top`'s
/// screen is drawn from it at any size.
@Suite struct RunViewTests {
    static func record(_ id: StepID, _ status: StepStatus, function: String = "f", rank: Int? = nil, slot: Int? = nil,
                       start: Double? = nil, end: Double? = nil, error: String? = nil) -> StepRecord {
        var r = StepRecord(id: id, spec: StepSpec(function: function), prerequisites: [], insertedBy: .protocolSteps, status: status)
        r.rank = rank
        r.slot = slot
        r.start = start
        r.end = end
        r.error = error
        return r
    }

    /// The watcher's view and a full read agree on every step.
    static func expectSame(_ view: RunView, _ dir: URL, sourceLocation: Testing.SourceLocation = #_sourceLocation) throws {
        let full = try RunStore.read(runDirectory: dir)
        #expect(view.steps.map(\.id) == full.steps.map(\.id), sourceLocation: sourceLocation)
        #expect(view.steps.map(\.status) == full.steps.map(\.status), sourceLocation: sourceLocation)
        for s in StepStatus.allCases { #expect(view.count(s) == full.count(s), "\(s)", sourceLocation: sourceLocation) }
    }

    @Test("A watcher reads only the changes after its first read, and its view equals a full read at every step")
    func incremental() throws {
        let dir = Executables.temporaryFolder("runview")
        defer { try? FileManager.default.removeItem(at: dir) }
        let store = try RunStore.create(runDirectory: dir, protocolName: "P", params: [], threads: 2, mpi: 2)
        store.record((1...50).map { Self.record($0, .new) })
        store.sync()
        let watcher = RunWatcher(runDirectory: dir)
        let first = try watcher.refresh()
        #expect(first.total == 50 && first.count(.new) == 50 && first.wholeReadIn == first.generation)
        try Self.expectSame(first, dir)
        let t = Date().timeIntervalSince1970
        store.record((1...10).map { Self.record($0, .finished, rank: 0, slot: 0, start: t - 2, end: t - 1) }
                     + [Self.record(11, .running, rank: 1, slot: 1, start: t - 5), Self.record(12, .failed, start: t - 3, end: t, error: "boom")])
        store.sync()
        let second = try watcher.refresh()
        #expect(second.generation == first.generation + 1 && second.wholeReadIn == first.wholeReadIn, "read again whole")
        #expect(Set(second.changes(since: first.generation).map(\.id)) == Set(1...12))
        #expect(second.count(.finished) == 10 && second.count(.running) == 1 && second.count(.failed) == 1 && second.count(.new) == 38)
        #expect(second.running.map(\.id) == [11] && second.failures().map(\.id) == [12])
        try Self.expectSame(second, dir)
        // Nothing new: same generation, nothing changed since.
        let third = try watcher.refresh()
        #expect(third.generation == second.generation && third.changes(since: second.generation).isEmpty)
        // A step inserted later grows the run.
        store.record([Self.record(60, .new)])
        store.sync()
        let fourth = try watcher.refresh()
        #expect(fourth.total == 51 && fourth.record(60) != nil && fourth.record(55) == nil)
        try Self.expectSame(fourth, dir)
        #expect(store.finish(status: "finished") == nil)
        let done = try watcher.refresh()
        #expect(done.status == "finished" && !done.isLive)
        #expect(done.header.commits.map { $0.count >= 3 && $0.totalSeconds > 0 && $0.maxSeconds >= $0.lastSeconds } == true,
                "commit figures: \(String(describing: done.header.commits))")
    }

    @Test("A continued run (its log starts over) and a restarted one (another file) are read whole again; dropped steps leave the view")
    func continueAndRestart() throws {
        let dir = Executables.temporaryFolder("runview-continue")
        defer { try? FileManager.default.removeItem(at: dir) }
        let store = try RunStore.create(runDirectory: dir, protocolName: "P", params: [], threads: 1, mpi: 1)
        store.record((1...20).map { Self.record($0, .finished, start: 1, end: 2) })
        #expect(store.finish(status: "failed") == nil)
        let watcher = RunWatcher(runDirectory: dir)
        let before = try watcher.refresh()
        #expect(before.total == 20)
        // The continue keeps 1–5 and drops the rest.
        let again = try RunStore.reopen(runDirectory: dir, protocolName: "P", params: [], threads: 1, mpi: 1, previousLaunches: 1,
                                        steps: (1...5).map { Self.record($0, .finished, start: 1, end: 2) })
        let continued = try watcher.refresh()
        #expect(continued.wholeReadIn == continued.generation && continued.total == 5 && continued.header.launches == 2)
        #expect(LiveState.json(continued, since: before.generation).contains("\"full\":true"))
        try Self.expectSame(continued, dir)
        #expect(again.finish(status: "finished") == nil)
        // --restart sets the database aside; a new run's takes its place.
        try FileManager.default.moveItem(at: dir.appendingPathComponent("run.db"), to: dir.appendingPathComponent("old.db"))
        for suffix in ["-wal", "-shm"] { try? FileManager.default.removeItem(at: dir.appendingPathComponent("run.db" + suffix)) }
        #expect(throws: RunStoreError.self) { try watcher.refresh() }
        let fresh = try RunStore.create(runDirectory: dir, protocolName: "P", params: [], threads: 1, mpi: 1)
        fresh.record([Self.record(1, .new), Self.record(2, .new)])
        fresh.sync()
        let restarted = try watcher.refresh()
        #expect(restarted.total == 2 && restarted.count(.new) == 2 && restarted.header.launches == 1)
        _ = fresh.finish(status: "finished")
    }

    @Test("The rate is steps ended per second over the recent past, and the time left follows from it; an ended run's rate is its average")
    func rate() throws {
        let dir = Executables.temporaryFolder("runview-rate")
        defer { try? FileManager.default.removeItem(at: dir) }
        let store = try RunStore.create(runDirectory: dir, protocolName: "P", params: [], threads: 1, mpi: 1)
        let started = try #require(RunStore.read(runDirectory: dir).started)
        // 100 steps ended over the run's first 10 s, 100 to go; looked at 10 s in.
        store.record((1...100).map { Self.record($0, .finished, start: started, end: started + Double($0) / 10) } + (101...200).map { Self.record($0, .new) })
        store.sync()
        // A live run needs its lock held; this process's lock stands in for a launch's.
        let lock = try RunDirectoryLock.acquire(runDirectory: dir)
        defer { lock.release() }
        let view = try RunWatcher(runDirectory: dir).refresh(now: started + 10)
        #expect(view.isLive && view.liveness.owner != nil)
        let rate = try #require(view.stepsPerSecond)
        #expect(abs(rate - 10) < 1e-6, "\(rate)")
        #expect(abs((view.secondsLeft ?? -1) - 10) < 1e-6)
        // Over: the average of the whole run, and no time left.
        #expect(store.finish(status: "finished") == nil)
        lock.release()
        let ended = try RunWatcher(runDirectory: dir).refresh()
        let recorded = try RunStore.read(runDirectory: dir)
        #expect(!ended.isLive && ended.secondsLeft == nil)
        #expect(abs((ended.stepsPerSecond ?? 0) - 100 / (recorded.ended! - recorded.started!)) < 1e-6)
    }

    @Test("top's screen: exactly the terminal's lines, none wider, at 80×24 and 200×60, with hostile names; keys select, filter, page")
    func screen() throws {
        let dir = Executables.temporaryFolder("runview-top")
        defer { try? FileManager.default.removeItem(at: dir) }
        let store = try RunStore.create(runDirectory: dir, protocolName: "P", params: [], threads: 2, mpi: 3)
        let now = Date().timeIntervalSince1970
        var records: [StepRecord] = []
        for id in 1...40 {
            let function = id % 3 == 0 ? "register\u{1B}[2J宽字符的名字很长很长很长很长很长很长很长很长很长很长很长很长" : "import"
            switch id {
            case 1...6: records.append(Self.record(id, .running, function: function, rank: (id - 1) / 2, slot: (id - 1) % 2, start: now - Double(id)))
            case 7...9: records.append(Self.record(id, .failed, function: function, rank: 0, slot: 0, start: now - 20, end: now - 10 - Double(id),
                                                   error: "exit 3\nsecond line \u{1B}]0;title\u{07}"))
            default: records.append(Self.record(id, id % 2 == 0 ? .finished : .new, function: function, start: now - 30, end: now - 20))
            }
        }
        store.record(records)
        store.sync()
        let view = try RunWatcher(runDirectory: dir).refresh(now: now)
        for (w, h) in [(80, 24), (200, 60), (20, 5)] {
            for mode in [TopScreen.Mode.lanes, .failures] {
                var screen = TopScreen()
                screen.mode = mode
                let lines = screen.lines(view, width: w, height: h, now: now)
                #expect(lines.count == h, "\(w)×\(h) \(mode)")
                for l in lines {
                    #expect(TopScreen.columns(l.text) <= w, "\(w)×\(h): '\(l.text)'")
                    #expect(!l.text.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7F }, "a control character reached the screen: \(l.text.debugDescription)")
                }
            }
        }
        var screen = TopScreen()
        let lines = screen.lines(view, width: 80, height: 24, now: now).map(\.text)
        #expect(lines.contains { $0.contains("16/40 finished 40.0%") }, "\(lines)")
        #expect(lines.contains { $0.hasPrefix("r2/s1") && $0.contains("6 ") })
        #expect(lines.contains { $0.contains("Latest failures") })
        // Keys: down twice then Enter opens the third lane's step; f shows failures; / filters.
        let keys = TopScreen.keys(Array("\u{1B}[B\u{1B}[B\r".utf8))
        #expect(keys == [.down, .down, .enter])
        _ = screen.press(.down, view: view, height: 24)
        _ = screen.press(.down, view: view, height: 24)
        #expect(screen.press(.enter, view: view, height: 24) == .openLog(3))
        _ = screen.press(.character("f"), view: view, height: 24)
        // The latest failure first.
        #expect(screen.mode == .failures && screen.press(.enter, view: view, height: 24) == .openLog(7))
        for key in TopScreen.keys(Array("/xy".utf8)) { _ = screen.press(key, view: view, height: 24) }
        #expect(screen.typing == "xy")
        _ = screen.press(.backspace, view: view, height: 24)
        _ = screen.press(.enter, view: view, height: 24)
        #expect(screen.filter == "x" && screen.typing == nil)
        _ = screen.press(.escape, view: view, height: 24)
        #expect(screen.filter == "")
        screen.filter = "register"
        #expect(screen.press(.enter, view: view, height: 24) == .openLog(9))
        screen.filter = "nothing matches this"
        #expect(screen.lines(view, width: 80, height: 24, now: now).contains { $0.text.contains("no failed step matches") })
        _ = screen.press(.character("q"), view: view, height: 24)
        #expect(screen.quit)
        // The non-terminal line.
        let line = TopScreen.statusLine(view, now: now)
        #expect(line.contains("P running: 16/40 finished (40.0%), 6 running, 3 failed"), "\(line)")
        _ = store.finish(status: "finished")
    }

    @Test("ChunkedArray: a copy keeps its values while the original changes across chunks; positions and chunks line up")
    func chunkedArrayIsAValue() {
        var a = ChunkedArray<Int?>()
        a.append(repeating: nil, count: 10_000)
        for i in stride(from: 0, to: a.count, by: 7) { a[i] = i }
        let snapshot = a
        a[0] = -1
        a[9_999] = -2
        a.append(repeating: 5, count: 3)
        #expect(snapshot.count == 10_000 && a.count == 10_003)
        #expect(snapshot[0] == 0 && snapshot[9_999] == nil && snapshot[7 * 1_000] == 7_000)
        #expect(a[0] == -1 && a[9_999] == -2 && a[10_002] == 5 && a[7_000] == 7_000)
        #expect(a.chunkCount == 3 && a.positions(ofChunk: 2) == 8_192..<10_003)
        #expect(ChunkedArray<Int>.chunk(of: 4_095) == 0 && ChunkedArray<Int>.chunk(of: 4_096) == 1)
        #expect(Array(ChunkedArray(0..<9_000)) == Array(0..<9_000))
    }

    @Test("A view held while the watcher reads on keeps its steps (chunks are copied, not shared); the live state sends at most its limit, lowest ids first, and says so")
    func heldViewsAndLimitedState() throws {
        let dir = Executables.temporaryFolder("runview-chunks")
        defer { try? FileManager.default.removeItem(at: dir) }
        let store = try RunStore.create(runDirectory: dir, protocolName: "P", params: [], threads: 1, mpi: 1)
        defer { _ = store.finish(status: "finished") }
        store.record((1...10_000).map { Self.record($0, .new) })
        store.sync()
        let watcher = RunWatcher(runDirectory: dir)
        let held = try watcher.refresh()
        let t = Date().timeIntervalSince1970
        store.record([1, 4_097, 9_999].map { Self.record($0, .failed, start: t - 1, end: t, error: "e\($0)") }
                     + (5_000...5_009).map { Self.record($0, .running, rank: 0, slot: 0, start: t) })
        store.sync()
        let next = try watcher.refresh()
        #expect(held.count(.new) == 10_000 && held.record(4_097)?.status == .new && held.failures().isEmpty && held.running.isEmpty)
        #expect(next.count(.failed) == 3 && next.record(4_097)?.status == .failed && next.failures().map(\.id) == [9_999, 4_097, 1])
        #expect(next.running.map(\.id) == Array(5_000...5_009))
        try Self.expectSame(next, dir)
        let limited = try #require(try JSONSerialization.jsonObject(with: Data(LiveState.json(next, since: held.generation, limit: 5).utf8)) as? [String: Any])
        #expect(limited["partial"] as? Bool == true)
        #expect((limited["steps"] as? [[String: Any]])?.compactMap { $0["id"] as? Int } == [1, 4_097, 5_000, 5_001, 5_002])
        let whole = try #require(try JSONSerialization.jsonObject(with: Data(LiveState.json(next, since: held.generation).utf8)) as? [String: Any])
        #expect(whole["partial"] as? Bool == false && (whole["steps"] as? [Any])?.count == 13)
    }
}
