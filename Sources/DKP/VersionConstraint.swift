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
    /// The channel of an exact pin written `=v1.2.3+stable`: that version goes onto this channel only.
    public let pinnedChannel: ReleaseChannel?

    public init(parsing text: String) throws {
        description = text
        var body = text
        var channel: ReleaseChannel?
        if let plus = text.lastIndex(of: "+"), let named = ReleaseChannel(rawValue: String(text[text.index(after: plus)...])) {
            channel = named
            body = String(text[..<plus])
        }
        var alternatives: [[Comparison]] = []
        for alternative in body.components(separatedBy: "||") {
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
        self.pinnedChannel = channel
        if channel != nil && exactVersion == nil {
            throw DKPError.invalidInput("invalid version constraint '\(text)': a +channel suffix needs an exact version, e.g. =v1.3.4+stable")
        }
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

    /// The smallest version literal a lower bound names (`>=`, `>`, `=`, `~`, `^`): where probing starts.
    public var lowerBound: Version? {
        alternatives.flatMap { $0 }.compactMap { comparison -> Version? in
            switch comparison {
            case let .equal(v), let .greater(v), let .greaterOrEqual(v), let .tilde(v), let .caret(v): return v
            case .less, .lessOrEqual: return nil
            }
        }.min()
    }

    /// Versions named with an inclusive bound (`>=`, `<=`, `=`): kept even when a newer patch exists.
    public var anchors: [Version] {
        alternatives.flatMap { $0 }.compactMap { comparison -> Version? in
            switch comparison {
            case let .equal(v), let .greaterOrEqual(v), let .lessOrEqual(v): return v
            default: return nil
            }
        }
    }

    /// The single version this constraint pins, if it is an exact `=vX.Y.Z`.
    public var exactVersion: Version? {
        guard alternatives.count == 1, alternatives[0].count == 1, case let .equal(v) = alternatives[0][0] else { return nil }
        return v
    }
}
