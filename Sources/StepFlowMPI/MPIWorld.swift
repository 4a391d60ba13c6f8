import CMPI
import Foundation
import StepFlow

/// The MPI world of this process: initialized once (MPI may not be initialized again after
/// `MPI_Finalize`), with one MPI thread (`MPI_THREAD_FUNNELED`): only the thread that called
/// `initialize` may call MPI. Worker threads never do.
package struct MPIWorld: Sendable {
    package let rank: Int
    package let size: Int

    /// Initializes MPI on this thread, or returns the world if it already is.
    package static func initialize() -> MPIWorld {
        var initialized: Int32 = 0
        MPI_Initialized(&initialized)
        if initialized == 0 {
            var provided: Int32 = 0
            MPI_Init_thread(nil, nil, Int32(MPI_THREAD_FUNNELED), &provided)
        }
        var rank: Int32 = 0, size: Int32 = 0
        MPI_Comm_rank(stepflow_comm_world(), &rank)
        MPI_Comm_size(stepflow_comm_world(), &size)
        return MPIWorld(rank: Int(rank), size: Int(size))
    }

    /// Ends MPI for this process. Nothing may call MPI afterwards.
    package func finalize() {
        var finalized: Int32 = 0
        MPI_Finalized(&finalized)
        if finalized == 0 { MPI_Finalize() }
    }

    /// Ends every rank of the job at once, with `code`.
    package func abort(_ code: Int32) -> Never {
        MPI_Abort(stepflow_comm_world(), code)
        exit(code)
    }

    /// Bitwise OR of every rank's `flags`, without blocking in MPI: the call polls a non-blocking
    /// reduction and sleeps between polls, so a rank that waits here does not burn a core.
    package func orAcrossRanks(_ flags: Int32) -> Int32 {
        var send = flags, receive: Int32 = 0
        var request: MPI_Request? = stepflow_request_null()
        MPI_Iallreduce(&send, &receive, 1, stepflow_int(), stepflow_bor(), stepflow_comm_world(), &request)
        wait(&request)
        return receive
    }

    /// Rank 0's `value` on every rank (the others pass anything), without blocking in MPI.
    package func broadcastFromRank0(_ value: UInt64) -> UInt64 {
        let mine = rank == 0 ? value : 0
        let low = UInt64(UInt32(bitPattern: orAcrossRanks(Int32(bitPattern: UInt32(truncatingIfNeeded: mine)))))
        let high = UInt64(UInt32(bitPattern: orAcrossRanks(Int32(bitPattern: UInt32(truncatingIfNeeded: mine >> 32)))))
        return high << 32 | low
    }

    /// The largest of every rank's `value`, without blocking in MPI (as `orAcrossRanks`).
    package func maxAcrossRanks(_ value: Double) -> Double {
        var send = value, receive = 0.0
        var request: MPI_Request? = stepflow_request_null()
        MPI_Iallreduce(&send, &receive, 1, stepflow_double(), stepflow_max(), stepflow_comm_world(), &request)
        wait(&request)
        return receive
    }

    /// Every rank's `bytes` (at most `width` each), on rank 0 in rank order; empty on other ranks.
    /// Without blocking in MPI (as `orAcrossRanks`).
    package func gatherToRank0(_ bytes: [UInt8], width: Int) -> [[UInt8]] {
        var send = [UInt8](repeating: 0, count: width + 4)
        let n = min(bytes.count, width)
        withUnsafeBytes(of: UInt32(n).littleEndian) { for (i, b) in $0.enumerated() { send[i] = b } }
        send.replaceSubrange(4..<(4 + n), with: bytes.prefix(n))
        var receive = [UInt8](repeating: 0, count: rank == 0 ? (width + 4) * size : 1)
        var request: MPI_Request? = stepflow_request_null()
        send.withUnsafeMutableBytes { s in
            receive.withUnsafeMutableBytes { r in
                _ = MPI_Igather(s.baseAddress, Int32(width + 4), stepflow_byte(), r.baseAddress, Int32(width + 4),
                                stepflow_byte(), 0, stepflow_comm_world(), &request)
                // The buffers must stay where they are until the gather completes: wait inside.
                wait(&request)
            }
        }
        guard rank == 0 else { return [] }
        return (0..<size).map { i in
            let base = i * (width + 4)
            let count = Int(receive[base]) | Int(receive[base + 1]) << 8 | Int(receive[base + 2]) << 16 | Int(receive[base + 3]) << 24
            return Array(receive[(base + 4)..<(base + 4 + min(count, width))])
        }
    }

    /// This rank's position among the ranks of its node (those on the same host), and how many they
    /// are: the ranks of a node share its GPUs out. One short collective at start-up, polled and slept
    /// on like the others (MPI_Comm_split_type blocks, and a rank that came early spun a core in it).
    package func nodeRank() -> (rank: Int, size: Int) {
        let all = allGather(Self.nodeName, width: 255)
        guard all.count == size else { return (0, 1) }
        let same = all.indices.filter { all[$0] == all[rank] }
        return (same.firstIndex(of: rank) ?? 0, max(same.count, 1))
    }

    /// Every rank's `bytes` (at most `width` each), on every rank in rank order. Without blocking in
    /// MPI (as `orAcrossRanks`).
    package func allGather(_ bytes: [UInt8], width: Int) -> [[UInt8]] {
        var send = [UInt8](repeating: 0, count: width + 4)
        let n = min(bytes.count, width)
        withUnsafeBytes(of: UInt32(n).littleEndian) { for (i, b) in $0.enumerated() { send[i] = b } }
        send.replaceSubrange(4..<(4 + n), with: bytes.prefix(n))
        var receive = [UInt8](repeating: 0, count: (width + 4) * size)
        var request: MPI_Request? = stepflow_request_null()
        send.withUnsafeMutableBytes { s in
            receive.withUnsafeMutableBytes { r in
                _ = MPI_Iallgather(s.baseAddress, Int32(width + 4), stepflow_byte(), r.baseAddress, Int32(width + 4),
                                   stepflow_byte(), stepflow_comm_world(), &request)
                // The buffers must stay where they are until the gather completes: wait inside.
                wait(&request)
            }
        }
        return (0..<size).map { i in
            let base = i * (width + 4)
            let count = Int(receive[base]) | Int(receive[base + 1]) << 8 | Int(receive[base + 2]) << 16 | Int(receive[base + 3]) << 24
            return Array(receive[(base + 4)..<(base + 4 + min(count, width))])
        }
    }

    /// Every rank's GPU ids, on rank 0 (empty elsewhere), and on every rank whether any rank has one.
    package func gatherGPUs(_ mine: [Int]) -> (lists: [[Int]], any: Bool) {
        var bytes: [UInt8] = []
        for id in mine { bytes += [UInt8(id & 0xFF), UInt8((id >> 8) & 0xFF)] }
        let lists = gatherToRank0(bytes, width: 2 * 64).map { b in
            stride(from: 0, to: b.count - 1, by: 2).map { Int(b[$0]) | Int(b[$0 + 1]) << 8 }
        }
        return (lists, orAcrossRanks(mine.isEmpty ? 0 : 1) != 0)
    }

    /// Every rank's host name, on rank 0 (for messages naming a rank, and the launch's record);
    /// empty on other ranks.
    package func hostNames() -> [String] {
        gatherToRank0(Self.nodeName, width: 255).map { String(decoding: $0, as: UTF8.self) }
    }

    /// This rank's node: Slurm's name for it inside a job (what `--exclude` and `sinfo` take; several
    /// Slurm nodes may share one machine), else the host name.
    static var nodeName: [UInt8] {
        if let slurm = ProcessInfo.processInfo.environment["SLURMD_NODENAME"], !slurm.isEmpty { return Array(slurm.utf8.prefix(255)) }
        var buffer = [CChar](repeating: 0, count: 256)
        gethostname(&buffer, buffer.count)
        return buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
    }

    private func wait(_ request: inout MPI_Request?) {
        var backoff = IdleBackoff()
        var done: Int32 = 0
        while true {
            MPI_Test(&request, &done, nil)
            if done != 0 { return }
            backoff.pause()
        }
    }
}
