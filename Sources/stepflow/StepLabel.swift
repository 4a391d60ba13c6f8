import StepFlow
import StepFlowCommand

/// How `trace` and `report` name a step: a command step by its workflow name, any other step by its
/// function.
enum StepLabel {
    static func of(_ record: StepRecord) -> String {
        record.spec.args.first.flatMap(CommandSpec.init)?.name ?? record.spec.function
    }
}
