/// GOST R 34.11-2012 ("Streebog") with a 256-bit result, written from the standard (RFC 6986).
///
/// Conventions. The standard writes a 512-bit vector as a number a_63 || ... || a_0 of bytes with
/// a_0 the least significant; the message is read so that its first byte is a_0 of its first block.
/// Here a 512-bit vector is held as eight `UInt64` words, word 0 the least significant, each word
/// loaded from (and stored to) memory little-endian, so byte i of a block in memory is a_i.
/// The 256-bit hash is the most significant half of the final state, bytes 32..<64 in memory;
/// `finalize()` returns those bytes in memory order, which is the order `gostsum`, `rhash` and
/// d8's `.gostsum` files print (the reverse of how the standard's examples write the number).
///
/// Speed. S (the byte substitution pi), P (the byte transposition tau) and L (the 64x64 bit matrix
/// A over each word) are folded into eight tables of 256 words, built once from pi and A: output
/// word j of LPS(x) is the XOR over k of table k at byte j of input word k, eight look-ups a word.
///
/// One instance hashes one stream at a time; it is not shared between tasks.
public final class Streebog256 {
    /// The chaining value h, the bit counter N and the block sum Sigma of the standard.
    private var h: Streebog.Block
    private var n: Streebog.Block
    private var sigma: Streebog.Block
    /// Bytes of an incomplete block; `buffered` of them are valid.
    private let buffer: UnsafeMutableRawPointer
    private var buffered = 0
    /// LPS tables then round constants, shared by every instance.
    private let tables: [UInt64]

    public init() {
        h = Streebog.iv256
        n = Streebog.zero
        sigma = Streebog.zero
        buffer = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 8)
        buffer.initializeMemory(as: UInt8.self, repeating: 0, count: 64)
        tables = Streebog.tables
    }

    deinit { buffer.deallocate() }

    public func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return }
        tables.withUnsafeBufferPointer { tablePointer in
            guard let t = tablePointer.baseAddress else { return }
            var h = self.h
            var n = self.n
            var sigma = self.sigma
            var offset = 0
            let count = bytes.count

            if buffered > 0 {
                let take = min(64 - buffered, count)
                (buffer + buffered).copyMemory(from: base, byteCount: take)
                buffered += take
                offset = take
                if buffered == 64 {
                    let m = Streebog.load(UnsafeRawPointer(buffer))
                    Streebog.absorb(t, &h, &n, &sigma, m)
                    buffered = 0
                }
            }
            while count - offset >= 64 {
                let m = Streebog.load(base + offset)
                Streebog.absorb(t, &h, &n, &sigma, m)
                offset += 64
            }
            if offset < count {
                (buffer + buffered).copyMemory(from: base + offset, byteCount: count - offset)
                buffered += count - offset
            }

            self.h = h
            self.n = n
            self.sigma = sigma
        }
    }

    public func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { update($0) }
    }

    /// The 32-byte digest of everything hashed since the last reset, in gostsum's byte order;
    /// the hasher starts over afterwards.
    public func finalize() -> [UInt8] {
        let words: Streebog.Block = tables.withUnsafeBufferPointer { tablePointer in
            guard let t = tablePointer.baseAddress else { return Streebog.zero }
            // Stage 3: the remaining |M| < 512 bits, padded as 0...0 1 || M, that is
            // the message bytes, then 0x01, then zeros.
            (buffer + buffered).storeBytes(of: 1, as: UInt8.self)
            if buffered < 63 {
                (buffer + buffered + 1).initializeMemory(as: UInt8.self, repeating: 0, count: 63 - buffered)
            }
            let m = Streebog.load(UnsafeRawPointer(buffer))
            var h = Streebog.compress(t, self.h, n, m)
            let bits = Streebog.Block(UInt64(buffered) &* 8, 0, 0, 0, 0, 0, 0, 0)
            let n = Streebog.add(self.n, bits)
            let sigma = Streebog.add(self.sigma, m)
            h = Streebog.compress(t, h, Streebog.zero, n)
            h = Streebog.compress(t, h, Streebog.zero, sigma)
            return h
        }
        reset()
        var output = [UInt8](repeating: 0, count: 32)
        let high = [words.4, words.5, words.6, words.7]
        for (w, word) in high.enumerated() {
            for b in 0..<8 {
                output[w * 8 + b] = UInt8(truncatingIfNeeded: word >> (8 * UInt64(b)))
            }
        }
        return output
    }

    /// `finalize()` as 64 lowercase hex digits, as a `.gostsum` file holds it.
    public func finalizeHex() -> String {
        Streebog256.hex(of: finalize())
    }

    /// Lowercase hex of bytes, in the order given.
    public static func hex(of bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var text = [UInt8]()
        text.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 0x0f)])
        }
        return String(decoding: text, as: UTF8.self)
    }

    private func reset() {
        h = Streebog.iv256
        n = Streebog.zero
        sigma = Streebog.zero
        buffered = 0
    }
}

