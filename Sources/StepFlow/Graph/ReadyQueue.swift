import Collections

/// Ready step ids, lowest first. Steps mostly become ready in increasing id order (a protocol's steps
/// at the start, a chain, a batch of inserts), so an id above every queued one goes to the end of a
/// sorted run in O(1); only an id below the run's last goes to a heap. The lower of the two fronts is
/// the minimum. On a 200,000-step run the heap alone cost about 20 comparisons a step.
struct ReadyQueue {
    /// Ascending: only ids above its last are appended.
    private var run = Deque<Int>()
    private var heap = Heap<Int>()

    var isEmpty: Bool { run.isEmpty && heap.isEmpty }
    var count: Int { run.count + heap.count }

    /// The lowest id queued.
    var min: Int? {
        switch (run.first, heap.min) {
        case let (a?, b?): return Swift.min(a, b)
        case let (a?, nil): return a
        case let (nil, b): return b
        }
    }

    mutating func insert(_ id: Int) {
        if let last = run.last, id <= last {
            heap.insert(id)
        } else {
            run.append(id)
        }
    }

    /// Removes and returns the lowest id.
    @discardableResult
    mutating func popMin() -> Int? {
        switch (run.first, heap.min) {
        case let (a?, b?): return a < b ? run.removeFirst() : heap.removeMin()
        case (_?, nil): return run.removeFirst()
        case (nil, _?): return heap.removeMin()
        case (nil, nil): return nil
        }
    }
}
