import Foundation
import StepFlow
import StepFlowMPI

/// `PROBE_STUCK_SEND=1 mpirun -np 2 StepFlowProbe`: rank 0 sends rank 1 a frame far above the eager
/// limit while rank 1 never reads (as a stopped rank), then waits for it with a bound, as a run's
/// ending does. Prints whether the frame went and how long the wait took, then ends the job.
enum StuckSendCheck {
    static func run() -> Never {
        let world = MPIWorld.initialize()
        guard world.rank == 0 else {
            // Never reads: MPI_Abort from rank 0 ends this rank.
            sleep(60)
            exit(1)
        }
        let messenger = MPIMessenger()
        messenger.send([UInt8](repeating: 7, count: 1 << 20), to: 1)
        let start = ContinuousClock.now
        let went = messenger.flush(within: .seconds(2))
        let waited = ContinuousClock.now - start
        let line = "stuck-send: went=\(went) waited=\(Double(waited.components.seconds) + Double(waited.components.attoseconds) / 1e18)\n"
        FileHandle.standardOutput.write(Data(line.utf8))
        world.abort(3)
    }
}