/// The algorithm's pieces, shared by the hasher; not public.
enum Streebog {
    /// A 512-bit vector as eight words, `.0` the least significant.
    typealias Block = (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64)

    static let zero: Block = (0, 0, 0, 0, 0, 0, 0, 0)
    /// The initial value for the 256-bit hash: every byte 0x01.
    static let iv256: Block = (
        0x0101_0101_0101_0101, 0x0101_0101_0101_0101, 0x0101_0101_0101_0101, 0x0101_0101_0101_0101,
        0x0101_0101_0101_0101, 0x0101_0101_0101_0101, 0x0101_0101_0101_0101, 0x0101_0101_0101_0101
    )

    /// Offset of the round constants C1..C12 (eight words each) in `tables`.
    static let constantsOffset = 8 * 256

    /// Eight LPS tables of 256 words, then the twelve round constants; built on first use.
    static let tables: [UInt64] = makeTables()

    /// Stage 2 of the standard for one full block m.
    @inline(__always)
    static func absorb(_ t: UnsafePointer<UInt64>, _ h: inout Block, _ n: inout Block, _ sigma: inout Block, _ m: Block) {
        h = compress(t, h, n, m)
        n = add(n, (512, 0, 0, 0, 0, 0, 0, 0))
        sigma = add(sigma, m)
    }

