import Version

/// One condition of a version range, with the semantics of Masterminds/semver v3, to which d8
/// hands every range (`>…`, `<…`, `~…`, `^…`) and plugin contracts.
///
/// A version written with fewer parts, or with `x`, `X` or `*` in a part, leaves the parts from
/// there on open: `~1` is `>=1.0.0 <2.0.0`, `<=1.2` takes 1.2.9, `>1.2` starts at 1.3.0, and a
/// version without an operator inside a range (`1.2`) is every 1.2.x. A pre-release matches only
/// a range whose conditions name a pre-release (`alternativeNamesPrerelease`).
struct VersionCondition: Sendable {
    enum Operator: Sendable {
        case equal, notEqual, greater, greaterOrEqual, less, lessOrEqual, tilde, caret
        /// d8's bare version as a whole flag constraint: it or newer within its major.
        case sameMajorFrom
    }

    /// The first part left open (`1.2` leaves the patch open, `1.x` the minor, `*` the major).
    enum OpenPart: Sendable { case none, major, minor, patch }

    let op: Operator
    /// The version as written, open parts as 0.
    let version: Version
    let open: OpenPart

    /// Operators as Masterminds spells them, longest first (`==` is kept as a synonym of `=`).
    static let operators: [(String, Operator)] = [
        ("!=", .notEqual), (">=", .greaterOrEqual), ("=>", .greaterOrEqual), ("<=", .lessOrEqual),
        ("=<", .lessOrEqual), ("~>", .tilde), ("==", .equal), (">", .greater), ("<", .less),
        ("=", .equal), ("~", .tilde), ("^", .caret),
    ]

    /// `[v]MAJOR[.MINOR[.PATCH]][-PRERELEASE]`, each part a number or `x`, `X`, `*`; nil otherwise.
    init?(_ op: Operator, literal text: String) {
        var rest = Substring(text.hasPrefix("v") ? String(text.dropFirst()) : text)
        var prerelease: [String] = []
        if let dash = rest.firstIndex(of: "-") {
            prerelease = rest[rest.index(after: dash)...].split(separator: ".", omittingEmptySubsequences: false).map(String.init)
            guard prerelease.allSatisfy({ !$0.isEmpty && $0.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") } }) else { return nil }
            rest = rest[..<dash]
        }
        let parts = rest.split(separator: ".", omittingEmptySubsequences: false)
        guard (1...3).contains(parts.count) else { return nil }
        var numbers: [Int] = []
        var open = OpenPart.none
        for (index, part) in parts.enumerated() {
            if ["x", "X", "*"].contains(part) {
                if open == .none { open = [OpenPart.major, .minor, .patch][index] }
                numbers.append(0)
            } else if part.allSatisfy({ $0.isASCII && $0.isNumber }), let number = Int(part) {
                numbers.append(open == .none ? number : 0)
            } else {
                return nil
            }
        }
        if open == .none, numbers.count < 3 { open = numbers.count == 1 ? .minor : .patch }
        numbers += Array(repeating: 0, count: 3 - numbers.count)
        self.op = op
        self.version = Version(major: numbers[0], minor: numbers[1], patch: numbers[2], prereleaseIdentifiers: prerelease)
        self.open = open
    }

    var namesPrerelease: Bool { !version.prereleaseIdentifiers.isEmpty }

    func matches(_ v: Version, includePrerelease: Bool) -> Bool {
        if !v.prereleaseIdentifiers.isEmpty && !includePrerelease { return false }
        let c = version
        switch op {
        case .equal: return open == .none ? v == c : tilde(v)
        case .notEqual: return !equalInTheWrittenParts(v)
        case .less: return v < c
        case .greaterOrEqual: return v >= c
        case .greater:
            guard open != .none, v.major == c.major else { return open == .none ? v > c : v.major > c.major }
            switch open {
            case .minor: return false
            case .patch: return v.minor > c.minor
            default: return v > c
            }
        case .lessOrEqual:
            guard open != .none else { return v <= c }
            return v.major < c.major || (v.major == c.major && (v.minor <= c.minor || open == .minor))
        case .tilde: return tilde(v)
        case .caret: return caret(v)
        case .sameMajorFrom: return v >= c && v.major == c.major
        }
    }

    /// `~1.2.3` is `>=1.2.3 <1.3.0`, `~1.2` every 1.2.x, `~1` every 1.x.x.
    private func tilde(_ v: Version) -> Bool {
        let c = version
        guard v >= c else { return false }
        if c.major == 0, c.minor == 0, c.patch == 0, open != .minor, open != .patch { return true }
        return v.major == c.major && (v.minor == c.minor || open == .minor)
    }

    /// `^1.2.3` is `>=1.2.3 <2.0.0`, `^0.2.3` `<0.3.0`, `^0.0.3` only 0.0.3; `^0` is `<1.0.0`, `^0.0` `<0.1.0`.
    private func caret(_ v: Version) -> Bool {
        let c = version
        guard v >= c else { return false }
        if c.major > 0 || open == .minor { return v.major == c.major }
        guard v.major == 0 else { return false }
        if c.minor > 0 || open == .patch { return v.minor == c.minor }
        return v.minor == 0 && v.patch == c.patch
    }

    /// Whether `v` equals the literal in every part written (`!=1.2` excludes every 1.2.x).
    private func equalInTheWrittenParts(_ v: Version) -> Bool {
        let c = version
        switch open {
        case .none: return v == c
        case .major: return v.major == c.major && v.minor == c.minor && v.patch == c.patch
        case .minor: return v.major == c.major
        case .patch: return v.major == c.major && v.minor == c.minor
        }
    }
}
