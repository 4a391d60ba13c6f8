/// SipHash-2-4 with an 8-byte output, and Task Bench's `random_uniform` over it: the draws that make
/// `random_nearest` graphs and `load_imbalance` kernels, so they come out as Task Bench's do.
enum TaskBenchRandom {
    /// Task Bench's key: the bytes 1 … 15 and a 0 (its C array has 15 initialisers for 16 bytes).
    static let key: [UInt8] = Array(1...15) + [0]

    /// A number in [0, 1) from the 64-bit integers `seed`, hashed as their little-endian bytes.
    static func uniform(_ seed: [Int]) -> Double {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(seed.count * 8)
        for value in seed { withUnsafeBytes(of: Int64(value).littleEndian) { bytes.append(contentsOf: $0) } }
        return Double(sipHash24(bytes, key: key)) * 0x1p-64
    }

    static func sipHash24(_ data: [UInt8], key: [UInt8]) -> UInt64 {
        func word(_ b: ArraySlice<UInt8>) -> UInt64 {
            var w: UInt64 = 0
            for (i, byte) in b.enumerated() { w |= UInt64(byte) << (8 * UInt64(i)) }
            return w
        }
        let k0 = word(key[0..<8]), k1 = word(key[8..<16])
        var v0: UInt64 = 0x736f_6d65_7073_6575 ^ k0
        var v1: UInt64 = 0x646f_7261_6e64_6f6d ^ k1
        var v2: UInt64 = 0x6c79_6765_6e65_7261 ^ k0
        var v3: UInt64 = 0x7465_6462_7974_6573 ^ k1
        func round() {
            v0 &+= v1; v1 = v1.rotatedLeft(13); v1 ^= v0; v0 = v0.rotatedLeft(32)
            v2 &+= v3; v3 = v3.rotatedLeft(16); v3 ^= v2
            v0 &+= v3; v3 = v3.rotatedLeft(21); v3 ^= v0
            v2 &+= v1; v1 = v1.rotatedLeft(17); v1 ^= v2; v2 = v2.rotatedLeft(32)
        }
        let end = data.count - data.count % 8
        var offset = 0
        while offset < end {
            let m = word(data[offset..<offset + 8])
            v3 ^= m
            round(); round()
            v0 ^= m
            offset += 8
        }
        var last = UInt64(truncatingIfNeeded: data.count) << 56
        for (i, byte) in data[end...].enumerated() { last |= UInt64(byte) << (8 * UInt64(i)) }
        v3 ^= last
        round(); round()
        v0 ^= last
        v2 ^= 0xff
        round(); round(); round(); round()
        return v0 ^ v1 ^ v2 ^ v3
    }
}

private extension UInt64 {
    func rotatedLeft(_ n: UInt64) -> UInt64 { (self << n) | (self >> (64 - n)) }
}
