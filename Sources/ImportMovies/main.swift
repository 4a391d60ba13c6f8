import StepFlow

ProtocolMain.main(ImportMovies.self)