    /// The compression function g_N(h, m) = E(LPS(h xor N), m) xor h xor m, where
    /// E(K, m) = X[K13] LPSX[K12] ... LPSX[K1] (m) and K(i+1) = LPS(Ki xor Ci).
    @inline(__always)
    static func compress(_ t: UnsafePointer<UInt64>, _ h: Block, _ n: Block, _ m: Block) -> Block {
        var k = lps(t, xor(h, n))
        var state = m
        var c = t + constantsOffset
        for _ in 0..<12 {
            state = lps(t, xor(k, state))
            k = lps(t, xor(k, (c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7])))
            c += 8
        }
        return xor(xor(k, state), xor(h, m))
    }

    /// L(P(S(x))) with the combined tables.
    @inline(__always)
    static func lps(_ t: UnsafePointer<UInt64>, _ x: Block) -> Block {
        (column(t, x, 0), column(t, x, 8), column(t, x, 16), column(t, x, 24),
         column(t, x, 32), column(t, x, 40), column(t, x, 48), column(t, x, 56))
    }

    /// Output word `shift / 8` of LPS(x): tau gathers byte `shift / 8` of every input word into it.
    @inline(__always)
    static func column(_ t: UnsafePointer<UInt64>, _ x: Block, _ shift: UInt64) -> UInt64 {
        t[Int(truncatingIfNeeded: (x.0 >> shift) & 0xff)]
            ^ t[256 + Int(truncatingIfNeeded: (x.1 >> shift) & 0xff)]
            ^ t[512 + Int(truncatingIfNeeded: (x.2 >> shift) & 0xff)]
            ^ t[768 + Int(truncatingIfNeeded: (x.3 >> shift) & 0xff)]
            ^ t[1024 + Int(truncatingIfNeeded: (x.4 >> shift) & 0xff)]
            ^ t[1280 + Int(truncatingIfNeeded: (x.5 >> shift) & 0xff)]
            ^ t[1536 + Int(truncatingIfNeeded: (x.6 >> shift) & 0xff)]
            ^ t[1792 + Int(truncatingIfNeeded: (x.7 >> shift) & 0xff)]
    }

    @inline(__always)
    static func xor(_ a: Block, _ b: Block) -> Block {
        (a.0 ^ b.0, a.1 ^ b.1, a.2 ^ b.2, a.3 ^ b.3, a.4 ^ b.4, a.5 ^ b.5, a.6 ^ b.6, a.7 ^ b.7)
    }

    /// Addition modulo 2^512.
    @inline(__always)
    static func add(_ a: Block, _ b: Block) -> Block {
        var carry: UInt64 = 0
        @inline(__always) func limb(_ x: UInt64, _ y: UInt64) -> UInt64 {
            let (s1, o1) = x.addingReportingOverflow(y)
            let (s2, o2) = s1.addingReportingOverflow(carry)
            carry = (o1 || o2) ? 1 : 0
            return s2
        }
        let r0 = limb(a.0, b.0), r1 = limb(a.1, b.1), r2 = limb(a.2, b.2), r3 = limb(a.3, b.3)
        let r4 = limb(a.4, b.4), r5 = limb(a.5, b.5), r6 = limb(a.6, b.6), r7 = limb(a.7, b.7)
        return (r0, r1, r2, r3, r4, r5, r6, r7)
    }

    /// A 64-byte block from memory (any alignment).
    @inline(__always)
    static func load(_ p: UnsafeRawPointer) -> Block {
        @inline(__always) func word(_ i: Int) -> UInt64 {
            UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self))
        }
        return (word(0), word(1), word(2), word(3), word(4), word(5), word(6), word(7))
    }

    // MARK: Definitions from the standard

    /// The substitution pi (RFC 6986 section 6.2, as in Kuznyechik).
    static let pi: [UInt8] = [
        252, 238, 221, 17, 207, 110, 49, 22, 251, 196, 250, 218, 35, 197, 4, 77,
        233, 119, 240, 219, 147, 46, 153, 186, 23, 54, 241, 187, 20, 205, 95, 193,
        249, 24, 101, 90, 226, 92, 239, 33, 129, 28, 60, 66, 139, 1, 142, 79,
        5, 132, 2, 174, 227, 106, 143, 160, 6, 11, 237, 152, 127, 212, 211, 31,
        235, 52, 44, 81, 234, 200, 72, 171, 242, 42, 104, 162, 253, 58, 206, 204,
        181, 112, 14, 86, 8, 12, 118, 18, 191, 114, 19, 71, 156, 183, 93, 135,
        21, 161, 150, 41, 16, 123, 154, 199, 243, 145, 120, 111, 157, 158, 178, 177,
        50, 117, 25, 61, 255, 53, 138, 126, 109, 84, 198, 128, 195, 189, 13, 87,
        223, 245, 36, 169, 62, 168, 67, 201, 215, 121, 214, 246, 124, 34, 185, 3,
        224, 15, 236, 222, 122, 148, 176, 188, 220, 232, 40, 80, 78, 51, 10, 74,
        167, 151, 96, 115, 30, 0, 98, 68, 26, 184, 56, 130, 100, 159, 38, 65,
        173, 69, 70, 146, 39, 94, 85, 47, 140, 163, 165, 125, 105, 213, 149, 59,
        7, 88, 179, 64, 134, 172, 29, 247, 48, 55, 107, 228, 136, 217, 231, 137,
        225, 27, 131, 73, 76, 63, 248, 254, 141, 83, 170, 144, 202, 216, 133, 97,
        32, 113, 103, 164, 45, 43, 9, 91, 203, 155, 37, 208, 190, 229, 108, 82,
        89, 166, 116, 210, 230, 244, 180, 192, 209, 102, 175, 194, 57, 75, 99, 182,
    ]

    /// The permutation tau (RFC 6986 section 6.3): the transpose of an 8x8 byte matrix,
    /// tau(8i + j) = 8j + i.
    static func tau(_ index: Int) -> Int { (index % 8) * 8 + index / 8 }

    /// The rows of the matrix A of the linear transform l (RFC 6986 section 6.4):
    /// l(b63 ... b0) = XOR of A[63 - i] over the set bits bi of a 64-bit word.
    static let matrixA: [UInt64] = [
        0x8e20faa72ba0b470, 0x47107ddd9b505a38, 0xad08b0e0c3282d1c, 0xd8045870ef14980e,
        0x6c022c38f90a4c07, 0x3601161cf205268d, 0x1b8e0b0e798c13c8, 0x83478b07b2468764,
        0xa011d380818e8f40, 0x5086e740ce47c920, 0x2843fd2067adea10, 0x14aff010bdd87508,
        0x0ad97808d06cb404, 0x05e23c0468365a02, 0x8c711e02341b2d01, 0x46b60f011a83988e,
        0x90dab52a387ae76f, 0x486dd4151c3dfdb9, 0x24b86a840e90f0d2, 0x125c354207487869,
        0x092e94218d243cba, 0x8a174a9ec8121e5d, 0x4585254f64090fa0, 0xaccc9ca9328a8950,
        0x9d4df05d5f661451, 0xc0a878a0a1330aa6, 0x60543c50de970553, 0x302a1e286fc58ca7,
        0x18150f14b9ec46dd, 0x0c84890ad27623e0, 0x0642ca05693b9f70, 0x0321658cba93c138,
        0x86275df09ce8aaa8, 0x439da0784e745554, 0xafc0503c273aa42a, 0xd960281e9d1d5215,
        0xe230140fc0802984, 0x71180a8960409a42, 0xb60c05ca30204d21, 0x5b068c651810a89e,
        0x456c34887a3805b9, 0xac361a443d1c8cd2, 0x561b0d22900e4669, 0x2b838811480723ba,
        0x9bcf4486248d9f5d, 0xc3e9224312c8c1a0, 0xeffa11af0964ee50, 0xf97d86d98a327728,
        0xe4fa2054a80b329c, 0x727d102a548b194e, 0x39b008152acb8227, 0x9258048415eb419d,
        0x492c024284fbaec0, 0xaa16012142f35760, 0x550b8e9e21f7a530, 0xa48b474f9ef5dc18,
        0x70a6a56e2440598e, 0x3853dc371220a247, 0x1ca76e95091051ad, 0x0edd37c48a08a6d8,
        0x07e095624504536c, 0x8d70c431ac02a736, 0xc83862965601dd1b, 0x641c314b2b8ee083,
    ]

    /// The iteration constants C1..C12 (RFC 6986 section 6.6), each written as the standard
    /// writes a 512-bit number: most significant byte first.
    static let roundConstants: [String] = [
        "b1085bda1ecadae9ebcb2f81c0657c1f2f6a76432e45d016714eb88d7585c4fc"
            + "4b7ce09192676901a2422a08a460d31505767436cc744d23dd806559f2a64507",
        "6fa3b58aa99d2f1a4fe39d460f70b5d7f3feea720a232b9861d55e0f16b50131"
            + "9ab5176b12d699585cb561c2db0aa7ca55dda21bd7cbcd56e679047021b19bb7",
        "f574dcac2bce2fc70a39fc286a3d843506f15e5f529c1f8bf2ea7514b1297b7b"
            + "d3e20fe490359eb1c1c93a376062db09c2b6f443867adb31991e96f50aba0ab2",
        "ef1fdfb3e81566d2f948e1a05d71e4dd488e857e335c3c7d9d721cad685e353f"
            + "a9d72c82ed03d675d8b71333935203be3453eaa193e837f1220cbebc84e3d12e",
        "4bea6bacad4747999a3f410c6ca923637f151c1f1686104a359e35d7800fffbd"
            + "bfcd1747253af5a3dfff00b723271a167a56a27ea9ea63f5601758fd7c6cfe57",
        "ae4faeae1d3ad3d96fa4c33b7a3039c02d66c4f95142a46c187f9ab49af08ec6"
            + "cffaa6b71c9ab7b40af21f66c2bec6b6bf71c57236904f35fa68407a46647d6e",
        "f4c70e16eeaac5ec51ac86febf240954399ec6c7e6bf87c9d3473e33197a93c9"
            + "0992abc52d822c3706476983284a05043517454ca23c4af38886564d3a14d493",
        "9b1f5b424d93c9a703e7aa020c6e41414eb7f8719c36de1e89b4443b4ddbc49a"
            + "f4892bcb929b069069d18d2bd1a5c42f36acc2355951a8d9a47f0dd4bf02e71e",
        "378f5a541631229b944c9ad8ec165fde3a7d3a1b258942243cd955b7e00d0984"
            + "800a440bdbb2ceb17b2b8a9aa6079c540e38dc92cb1f2a607261445183235adb",
        "abbedea680056f52382ae548b2e4f3f38941e71cff8a78db1fffe18a1b336103"
            + "9fe76702af69334b7a1e6c303b7652f43698fad1153bb6c374b4c7fb98459ced",
        "7bcd9ed0efc889fb3002c6cd635afe94d8fa6bbbebab07612001802114846679"
            + "8a1d71efea48b9caefbacd1d7d476e98dea2594ac06fd85d6bcaa4cd81f32d1b",
        "378ee767f11631bad21380b00449b17acda43c32bcdf1d77f82012d430219f9b"
            + "5d80ef9d1891cc86e71da4aa88e12852faf417d5d9b21b9948bc924af11bd720",
    ]

    /// Table k maps a byte v to l applied to the word that S and P make of byte value v found in
    /// input word k (its other bytes zero). P puts vector byte 8k + j at position tau(8k + j) =
    /// 8j + k (tau is the transpose and its own inverse): byte j of input word k lands in output
    /// word j, always at byte k. So output word j of LPS(x) is l of the sum over k of
    /// pi(byte j of word k) << 8k, which, l being linear, is the XOR of table k at those bytes.
    static func makeTables() -> [UInt64] {
        var tables = [UInt64](repeating: 0, count: constantsOffset + 12 * 8)
        for k in 0..<8 {
            let position = tau(8 * k) % 8 // byte of the output word, the same for every j
            for v in 0..<256 {
                let word = UInt64(pi[v]) << (8 * UInt64(position))
                var value: UInt64 = 0
                for bit in 0..<64 where (word >> UInt64(bit)) & 1 == 1 {
                    value ^= matrixA[63 - bit]
                }
                tables[k * 256 + v] = value
            }
        }
        for (i, hex) in roundConstants.enumerated() {
            let digits = Array(hex.utf8)
            for word in 0..<8 {
                // Word 0 is the least significant: the last 16 digits.
                let start = (7 - word) * 16
                var value: UInt64 = 0
                for d in digits[start..<(start + 16)] {
                    value = value << 4 | UInt64(nibble(d))
                }
                tables[constantsOffset + i * 8 + word] = value
            }
        }
        return tables
    }

    private static func nibble(_ digit: UInt8) -> UInt8 {
        switch digit {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): digit - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): digit - UInt8(ascii: "a") + 10
        default: 0
        }
    }
}
