/// A content digest. Only `sha256` is supported: `sha256:<64 lowercase hex digits>`.
public struct Digest: Hashable, Comparable, Sendable, Codable, CustomStringConvertible {
    // The hash's 32 bytes as four big-endian words, inline: a hex string was 96 more bytes of
    // heap per digest, and a large plan holds hundreds of thousands of digests.
    private let w0, w1, w2, w3: UInt64

    /// The 64 lowercase hex digits of the SHA-256 hash.
    public var hex: String { Self.text(prefix: "", w0, w1, w2, w3) }

    /// The digest algorithm; always `"sha256"`.
    public var algorithm: String { Self.algorithmName }

    static let algorithmName = "sha256"
    static let hexLength = 64
    static let expected = "expected sha256:<64 lowercase hex digits>"

    /// Parses exactly `sha256:<64 lowercase hex digits>`.
    public init(parsing string: String) throws {
        // The usual form straight from its bytes: a bundle's references parse tens of
        // thousands of digests, and the checks below walk Unicode properties per character.
        if let words = Self.words(ofCanonical: string.utf8) {
            (w0, w1, w2, w3) = words
            return
        }
        if string.isEmpty {
            throw OCIError.invalidDigest(string, reason: "empty; \(Self.expected)")
        }
        if string.unicodeScalars.contains(where: {
            $0.properties.isWhitespace || $0.properties.generalCategory == .control
        }) {
            throw OCIError.invalidDigest(string, reason: "contains whitespace or control characters; \(Self.expected)")
        }
        guard let colon = string.firstIndex(of: ":") else {
            if Self.hexProblem(string) == nil {
                throw OCIError.invalidDigest(string, reason: "missing the 'sha256:' prefix; \(Self.expected)")
            }
            throw OCIError.invalidDigest(string, reason: "missing the algorithm prefix; \(Self.expected)")
        }
        let algorithm = String(string[..<colon])
        let encoded = String(string[string.index(after: colon)...])
        guard algorithm == Self.algorithmName else {
            if algorithm.lowercased() == Self.algorithmName {
                throw OCIError.invalidDigest(string, reason: "the algorithm must be written in lowercase; \(Self.expected)")
            }
            if algorithm.isEmpty {
                throw OCIError.invalidDigest(string, reason: "missing the algorithm before ':'; \(Self.expected)")
            }
            throw OCIError.invalidDigest(
                string,
                reason: "unsupported algorithm '\(OCIError.display(algorithm, limit: 40))'; only sha256 is supported")
        }
        if let problem = Self.hexProblem(encoded) {
            throw OCIError.invalidDigest(string, reason: problem)
        }
        (w0, w1, w2, w3) = Self.words(ofValidHex: encoded)
    }

    /// Creates a digest from the 64 lowercase hex digits of a SHA-256 hash (no prefix).
    public init(sha256Hex: String) throws {
        if let problem = Self.hexProblem(sha256Hex) {
            throw OCIError.invalidDigest(sha256Hex, reason: problem)
        }
        (w0, w1, w2, w3) = Self.words(ofValidHex: sha256Hex)
    }

    /// `"sha256:<hex>"`.
    public var string: String { Self.text(prefix: "sha256:", w0, w1, w2, w3) }

    public var description: String { string }

    /// The order of the hex strings (big-endian words compare as their hex does).
    public static func < (lhs: Digest, rhs: Digest) -> Bool { (lhs.w0, lhs.w1, lhs.w2, lhs.w3) < (rhs.w0, rhs.w1, rhs.w2, rhs.w3) }

    /// The words of `sha256:` and 64 lowercase hex digits; nil for anything else (which the
    /// checks of `init(parsing:)` then explain).
    private static func words(ofCanonical bytes: String.UTF8View) -> (UInt64, UInt64, UInt64, UInt64)? {
        guard bytes.count == 71, bytes.starts(with: "sha256:".utf8) else { return nil }
        return words(ofHex: bytes.dropFirst(7))
    }

    /// 64 hex digits already checked by `hexProblem`, as four words.
    private static func words(ofValidHex hex: String) -> (UInt64, UInt64, UInt64, UInt64) {
        words(ofHex: hex.utf8) ?? (0, 0, 0, 0)
    }

    /// 64 lowercase hex digits as four big-endian words; nil at the first other byte.
    private static func words(ofHex hex: some Sequence<UInt8>) -> (UInt64, UInt64, UInt64, UInt64)? {
        var words: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        var current: UInt64 = 0
        for (position, byte) in hex.enumerated() {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): current = current << 4 | UInt64(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): current = current << 4 | UInt64(byte - UInt8(ascii: "a") + 10)
            default: return nil
            }
            guard position % 16 == 15 else { continue }
            switch position / 16 {
            case 0: words.0 = current
            case 1: words.1 = current
            case 2: words.2 = current
            default: words.3 = current
            }
            current = 0
        }
        return words
    }

    /// `prefix` followed by the words' 64 lowercase hex digits, made in place: one allocation
    /// (entry names and index.json call this for every blob and reference of a plan).
    private static func text(prefix: StaticString, _ a: UInt64, _ b: UInt64, _ c: UInt64, _ d: UInt64) -> String {
        let head = prefix.utf8CodeUnitCount
        return String(unsafeUninitializedCapacity: head + 64) { out in
            prefix.withUTF8Buffer { for (i, byte) in $0.enumerated() { out[i] = byte } }
            var position = head
            for word in [a, b, c, d] {
                for shift in stride(from: 60, through: 0, by: -4) {
                    let nibble = UInt8((word >> UInt64(shift)) & 0xF)
                    out[position] = nibble < 10 ? UInt8(ascii: "0") + nibble : UInt8(ascii: "a") + nibble - 10
                    position += 1
                }
            }
            return position
        }
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let raw = try container.decode(String.self)
        do {
            try self.init(parsing: raw)
        } catch let error as OCIError {
            throw DecodingError.dataCorrupted(.init(
                codingPath: decoder.codingPath, debugDescription: error.description, underlyingError: error))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(string)
    }

    /// Returns why `hex` is not 64 lowercase hex digits, or nil when it is.
    private static func hexProblem(_ hex: String) -> String? {
        var sawUppercase = false
        for ch in hex {
            // Compare ASCII values: Character ranges would admit combining sequences such as "a\u{301}".
            switch ch.asciiValue {
            case .some(UInt8(ascii: "0")...UInt8(ascii: "9")), .some(UInt8(ascii: "a")...UInt8(ascii: "f")):
                continue
            case .some(UInt8(ascii: "A")...UInt8(ascii: "F")):
                sawUppercase = true
            default:
                return "'\(OCIError.display(String(ch)))' is not a hex digit; \(expected)"
            }
        }
        if sawUppercase {
            return "hex digits must be lowercase; \(expected)"
        }
        if hex.utf8.count != hexLength {
            return expected
        }
        return nil
    }
}
