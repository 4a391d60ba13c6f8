import Dispatch
import Foundation
import Synchronization

// How a running step's graph edits reach rank 0 and how it waits for the answer, on any rank: the
// request goes out with a token, the step blocks on a `ReplySlot`, the answer fills it by token.

/// A running step's way to rank 0: it sends a graph edit and blocks until rank 0 answers.
package protocol StepRequestChannel: Sendable {
    func send(_ request: StepRequest) -> EditResult
    /// Sends `request` from a step that runs on its rank's message loop (`WorkerPool.runInline`): no
    /// other thread would take the answer in, so while it waits it calls `serve` (one pass of the
    /// loop), until the answer comes or `serve` says the run stopped (false).
    func send(_ request: StepRequest, serving serve: () -> Bool) -> EditResult
}

/// The graph editor a running step uses: every edit goes to rank 0 through the channel.
///
/// A class, so `any GraphEditor` holds it by reference: as a struct around an existential it was too
/// large to store inline, and every step's context boxed (and unboxed) a copy of it.
final class ChannelEditor: GraphEditor {
    let channel: any StepRequestChannel
    /// For a step run on its rank's message loop: one pass of that loop, served while the step waits.
    let serve: (@Sendable () -> Bool)?
    /// Called before each request goes: a step run on its loop reports its start then (`HeldStart`).
    let beforeRequest: (@Sendable () -> Void)?

    init(channel: any StepRequestChannel, serving serve: (@Sendable () -> Bool)? = nil,
         beforeRequest: (@Sendable () -> Void)? = nil) {
        self.channel = channel
        self.serve = serve
        self.beforeRequest = beforeRequest
    }

    func apply(_ edit: GraphEdit, by inserter: Inserter) throws -> StepID? {
        guard let from = inserter.stepID else { throw GraphEditError("only a running step edits through a channel") }
        beforeRequest?()
        let request = StepRequest(from: from, edit: edit)
        if let serve { return try channel.send(request, serving: serve).get() }
        return try channel.send(request).get()
    }
}

/// A one-shot slot a step thread blocks on until rank 0 answers its request.
package final class ReplySlot: Sendable {
    private let value = Mutex<EditResult?>(nil)
    private let ready = DispatchSemaphore(value: 0)

    package init() {}

    package func fill(_ result: EditResult) {
        value.withLock { $0 = result }
        ready.signal()
    }

    package func wait() -> EditResult {
        ready.wait()
        return value.withLock { $0! }
    }

    /// The answer, if it came.
    package func answer() -> EditResult? { value.withLock { $0 } }
}

/// The steps of one rank waiting for rank 0's answer to a graph edit, by token.
final class ReplyTable: Sendable {
    private let slots = Mutex<[UInt32: ReplySlot]>([:])
    private let nextToken = Atomic<UInt32>(1)

    /// A new token and the slot its answer will fill.
    func open() -> (UInt32, ReplySlot) {
        let slot = ReplySlot()
        let token = nextToken.wrappingAdd(1, ordering: .relaxed).oldValue
        slots.withLock { $0[token] = slot }
        return (token, slot)
    }

    func fill(_ token: UInt32, with result: EditResult) {
        slots.withLock { $0.removeValue(forKey: token) }?.fill(result)
    }
}

/// A running step's way to rank 0 on any rank, rank 0 included: the request is queued behind every
/// result and request before it (so rank 0 sees them in order, S3) and the step blocks until the
/// answer with its token comes back.
struct TokenRequestChannel: StepRequestChannel {
    let replies: ReplyTable
    let push: @Sendable (FromRank) -> Void

    func send(_ request: StepRequest) -> EditResult {
        let (token, slot) = replies.open()
        push(.request(token: token, request))
        return slot.wait()
    }

    func send(_ request: StepRequest, serving serve: () -> Bool) -> EditResult {
        let (token, slot) = replies.open()
        push(.request(token: token, request))
        while true {
            if let answer = slot.answer() { return answer }
            guard serve() else {
                return .failure(GraphEditError("the run stopped before rank 0 answered step \(request.from)'s graph edit"))
            }
            if slot.answer() == nil { sched_yield() }
        }
    }
}

/// A weak reference that crosses threads: how a pool reaches the loop that owns it (a step run inline
/// serves that loop while it waits), without the pool keeping its owner alive.
// @unchecked: `target` is set once, by the owner's init, before any step runs; after that it is only
// read, on the owner's loop thread.
final class WeakReference<Target: AnyObject>: @unchecked Sendable {
    weak var target: Target?
}
