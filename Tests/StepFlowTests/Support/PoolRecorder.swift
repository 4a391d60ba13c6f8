import Foundation
import Synchronization
@testable import StepFlow

/// Waits until `parties` threads have arrived, or until opened.
final class Gate: Sendable {
    private let parties: Int
    private let count = Mutex<(arrived: Int, open: Bool)>((0, false))
    private let condition = NSCondition()

    init(parties: Int) { self.parties = parties }

    var arrived: Int { count.withLock { $0.arrived } }

    /// Arrives, then waits until every party has arrived; throws past `timeout` seconds.
    func arriveAndWait(timeout: Double) throws {
        condition.lock()
        defer { condition.unlock() }
        let all = count.withLock { c in
            c.arrived += 1
            if c.arrived >= parties { c.open = true }
            return c.open
        }
        if all { condition.broadcast(); return }
        try waitLocked(timeout: timeout)
    }

    /// Waits until opened; throws past `timeout` seconds.
    func waitUntilOpen(timeout: Double) throws {
        condition.lock()
        defer { condition.unlock() }
        try waitLocked(timeout: timeout)
    }

    func open() {
        condition.lock()
        count.withLock { $0.open = true }
        condition.broadcast()
        condition.unlock()
    }

    private func waitLocked(timeout: Double) throws {
        let end = Date().addingTimeInterval(timeout)
        while !count.withLock({ $0.open }) {
            if !condition.wait(until: end) { throw GateTimeout() }
        }
    }
}

struct GateTimeout: Error, CustomStringConvertible {
    var description: String { "the other steps never arrived" }
}

/// What a pool reported, with waits for it.
final class Recorder: Sendable {
    private let events = Mutex<(started: [StepStart], ended: [StepOutcome])>(([], []))
    private let sequence = Mutex<[String]>([])
    private let condition = NSCondition()

    var startedIDs: [StepID] { events.withLock { $0.started.map(\.id) } }
    var outcomes: [StepOutcome] { events.withLock { $0.ended } }
    /// Every report in the order it came: "s3" for step 3's start, "e3" for its end.
    var order: [String] { sequence.withLock { $0 } }

    func record(_ event: FromRank) {
        condition.lock()
        events.withLock {
            switch event {
            case .started(let s):
                $0.started.append(s)
                sequence.withLock { $0.append("s\(s.id)") }
            case .ended(let o):
                $0.ended.append(o)
                sequence.withLock { $0.append("e\(o.id)") }
            default: break
            }
        }
        condition.broadcast()
        condition.unlock()
    }

    func waitForStarted(_ n: Int, timeout: Double) -> Bool { wait(timeout) { $0.started.count >= n } }
    func waitForEnded(_ n: Int, timeout: Double) -> Bool { wait(timeout) { $0.ended.count >= n } }

    private func wait(_ timeout: Double, until done: ((started: [StepStart], ended: [StepOutcome])) -> Bool) -> Bool {
        let end = Date().addingTimeInterval(timeout)
        condition.lock()
        defer { condition.unlock() }
        while !events.withLock({ done($0) }) {
            if !condition.wait(until: end) { return events.withLock { done($0) } }
        }
        return true
    }
}
