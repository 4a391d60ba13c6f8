import CMPI
import Foundation

/// The raw MPI master/worker message rate on the ranks of this launch: rank 0 hands out 8-byte "task"
/// messages with `inFlight` outstanding per worker, each worker answers "done". This is the ceiling
/// the benchmark compares StepFlow's step rate with. Blocking MPI calls are fine here:
/// every rank is busy for the whole measurement.
package enum RawMessageRate {
    private static let taskTag: Int32 = 101, doneTag: Int32 = 102, stopTag: Int32 = 103

    /// Tasks per second as rank 0 measured them; nil on one rank (no workers) and on other ranks.
    package static func measure(world: MPIWorld, tasks: Int, inFlight: Int = 4) -> Double? {
        guard world.size > 1 else { return nil }
        var word: Int64 = 0
        if world.rank != 0 {
            var status = MPI_Status()
            while true {
                MPI_Recv(&word, 8, stepflow_byte(), 0, stepflow_any_tag(), stepflow_comm_world(), &status)
                if status.MPI_TAG == stopTag { return nil }
                MPI_Send(&word, 8, stepflow_byte(), 0, doneTag, stepflow_comm_world())
            }
        }
        let start = ContinuousClock.now
        var sent = 0, done = 0
        for r in 1..<world.size {
            for _ in 0..<inFlight where sent < tasks {
                MPI_Send(&word, 8, stepflow_byte(), Int32(r), taskTag, stepflow_comm_world())
                sent += 1
            }
        }
        var status = MPI_Status()
        while done < sent {
            MPI_Recv(&word, 8, stepflow_byte(), stepflow_any_source(), doneTag, stepflow_comm_world(), &status)
            done += 1
            if sent < tasks {
                MPI_Send(&word, 8, stepflow_byte(), status.MPI_SOURCE, taskTag, stepflow_comm_world())
                sent += 1
            }
        }
        let elapsed = ContinuousClock.now - start
        for r in 1..<world.size { MPI_Send(&word, 8, stepflow_byte(), Int32(r), stopTag, stepflow_comm_world()) }
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        return Double(done) / seconds
    }
}
