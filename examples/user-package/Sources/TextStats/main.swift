import StepFlow
import StepFlowMPI

// `TextStats [run] [--run-dir DIR] [--threads T] … [--files N] [--words W] [--min-length L]`, and
// `TextStats status [--run-dir DIR] [--json]`; on MPI ranks under mpirun or srun, alone without.
ProtocolMain.main(TextStats.self, launcher: MPIProtocolRunner.run)
