import CRHash

/// GOST R 34.11-2012 ("Streebog") with a 256-bit result, computed by librhash (Debian's
/// `librhash-dev`, the library behind `rhash --gost12-256`).
///
/// `finalize()` returns the digest in the byte order `gostsum`, `rhash` and d8's `.gostsum` files
/// print (the reverse of how RFC 6986's examples write the result as a number).
///
/// One instance hashes one stream at a time; it is not shared between tasks.
public final class Streebog256 {
    /// librhash's tables and algorithm list, set up once per process before any context.
    private static let libraryReady: Void = rhash_library_init()

    private let context: rhash

    public init() {
        _ = Self.libraryReady
        guard let context = rhash_init(UInt32(RHASH_GOST12_256.rawValue)) else {
            fatalError("librhash could not allocate a GOST R 34.11-2012 context") // invariant: fails only when malloc does
        }
        self.context = context
    }

    deinit { rhash_free(context) }

    public func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return }
        _ = rhash_update(context, base, bytes.count)
    }

    public func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { update($0) }
    }

    /// The 32-byte digest of everything hashed since the last reset, in gostsum's byte order;
    /// the hasher starts over afterwards.
    public func finalize() -> [UInt8] {
        var digest = [UInt8](repeating: 0, count: 32)
        digest.withUnsafeMutableBytes { _ = rhash_final(context, $0.baseAddress?.assumingMemoryBound(to: UInt8.self)) }
        rhash_reset(context)
        return digest
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
}
