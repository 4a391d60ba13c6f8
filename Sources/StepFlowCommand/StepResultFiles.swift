import Foundation
import StepFlow

/// Step results for command steps (S13), through files: the command writes its result to the file
/// `$STEPFLOW_RESULT` names, and finds each prerequisite's result in `$STEPFLOW_INPUTS/<its name>`
/// (bytes as they were set; a Swift step's value as JSON text).
struct StepResultFiles {
    let step: StepContext
    /// Where the command may write its result.
    let resultPath: String
    /// The folder of the prerequisites' results, when any prerequisite set one.
    let inputsFolder: String?

    /// Writes the prerequisites' results for the command to read.
    /// - Throws: `CommandError.cannotStart` when a file cannot be written.
    init(step: StepContext) throws(CommandError) {
        self.step = step
        let launch = step.launch > 1 ? "/launch-\(step.launch)" : ""
        let name = "step-\(step.id)-attempt-\(step.attempt)"
        let results = step.runDirectory.path + "/results" + launch
        try? FileManager.default.createDirectory(atPath: results, withIntermediateDirectories: true)
        resultPath = results + "/" + name
        // A result of an earlier attempt of this step is not this one's.
        unlink(resultPath)
        let given = (step.inputs ?? []).filter { !$0.result.isEmpty }
        guard !given.isEmpty else {
            inputsFolder = nil
            return
        }
        let folder = step.runDirectory.path + "/inputs" + launch + "/" + name
        try? FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        var used: Set<String> = []
        for input in given {
            var file = Self.fileName(input.name)
            if !used.insert(file).inserted { file += "-\(input.id)" ; used.insert(file) }
            let bytes: [UInt8]
            switch StepResult(encoded: input.result) {
            case .bytes(let b)?: bytes = b
            case .value(let v)?: bytes = Array(v.jsonText.utf8)
            case nil: continue
            }
            let path = folder + "/" + file
            let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw .cannotStart("cannot write the result of step \(input.id) to \(path): \(String(cString: strerror(errno)))") }
            defer { close(fd) }
            var offset = 0
            while offset < bytes.count {
                let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + offset, bytes.count - offset) }
                guard n > 0 else { throw .cannotStart("cannot write the result of step \(input.id) to \(path): \(String(cString: strerror(errno)))") }
                offset += n
            }
        }
        inputsFolder = folder
    }

    /// A step name as a file name: `/` and a leading dot would make it another path.
    static func fileName(_ name: String) -> String {
        var file = name.replacingOccurrences(of: "/", with: "_")
        if file.hasPrefix(".") { file = "_" + file.dropFirst() }
        return file.isEmpty ? "_" : file
    }

    func export(to environment: inout [String: String]) {
        environment["STEPFLOW_RESULT"] = resultPath
        if let inputsFolder { environment["STEPFLOW_INPUTS"] = inputsFolder }
    }

    /// Takes what the command wrote to `$STEPFLOW_RESULT` as the step's result.
    /// - Throws: `CommandError.badResult` past the run's limit, or when the file is not a regular file
    ///   or cannot be read.
    func collect() throws(CommandError) {
        let fd = open(resultPath, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else {
            if errno == ENOENT { return }
            throw .badResult("cannot read its result file \(resultPath): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFREG else {
            throw .badResult("its result file \(resultPath) is not a regular file")
        }
        // Read one byte past the limit at most: a larger file is refused without reading it all.
        let want = min(Int(info.st_size), step.resultLimit + 1)
        var bytes = [UInt8](repeating: 0, count: want)
        let got = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress, want) }
        guard got >= 0 else { throw .badResult("cannot read its result file \(resultPath): \(String(cString: strerror(errno)))") }
        if Int(info.st_size) > step.resultLimit {
            throw .badResult(StepResultError.tooLarge(step: step.id, function: step.function, bytes: Int(info.st_size), limit: step.resultLimit).description)
        }
        do {
            try step.setResult(Array(bytes.prefix(got)))
        } catch {
            throw .badResult(ErrorText.sentence(error))
        }
    }
}
