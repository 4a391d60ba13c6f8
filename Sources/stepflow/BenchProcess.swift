import Foundation
import Synchronization

/// What the benchmark reads about its own process: CPU time and memory.
enum BenchProcess {
    /// CPU seconds (user + system) every thread of this process has used so far.
    static func cpuSeconds() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        let t = { (tv: timeval) in Double(tv.tv_sec) + Double(tv.tv_usec) / 1e6 }
        return t(usage.ru_utime) + t(usage.ru_stime)
    }

    /// The process's resident-memory high-water mark (`ru_maxrss`), in bytes. It never goes down:
    /// read after a phase, it is the peak of that phase only if no earlier phase went higher.
    static func peakRSSBytes() -> Int {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return usage.ru_maxrss * 1024
    }

    /// Gives the heap's free memory back to the system (glibc keeps what was freed, and it would
    /// still count as resident): before the baseline is read, so that memory a finished phase
    /// freed (rank 0 reading a previous benchmark's 10⁵-step database to confirm it) is not in it.
    static func releaseFreedMemory() {
        // glibc's malloc_trim, looked up at run time: <malloc.h> is not part of Swift's Glibc module.
        typealias MallocTrim = @convention(c) (Int) -> Int32
        guard let symbol = dlsym(dlopen(nil, RTLD_NOW), "malloc_trim") else { return }
        _ = unsafeBitCast(symbol, to: MallocTrim.self)(0)
    }

    /// The process's resident memory now (`/proc/self/statm`: resident pages × page size); nil
    /// where there is no `/proc`.
    static func currentRSSBytes() -> Int? {
        let fd = open("/proc/self/statm", O_RDONLY)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 128)
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { return nil }
        // "size resident shared text lib data dt", in pages.
        let fields = String(decoding: buffer.prefix(n), as: UTF8.self).split(separator: " ")
        guard fields.count > 1, let pages = Int(fields[1]) else { return nil }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }
}

/// One reading of this process: when (seconds since the epoch, the clock step records use), the CPU
/// it had used, and its resident memory.
struct BenchSample: Sendable {
    let time: Double
    let cpuSeconds: Double
    let rssBytes: Int?

    static func now() -> BenchSample {
        BenchSample(time: Date().timeIntervalSince1970, cpuSeconds: BenchProcess.cpuSeconds(),
                    rssBytes: BenchProcess.currentRSSBytes())
    }
}

/// Reads this process every `interval` on a thread of its own, so that figures can be taken over a
/// window known only afterwards (the idle step's start and end, the coordinator's run): the idle CPU
/// of a rank while a step sleeps elsewhere, rank 0's memory while the steps ran. A reading costs a
/// few microseconds: at 20 ms, well under 0.1 % of a core.
final class BenchSampler: Sendable {
    private let samples = Mutex<[BenchSample]>([])
    private let running = Atomic<Bool>(true)
    private let finished = DispatchSemaphore(value: 0)

    init(interval: Duration = .milliseconds(20)) {
        let micros = UInt32(interval.components.seconds * 1_000_000 + interval.components.attoseconds / 1_000_000_000_000)
        Thread.detachNewThread { [self] in
            while running.load(ordering: .relaxed) {
                mark()
                usleep(micros)
            }
            finished.signal()
        }
    }

    /// Takes a reading now (besides the periodic ones) and returns it.
    @discardableResult
    func mark() -> BenchSample {
        let sample = BenchSample.now()
        samples.withLock { $0.append(sample) }
        return sample
    }

    /// Stops the readings and waits for the sampling thread to end.
    func stop() {
        guard running.exchange(false, ordering: .relaxed) else { return }
        finished.wait()
    }

    /// Every reading so far, in time order.
    var readings: [BenchSample] { samples.withLock { $0 }.sorted { $0.time < $1.time } }
}
