import StepFlow
import StepFlowMPI

ProtocolMain.main(ImportMovies.self, launcher: MPIProtocolRunner.run)
