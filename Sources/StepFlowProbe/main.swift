import Foundation
import StepFlow
import StepFlowMPI

if ProcessInfo.processInfo.environment["PROBE_STUCK_SEND"] != nil { StuckSendCheck.run() }
ProtocolMain.main(ProbeProtocol.self, launcher: MPIProtocolRunner.run)
