import Foundation
import StepFlowCommand
import Testing

@Suite struct WorkflowErrorTests {
    /// Each mistake: the workflow, the line and column the error must point at, and text its message must hold.
    static let mistakes: [(yaml: String, line: Int, column: Int, says: String)] = [
        ("steps:\n  - name: register\n    run: [x]\n  - name: close\n    after: [regster]\n    run: [y]\n", 5, 13, "no step has that name. Did you mean 'register'?"),
        ("steps:\n  - name: a\n    run: [x]\n  - name: b\n    after: [zzz]\n    run: [y]\n", 5, 13, "The steps are 'a', 'b'."),
        ("steps:\n  - name: reg\n    foreach: [1, 2]\n    run: [x]\n  - name: b\n    after: [\"reg[1]\"]\n    run: [y]\n", 6, 13,
         "after names whole steps: after: [reg] waits for all its items."),
        ("steps:\n  - name: a\n    run: [x]\n  - name: a\n    run: [y]\n", 4, 11, "two steps are named 'a'; the other one is step 1 (at line 2)"),
        ("steps:\n  - name: a\n    after: [c]\n    run: [x]\n  - name: b\n    run: [y]\n  - name: c\n    run: [z]\n", 3, 13,
         "steps 'a', 'c', 'b' wait for each other in a cycle"),
        ("steps:\n  - name: a\n    after: [a]\n    run: [x]\n", 3, 13, "step 'a' is after itself, a cycle"),
        ("steps:\n  - name: a\n    run: [x]\n    threads: two\n", 4, 14, "threads of step 'a' must be a whole number of at least 1, not the text \"two\""),
        ("steps:\n  - name: a\n    run: [x]\n    threads: \"4\"\n", 4, 14, "Write it without quotes."),
        ("steps:\n  - name: a\n    run: [x]\n    threads: 0\n", 4, 14, "threads of step 'a' must be at least 1, not 0"),
        ("steps:\n  - name: a\n    run: [x]\n    gpu: \"yes\"\n", 4, 10, "gpu of step 'a' must be true or false"),
        ("steps:\n  - name: a\n    run: echo hi\n", 3, 10, "run of step 'a' must be a list"),
        ("steps:\n  - name: a\n    run: [x]\n    after: {b: 1}\n", 4, 12, "after of step 'a' must be a list"),
        ("steps:\n  - name: a\n    run: [x]\n    env: [A]\n", 4, 10, "env of step 'a' must be a mapping"),
        ("steps:\n  - name: a\n    run: [x]\n    shell: y\n", 4, 5, "step 'a' has both run and shell. Keep one"),
        ("steps:\n  - name: a\n    threads: 1\n", 2, 5, "step 'a' has neither run nor shell"),
        ("steps:\n  - run: [x]\n", 2, 5, "step 1 has no name. Add name:"),
        ("steps:\n  - name: a\n    run: [x]\n    afterr: [b]\n", 4, 5, "unknown key 'afterr' in step 'a'. Did you mean 'after'?"),
        ("steps:\n  - name: a\n    run: [x]\n    depends_on: [b]\n", 4, 5, "unknown key 'depends_on' in step 'a'. Did you mean 'after'?"),
        ("stepz:\n  - name: a\n", 1, 1, "unknown key 'stepz' in the workflow. Did you mean 'steps'?"),
        ("parallel: {threads: 2, mip: 1}\nsteps:\n  - name: a\n    run: [x]\n", 1, 24, "unknown key 'mip' in parallel. Did you mean 'mpi'?"),
        ("steps:\n  - name: a\n    run: [x]\n    timeout: 10 minutes\n", 4, 14, "must be a duration like 90s, 10m, 1h30m or 500ms"),
        ("steps:\n  - name: a\n    run: [x]\n    timeout: 30m1h\n", 4, 14, "must be a duration like"),
        ("steps:\n  - name: a\n    run: [x]\n    timeout: 0\n", 4, 14, "must be more than 0"),
        ("steps:\n  - name: a\n    run: [x]\n    log_limit: 10XB\n", 4, 16, "must be a size like 100MB, 1GB or 512KB"),
        ("log_limit: lots\nsteps:\n  - name: a\n    run: [x]\n", 1, 12, "log_limit of the workflow must be a size"),
        ("steps:\n  - name: a\n    run: [x]\n    retries: -1\n", 4, 14, "retries of step 'a' must be at least 0, not -1"),
        ("steps:\n  - name: a\n    run: [x]\n    retries: 1.5\n", 4, 14, "must be a whole number"),
        ("steps:\n  - name: a\n    run: [x]\n    batch: 3\n", 4, 12, "batch of step 'a' needs foreach"),
        ("steps:\n  - name: a\n    foreach: [1, 2]\n    batch: 2\n    run: [x, \"--in={items}\"]\n", 5, 14, "must be a whole element of the list"),
        ("steps:\n  - name: a\n    foreach: [1, 2]\n    run: [x, \"{items}\"]\n", 4, 14, "this step has no batch"),
        ("steps:\n  - name: a\n    foreach: [1, 2]\n    batch: 2\n    run: [x, \"{item}\"]\n", 5, 14, "Use {items} (an element of its own) for all of them"),
        ("steps:\n  - name: a\n    foreach: [1, 2]\n    batch: 2\n    run: [x]\n    env: {F: \"{stem}\"}\n", 6, 14, "env can use {index}; pass the items in run or shell"),
        ("steps:\n  - name: a\n    foreach: [1, 2]\n    run: [x]\n    cwd: \"{item:q}\"\n", 5, 10, ":q quotes for shell lines, and cwd is used as it is. Write {item}"),
        ("steps:\n  - name: a\n    foreach: [1, 2]\n    shell: \"echo {item}\"\n", 4, 12, "Write {item:q}"),
        ("steps:\n  - name: a\n    foreach: [1, 2]\n    shell: \"echo {stem}.out\"\n", 4, 12, "Write {stem:q}"),
        ("steps:\n  - name: a\n    foreach: [1, 2]\n    run: [x, \"{item:q}\"]\n", 4, 14, "Write {item}"),
        ("steps:\n  - name: a\n    run: [x, \"{item}\"]\n", 3, 14, "this step has no foreach. Add foreach, or remove {item}"),
        ("steps:\n  - name: a\n    shell: \"x {index}\"\n", 3, 12, "this step has no foreach"),
        ("steps:\n  - name: a\n    foreach: []\n    run: [x]\n", 3, 14, "is an empty list"),
        ("steps:\n  - name: a\n    foreach: {from: 3, to: 1}\n    run: [x]\n", 3, 14, "goes from 3 down to 1"),
        ("steps:\n  - name: a\n    foreach: {from: 1, end: 3}\n    run: [x]\n", 3, 24, "Did you mean 'to'?"),
        ("steps:\n  - name: a\n    run: [x\n  - name: b\n", 4, 9, "not valid YAML or JSON"),
        ("steps:\n  - name: a\n    name: b\n    run: [x]\n", 2, 5, "the key 'name' appears more than once"),
        ("", 1, 1, "the file holds no workflow"),
        ("steps: []\n", 1, 8, "steps is an empty list"),
        ("steps:\n  - name: \"a[1]\"\n    run: [x]\n", 2, 11, "names cannot hold brackets"),
        ("steps:\n  - name: a\n    run: [x]\n    cwd: ~/data\n", 4, 10, "'~', which is not expanded"),
        ("steps:\n  - name: a\n    run: [x, \"a\\0b\"]\n", 3, 14, "holds a NUL character"),
        ("steps:\n  - name: a\n    run: [x]\n    env: {A: }\n", 4, 14, "A in env of step 'a' must be text, not nothing (an empty value). Give a value, or remove the key."),
        ("steps:\n  - name: a\n    foreach: {from: x, to: 3}\n    run: [x]\n", 3, 21, "from of foreach of step 'a' must be a whole number, not the text \"x\"."),
    ]

