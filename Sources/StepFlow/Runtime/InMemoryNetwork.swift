import Synchronization

/// M ranks in one process, joined by mailboxes: the in-memory twin of MPI. Frames are the bytes the
/// wire codec wrote, so everything above the messenger (framing, batching, sending ahead, take-back,
/// reply tokens, heartbeats) runs exactly as under `mpirun`.
package final class InMemoryNetwork: Sendable {
    package let size: Int
    private let mailboxes: [Mailbox]

    package init(size: Int) {
        precondition(size >= 1, "a network has at least rank 0")
        self.size = size
        mailboxes = (0..<size).map { _ in Mailbox() }
    }

    /// Rank `rank`'s end of the network. Each rank's messenger is used by that rank's loop only.
    package func messenger(rank: Int) -> InMemoryMessenger { InMemoryMessenger(rank: rank, network: self) }

    fileprivate func deliver(_ frame: [UInt8], from source: Int, to rank: Int) {
        precondition(rank >= 0 && rank < size, "rank \(rank) is not in a network of \(size)")
        mailboxes[rank].put(source, frame)
    }

    fileprivate func mailbox(_ rank: Int) -> Mailbox { mailboxes[rank] }

    fileprivate final class Mailbox: Sendable {
        private let frames = Mutex<[(source: Int, bytes: [UInt8])]>([])
        private let wake = Mutex<(@Sendable () -> Void)?>(nil)

        func put(_ source: Int, _ bytes: [UInt8]) {
            frames.withLock { $0.append((source, bytes)) }
            wake.withLock { $0 }?()
        }

        func takeAll() -> [(source: Int, bytes: [UInt8])] {
            frames.withLock { f in
                if f.isEmpty { return [] }
                var out: [(source: Int, bytes: [UInt8])] = []
                swap(&out, &f)
                return out
            }
        }

        func onArrival(_ body: @escaping @Sendable () -> Void) { wake.withLock { $0 = body } }
    }
}

/// One rank's end of an `InMemoryNetwork`. Sends are delivered at once; nothing is ever pending.
package final class InMemoryMessenger: Messenger, Sendable {
    package let rank: Int
    private let network: InMemoryNetwork

    fileprivate init(rank: Int, network: InMemoryNetwork) {
        self.rank = rank
        self.network = network
    }

    package func send(_ frame: [UInt8], to rank: Int) { network.deliver(frame, from: self.rank, to: rank) }
    package func receiveAll() -> [(source: Int, bytes: [UInt8])] { network.mailbox(rank).takeAll() }
    package func progressSends() {}
    package func flush(within limit: Duration?) -> Bool { true }
    package func notifyOnArrival(_ wake: @escaping @Sendable () -> Void) { network.mailbox(rank).onArrival(wake) }
}
