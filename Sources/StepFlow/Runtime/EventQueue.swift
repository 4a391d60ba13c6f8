import Dispatch
import Synchronization

/// Events from worker threads to the loop that forwards them, with a wake-up for a loop that waits.
package final class EventQueue<Element: Sendable>: Sendable {
    private let items = Mutex<[Element]>([])
    private let wakeUp = DispatchSemaphore(value: 0)
    private let sleeping = Atomic<Bool>(false)

    package init() {}

    package func push(_ element: Element) {
        items.withLock { $0.append(element) }
        // One signal per sleep: the first push after the waiter went to sleep wakes it.
        if sleeping.exchange(false, ordering: .sequentiallyConsistent) { wakeUp.signal() }
    }

    /// Wakes a `drain(waitingUpTo:)` that is waiting, without adding anything (something else arrived).
    package func wake() {
        if sleeping.exchange(false, ordering: .sequentiallyConsistent) { wakeUp.signal() }
    }

    /// Everything queued, without waiting.
    package func drain() -> [Element] {
        items.withLock { items in
            if items.isEmpty { return [] }
            var out: [Element] = []
            swap(&out, &items)
            // The next batch gets room for as many as this one in one allocation: grown from empty
            // append by append, a batch of 8 reports was reallocated and moved ~4 times, and a push
            // cost ~460 instructions against ~250 now (callgrind, rank 0's own steps, when each sent
            // two reports).
            items.reserveCapacity(out.count)
            return out
        }
    }

    /// Everything queued, waiting up to `timeout` for the first element.
    package func drain(waitingUpTo timeout: Duration) -> [Element] {
        let now = drain()
        if !now.isEmpty || timeout <= .zero { return now }
        sleeping.store(true, ordering: .sequentiallyConsistent)
        // A push between the drain above and the store would not signal: look once more.
        let raced = drain()
        if !raced.isEmpty {
            sleeping.store(false, ordering: .sequentiallyConsistent)
            return raced
        }
        let nanos = Int(timeout.components.seconds) * 1_000_000_000 + Int(timeout.components.attoseconds / 1_000_000_000)
        if wakeUp.wait(timeout: .now() + .nanoseconds(nanos)) == .timedOut,
           !sleeping.exchange(false, ordering: .sequentiallyConsistent) {
            // A push cleared the flag and is about to signal: take that signal now, not on the next wait.
            wakeUp.wait()
        }
        return drain()
    }
}
