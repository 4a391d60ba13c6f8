import Foundation
import StepFlowCommand
import Testing

/// Parses `text` as the workflow `<folder>/pipeline.yaml`.
func parseWorkflow(_ text: String, folder: String = "/work/flows") throws(WorkflowError) -> Workflow {
    try Workflow.parse(text: text, path: folder + "/pipeline.yaml")
}

/// A temporary folder holding `files` (paths relative to it; folders on the way are created).
func folderWith(_ files: [String], _ label: String = "workflow") throws -> URL {
    let dir = Executables.temporaryFolder(label)
    for file in files {
        let url = dir.appendingPathComponent(file)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        #expect(FileManager.default.createFile(atPath: url.path, contents: Data()))
    }
    return dir
}

@Suite struct WorkflowExpansionTests {
    @Test("Top-level settings and step fields reach the steps, with their defaults")
    func fields() throws {
        let workflow = try parseWorkflow("""
            parallel: {threads: 4, mpi: 2}
            log_limit: 1GB
            steps:
              - name: prepare
                run: [prep, --all]
              - name: work
                shell: "make -j4 all"
                threads: 4
                gpu: true
                retries: 2
                wait: true
                timeout: 1h30m
                env: {OMP_NUM_THREADS: 4, MODE: fast}
                cwd: build/../out
                log_limit: 512KB
              - name: quick
                after: []
                run: [true]
                timeout: 500ms
              - name: last
                after: quick
                run: [done]
                timeout: 90
                cwd: /abs/dir
            """)
        #expect(workflow.path == "/work/flows/pipeline.yaml" && workflow.folder == "/work/flows")
        #expect(workflow.threads == 4 && workflow.mpi == 2)
        #expect(workflow.steps.map(\.command.name) == ["prepare", "work", "quick", "last"])
        #expect(workflow.groups == ["prepare": [0], "work": [1], "quick": [2], "last": [3]])
        let prepare = workflow.steps[0]
        #expect(prepare == WorkflowStep(group: "prepare", command: CommandSpec(name: "prepare", argv: ["prep", "--all"], cwd: "/work/flows", logLimit: 1 << 30), after: []))
        let work = workflow.steps[1]
        #expect(work.command == CommandSpec(name: "work", shell: "make -j4 all", env: ["OMP_NUM_THREADS": "4", "MODE": "fast"],
                                            cwd: "/work/flows/out", timeout: 5400, logLimit: 512 * 1024))
        #expect(work.after == [0] && work.threads == 4 && work.gpu && work.retries == 2 && work.wait)
        #expect(workflow.steps[2].after == [] && workflow.steps[2].command.timeout == 0.5)
        #expect(workflow.steps[2].command.logLimit == 1 << 30)
        #expect(workflow.steps[3].after == [2] && workflow.steps[3].command.timeout == 90 && workflow.steps[3].command.cwd == "/abs/dir")
    }

    @Test("Without a log_limit anywhere a step keeps CommandSpec.defaultLogLimit; durations in every form")
    func defaults() throws {
        let text = "steps:\n  - name: a\n    run: [x]\n    timeout: %@\n"
        for (written, seconds) in [("90s", 90.0), ("10m", 600), ("1h", 3600), ("1h30m", 5400), ("500ms", 0.5), ("2.5", 2.5), ("\"45\"", 45), ("1m30s", 90)] {
            let workflow = try parseWorkflow(text.replacingOccurrences(of: "%@", with: written))
            #expect(workflow.steps[0].command.timeout == seconds, "\(written)")
            #expect(workflow.steps[0].command.logLimit == CommandSpec.defaultLogLimit)
            #expect(workflow.threads == nil && workflow.mpi == nil)
        }
        for (written, bytes) in [("100MB", 100 << 20), ("1GB", 1 << 30), ("512KB", 512 << 10), ("4096", 4096), ("2 mb", 2 << 20)] {
            let workflow = try parseWorkflow("steps:\n  - name: a\n    run: [x]\n    log_limit: \(written)\n")
            #expect(workflow.steps[0].command.logLimit == bytes, "\(written)")
        }
    }

    @Test("A list foreach: {item}, {stem}, {name}, {index} in each argv element on its own")
    func listForeach() throws {
        let workflow = try parseWorkflow("""
            steps:
              - name: convert
                foreach: [a.txt, dir/b.tar.gz, 7, .hidden]
                run: [conv, "{item}", "out/{stem}.png", "{name}", "{index}", "x-{stem}-{index}"]
            """)
        #expect(workflow.steps.map(\.command.name) == ["convert[0]", "convert[1]", "convert[2]", "convert[3]"])
        #expect(workflow.groups == ["convert": [0, 1, 2, 3]])
        #expect(workflow.steps.map(\.command.argv!) == [
            ["conv", "a.txt", "out/a.png", "a.txt", "0", "x-a-0"],
            ["conv", "dir/b.tar.gz", "out/b.tar.png", "b.tar.gz", "1", "x-b.tar-1"],
            ["conv", "7", "out/7.png", "7", "2", "x-7-2"],
            ["conv", ".hidden", "out/.hidden.png", ".hidden", "3", "x-.hidden-3"],
        ])
        #expect(workflow.steps.allSatisfy { $0.after.isEmpty && $0.group == "convert" }, "items of one foreach never depend on each other")
    }

    @Test("A range foreach counts both ends; batch groups N items per step ({items} spliced, {items:q} quoted)")
    func rangesAndBatches() throws {
        let workflow = try parseWorkflow("""
            steps:
              - name: count
                foreach: {from: 3, to: 5}
                run: [echo, "{item}"]
              - name: chunk
                after: []
                foreach: {from: 1, to: 5}
                batch: 2
                run: [process, --in, "{items}", "--batch={index}"]
              - name: chunk-shell
                after: []
                foreach: ["it's", b]
                batch: 5
                shell: "tar cf {index}.tar {items:q}"
            """)
        #expect(workflow.steps.map(\.command.name) == ["count[0]", "count[1]", "count[2]", "chunk[0]", "chunk[1]", "chunk[2]", "chunk-shell[0]"])
        #expect(workflow.steps[0..<3].map { $0.command.argv![1] } == ["3", "4", "5"])
        #expect(workflow.steps[3..<6].map(\.command.argv!) == [
            ["process", "--in", "1", "2", "--batch=0"], ["process", "--in", "3", "4", "--batch=1"], ["process", "--in", "5", "--batch=2"],
        ])
        // Items reach a shell line through variables, never as text of the line (issue 19).
        #expect(workflow.steps[6].command.shell == #"tar cf 0.tar "${STEPFLOW_ITEM_1}" "${STEPFLOW_ITEM_2}""#)
        #expect(workflow.steps[6].command.env == ["STEPFLOW_ITEM_1": "it's", "STEPFLOW_ITEM_2": "b", "STEPFLOW_ITEM_COUNT": "2", "STEPFLOW_ITEM_INDEX": "0"])
        #expect(workflow.groups["chunk"] == [3, 4, 5])
    }

    @Test("A glob foreach matches in the workflow's folder, sorted by bytes, items relative as matched")
    func globForeach() throws {
        let dir = try folderWith(["b.txt", "a.txt", "B.txt", "c.dat", "sub/d.txt", ".hidden.txt", "e.txt.bak"])
        defer { try? FileManager.default.removeItem(at: dir) }
        let workflow = try parseWorkflow("""
            steps:
              - name: top
                foreach: "*.txt"
                run: [wc, "{item}"]
              - name: any
                after: []
                foreach: "{*,sub/*}.{txt,dat}"
                run: [wc, "{item}"]
              - name: absolute
                after: []
                foreach: "\(dir.path)/sub/*"
                run: [wc, "{item}", "{name}"]
            """, folder: dir.path)
        #expect(workflow.groups["top"]!.map { workflow.steps[$0].command.argv![1] } == ["B.txt", "a.txt", "b.txt"])
        #expect(workflow.groups["any"]!.map { workflow.steps[$0].command.argv![1] } == ["B.txt", "a.txt", "b.txt", "c.dat", "sub/d.txt"])
        #expect(workflow.groups["absolute"]!.map { workflow.steps[$0].command.argv! } == [["wc", dir.path + "/sub/d.txt", "d.txt"]])
        #expect(workflow.steps.allSatisfy { $0.command.cwd == dir.path })
    }

    @Test("Default after is the step above (all its items for a foreach); after a foreach means all its items")
    func prerequisites() throws {
        let workflow = try parseWorkflow("""
            steps:
              - name: import
                run: [import]
              - name: register
                foreach: [a, b, c]
                run: [register, "{item}"]
              - name: summary
                run: [summary]
              - name: close
                after: [register, import]
                run: [close]
              - name: alone
                after: []
                run: [alone]
            """)
        #expect(workflow.steps.map(\.after) == [[], [0], [0], [0], [1, 2, 3], [0, 1, 2, 3], []])
        #expect(workflow.groups["register"] == [1, 2, 3])
    }

    @Test("Insertion order is topological, keeping the file's order where after leaves it free")
    func forwardReferences() throws {
        let workflow = try parseWorkflow("""
            steps:
              - name: report
                after: [clean, fetch]
                run: [report]
              - name: fetch
                after: []
                foreach: [1, 2]
                run: [fetch, "{item}"]
              - name: clean
                after: []
                run: [clean]
              - name: tail
                run: [tail]
            """)
        #expect(workflow.steps.map(\.command.name) == ["fetch[0]", "fetch[1]", "clean", "report", "tail"])
        #expect(workflow.steps.map(\.after) == [[], [], [], [0, 1, 2], [2]])
        #expect(workflow.groups == ["fetch": [0, 1], "clean": [2], "report": [3], "tail": [4]])
    }

    @Test("Braces that are not placeholders stay as written: awk programs, ${name}, {unknown}")
    func otherBraces() throws {
        let workflow = try parseWorkflow("""
            steps:
              - name: plain
                run: [awk, "{print $1}", "{unknown}"]
              - name: each
                foreach: [f.csv]
                shell: "awk '{print $1}' {item:q} > ${name}.{index}; echo {{name:q}}"
                env: {INPUT: "{item}", HOME_COPY: "${HOME}"}
                cwd: "out/{stem}"
            """)
        #expect(workflow.steps[0].command.argv == ["awk", "{print $1}", "{unknown}"])
        #expect(workflow.steps[1].command.shell == #"awk '{print $1}' "${STEPFLOW_ITEM}" > ${name}.0; echo {"${STEPFLOW_ITEM_NAME}"}"#)
        #expect(workflow.steps[1].command.env == ["INPUT": "f.csv", "HOME_COPY": "${HOME}", "STEPFLOW_ITEM": "f.csv", "STEPFLOW_ITEM_NAME": "f.csv",
                                                  "STEPFLOW_ITEM_STEM": "f", "STEPFLOW_ITEM_1": "f.csv", "STEPFLOW_ITEM_COUNT": "1", "STEPFLOW_ITEM_INDEX": "0"])
        #expect(workflow.steps[1].command.cwd == "/work/flows/out/f")
    }

    @Test("Hostile file names stay one argument each: exactly the name in argv, one word for /bin/sh with {item:q}")
    func injectionSafe() throws {
        let names = ["a b.txt", "$(touch pwned).txt", "x;rm -rf y.txt", "it's.txt", "`id`.txt", "y.txt"]
        let dir = try folderWith(names, "hostile")
        defer { try? FileManager.default.removeItem(at: dir) }
        let workflow = try parseWorkflow("""
            steps:
              - name: argv
                foreach: "*.txt"
                run: [cat, "{item}", "--stem={stem}"]
              - name: quoted
                after: []
                foreach: "*.txt"
                shell: 'printf "%s\\n" {item:q} {name:q} {stem:q}.out'
              - name: batch
                after: []
                foreach: "*.txt"
                batch: 10
                shell: 'printf "%s\\n" {items:q}'
            """, folder: dir.path)
        let sorted = names.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        #expect(workflow.groups["argv"]!.map { workflow.steps[$0].command.argv![1] } == sorted)
        #expect(workflow.groups["argv"]!.map { workflow.steps[$0].command.argv![2] } == sorted.map { "--stem=" + $0.dropLast(4) })
        for (index, name) in zip(workflow.groups["quoted"]!, sorted) {
            let shell = try #require(workflow.steps[index].command.shell)
            let result = try Executables.runProcess("/bin/sh", ["-c", shell], cwd: dir, environment: workflow.steps[index].command.env)
            #expect(result.code == 0)
            #expect(result.stdout == "\(name)\n\(name)\n\(name.dropLast(4)).out\n", "\(shell)")
        }
        let batch = try #require(workflow.steps[workflow.groups["batch"]![0]].command.shell)
        let result = try Executables.runProcess("/bin/sh", ["-c", batch], cwd: dir, environment: workflow.steps[workflow.groups["batch"]![0]].command.env)
        #expect(result.stdout == sorted.map { $0 + "\n" }.joined())
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("pwned").path), "no name ran as a command")
        #expect(FileManager.default.fileExists(atPath: dir.appendingPathComponent("y.txt").path))
    }

    @Test("The same workflow in YAML and in JSON gives equal Workflows")
    func yamlAndJSON() throws {
        let dir = try folderWith(["m1.mrc", "m2.mrc"])
        defer { try? FileManager.default.removeItem(at: dir) }
        let yaml = """
            parallel: {threads: 2, mpi: 1}
            log_limit: 10MB
            steps:
              - name: import
                run: [import, --from, "."]
                env: {A: "1"}
              - name: register
                foreach: "*.mrc"
                shell: "register {item:q} > {stem:q}.json"
                timeout: 10m
                retries: 1
              - name: batch
                after: [import]
                foreach: {from: 1, to: 3}
                batch: 2
                run: [sum, "{items}"]
                threads: 2
              - name: close
                after: [register, batch]
                run: [close]
                wait: true
                gpu: false
                cwd: out
            """
        let json = """
            {"parallel": {"threads": 2, "mpi": 1}, "log_limit": "10MB", "steps": [
              {"name": "import", "run": ["import", "--from", "."], "env": {"A": "1"}},
              {"name": "register", "foreach": "*.mrc", "shell": "register {item:q} > {stem:q}.json", "timeout": "10m", "retries": 1},
              {"name": "batch", "after": ["import"], "foreach": {"from": 1, "to": 3}, "batch": 2, "run": ["sum", "{items}"], "threads": 2},
              {"name": "close", "after": ["register", "batch"], "run": ["close"], "wait": true, "gpu": false, "cwd": "out"}
            ]}
            """
        let fromYAML = try Workflow.parse(text: yaml, path: dir.path + "/pipeline.yaml")
        let fromJSON = try Workflow.parse(text: json, path: dir.path + "/pipeline.yaml")
        #expect(fromYAML == fromJSON)
        #expect(fromYAML.steps.count == 6)
        try json.write(to: dir.appendingPathComponent("pipeline.json"), atomically: true, encoding: .utf8)
        let loaded = try Workflow.load(path: dir.path + "/pipeline.json")
        #expect(loaded.steps == fromYAML.steps && loaded.path == dir.path + "/pipeline.json")
    }

    @Test("YAML anchors and merge keys share settings between steps")
    func mergeKeys() throws {
        let workflow = try parseWorkflow("""
            steps:
              - &heavy
                name: first
                run: [a]
                threads: 4
                retries: 2
              - <<: *heavy
                name: second
                run: [b]
                retries: 0
            """)
        #expect(workflow.steps[1].threads == 4 && workflow.steps[1].retries == 0 && workflow.steps[1].command.argv == ["b"])
    }
}
