import Foundation
import GRDB
import Testing
@testable import StepFlow

/// What a command does after its step ended cannot reach the run (issue 19): its output after the
/// step's end goes nowhere, and no process of its group outlives the step or the run.
@Suite(.serialized) struct CommandIsolationTests {
    func write(_ text: String, _ name: String, in dir: URL) throws -> String {
        let url = dir.appendingPathComponent(name)
        try text.write(to: url, atomically: true, encoding: .utf8)
        return url.path
    }

    @Test("A child that left the step's group keeps its output open and writes after the step ended, while 1,000 other steps run on rank 0: the database is intact, no other log holds its text, no descriptor or reader thread is left")
    func lateWriterReachesNothing() throws {
        let dir = Executables.temporaryFolder("late-writer")
        defer { try? FileManager.default.removeItem(at: dir) }
        // The rank is the commands' parent: they count its descriptors and output threads themselves,
        // once before the late writer starts and once after it was cut off, each with one command running.
        // A command's reader thread names itself once it runs, which on a loaded machine can be after
        // the command looked (seen once in a whole suite: no thread of that name yet, `grep -c` exited 1
        // and the step failed), so the count waits up to 2 s for the running command's own reader.
        _ = try write(#"""
            if [ -n "$2" ]; then sleep "$2"; fi
            ls /proc/$PPID/fd | wc -l > "$STEPFLOW_RUN_DIR/$1.fds"
            i=0
            while :; do
              n=$(cat /proc/$PPID/task/*/comm 2>/dev/null | grep -c '^stepflow-output')
              if [ "$n" -ge 1 ] || [ $i -ge 200 ]; then break; fi
              i=$((i+1)); sleep 0.01
            done
            echo "$n" > "$STEPFLOW_RUN_DIR/$1.readers"
            """#, "count.sh", in: dir)
        // The text is made at run time, so the step's command (in the database) never holds it.
        _ = try write("i=0; while [ $i -lt 1000 ]; do echo LATE-WRITER-\"TEXT\"-$i; i=$((i+1)); sleep 0.01; done\n", "late-writer.sh", in: dir)
        let file = try write("""
            steps:
              - name: before
                run: [sh, count.sh, before]
              - name: late
                shell: setsid sh late-writer.sh & echo leader-done
              - name: many
                after: [before]
                foreach: {from: 1, to: 1000}
                shell: sleep 0.01; echo step-{index}
              - name: after
                after: [late, many]
                run: [sh, count.sh, after, 1]
            """, "late.yaml", in: dir)
        let run = dir.appendingPathComponent("run")
        let result = try Executables.run("stepflow", ["run", file, "--run-dir", run.path, "--threads", "2", "--progress", "never"])
        #expect(result.code == 0, "\(result.stdout)\(result.stderr)")
        // The writer was cut off (its pipe closed), so it is gone by now.
        #expect(WorkflowRunTests.processes(containing: "late-writer.sh").isEmpty)
        let logs = run.appendingPathComponent("logs")
        var holders: [String] = []
        for name in try FileManager.default.contentsOfDirectory(atPath: logs.path) {
            let text = (try? String(contentsOf: logs.appendingPathComponent(name), encoding: .utf8)) ?? ""
            if text.contains("LATE-WRITER-TEXT") { holders.append(name) }
        }
        // The late step's own log may hold what came while it ran; no other file may.
        #expect(holders.allSatisfy { $0 == "step-2.log" }, "\(holders)")
        for name in try FileManager.default.contentsOfDirectory(atPath: run.path) where !name.hasPrefix("logs") {
            let data = FileManager.default.contents(atPath: run.appendingPathComponent(name).path) ?? Data()
            #expect(data.range(of: Data("LATE-WRITER-TEXT".utf8)) == nil, "\(name) holds the late writer's text")
        }
        let db = try DatabaseQueue(path: run.appendingPathComponent("run.db").path)
        #expect(try db.read { try String.fetchOne($0, sql: "PRAGMA integrity_check") } == "ok")
        func read(_ name: String) throws -> Int {
            try #require(Int(try String(contentsOf: run.appendingPathComponent(name), encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))
        }
        let readers = (try read("before.readers"), try read("after.readers"))
        #expect(readers == (1, 1), "output reader threads: one per running command")
        let fds = (before: try read("before.fds"), after: try read("after.fds"))
        #expect(fds.after <= fds.before, "descriptors \(fds)")
    }

    @Test("A background process that ignores SIGTERM and redirected its output is ended with its step (SIGKILL after the grace), and at SIGTERM of the run")
    func backgroundProcessEnds() throws {
        let dir = Executables.temporaryFolder("bg-process")
        defer { try? FileManager.default.removeItem(at: dir) }
        let marker = "1000.\(getpid())"
        let file = try write("""
            steps:
              - name: leaves-one
                shell: (trap '' TERM; exec sleep \(marker)) >/dev/null 2>&1 & echo started
              - name: next
                shell: echo next
            """, "bg.yaml", in: dir)
        let run = dir.appendingPathComponent("run")
        let result = try Executables.run("stepflow", ["run", file, "--run-dir", run.path, "--progress", "never"])
        #expect(result.code == 0, "\(result.stdout)\(result.stderr)")
        #expect(WorkflowRunTests.processes(containing: marker).isEmpty, "the background sleep outlived its step")

        // The same while the run is stopped: the step still runs, its background child ignores SIGTERM.
        let marker2 = "1001.\(getpid())"
        let file2 = try write("""
            steps:
              - name: long
                shell: (trap '' TERM; exec sleep \(marker2)) >/dev/null 2>&1 & sleep \(marker2)
            """, "bg2.yaml", in: dir)
        let launch = try Background(Executables.buildFolder.appendingPathComponent("stepflow").path,
                                    ["run", file2, "--run-dir", dir.appendingPathComponent("run2").path, "--progress", "never"])
        #expect(Background.waitUntil { WorkflowRunTests.processes(containing: marker2).count >= 2 }, "\(launch.text)")
        launch.signal(SIGTERM)
        #expect(launch.wait(timeout: 30) == 143, "\(launch.text)")
        #expect(WorkflowRunTests.processes(containing: marker2).isEmpty, "a process of the step outlived the run")
    }
}
