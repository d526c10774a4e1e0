import CCrypto
import OCI

/// Incremental SHA-256 on libcrypto's EVP interface, which uses the CPU's SHA extensions
/// where present. One instance hashes one stream; it is not shared between tasks.
public final class SHA256 {
    private let context: OpaquePointer

    public init() {
        guard let context = EVP_MD_CTX_new() else { fatalError("out of memory") } // invariant: fails only when malloc does
        self.context = context
        reset()
    }

    deinit { EVP_MD_CTX_free(context) }

    /// Starts a new digest, forgetting what was hashed so far.
    public func reset() {
        EVP_DigestInit_ex(context, EVP_sha256(), nil)
    }

    public func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return }
        EVP_DigestUpdate(context, base, bytes.count)
    }

    public func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { update($0) }
    }

    /// The digest of everything hashed since the last reset; the hasher is reset afterwards.
    public func finalize() -> Digest {
        var output = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 0
        output.withUnsafeMutableBufferPointer { buffer in
            _ = EVP_DigestFinal_ex(context, buffer.baseAddress, &length)
        }
        reset()
        return Digest(sha256Bytes: output)
    }

    /// The SHA-256 digest of a byte array.
    public static func digest(of bytes: [UInt8]) -> Digest {
        let hasher = SHA256()
        hasher.update(bytes)
        return hasher.finalize()
    }

    public static func digest(of bytes: UnsafeRawBufferPointer) -> Digest {
        let hasher = SHA256()
        hasher.update(bytes)
        return hasher.finalize()
    }
}

extension Digest {
    /// A digest from the 32 raw bytes of a SHA-256 sum.
    init(sha256Bytes bytes: [UInt8]) {
        let table = Array("0123456789abcdef".utf8)
        var hex = [UInt8]()
        hex.reserveCapacity(64)
        for byte in bytes {
            hex.append(table[Int(byte >> 4)])
            hex.append(table[Int(byte & 0x0f)])
        }
        guard let digest = try? Digest(sha256Hex: String(decoding: hex, as: UTF8.self)) else {
            fatalError("SHA-256 output is not 32 bytes") // invariant: EVP always writes 32 bytes
        }
        self = digest
    }
}
