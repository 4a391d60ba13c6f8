import Foundation

/// A folder's contents, to show a refused command left it exactly as it was.
enum FolderSnapshot {
    /// Every file under `dir` (relative path → bytes) and every folder (relative path → nil).
    static func of(_ dir: URL) -> [String: Data?] {
        var out: [String: Data?] = [:]
        let base = dir.resolvingSymlinksInPath().path
        guard let walker = FileManager.default.enumerator(atPath: base) else { return out }
        while let relative = walker.nextObject() as? String {
            var isDir: ObjCBool = false
            _ = FileManager.default.fileExists(atPath: base + "/" + relative, isDirectory: &isDir)
            out[relative] = isDir.boolValue ? .some(nil) : FileManager.default.contents(atPath: base + "/" + relative)
        }
        return out
    }
}
