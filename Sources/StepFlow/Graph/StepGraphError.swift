/// Why a change to the step graph was refused. Every message names the step and, where known, the
/// line of the protocol that asked for it.
package enum StepGraphError: Error, CustomStringConvertible, Equatable, Sendable {
    case unknownFunction(String, known: [String], at: SourceLocation?)
    case unknownStep(StepID, context: String, at: SourceLocation?)
    case selfPrerequisite(StepID, at: SourceLocation?)
    case cycle(target: StepID, prerequisite: StepID, at: SourceLocation?)
    case alreadyStarted(StepID, status: StepStatus, at: SourceLocation?)
    case notWaiting(StepID, at: SourceLocation?)
    case threadsOutOfRange(function: String, threads: Int, available: Int, at: SourceLocation?)
    case noGPU(function: String, at: SourceLocation?)
    case negativeRetries(function: String, retries: Int, at: SourceLocation?)
    /// A count (threads, retries) larger than a step can hold.
    case tooLarge(function: String, field: String, value: Int, at: SourceLocation?)
    case nestedTooDeep(function: String, argument: Int, depth: Int, limit: Int, at: SourceLocation?)

    package var description: String {
        switch self {
        case .unknownFunction(let name, let known, let at):
            let list = known.isEmpty ? "none are registered" : "registered: " + known.sorted().joined(separator: ", ")
            return "\(where_(at))unknown step function '\(name)' (\(list)). Register it in the protocol's `functions` or fix the name."
        case .unknownStep(let id, let context, let at):
            return "\(where_(at))\(context): step \(id) does not exist. Use an id returned by insertFunctionStep."
        case .selfPrerequisite(let id, let at):
            return "\(where_(at))step \(id) cannot be its own prerequisite."
        case .cycle(let target, let prerequisite, let at):
            return "\(where_(at))making step \(prerequisite) a prerequisite of step \(target) would create a cycle (step \(prerequisite) already depends on step \(target))."
        case .alreadyStarted(let id, let status, let at):
            return "\(where_(at))cannot add prerequisites to step \(id): it is already \(status.rawValue). Add prerequisites only to steps that have not started (insert them with wait: true)."
        case .notWaiting(let id, let at):
            return "\(where_(at))cannot release step \(id): it was not inserted with wait: true."
        case .threadsOutOfRange(let function, let threads, let available, let at):
            return "\(where_(at))step '\(function)' asks for threads: \(threads), but each rank has \(available) slot(s). Ask for 1...\(available) or run with --threads \(max(threads, 1)) or more."
        case .noGPU(let function, let at):
            return "\(where_(at))step '\(function)' needs a GPU, but this run has none. Give the GPU ids with --gpus 0,1,... (or set CUDA_VISIBLE_DEVICES) or drop needsGPU."
        case .negativeRetries(let function, let retries, let at):
            return "\(where_(at))step '\(function)' has retries: \(retries); use 0 or more."
        case .tooLarge(let function, let field, let value, let at):
            return "\(where_(at))step '\(function)' has \(field): \(value), more than a step can hold (\(StepSpec.largestCount)); use a smaller number."
        case .nestedTooDeep(let function, let argument, let depth, let limit, let at):
            return "\(where_(at))step '\(function)': argument \(argument) nests arrays/objects \(depth) levels deep; a step argument may nest at most \(limit). Flatten it, or write it to a file in the run directory and pass the file's path."
        }
    }

    private func where_(_ at: SourceLocation?) -> String {
        at.map { "\($0): " } ?? ""
    }
}
