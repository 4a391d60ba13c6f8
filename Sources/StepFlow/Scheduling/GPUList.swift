import Foundation

/// GPU ids: a node's list, and each rank's share of it.
package enum GPUList {
    package static let maximumID = 4095

    /// Rank `localRank` of the `localSize` ranks on a node takes every `localSize`-th id of the node's
    /// list, from its own position: two ranks never hand out the same GPU unless the list repeats it.
    package static func share(of list: [Int], localRank: Int, localSize: Int) -> [Int] {
        guard localSize > 0 else { return list }
        return list.enumerated().filter { $0.offset % localSize == localRank }.map(\.element)
    }

    /// Every rank of a run in one process (simulated ranks on one node) with its share.
    package static func oneNode(_ parallel: ResolvedParallelSection) -> [[Int]] {
        (0..<parallel.mpi).map { share(of: parallel.gpus, localRank: $0, localSize: parallel.mpi) }
    }

    /// Ids from text like `0,1,2` (also spaces); nil when it is not such a list.
    package static func parse(_ text: String) -> [Int]? {
        let parts = text.split(whereSeparator: { $0 == "," || $0 == " " })
        let ids = parts.compactMap { Int($0) }
        return ids.count == parts.count ? ids : nil
    }

    /// The node's list from the batch system: `CUDA_VISIBLE_DEVICES`, else `SLURM_STEP_GPUS`; none
    /// when neither is set.
    /// - Throws: `RunSetupError.invalidSetting` when the variable holds something else than ids
    ///   (GPU UUIDs): then `--gpus` must say which ids to hand out.
    package static func fromEnvironment(_ environment: [String: String]) throws(RunSetupError) -> [Int] {
        for name in ["CUDA_VISIBLE_DEVICES", "SLURM_STEP_GPUS"] {
            guard let raw = environment[name], !raw.trimmingCharacters(in: .whitespaces).isEmpty else { continue }
            guard let ids = parse(raw) else {
                throw .invalidSetting("\(name)='\(raw)' is not a list of GPU ids; give the ids to hand out with --gpus 0,1,… .")
            }
            return ids
        }
        return []
    }
}
