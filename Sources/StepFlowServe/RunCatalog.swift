import Foundation
import StepFlow
import Synchronization

/// The runs a server shows: the run directories it was given, and the runs found in the folders it was
/// given (each subfolder holding a run.db; looked for again when the list is asked for). A run keeps
/// its number for the server's life, so a page's address stays good.
package final class RunCatalog: Sendable {
    /// One run directory and the watcher that reads it (one request at a time per run).
    package final class Run: Sendable {
        package let number: Int
        package let name: String
        package let directory: URL
        private let state: Mutex<(watcher: RunWatcher, view: RunView?, problem: String?, takenAt: Double)>
        /// Cached renderings by the generation they were made from (the timeline is costly for big runs).
        private let timeline = Mutex<(generation: Int, at: Double, html: String)?>(nil)

        init(number: Int, name: String, directory: URL) {
            self.number = number
            self.name = name
            self.directory = directory
            state = Mutex((RunWatcher(runDirectory: directory), nil, nil, 0))
        }

        /// The run as it is now: read again when the last read is older than `maxAge` seconds.
        /// Returns nil with the reason while the directory holds no readable run.
        package func view(maxAge: Double = 0.25) -> (view: RunView?, problem: String?) {
            state.withLock { s in
                let now = Date().timeIntervalSince1970
                if now - s.takenAt >= maxAge || s.view == nil {
                    do {
                        s.view = try s.watcher.refresh(now: now)
                        s.problem = nil
                    } catch {
                        s.view = nil
                        s.problem = "\(error)"
                    }
                    s.takenAt = now
                }
                return (s.view, s.problem)
            }
        }

        /// The report's timeline section for `view`, made again at most every `every` seconds.
        package func timelineHTML(_ view: RunView, label: @escaping (StepRecord) -> String, every: Double = 5) -> String {
            let now = Date().timeIntervalSince1970
            if let cached = timeline.withLock({ $0 }), cached.generation == view.generation || now - cached.at < every {
                return cached.html
            }
            let html = HTMLReport.timelineSection(view.stored, label: label)
            timeline.withLock { $0 = (view.generation, now, html) }
            return html
        }
    }

    private let given: [URL]
    private let runs = Mutex<[Run]>([])

    /// Paths given that do not exist yet: taken for run directories whose run has not started.
    package let notYetThere: [String]

    /// - Throws: `RunCatalogError` for a path that is a file.
    package init(paths: [String]) throws(RunCatalogError) {
        var given: [URL] = [], missing: [String] = []
        for path in paths {
            var isFolder: ObjCBool = false
            if !FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) {
                missing.append(path)
            } else if !isFolder.boolValue {
                throw .notAFolder(path)
            }
            given.append(URL(fileURLWithPath: path).standardizedFileURL)
        }
        self.given = given
        notYetThere = missing
        _ = list()
    }

    /// Every run, numbered from 1, after looking again for new ones in the given folders.
    package func list() -> [Run] {
        var found: [URL] = []
        for dir in given {
            if FileManager.default.fileExists(atPath: RunStore.path(in: dir)) || !Self.hasRunsInside(dir) {
                // A run directory, one whose run has not written its database yet, or one not made yet.
                found.append(dir)
            } else {
                let children = (try? FileManager.default.contentsOfDirectory(at: dir, includingPropertiesForKeys: nil)) ?? []
                found += children.filter { FileManager.default.fileExists(atPath: RunStore.path(in: $0)) }
                    .map(\.standardizedFileURL).sorted { $0.path < $1.path }
            }
        }
        return runs.withLock { runs in
            for dir in found where !runs.contains(where: { $0.directory == dir }) {
                var name = dir.lastPathComponent
                if runs.contains(where: { $0.name == name }) { name = dir.path }
                runs.append(Run(number: runs.count + 1, name: name, directory: dir))
            }
            return runs
        }
    }

    /// The run numbered `number`, if there is one (looking again for new runs when it is past the last).
    package func run(_ number: Int) -> Run? {
        let known = runs.withLock { runs in number >= 1 && number <= runs.count ? runs[number - 1] : nil }
        if let known { return known }
        let all = list()
        return number >= 1 && number <= all.count ? all[number - 1] : nil
    }

    private static func hasRunsInside(_ dir: URL) -> Bool {
        let children = (try? FileManager.default.contentsOfDirectory(at: dir, includingPropertiesForKeys: nil)) ?? []
        return children.contains { FileManager.default.fileExists(atPath: RunStore.path(in: $0)) }
    }
}

/// Why `serve` cannot show what it was given.
package enum RunCatalogError: Error, CustomStringConvertible, Equatable {
    case notAFolder(String)

    package var description: String {
        switch self {
        case .notAFolder(let path):
            return "'\(path)' is a file, not a folder. Give run directories (each holds run.db), or folders of them."
        }
    }
}
