import OCI
import Version

/// A version constraint in one of two dialects.
///
/// `.flag` is d8's dialect for `--include-module`, `--include-package`, `--include-plugin` and
/// `--include-platform` (deckhouse-cli internal/mirror/README.MD, "Module Filtering"):
/// - `=TAG` pins one tag exactly, a version (`=v1.3.0`) or a custom build tag (`=bobV1`), and
///   `=TAG+CHANNEL` pins it onto that channel only;
/// - a bare version `1.3.0`, as the whole constraint, means that version or newer within its
///   major (`>=1.3.0 <2.0.0`, for `0.x` too); inside a compound it is that version;
/// - anything else is a range as Masterminds/semver v3 reads it (`VersionCondition`): `>=`,
///   `<=`, `>`, `<`, `!=`, `~1.2` (same minor), `~1` and `^1.2` (same major), `1.2.x`, conditions
///   joined by ',' or spaces (all must hold) and alternatives joined by `||`.
///
/// `.semver` is the plain semver dialect of plugin contracts, where a bare version means equality
/// (`1.2`, with its patch left open, every 1.2.x).
public struct VersionConstraint: Sendable, CustomStringConvertible {
    public enum Dialect: Sendable { case flag, semver }

    /// An exact `=TAG[+CHANNEL]`.
    public struct Pin: Sendable, Hashable {
        /// The tag as the registry has it (`1.3.0` and `v1.3` are read as `v1.3.0`).
        public let tag: String
        /// The semver of the tag, nil for a custom build tag.
        public let version: Version?
        /// `+stable`: the pin goes onto this channel only.
        public let channel: ReleaseChannel?
    }

    private var alternatives: [[VersionCondition]]
    /// How many of `alternatives` each range given (each flag) holds, and its text: `ranges`.
    private var rangeGroups: [(count: Int, text: String)] = []
    /// The exact pins; empty for a range.
    public private(set) var pins: [Pin]
    public private(set) var description: String

    public init(parsing text: String, dialect: Dialect = .flag) throws {
        description = text
        alternatives = []
        pins = []
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        let compound = trimmed.contains { $0 == " " || $0 == "," || $0 == "|" }
        let rangeOperator = ["==", "=>", "=<"].contains { trimmed.hasPrefix($0) }
        if dialect == .flag, trimmed.hasPrefix("="), !rangeOperator, !compound {
            pins = [try Self.parsePin(String(trimmed.dropFirst()), in: text)]
            return
        }
        // d8 reads a bare version as a range only when it is the whole constraint; inside a
        // compound it is that version, as in plain semver.
        let lone = dialect == .flag && !compound
        for alternative in trimmed.components(separatedBy: "||") {
            var conditions: [VersionCondition] = []
            let tokens = alternative.split(whereSeparator: { $0 == "," || $0 == " " }).map(String.init)
            var pendingOperator: String?
            for token in tokens {
                if VersionCondition.operators.contains(where: { $0.0 == token }) { pendingOperator = token; continue }
                let full = (pendingOperator ?? "") + token
                pendingOperator = nil
                conditions.append(try Self.parseCondition(full, bareIsRange: lone, in: text))
            }
            guard !conditions.isEmpty, pendingOperator == nil else {
                throw DKPError.invalidInput("invalid version constraint '\(text)': expected e.g. >=1.2.0, ~1.4 or =v1.3.4")
            }
            alternatives.append(conditions)
        }
        rangeGroups = [(alternatives.count, text)]
    }

    private static func parsePin(_ body: String, in text: String) throws -> Pin {
        var tagText = body
        var channel: ReleaseChannel?
        if let plus = body.lastIndex(of: "+") {
            let name = String(body[body.index(after: plus)...])
            guard let named = ReleaseChannel(rawValue: name) else {
                let known = ReleaseChannel.allCases.map(\.rawValue).joined(separator: ", ")
                throw DKPError.invalidInput("invalid version constraint '\(text)': '+\(name)' is not a release channel (\(known))")
            }
            channel = named
            tagText = String(body[..<plus])
        }
        guard !tagText.isEmpty else {
            throw DKPError.invalidInput("invalid version constraint '\(text)': '=' needs a tag after it, e.g. =v1.3.4")
        }
        // A plain version is the registry's `vX.Y.Z` tag however it was written (`1.3.0`, `v1.3`);
        // anything else (a pre-release, a custom build tag) is taken as written.
        let version = Version(tolerant: tagText)
        let numbers = tagText.hasPrefix("v") ? tagText.dropFirst() : Substring(tagText)
        let plain = numbers.contains(".") && numbers.allSatisfy { $0.isASCII && ($0.isNumber || $0 == ".") } && version != nil
        let tag = plain ? version!.tag : tagText  // plain implies a version
        if !plain, let problem = Reference.problem(tag: tagText) {
            throw DKPError.invalidInput("invalid version constraint '\(text)': \(problem)")
        }
        return Pin(tag: tag, version: version, channel: channel)
    }

