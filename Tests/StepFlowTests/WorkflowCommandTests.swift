import Foundation
import StepFlow
import StepFlowCommand
import Testing

@Suite struct InsertLineTests {
    let folder = "/work/flows"

    @Test("An insert line with every field gives the command and settings a workflow step would")
    func fullInsert() throws {
        let line = #"{"name": "reg-1", "run": ["register", "a b.mrc"], "after": ["import", "register[3]"], "threads": 2, "gpu": true, "retries": 1, "wait": true, "timeout": "90s", "env": {"A": "1", "N": 4}, "cwd": "sub/../out", "log_limit": "1MB"}"#
        let parsed = try InsertLine.parse(line, line: 3, folder: folder, logLimit: 1000)
        let command = CommandSpec(name: "reg-1", argv: ["register", "a b.mrc"], env: ["A": "1", "N": "4"], cwd: "/work/flows/out", timeout: 90, logLimit: 1 << 20)
        #expect(parsed == .insert(name: "reg-1", command: command, after: ["import", "register[3]"], threads: 2, gpu: true, retries: 1, wait: true))
    }

    @Test("Defaults: no name (labelled by its program), after nil for S2's default, the folder as cwd, the given log limit; braces taken literally")
    func defaults() throws {
        let shell = try InsertLine.parse(#"{"shell": "echo {item} | awk '{print $1}'"}"#, line: 1, folder: folder, logLimit: 1234)
        #expect(shell == .insert(name: nil, command: CommandSpec(name: "shell", shell: "echo {item} | awk '{print $1}'", cwd: folder, logLimit: 1234),
                                 after: nil, threads: 1, gpu: false, retries: 0, wait: false))
        let run = try InsertLine.parse(#"  {"run": ["/usr/bin/sha256sum", "{name}"], "after": []}  "#, line: 1, folder: folder, logLimit: 1)
        #expect(run == .insert(name: nil, command: CommandSpec(name: "sha256sum", argv: ["/usr/bin/sha256sum", "{name}"], cwd: folder, logLimit: 1),
                               after: [], threads: 1, gpu: false, retries: 0, wait: false))
    }

    @Test("release and addPrerequisites lines")
    func edits() throws {
        #expect(try InsertLine.parse(#"{"release": "close"}"#, line: 1, folder: folder, logLimit: 1) == .release("close"))
        #expect(try InsertLine.parse("{\"release\": \"close\"}\r\n", line: 1, folder: folder, logLimit: 1) == .release("close"), "a line break at the end is no part of the line")
        #expect(try InsertLine.parse(#"{"addPrerequisites": {"to": "close", "from": ["a", "reg[2]"]}}"#, line: 1, folder: folder, logLimit: 1)
            == .addPrerequisites(to: "close", from: ["a", "reg[2]"]))
        #expect(try InsertLine.parse(#"{"addPrerequisites":{"from":"a","to":"close"}}"#, line: 1, folder: folder, logLimit: 1)
            == .addPrerequisites(to: "close", from: ["a"]))
    }

    static let malformed: [(line: String, column: Int?, says: String)] = [
        ("", nil, "the line is empty"),
        ("release: close", nil, "the line is not a JSON object"),
        ("{\"release\": \"a\"}\n{\"release\": \"b\"}", nil, "the line is not a JSON object"),
        (#"["run", "x"]"#, nil, "the line is not a JSON object"),
        (#"{"name": "a", "run": ["x"]"#, 27, "not valid YAML or JSON"),
        (#"{"name": "a", "run": ["x"], "aftr": ["b"]}"#, 29, "unknown key 'aftr' in step 'a'. Did you mean 'after'?"),
        (#"{"releas": "close"}"#, 2, "Did you mean 'release'?"),
        (#"{"run": ["x"], "shell": "y"}"#, 16, "has both run and shell"),
        (#"{"name": "a"}"#, 1, "has neither run nor shell"),
        (#"{"run": ["x"], "foreach": "*.mrc"}"#, 16, "foreach is for workflow files"),
        (#"{"run": ["x"], "threads": "2"}"#, 27, "Write it without quotes"),
        (#"{"run": ["x"], "timeout": "soon"}"#, 27, "must be a duration"),
        (#"{"run": []}"#, 9, "is an empty list"),
        (#"{"run": "x"}"#, 9, "must be a list"),
        (#"{"release": "close", "name": "b"}"#, 22, "a line with release holds nothing else"),
        (#"{"release": 3}"#, nil, ""),
        (#"{"release": ""}"#, 13, "release is empty"),
        (#"{"addPrerequisites": {"to": "close"}}"#, 22, "needs both 'to'"),
        (#"{"addPrerequisites": {"to": "close", "from": []}}"#, 46, "is an empty list"),
        (#"{"name": "a", "name": "b", "run": ["x"]}"#, 2, "appears more than once"),
        (#"{"name": "a[1]", "run": ["x"]}"#, 10, "names cannot hold brackets"),
    ]

    @Test("A malformed line is an error naming its line number and why", arguments: malformed.indices)
    func malformedLine(_ index: Int) {
        let bad = Self.malformed[index]
        do {
            let parsed = try InsertLine.parse(bad.line, line: 7, folder: folder, logLimit: 1)
            // A number is text for a name field, as in a workflow file.
            #expect(bad.says.isEmpty && parsed == .release("3"), "\(bad.line) parsed as \(parsed)")
        } catch {
            #expect(error.line == 7)
            #expect(error.column == bad.column, "\(error)")
            #expect(error.message.contains(bad.says), "\(error)")
            #expect(error.description.hasPrefix(bad.column.map { "line 7, column \($0): " } ?? "line 7: "), "\(error)")
        }
    }
}

@Suite struct GraphExportTests {
    let nodes = [
        GraphNode(id: 1, label: "import", prerequisites: [], status: .finished),
        GraphNode(id: 2, label: "say \"hi\"\nnext [line] \\N #1 <b> & `x`", prerequisites: [1], status: .failed),
        GraphNode(id: 3, label: "end", prerequisites: [1, 2, 99], status: nil),
    ]

    @Test("DOT: quoted, escaped labels, an edge per prerequisite, fill colours by status")
    func dot() {
        let text = GraphExport.render(nodes, format: .dot)
        #expect(text.hasPrefix("digraph steps {\n") && text.hasSuffix("}\n"))
        #expect(text.contains(##"  s1 [label="import", fillcolor="#b7e4b0", tooltip="import: finished"];"##))
        #expect(text.contains(##"s2 [label="say \"hi\"\nnext [line] \\N #1 <b> & `x`", fillcolor="#f4a6a6""##), "\(text)")
        #expect(text.contains("  s3 [label=\"end\"];"))
        #expect(text.contains("  s1 -> s2;\n  s1 -> s3;\n  s2 -> s3;\n}"))
        #expect(!text.contains("s99"), "a prerequisite outside the graph is not drawn")
        #expect(!text.contains("next [line] \\N #1 <b> & `x`\"\n"), "no raw newline inside a label")
    }

    @Test("Mermaid: labels with entity codes and <br>, edges, one class per status used")
    func mermaid() {
        let text = GraphExport.render(nodes, format: .mermaid)
        #expect(text.hasPrefix("flowchart TD\n"))
        #expect(text.contains("  s1[\"import\"]:::st_finished\n"))
        #expect(text.contains(#"  s2["say #quot;hi#quot;<br>next [line] \N #35;1 #lt;b#gt; #amp; #96;x#96;"]:::st_failed"#), "\(text)")
        #expect(text.contains("  s3[\"end\"]\n"))
        #expect(text.contains("  s1 --> s2\n  s1 --> s3\n  s2 --> s3\n"))
        #expect(text.contains("  classDef st_finished fill:#b7e4b0,stroke:#555") && text.contains("classDef st_failed"))
        #expect(!text.contains("st_new") && !text.contains("s99"))
    }
}

@Suite struct WorkflowCLITests {
    let pipeline = """
        parallel: {threads: 2, mpi: 1}
        steps:
          - name: import
            run: [echo, import]
          - name: register
            foreach: "movies/*.mrc"
            shell: "sha256sum {item:q} > {stem:q}.sha"
          - name: close
            after: [register]
            run: [echo, "say \\"done\\""]
        """

    func contents(_ dir: URL) throws -> [String] {
        try FileManager.default.subpathsOfDirectory(atPath: dir.path).sorted()
    }

    @Test("stepflow validate prints the step count per step of the file and creates nothing")
    func validateGood() throws {
        let dir = try folderWith(["movies/a.mrc", "movies/b.mrc", "movies/c.mrc"], "validate")
        defer { try? FileManager.default.removeItem(at: dir) }
        try pipeline.write(to: dir.appendingPathComponent("pipeline.yaml"), atomically: true, encoding: .utf8)
        let before = try contents(dir)
        let result = try Executables.run("stepflow", ["validate", "pipeline.yaml"], cwd: dir)
        #expect(result.code == 0, "\(result.stderr)")
        #expect(result.stdout == """
            pipeline.yaml: valid, 5 steps
            parallel: threads 2, mpi 1
              import    1
              register  3 (foreach)
              close     1

            """, "\(result.stdout)")
        #expect(try contents(dir) == before)
    }

    @Test("stepflow validate exits 2 with file:line:column on stderr, and creates nothing", arguments: [
        ("steps:\n  - name: a\n    run: [x]\n  - name: b\n    after: [c]\n    run: [y]\n", "pipeline.yaml:5:13: step 'b' is after 'c'"),
        ("steps:\n  - name: a\n    foreach: \"none/*\"\n    run: [x, \"{item}\"]\n", "pipeline.yaml:3:14: the glob 'none/*'"),
    ])
    func validateBad(yaml: String, says: String) throws {
        let dir = try folderWith([], "validate-bad")
        defer { try? FileManager.default.removeItem(at: dir) }
        try yaml.write(to: dir.appendingPathComponent("pipeline.yaml"), atomically: true, encoding: .utf8)
        let before = try contents(dir)
        let result = try Executables.run("stepflow", ["validate", "pipeline.yaml"], cwd: dir)
        #expect(result.code == 2)
        #expect(result.stderr.hasPrefix(says), "\(result.stderr)")
        #expect(result.stdout.isEmpty)
        #expect(try contents(dir) == before, "nothing created")
        let missing = try Executables.run("stepflow", ["validate", "nothing.yaml"], cwd: dir)
        #expect(missing.code == 2 && missing.stderr.hasPrefix("nothing.yaml: cannot be read: No such file or directory"), "\(missing.stderr)")
    }

    @Test("stepflow graph draws a workflow file's expanded steps as DOT or Mermaid")
    func graphWorkflow() throws {
        let dir = try folderWith(["movies/a.mrc", "movies/b.mrc"], "graph")
        defer { try? FileManager.default.removeItem(at: dir) }
        try pipeline.write(to: dir.appendingPathComponent("pipeline.yaml"), atomically: true, encoding: .utf8)
        let dot = try Executables.run("stepflow", ["graph", dir.appendingPathComponent("pipeline.yaml").path])
        #expect(dot.code == 0, "\(dot.stderr)")
        #expect(dot.stdout.contains("s2 [label=\"register[0]\"];") && dot.stdout.contains("s1 -> s3;") && dot.stdout.contains("s3 -> s4;"))
        let mermaid = try Executables.run("stepflow", ["graph", "pipeline.yaml", "--format", "mermaid"], cwd: dir)
        #expect(mermaid.code == 0)
        #expect(mermaid.stdout.contains("s4[\"close\"]") && mermaid.stdout.contains("s2 --> s4"))
        let bad = try Executables.run("stepflow", ["graph", "pipeline.yaml", "--format", "svg"], cwd: dir)
        #expect(bad.code == 2, "\(bad.stderr)")
    }

    @Test("stepflow graph draws a run directory's steps coloured by status, labelled by command name or function")
    func graphRun() throws {
        let dir = try folderWith([], "graph-run")
        defer { try? FileManager.default.removeItem(at: dir) }
        let store = try RunStore.create(runDirectory: dir, protocolName: "workflow", params: [], threads: 1, mpi: 1)
        func record(_ id: StepID, _ args: [StepValue], _ prerequisites: [StepID], _ status: StepStatus, function: String = "command") -> StepRecord {
            StepRecord(id: id, spec: StepSpec(function: function, args: args), prerequisites: prerequisites, insertedBy: .protocolSteps, status: status)
        }
        store.record([
            record(1, [CommandSpec(name: "import", argv: ["x"], cwd: "/").value], [], .finished),
            record(2, [CommandSpec(name: "register[0]", shell: "y", cwd: "/").value], [1], .failed),
            record(3, [.string("plain")], [1, 2], .skipped, function: "closeSetStep"),
        ])
        #expect(store.finish(status: "failed") == nil)
        let result = try Executables.run("stepflow", ["graph", dir.path])
        #expect(result.code == 0, "\(result.stderr)")
        #expect(result.stdout.contains(##"s1 [label="import", fillcolor="#b7e4b0""##))
        #expect(result.stdout.contains(##"s2 [label="register[0]", fillcolor="#f4a6a6""##))
        #expect(result.stdout.contains(##"s3 [label="closeSetStep", fillcolor="#d9d9d9""##))
        #expect(result.stdout.contains("s1 -> s3;") && result.stdout.contains("s2 -> s3;"))
        let empty = try folderWith([], "graph-empty")
        defer { try? FileManager.default.removeItem(at: empty) }
        let none = try Executables.run("stepflow", ["graph", empty.path])
        #expect(none.code == 2 && none.stderr.contains("no run database"), "\(none.stderr)")
        #expect(try contents(empty).isEmpty, "nothing created")
    }
}
