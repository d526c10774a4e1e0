import Version

/// A semver constraint as `--include-module name@CONSTRAINT` takes it: comparisons
/// (`>=1.2`, `<2.0.0`, `=v1.3.4`, a bare version meaning equality), `~1.2` (same minor),
/// `^1.2` (same major), conditions joined by ',' or spaces (all must hold) and alternatives
/// joined by `||`.
public struct VersionConstraint: Sendable, CustomStringConvertible {
    private enum Comparison: Sendable {
        case equal(Version), greater(Version), greaterOrEqual(Version), less(Version), lessOrEqual(Version)
        case tilde(Version), caret(Version)

        func matches(_ v: Version) -> Bool {
            switch self {
            case let .equal(x): return v == x
            case let .greater(x): return v > x
            case let .greaterOrEqual(x): return v >= x
            case let .less(x): return v < x
            case let .lessOrEqual(x): return v <= x
            case let .tilde(x): return v >= x && v.major == x.major && v.minor == x.minor
            case let .caret(x): return v >= x && v.major == x.major && (x.major > 0 || v.minor == x.minor)
            }
        }
    }

    private let alternatives: [[Comparison]]
    public let description: String

    public init(parsing text: String) throws {
        description = text
        var alternatives: [[Comparison]] = []
        for alternative in text.components(separatedBy: "||") {
            var conditions: [Comparison] = []
            let tokens = alternative.split(whereSeparator: { $0 == "," || $0 == " " }).map(String.init)
            var pendingOperator: String?
            for token in tokens {
                if ["=", "==", ">", ">=", "<", "<=", "~", "^"].contains(token) { pendingOperator = token; continue }
                let full = (pendingOperator ?? "") + token
                pendingOperator = nil
                conditions.append(try Self.parseCondition(full, in: text))
            }
            guard !conditions.isEmpty, pendingOperator == nil else {
                throw DKPError.invalidInput("invalid version constraint '\(text)': expected e.g. >=1.2.0, ~1.4 or =v1.3.4")
            }
            alternatives.append(conditions)
        }
        self.alternatives = alternatives
    }

    private static func parseCondition(_ token: String, in text: String) throws -> Comparison {
        let operators = [">=", "<=", "==", ">", "<", "=", "~", "^"]
        let op = operators.first { token.hasPrefix($0) } ?? ""
        let rest = String(token.dropFirst(op.count))
        guard let version = Version(tolerant: rest) else {
            throw DKPError.invalidInput("invalid version constraint '\(text)': '\(rest)' is not a version")
        }
        switch op {
        case ">=": return .greaterOrEqual(version)
        case "<=": return .lessOrEqual(version)
        case ">": return .greater(version)
        case "<": return .less(version)
        case "~": return .tilde(version)
        case "^": return .caret(version)
        default: return .equal(version)
        }
    }

    public func matches(_ version: Version) -> Bool {
        alternatives.contains { $0.allSatisfy { $0.matches(version) } }
    }

    /// The single version this constraint pins, if it is an exact `=vX.Y.Z`.
    public var exactVersion: Version? {
        guard alternatives.count == 1, alternatives[0].count == 1, case let .equal(v) = alternatives[0][0] else { return nil }
        return v
    }
}
