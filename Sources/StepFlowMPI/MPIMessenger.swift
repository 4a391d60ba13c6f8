import CMPI
import StepFlow

/// Sends and receives StepFlow frames over MPI without ever blocking: sends are `MPI_Isend` with the
/// buffer kept until `MPI_Test` says it went; receives are `MPI_Iprobe` then `MPI_Recv` of a message
/// already there. Use it only on the MPI thread.
package final class MPIMessenger: Messenger {
    static let tag: Int32 = 7
    private var inFlight: [(request: MPI_Request?, buffer: UnsafeMutableRawBufferPointer)] = []

    package init() {}

    deinit {
        for s in inFlight { s.buffer.deallocate() }
    }

    var hasPendingSends: Bool { !inFlight.isEmpty }

    package func send(_ bytes: [UInt8], to rank: Int) {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bytes.count, 1), alignment: 8)
        bytes.withUnsafeBytes { buffer.copyMemory(from: $0) }
        var request: MPI_Request? = stepflow_request_null()
        MPI_Isend(buffer.baseAddress, Int32(bytes.count), stepflow_byte(), Int32(rank), Self.tag, stepflow_comm_world(), &request)
        inFlight.append((request, buffer))
        progressSends()
    }

    /// Frees the buffers of sends that completed.
    package func progressSends() {
        guard !inFlight.isEmpty else { return }
        var i = 0
        while i < inFlight.count {
            var done: Int32 = 0
            MPI_Test(&inFlight[i].request, &done, nil)
            if done != 0 {
                inFlight[i].buffer.deallocate()
                inFlight.swapAt(i, inFlight.count - 1)
                inFlight.removeLast()
            } else {
                i += 1
            }
        }
    }

    /// Every message that has arrived, from any rank, in arrival order per sender.
    package func receiveAll() -> [(source: Int, bytes: [UInt8])] {
        var out: [(Int, [UInt8])] = []
        // The first Iprobe of a wake-up only pulls pending messages into the library: probe twice.
        var misses = 0
        while misses < 2 {
            var flag: Int32 = 0
            var status = MPI_Status()
            MPI_Iprobe(stepflow_any_source(), Self.tag, stepflow_comm_world(), &flag, &status)
            if flag == 0 {
                misses += 1
                continue
            }
            var count: Int32 = 0
            MPI_Get_count(&status, stepflow_byte(), &count)
            var bytes = [UInt8](repeating: 0, count: Int(count))
            bytes.withUnsafeMutableBytes { p in
                _ = MPI_Recv(p.baseAddress, count, stepflow_byte(), status.MPI_SOURCE, Self.tag, stepflow_comm_world(), nil)
            }
            out.append((Int(status.MPI_SOURCE), bytes))
        }
        return out
    }

    /// MPI cannot say when a message arrives: the loop polls.
    package func notifyOnArrival(_ wake: @escaping @Sendable () -> Void) {}

    /// Waits until every send went or `limit` passed, polling (used before shutting down). A send
    /// left pending is left to `MPI_Abort` or the process's exit: MPI cannot take a send back.
    package func flush(within limit: Duration?) -> Bool {
        let deadline = limit.map { ContinuousClock.now + $0 }
        var backoff = IdleBackoff()
        while hasPendingSends {
            progressSends()
            if !hasPendingSends { break }
            if let deadline, ContinuousClock.now >= deadline { return false }
            backoff.pause()
        }
        return true
    }
}
