import StepFlow
import StepFlowMPI

ProtocolMain.main(ProbeProtocol.self, launcher: MPIProtocolRunner.run)
