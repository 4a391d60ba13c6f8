import Foundation

/// The run directory on disk: created when missing, and set aside whole by `--restart`.
package enum RunDirectory {
    /// Creates the run directory, or explains why it cannot.
    package static func prepare(_ url: URL) throws(RunSetupError) {
        do {
            try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        } catch {
            throw .runDirectory(path: url.path, reason: whyNotCreatable(url) ?? (error as NSError).localizedDescription)
        }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw .runDirectory(path: url.path, reason: "it is a file, not a folder")
        }
        guard FileManager.default.isWritableFile(atPath: url.path) else {
            throw .runDirectory(path: url.path, reason: "it is not writable")
        }
    }

    /// Folders holding runs set aside by `--restart` start with this.
    package static let setAsidePrefix = "previous-"

    /// Moves everything in the run directory but its lock and earlier set-aside runs into one new dated
    /// folder inside it (`previous-<time>`), so a restarted run starts from an empty directory and
    /// nothing of the old run (database, logs, the protocol's own outputs) is deleted or mixed in.
    /// Returns the folder's path, or nil when there was nothing to move.
    package static func setAside(_ url: URL, lockFileName: String, now: Date = Date()) throws(RunSetupError) -> String? {
        let fm = FileManager.default
        let entries: [String]
        do {
            entries = try fm.contentsOfDirectory(atPath: url.path)
                .filter { $0 != lockFileName && !$0.hasPrefix(setAsidePrefix) }
                .sorted()
        } catch {
            throw .runDirectory(path: url.path, reason: "cannot list it to set the previous run aside: \((error as NSError).localizedDescription)")
        }
        guard !entries.isEmpty else { return nil }
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withYear, .withMonth, .withDay, .withTime, .withTimeZone]
        let stamp = formatter.string(from: now).replacingOccurrences(of: ":", with: "")
        var folder = url.appendingPathComponent(setAsidePrefix + stamp)
        var n = 2
        while fm.fileExists(atPath: folder.path) {
            folder = url.appendingPathComponent("\(setAsidePrefix)\(stamp)-\(n)")
            n += 1
        }
        do {
            try fm.createDirectory(at: folder, withIntermediateDirectories: false)
            for entry in entries {
                try fm.moveItem(at: url.appendingPathComponent(entry), to: folder.appendingPathComponent(entry))
            }
        } catch {
            throw .runDirectory(path: url.path, reason: "could not set the previous run aside into \(folder.path): \((error as NSError).localizedDescription); nothing was deleted")
        }
        return folder.path
    }

    /// Why a folder cannot be created, told from its nearest existing ancestor.
    private static func whyNotCreatable(_ url: URL) -> String? {
        var ancestor = url.standardizedFileURL
        var child = ancestor
        while !FileManager.default.fileExists(atPath: ancestor.path) && ancestor.path != "/" {
            child = ancestor
            ancestor.deleteLastPathComponent()
        }
        var isDir: ObjCBool = false
        _ = FileManager.default.fileExists(atPath: ancestor.path, isDirectory: &isDir)
        if !isDir.boolValue { return "'\(ancestor.path)' is a file, not a folder" }
        if ancestor.path != url.standardizedFileURL.path && !FileManager.default.isWritableFile(atPath: ancestor.path) {
            return "cannot create folders in '\(ancestor.path)' (permission denied or read-only)"
        }
        if child.path != ancestor.path && mkdir(child.path, 0o755) != 0 {
            return "cannot create '\(child.path)': \(String(cString: strerror(errno)))"
        }
        return nil
    }
}