    private static func parseCondition(_ token: String, bareIsRange: Bool, in text: String) throws -> VersionCondition {
        let (spelling, op) = VersionCondition.operators.first { token.hasPrefix($0.0) } ?? ("", bareIsRange ? .sameMajorFrom : .equal)
        let rest = String(token.dropFirst(spelling.count))
        if let plus = rest.lastIndex(of: "+"), ReleaseChannel(rawValue: String(rest[rest.index(after: plus)...])) != nil {
            throw DKPError.invalidInput("invalid version constraint '\(text)': a +channel suffix needs an exact version, e.g. =v1.3.4+stable")
        }
        guard let condition = VersionCondition(op, literal: rest) else {
            throw DKPError.invalidInput("invalid version constraint '\(text)': '\(rest)' is not a version")
        }
        // d8 reads a lone bare version with semver.NewVersion: `1.x` there is no version.
        let wildcard = rest.prefix { $0 != "-" }.split(separator: ".").contains { ["x", "X", "*"].contains($0) }
        if op == .sameMajorFrom, wildcard {
            throw DKPError.invalidInput("invalid version constraint '\(text)': a bare version names one, e.g. 1.3.0; for a wildcard write ~\(rest) or >=\(rest)")
        }
        return condition
    }

    /// Either constraint: d8 OR-combines a flag repeated for one name
    /// (`--include-package p@=v0.0.2 --include-package p@=v0.0.3` pulls both).
    public func or(_ other: VersionConstraint) -> VersionConstraint {
        var combined = self
        combined.alternatives += other.alternatives
        combined.rangeGroups += other.rangeGroups
        combined.pins += other.pins.filter { !pins.contains($0) }
        combined.description = "\(description) || \(other.description)"
        return combined
    }

    /// Whether `version` satisfies the range, or is one of the pins.
    public func matches(_ version: Version) -> Bool {
        pins.contains { $0.version == version } || alternatives.contains { conditions in
            let includePrerelease = conditions.contains(where: \.namesPrerelease)
            return conditions.allSatisfy { $0.matches(version, includePrerelease: includePrerelease) }
        }
    }

    /// Each range as it was given, without the pins: a name given twice with two ranges
    /// (`-p x@~1.0 -p x@~2.0`) has two, of which d8 takes the newest plugin version of each.
    public var ranges: [VersionConstraint] {
        var start = 0
        return rangeGroups.map { group in
            var range = self
            range.alternatives = Array(alternatives[start..<start + group.count])
            range.pins = []
            range.rangeGroups = [group]
            range.description = group.text
            start += group.count
            return range
        }
    }

    /// Only exact pins, no range: the source's channels are not read (d8: the pins are the channels).
    public var isExactOnly: Bool { alternatives.isEmpty && !pins.isEmpty }

    /// The one tag of a lone `=TAG[+CHANNEL]` (no range): what `--deckhouse-tag` would be (for the
    /// platform, as in d8, a `+channel` suffix changes nothing).
    public var pinnedTag: String? {
        guard isExactOnly, pins.count == 1 else { return nil }
        return pins[0].tag
    }

    /// The channels each pin goes onto, as d8 retags them: a lone pin onto every channel,
    /// `=TAG+CHANNEL` onto its channel; several pins without a channel onto none (each would
    /// overwrite the others); nothing for a constraint with a range.
    public var channelAliases: [(pin: Pin, channels: [ReleaseChannel])] {
        guard isExactOnly else { return [] }
        return pins.map { pin in
            (pin, pin.channel.map { [$0] } ?? (pins.count == 1 ? ReleaseChannel.allCases : []))
        }
    }

    /// The smallest version literal a lower bound of the range names (`>=`, `>`, `=`, `~`, `^`, a
    /// bare version). Pins are not probed (they are pulled by their tag).
    public var lowerBound: Version? { lowerBounds.min() }

    /// Where probing starts: the lower bound of each alternative that has one (within one, the
    /// highest, as all its conditions must hold), ascending. `~1.2 || ~1.60` starts at both.
    public var lowerBounds: [Version] {
        Set(alternatives.compactMap { conditions in
            conditions.compactMap { condition -> Version? in
                switch condition.op {
                case .equal, .greater, .greaterOrEqual, .tilde, .caret, .sameMajorFrom: return condition.version
                case .less, .lessOrEqual, .notEqual: return nil
                }
            }.max()
        }).sorted()
    }

    /// Versions named with an inclusive bound (`>=`, `<=`, a whole `=`): kept even when a newer
    /// patch exists. Caret, tilde, a bare or partial version are ranges: theirs are not anchors.
    public var anchors: [Version] {
        alternatives.flatMap { $0 }.compactMap { condition -> Version? in
            switch condition.op {
            case .greaterOrEqual, .lessOrEqual: return condition.version
            case .equal: return condition.open == .none ? condition.version : nil
            default: return nil
            }
        }
    }
}