    @Test("Every mistake in a workflow is an error at its file:line:column that says what to do", arguments: mistakes.indices)
    func mistake(_ index: Int) {
        let mistake = Self.mistakes[index]
        let path = "/work/flows/pipeline.yaml"
        #expect(throws: WorkflowError.self) { try parseWorkflow(mistake.yaml) }
        do {
            _ = try parseWorkflow(mistake.yaml)
        } catch {
            #expect(error.file == path)
            #expect((error.line, error.column) == (mistake.line, mistake.column), "\(error)")
            #expect(error.message.contains(mistake.says), "\(error)")
            #expect(error.description.hasPrefix("\(path):\(mistake.line):\(mistake.column): "), "\(error)")
            #expect(error.message.hasSuffix(".") || error.message.hasSuffix(".)") || error.message.hasSuffix("?"), "ends as a sentence: \(error)")
        }
    }

    @Test("A foreach glob that matches nothing is an error naming the pattern and the folder")
    func globMatchesNothing() throws {
        let dir = try folderWith(["a.txt"])
        defer { try? FileManager.default.removeItem(at: dir) }
        let yaml = "steps:\n  - name: a\n    foreach: \"movies/*.mrc\"\n    run: [x, \"{item}\"]\n"
        #expect {
            try parseWorkflow(yaml, folder: dir.path)
        } throws: { error in
            let error = error as! WorkflowError
            return (error.line, error.column) == (3, 14) && error.message.contains("the glob 'movies/*.mrc'")
                && error.message.contains("matches nothing in \(dir.path)")
        }
    }

    @Test("A file that cannot be read is an error naming it")
    func unreadableFile() {
        #expect {
            try Workflow.load(path: "/nonexistent/pipeline.yaml")
        } throws: { error in
            let error = error as! WorkflowError
            return error.line == 0 && error.description.hasPrefix("/nonexistent/pipeline.yaml: cannot be read: No such file or directory")
        }
    }
}
