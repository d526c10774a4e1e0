import Foundation
import Streams
import Testing

/// GOST R 34.11-2012, 256-bit. Expected values are in gostsum's byte order (the order d8 writes
/// into `.gostsum` files, and `rhash --gost12-256` prints): the reverse of how RFC 6986 writes
/// the result as a number. The messages are byte strings in file order, likewise the reverse of
/// the RFC's hex numbers.
@Suite struct StreebogTests {
    /// Bytes of a deterministic test pattern; the expected sums below were computed with rhash.
    static func pattern(_ count: Int) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ ($0 >> 8)) }
    }

    static func hexOf(_ bytes: [UInt8]) -> String {
        let hasher = Streebog256()
        hasher.update(bytes)
        return hasher.finalizeHex()
    }

    @Test func rfc6986Example1() {
        // M1: 63 bytes, "0123456789...012" (RFC 6986 section 10.1).
        let message = Array("012345678901234567890123456789012345678901234567890123456789012".utf8)
        #expect(message.count == 63)
        #expect(Self.hexOf(message) == "9d151eefd8590b89daa6ba6cb74af9275dd051026bb149a452fd84e5e57b5500")
    }

    @Test func rfc6986Example2() {
        // M2: 72 bytes, "Се ветри, Стрибожи внуци, веютъ с моря стрелами на храбрыя плъкы Игоревы"
        // in CP1251 (RFC 6986 section 10.2); the RFC's H(M2) for 256 bits is
        // 508f7e553c06501d749a66fc28c6cac0b005746d97537fa85d9e40904efed29d written as a number.
        let message: [UInt8] = [
            0xd1, 0xe5, 0x20, 0xe2, 0xe5, 0xf2, 0xf0, 0xe8, 0x2c, 0x20, 0xd1, 0xf2, 0xf0, 0xe8, 0xe1, 0xee,
            0xe6, 0xe8, 0x20, 0xe2, 0xed, 0xf3, 0xf6, 0xe8, 0x2c, 0x20, 0xe2, 0xe5, 0xfe, 0xf2, 0xfa, 0x20,
            0xf1, 0x20, 0xec, 0xee, 0xf0, 0xff, 0x20, 0xf1, 0xf2, 0xf0, 0xe5, 0xeb, 0xe0, 0xec, 0xe8, 0x20,
            0xed, 0xe0, 0x20, 0xf5, 0xf0, 0xe0, 0xe1, 0xf0, 0xfb, 0xff, 0x20, 0xef, 0xeb, 0xfa, 0xea, 0xfb,
            0x20, 0xc8, 0xe3, 0xee, 0xf0, 0xe5, 0xe2, 0xfb,
        ]
        #expect(message.count == 72)
        #expect(Self.hexOf(message) == "9dd2fe4e90409e5da87f53976d7405b0c0cac628fc669a741d50063c557e8f50")
    }

    @Test func emptyMessage() {
        #expect(Self.hexOf([]) == "3f539a213e97c802cc229d474c6aa32a825a360b2a933a949fd925208d9ce1bb")
        // Updating with nothing changes nothing.
        let hasher = Streebog256()
        hasher.update([])
        hasher.update(UnsafeRawBufferPointer(start: nil, count: 0))
        #expect(hasher.finalizeHex() == "3f539a213e97c802cc229d474c6aa32a825a360b2a933a949fd925208d9ce1bb")
    }

    /// Lengths around the block size (a message of whole blocks still gets a padding block),
    /// a carry-heavy Sigma, and a longer message; cross-checked with `rhash --gost12-256`.
    @Test(arguments: [
        (64, "8ad488c4a828b6aad079e0e4aa0eec8c95a444758378545d1d690eb7da06ad47"),
        (127, "7febd166fb894ba44be063b4842408ad01e3f25c9fab5f6e64b48e5ff4d5edf2"),
        (128, "cbdf4f9c8a4dcc3bd71ac1de72d8729a0d47d0d072de4998d6c536d4cd388d8d"),
        (129, "71e48b5950981ddfdb65fe9585731b94787f37c4f2a16f962f93a48f07dca078"),
        (1000, "ddc7db7e39d1e53a52ba4fbc9f9edc76c176b6154e5c05c80e9f15d02c94d94f"),
        (1 << 20, "2de86842e18d00b3c133a0e464392c8b066d8f9b3f149e0f44829bbba60e6e26"),
    ])
    func patternVectors(length: Int, hex: String) {
        #expect(Self.hexOf(Self.pattern(length)) == hex)
    }

    @Test func allOnesCarry() {
        let message = [UInt8](repeating: 0xff, count: 200)
        #expect(Self.hexOf(message) == "766ecebac5817150ace66c0c94c9feb9fa6ee9a238a500a3592b0943571b3020")
    }

    @Test(arguments: [1, 63, 64, 65, 1000])
    func piecesGiveTheSameDigest(pieceSize: Int) {
        let message = Self.pattern(10_000)
        let whole = Self.hexOf(message)
        let hasher = Streebog256()
        message.withUnsafeBytes { bytes in
            var start = 0
            while start < bytes.count {
                let end = min(start + pieceSize, bytes.count)
                hasher.update(UnsafeRawBufferPointer(rebasing: bytes[start..<end]))
                start = end
            }
        }
        #expect(hasher.finalizeHex() == whole)
    }

    @Test func mixedPieceSizes() {
        let message = Self.pattern(20_000)
        let whole = Self.hexOf(message)
        let hasher = Streebog256()
        let sizes = [1, 63, 64, 65, 1000, 0, 127, 3]
        var start = 0
        var i = 0
        while start < message.count {
            let end = min(start + sizes[i % sizes.count], message.count)
            hasher.update(Array(message[start..<end]))
            start = end
            i += 1
        }
        #expect(hasher.finalizeHex() == whole)
    }

    @Test func finalizeReturnsBytesAndResets() {
        let message = Array("012345678901234567890123456789012345678901234567890123456789012".utf8)
        let hasher = Streebog256()
        hasher.update(message)
        let bytes = hasher.finalize()
        #expect(bytes.count == 32)
        #expect(Streebog256.hex(of: bytes) == "9d151eefd8590b89daa6ba6cb74af9275dd051026bb149a452fd84e5e57b5500")
        // The hasher starts over after finalize.
        #expect(hasher.finalizeHex() == "3f539a213e97c802cc229d474c6aa32a825a360b2a933a949fd925208d9ce1bb")
        hasher.update(message)
        #expect(hasher.finalizeHex() == "9d151eefd8590b89daa6ba6cb74af9275dd051026bb149a452fd84e5e57b5500")
    }

    @Test func hexIsLowercaseInOrder() {
        #expect(Streebog256.hex(of: [0x00, 0x0f, 0xa0, 0xff]) == "000fa0ff")
        #expect(Streebog256.hex(of: []) == "")
    }
}
