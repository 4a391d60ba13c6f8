import Foundation
@testable import StepFlowCommand
import Testing
@testable import StepFlow

/// Placeholders in `shell:` lines in every quoting context (issue 19): for each context either
/// `validate` refuses the line with a message, or the command receives the item byte for byte, and
/// no item text ever runs.
@Suite struct ShellPlaceholderTests {
    /// What a line in the table must do with any name.
    enum Expect {
        /// The command writes `before + name + after` (each `printf '%s\0'` argument, NUL-ended).
        case exact(before: String, after: String)
        /// The command writes these fields, with `NAME` standing for the name.
        case fields([String])
        /// The file must be refused, with this in the message.
        case refused(String)
    }

    /// One line per quoting context; each writes what it received to "$OUT".
    static let contexts: [(label: String, line: String, expect: Expect)] = [
        ("unquoted", #"printf '%s\0' {name:q} > "$OUT""#, .exact(before: "", after: "")),
        ("unquoted, inside a word", #"printf '%s\0' x{name:q}y > "$OUT""#, .exact(before: "x", after: "y")),
        ("double quotes", #"printf '%s\0' "out/{name:q}.txt" > "$OUT""#, .exact(before: "out/", after: ".txt")),
        ("single quotes", #"printf '%s\0' 'a {name:q} b' > "$OUT""#, .exact(before: "a ", after: " b")),
        ("$(…) in double quotes", #"v="$(printf '%s' {name:q}; echo .)"; printf '%s\0' "${v%?}" > "$OUT""#, .exact(before: "", after: "")),
        ("double quotes in $(…) in double quotes", #"v="$(printf '%s' "<{name:q}>"; echo .)"; printf '%s\0' "${v%?}" > "$OUT""#, .exact(before: "<", after: ">")),
        ("case pattern in $(…)", #"v="$(case x in x) printf '%s' "{name:q}";; esac; echo .)"; printf '%s\0' "${v%?}" > "$OUT""#, .exact(before: "", after: "")),
        ("here-document", "cat > \"$OUT\" <<EOF\n[{name:q}]\nEOF", .exact(before: "[", after: "]\n")),
        ("here-document <<-", "cat > \"$OUT\" <<-END\n\t{name:q}\n\tEND", .exact(before: "", after: "\n")),
        ("comment", "printf '%s\\0' kept > \"$OUT\" # {name:q}", .fields(["kept"])),
        ("several at once", #"printf '%s\0' {name:q} "{name:q}" '{name:q}' {index} > "$OUT""#, .fields(["NAME", "NAME", "NAME", "INDEX"])),
        ("backquotes", "printf '%s\\0' `printf '%s' {name:q}` > \"$OUT\"", .refused("inside backquotes")),
        ("arithmetic", #"printf '%s\0' $(( {name:q} + 1 )) > "$OUT""#, .refused("inside $((…))")),
        ("parameter word", #"printf '%s\0' "${UNSET:-{name:q}}" > "$OUT""#, .refused("inside ${…}")),
        ("quoted here-document", "cat > \"$OUT\" <<'EOF'\n{name:q}\nEOF", .refused("quoted")),
        ("ANSI-C quotes", #"printf '%s\0' $'x{name:q}' > "$OUT""#, .refused("inside $'…'")),
    ]

    /// Names built from every shell metacharacter, both quotes, backslashes, newlines, command
    /// substitutions that would touch `marker`, leading dashes and UTF-8.
    static func names(count: Int, marker: String, seed: UInt64) -> [String] {
        var rng = SeededRandom(seed: seed)
        let pieces = ["$", "(", ")", "`", "\"", "'", "\\", "\n", ";", "&", "|", "<", ">", "*", "?", "[", "]", "{", "}",
                      "~", "#", "!", " ", "\t", "-", "=", "%", "^", ",", ".", ":", "a", "Z", "0", "é", "中", "🎞", "\u{1b}", "\r",
                      "$(touch \(marker))", "`touch \(marker)`", "'; touch \(marker); '", "\"; touch \(marker); \"",
                      "$((1+1))", "${HOME}", "$HOME", "\\\"", "\\'", "\nEOF\ntouch \(marker)\n", "\nEND\n", "--", "-n", "-e"]
        var out = ["$(touch \(marker)).txt", "plain.txt", "-rf", "it's \"quoted\" `x` \\ $HOME", "\n", " ", "EOF", "\nEOF\ntouch \(marker)\n"]
        while out.count < count {
            let length = Int(rng.next() % 12) + 1
            var name = ""
            for _ in 0..<length { name += pieces[Int(rng.next() % UInt64(pieces.count))] }
            out.append(name)
        }
        return out
    }

    /// The commands a workflow with `line` and `names` as a foreach list would run, or its error.
    static func expand(_ line: String, _ names: [String]) throws -> Result<[CommandSpec], WorkflowError> {
        let doc: [String: Any] = ["steps": [["name": "s", "foreach": names, "shell": line]]]
        let json = String(decoding: try JSONSerialization.data(withJSONObject: doc), as: UTF8.self)
        do {
            let workflow = try Workflow.parse(text: json, path: "/tmp/pipeline.json")
            return .success(workflow.steps.map(\.command))
        } catch {
            return .failure(error)
        }
    }

    /// Runs `command` (a shell step) with `shell` as /bin/sh would be run, and returns what it wrote to $OUT.
    static func run(_ command: CommandSpec, shell: String, out: URL, cwd: URL) throws -> Data {
        try? FileManager.default.removeItem(at: out)
        var env = command.env
        env["OUT"] = out.path
        env["PATH"] = "/usr/bin:/bin"
        let result = try Executables.runProcess(shell, ["-c", try #require(command.shell)], cwd: cwd, environment: env)
        #expect(result.code == 0, "\(shell) -c \(command.shell ?? ""): \(result.stderr)")
        return (try? Data(contentsOf: out)) ?? Data()
    }

    static func expected(_ expect: Expect, name: String, index: Int) -> Data? {
        switch expect {
        case .exact(let before, let after):
            // A here-document's line is not a printf argument: no NUL after it.
            let text = before + name + after
            return Data(text.utf8) + (after.hasSuffix("\n") ? Data() : Data([0]))
        case .fields(let fields):
            let values = fields.map { $0 == "NAME" ? name : $0 == "INDEX" ? String(index) : $0 }
            return values.reduce(into: Data()) { $0 += Data($1.utf8) + Data([0]) }
        case .refused:
            return nil
        }
    }

    @Test("Every quoting context, 3,000+ generated names under dash and 700+ under bash: refused at validation or received byte for byte, and nothing ever runs",
          arguments: contexts.indices)
    func everyContext(_ index: Int) throws {
        let (label, line, expect) = Self.contexts[index]
        let dir = Executables.temporaryFolder("quoting")
        defer { try? FileManager.default.removeItem(at: dir) }
        let marker = dir.appendingPathComponent("PWNED").path
        // The marker's bare name: the commands run in `dir`, and an item holds no '/' ({name} is its last component).
        let names = Self.names(count: 300, marker: "PWNED", seed: UInt64(index + 1))
        let expanded = try Self.expand(line, names)
        if case .refused(let text) = expect {
            guard case .failure(let error) = expanded else {
                Issue.record("\(label): \(line) was accepted; it must be refused")
                return
            }
            #expect(error.message.contains(text) && error.message.contains("{name:q} at character"), "\(label): \(error)")
            return
        }
        let commands = try expanded.get()
        #expect(commands.count == names.count)
        let out = dir.appendingPathComponent("out")
        for (n, (name, command)) in zip(names, commands).enumerated() {
            #expect(!(command.shell ?? "").contains(marker), "\(label): an item's text is in the line: \(command.shell ?? "")")
            let want = Self.expected(expect, name: name, index: n)
            let got = try Self.run(command, shell: "/bin/sh", out: out, cwd: dir)
            #expect(got == want, "\(label), /bin/sh, name \(name.debugDescription): got \(String(decoding: got, as: UTF8.self).debugDescription)")
            // bash reads lines the way /bin/sh is read on systems where sh is bash.
            if n % 4 == 0 {
                let bash = try Self.run(command, shell: "/bin/bash", out: out, cwd: dir)
                #expect(bash == want, "\(label), bash, name \(name.debugDescription): got \(String(decoding: bash, as: UTF8.self).debugDescription)")
            }
        }
        #expect(!FileManager.default.fileExists(atPath: marker), "\(label): an item ran as a command")
    }

    @Test("{items:q} of a batch: every item one word outside quotes; refused inside quotes")
    func batches() throws {
        let dir = Executables.temporaryFolder("quoting-batch")
        defer { try? FileManager.default.removeItem(at: dir) }
        let marker = dir.appendingPathComponent("PWNED").path
        let names = Self.names(count: 41, marker: "PWNED", seed: 99)
        let doc: [String: Any] = ["steps": [["name": "s", "foreach": names, "batch": 4, "shell": #"printf '%s\0' {items:q} > "$OUT""#]]]
        let workflow = try Workflow.parse(text: String(decoding: try JSONSerialization.data(withJSONObject: doc), as: UTF8.self), path: "/tmp/p.json")
        #expect(workflow.steps.count == 11)
        let out = dir.appendingPathComponent("out")
        for (b, step) in workflow.steps.enumerated() {
            let want = names[(b * 4)..<min(b * 4 + 4, names.count)].reduce(into: Data()) { $0 += Data($1.utf8) + Data([0]) }
            #expect(try Self.run(step.command, shell: "/bin/sh", out: out, cwd: dir) == want, "batch \(b)")
        }
        #expect(!FileManager.default.fileExists(atPath: marker))
        for line in [#"echo "{items:q}""#, "echo '{items:q}'"] {
            let quoted: [String: Any] = ["steps": [["name": "s", "foreach": ["a"], "batch": 2, "shell": line]]]
            #expect(throws: WorkflowError.self) {
                try Workflow.parse(text: String(decoding: try JSONSerialization.data(withJSONObject: quoted), as: UTF8.self), path: "/tmp/p.json")
            }
        }
    }

    @Test("The issue's own file: cp {item:q} \"out/{name:q}\" over hostile file names copies each byte for byte and runs none")
    func issueExample() throws {
        let dir = Executables.temporaryFolder("quoting-run")
        defer { try? FileManager.default.removeItem(at: dir) }
        let files = ["$(touch PWNED).txt", "plain.txt", "it's \"q\" `touch PWNED` \\.txt", "-rf.txt", "a\nb.txt", "é 中 🎞.txt"]
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("in"), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("out"), withIntermediateDirectories: true)
        for f in files { try Data(f.utf8).write(to: dir.appendingPathComponent("in").appendingPathComponent(f)) }
        try """
            steps:
              - name: copy
                foreach: in/*.txt
                shell: cp {item:q} "out/{name:q}"
            """.write(to: dir.appendingPathComponent("w.yaml"), atomically: true, encoding: .utf8)
        let validate = try Executables.run("stepflow", ["validate", "w.yaml"], cwd: dir)
        #expect(validate.code == 0, "\(validate.stderr)")
        let run = try Executables.run("stepflow", ["run", "w.yaml", "--run-dir", "run", "--progress", "never"], cwd: dir)
        #expect(run.code == 0, "\(run.stdout)\(run.stderr)")
        let copied = try FileManager.default.contentsOfDirectory(atPath: dir.appendingPathComponent("out").path).sorted()
        #expect(copied == files.sorted())
        for f in files {
            #expect(try Data(contentsOf: dir.appendingPathComponent("out").appendingPathComponent(f)) == Data(f.utf8))
        }
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("PWNED").path))
    }

    @Test("The scanner's contexts, one line each")
    func scanner() {
        func context(_ line: String) -> ShellContext? {
            let found = Placeholder.find(in: line)
            let opaque = found.map { line.utf8.distance(from: line.startIndex, to: $0.range.lowerBound)..<line.utf8.distance(from: line.startIndex, to: $0.range.upperBound) }
            return ShellLineScanner.contexts(of: line, opaque: opaque).first
        }
        #expect(context("cp {item:q} x") == .unquoted)
        #expect(context(#"cp "a\"{item:q}" x"#) == .doubleQuoted)
        #expect(context(#"echo 'a"' {item:q}"#) == .unquoted)
        #expect(context(#"echo "$(echo "{item:q}")""#) == .doubleQuoted)
        #expect(context(#"echo "$(echo {item:q})""#) == .unquoted)
        #expect(context("echo $((1 + {index}))") == .arithmetic)
        #expect(context("cat <<E; echo x\n{item:q}\nE") == .hereDocument)
        #expect(context("cat <<E\nE\necho {item:q}") == .unquoted)
        #expect(context("cat <<\"E\"\n{item:q}\nE") == .quotedHereDocument)
        #expect(context("a#b {item:q}") == .unquoted)
        #expect(context("a #b {item:q}") == .comment)
        #expect(context("echo ${x#{item:q}}") == .parameter)
        #expect(context("(cd x) && echo $(case a in (a) echo {item:q};; esac)") == .unquoted)
    }
}
