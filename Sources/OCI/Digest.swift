/// A content digest. Only `sha256` is supported: `sha256:<64 lowercase hex digits>`.
public struct Digest: Hashable, Comparable, Sendable, Codable, CustomStringConvertible {
    /// The 64 lowercase hex digits of the SHA-256 hash.
    public let hex: String

    /// The digest algorithm; always `"sha256"`.
    public var algorithm: String { Self.algorithmName }

    static let algorithmName = "sha256"
    static let hexLength = 64
    static let expected = "expected sha256:<64 lowercase hex digits>"

    /// Parses exactly `sha256:<64 lowercase hex digits>`.
    public init(parsing string: String) throws {
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
        self.hex = encoded
    }

    /// Creates a digest from the 64 lowercase hex digits of a SHA-256 hash (no prefix).
    public init(sha256Hex: String) throws {
        if let problem = Self.hexProblem(sha256Hex) {
            throw OCIError.invalidDigest(sha256Hex, reason: problem)
        }
        self.hex = sha256Hex
    }

    /// `"sha256:<hex>"`.
    public var string: String { "\(Self.algorithmName):\(hex)" }

    public var description: String { string }

    public static func < (lhs: Digest, rhs: Digest) -> Bool { lhs.hex < rhs.hex }

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
