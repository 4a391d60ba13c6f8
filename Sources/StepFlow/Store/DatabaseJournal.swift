import Foundation

/// How the run database keeps its journal. On a local disk: a write-ahead log (readers never block the
/// run, and a commit costs no fsync). On a filesystem shared by several hosts (NFS, Lustre, GPFS,
/// BeeGFS, CIFS, CephFS) the write-ahead log's shared-memory index does not work across hosts, so
/// `status` on another node could read garbage: there a rollback journal, which only needs file
/// locks. `STEPFLOW_DB_JOURNAL=wal|rollback` overrides the choice.
package enum DatabaseJournal: String, Sendable, Equatable {
    case wal
    case rollback

    /// The journal for a database in `directory`, and why.
    package static func choose(for directory: String, environment: [String: String] = ProcessInfo.processInfo.environment) -> (DatabaseJournal, reason: String) {
        switch environment["STEPFLOW_DB_JOURNAL"]?.lowercased() {
        case "wal"?: return (.wal, "STEPFLOW_DB_JOURNAL=wal")
        case "rollback"?, "delete"?: return (.rollback, "STEPFLOW_DB_JOURNAL=rollback")
        default: break
        }
        guard let name = sharedFilesystem(at: directory) else { return (.wal, "a local filesystem") }
        return (.rollback, "\(name), shared by several hosts")
    }

    /// The name of the network or cluster filesystem `path` is on, or nil for a local one.
    package static func sharedFilesystem(at path: String) -> String? {
        guard let type = filesystemType(of: path) else { return nil }
        let shared = ["nfs", "nfs4", "lustre", "gpfs", "beegfs", "cifs", "smb3", "smbfs", "ceph", "9p", "afs",
                      "panfs", "glusterfs", "fuse.glusterfs", "fuse.sshfs", "fuse.cephfs", "ocfs2", "gfs2", "orangefs", "pvfs2"]
        return shared.contains(type) ? type : nil
    }

    /// The type of the filesystem `path` is on, from the kernel's mount table (the longest mount
    /// point that holds it).
    package static func filesystemType(of path: String, mountInfo: String? = nil) -> String? {
        let resolved = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
        guard let table = mountInfo ?? (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) else { return nil }
        var best: (length: Int, type: String)?
        for line in table.split(separator: "\n") {
            // id parent major:minor root mount-point options [optional…] - type source super-options
            let halves = line.components(separatedBy: " - ")
            guard halves.count >= 2 else { continue }
            let left = halves[0].split(separator: " ")
            let right = halves[1].split(separator: " ")
            guard left.count >= 5, let type = right.first else { continue }
            // Spaces and the like in mount points are octal escapes (\040).
            let mountPoint = String(left[4]).replacingOccurrences(of: "\\040", with: " ")
            let under = mountPoint == "/" || resolved == mountPoint || resolved.hasPrefix(mountPoint + "/")
            if under, mountPoint.count > (best?.length ?? -1) { best = (mountPoint.count, String(type)) }
        }
        return best?.type
    }

    /// The PRAGMAs that set it up.
    var pragmas: String {
        switch self {
        case .wal: return "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 16384"
        // FULL: a rollback journal is only safe across a crash of the host with the fsync.
        case .rollback: return "PRAGMA journal_mode = DELETE; PRAGMA synchronous = FULL"
        }
    }
}
