/// An array kept in chunks of 4,096 elements, so that a copy that is then changed in a few places
/// copies only the chunks it changes. A `RunWatcher` hands out views that share its steps while it
/// keeps updating them: with one flat array, every refresh of a run of millions of steps copied all
/// of it (hundreds of MB a second) as long as the previous view was still held.
package struct ChunkedArray<Element>: RandomAccessCollection, MutableCollection {
    package static var chunkSize: Int { 4096 }
    private var chunks: [[Element]] = []
    package private(set) var count = 0

    package init() {}

    package init(_ elements: some Collection<Element>) {
        append(contentsOf: elements)
    }

    /// An array's elements, a chunk at a time.
    package init(_ elements: [Element]) {
        chunks = stride(from: 0, to: elements.count, by: Self.chunkSize).map { start in
            var chunk = Array(elements[start..<Swift.min(start + Self.chunkSize, elements.count)])
            chunk.reserveCapacity(Self.chunkSize)
            return chunk
        }
        count = elements.count
    }

    package var startIndex: Int { 0 }
    package var endIndex: Int { count }

    package subscript(position: Int) -> Element {
        get {
            precondition(position >= 0 && position < count, "ChunkedArray index \(position) out of 0..<\(count)")
            return chunks[position / Self.chunkSize][position % Self.chunkSize]
        }
        set {
            precondition(position >= 0 && position < count, "ChunkedArray index \(position) out of 0..<\(count)")
            chunks[position / Self.chunkSize][position % Self.chunkSize] = newValue
        }
    }

    /// Which chunk holds `position`: callers that keep a figure per chunk (such as when it last
    /// changed) use it to skip whole chunks.
    package static func chunk(of position: Int) -> Int { position / chunkSize }
    package var chunkCount: Int { chunks.count }
    /// The positions chunk `chunk` holds.
    package func positions(ofChunk chunk: Int) -> Range<Int> {
        chunk * Self.chunkSize..<Swift.min(count, (chunk + 1) * Self.chunkSize)
    }

    package mutating func append(_ element: Element) {
        if count % Self.chunkSize == 0 {
            var chunk: [Element] = []
            chunk.reserveCapacity(Self.chunkSize)
            chunks.append(chunk)
        }
        chunks[chunks.count - 1].append(element)
        count += 1
    }

    package mutating func append(contentsOf elements: some Sequence<Element>) {
        for e in elements { append(e) }
    }

    package mutating func append(repeating element: Element, count n: Int) {
        for _ in 0..<Swift.max(0, n) { append(element) }
    }
}

extension ChunkedArray: Sendable where Element: Sendable {}
