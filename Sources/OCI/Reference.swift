/// An image reference: `HOST[:PORT]/PATH[:TAG][@DIGEST]`.
///
/// A registry host is always required (there is no implicit Docker Hub).
public struct Reference: Hashable, Sendable, CustomStringConvertible {
    /// `registry.deckhouse.ru`, `127.0.0.1:5000`, `[::1]:5000`, `localhost:5000`.
    public var host: String
    /// `deckhouse/ee`, `system/deckhouse/modules/foo`.
    public var repository: String
    public var tag: String?
    public var digest: Digest?

    /// Creates a reference from parts, without validating them.
    public init(host: String, repository: String, tag: String? = nil, digest: Digest? = nil) {
        self.host = host
        self.repository = repository
        self.tag = tag
        self.digest = digest
    }

    static let formatHint =
        "write it as HOST[:PORT]/PATH[:TAG][@DIGEST], e.g. registry.example.com/system/deckhouse:v1.69.3"
    static let maxNameLength = 255
    static let maxTagLength = 128

    /// Parses `host[:port]/path[:tag][@digest]`.
    public init(parsing string: String) throws {
        func fail(_ reason: String) -> OCIError { OCIError.invalidReference(string, reason: reason) }

        if string.isEmpty {
            throw fail("empty; \(Self.formatHint)")
        }
        if string.unicodeScalars.contains(where: {
            $0.properties.isWhitespace || $0.properties.generalCategory == .control
        }) {
            throw fail("contains whitespace or control characters")
        }

        // Digest.
        var rest = Substring(string)
        var digest: Digest?
        if let at = rest.firstIndex(of: "@") {
            let digestPart = String(rest[rest.index(after: at)...])
            rest = rest[..<at]
            do {
                digest = try Digest(parsing: digestPart)
            } catch let OCIError.invalidDigest(_, reason) {
                throw fail("bad digest '\(OCIError.display(digestPart, limit: 80))': \(reason)")
            }
        }

        // Host.
        guard let slash = rest.firstIndex(of: "/") else {
            let looksLikeHost = rest.contains(".") || rest.hasPrefix("[") || rest == "localhost"
                || rest.hasPrefix("localhost:")
            if looksLikeHost && !rest.isEmpty {
                throw fail("has no repository path; \(Self.formatHint)")
            }
            throw fail("no registry host; \(Self.formatHint)")
        }
        let hostPart = rest[..<slash]
        let pathAndTag = rest[rest.index(after: slash)...]
        let isHost = hostPart.contains(".") || hostPart.contains(":") || hostPart == "localhost"
            || hostPart.hasPrefix("[")
        guard isHost else {
            throw fail("no registry host; \(Self.formatHint)")
        }
        if let problem = Self.hostProblem(hostPart) {
            throw fail(problem)
        }

        // Tag.
        var path = pathAndTag
        var tag: String?
        if let colon = pathAndTag.lastIndex(of: ":") {
            let tagPart = String(pathAndTag[pathAndTag.index(after: colon)...])
            path = pathAndTag[..<colon]
            if tagPart.isEmpty {
                throw fail("empty tag after ':'")
            }
            if let problem = Self.tagProblem(tagPart) {
                throw fail(problem)
            }
            tag = tagPart
        }

        // Repository.
        if path.isEmpty {
            throw fail("has no repository path; \(Self.formatHint)")
        }
        if let problem = Self.repositoryProblem(path) {
            throw fail(problem)
        }
        let nameLength = hostPart.count + 1 + path.count
        if nameLength > Self.maxNameLength {
            throw fail("name is \(nameLength) characters long; at most \(Self.maxNameLength) are allowed")
        }

        self.host = String(hostPart)
        self.repository = String(path)
        self.tag = tag
        self.digest = digest
    }

    /// `host/repository[:tag][@digest]`.
    public var description: String {
        var out = name
        if let tag { out += ":\(tag)" }
        if let digest { out += "@\(digest.string)" }
        return out
    }

    /// `host/repository`.
    public var name: String { "\(host)/\(repository)" }

    /// What to put in `/v2/<name>/manifests/<reference>`: the digest if any, else the tag, else `latest`.
    public var manifestReference: String {
        if let digest { return digest.string }
        return tag ?? "latest"
    }

    /// The same repository with `tag` replaced (the digest is kept). The tag is not validated.
    public func with(tag: String?) -> Reference {
        var copy = self
        copy.tag = tag
        return copy
    }

    /// The same repository with `digest` replaced (the tag is kept).
    public func with(digest: Digest?) -> Reference {
        var copy = self
        copy.digest = digest
        return copy
    }

    /// `host/repository/path`, without tag or digest. Leading and trailing '/' of `path` are ignored;
    /// the path is not validated.
    public func appending(path: String) -> Reference {
        let trimmed = path.split(separator: "/", omittingEmptySubsequences: true).joined(separator: "/")
        let repo = trimmed.isEmpty ? repository : "\(repository)/\(trimmed)"
        return Reference(host: host, repository: repo)
    }

    /// The last component of the repository path (`foo` for `system/deckhouse/modules/foo`).
    public var lastPathComponent: String {
        repository.split(separator: "/").last.map(String.init) ?? repository
    }

    // MARK: Validation

    private static func isASCIIDigit(_ c: Character) -> Bool {
        guard let a = c.asciiValue else { return false }
        return a >= UInt8(ascii: "0") && a <= UInt8(ascii: "9")
    }

    private static func isASCIILetterOrDigit(_ c: Character) -> Bool {
        guard let a = c.asciiValue else { return false }
        return (a >= UInt8(ascii: "0") && a <= UInt8(ascii: "9"))
            || (a >= UInt8(ascii: "a") && a <= UInt8(ascii: "z"))
            || (a >= UInt8(ascii: "A") && a <= UInt8(ascii: "Z"))
    }

    private static func isLowerAlnum(_ c: Character) -> Bool {
        guard let a = c.asciiValue else { return false }
        return (a >= UInt8(ascii: "0") && a <= UInt8(ascii: "9"))
            || (a >= UInt8(ascii: "a") && a <= UInt8(ascii: "z"))
    }

    private static func hostProblem(_ host: Substring) -> String? {
        let shown = OCIError.display(String(host), limit: 80)
        let hostname: Substring
        let port: Substring?
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else {
                return "registry host '\(shown)' has no closing ']'"
            }
            let address = host[host.index(after: host.startIndex)..<close]
            let isIPv6 = !address.isEmpty && address.contains(":")
                && address.allSatisfy { $0 == ":" || $0 == "." || $0.isHexDigit && $0.isASCII }
            guard isIPv6 else {
                return "registry host '\(shown)' is not a valid IPv6 address in brackets"
            }
            let after = host[host.index(after: close)...]
            if after.isEmpty {
                return nil
            }
            guard after.first == ":" else {
                return "registry host '\(shown)': expected ':PORT' after ']'"
            }
            return portProblem(after.dropFirst(), host: shown)
        }
        let parts = host.split(separator: ":", omittingEmptySubsequences: false)
        if parts.count > 2 {
            return "registry host '\(shown)' has more than one ':' (write IPv6 addresses in brackets, e.g. [::1]:5000)"
        }
        hostname = parts[0]
        port = parts.count == 2 ? parts[1] : nil
        if hostname.isEmpty {
            return "registry host '\(shown)' has an empty host name"
        }
        for label in hostname.split(separator: ".", omittingEmptySubsequences: false) {
            let valid = !label.isEmpty && label.allSatisfy { isASCIILetterOrDigit($0) || $0 == "-" }
                && label.first != "-" && label.last != "-"
            if !valid {
                return "registry host '\(shown)' is not a valid host name "
                    + "(letters, digits, '-' inside labels, labels separated by '.')"
            }
        }
        if let port {
            return portProblem(port, host: shown)
        }
        return nil
    }

    private static func portProblem(_ port: Substring, host shown: String) -> String? {
        guard !port.isEmpty else {
            return "registry host '\(shown)' has an empty port after ':'"
        }
        guard port.allSatisfy(isASCIIDigit) else {
            return "port '\(OCIError.display(String(port), limit: 40))' of registry host '\(shown)' is not a number"
        }
        guard port.count <= 5, let value = Int(port), (1...65535).contains(value) else {
            return "port \(OCIError.display(String(port), limit: 40)) of registry host '\(shown)' is out of range 1-65535"
        }
        return nil
    }

    /// What is wrong with `tag` by the distribution spec's grammar
    /// (`[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`), or nil when it is a valid tag.
    public static func problem(tag: String) -> String? { tagProblem(tag) }

    /// What is wrong with a repository path (`system/deckhouse/modules/console`) by the
    /// distribution spec's grammar (lowercase components, at most 255 characters), or nil.
    public static func problem(repository path: String) -> String? {
        if path.count > maxNameLength {
            return "repository path '\(OCIError.display(path, limit: 120))' is longer than \(maxNameLength) characters"
        }
        return repositoryProblem(Substring(path))
    }

    private static func tagProblem(_ tag: String) -> String? {
        // The usual valid tag, passed on its bytes: verify and push check every tag of the
        // bundle, and escaping each one for a message that is not shown took a quarter of
        // verify's time at 20,000 references.
        if isPlainValidTag(tag.utf8) { return nil }
        let shown = OCIError.display(tag, limit: 80)
        if tag.count > maxTagLength {
            return "tag '\(shown)' is longer than \(maxTagLength) characters"
        }
        if tag.contains("/") {
            return "tag '\(shown)' contains '/'"
        }
        guard let first = tag.first, isASCIILetterOrDigit(first) || first == "_",
              tag.allSatisfy({ isASCIILetterOrDigit($0) || $0 == "_" || $0 == "." || $0 == "-" })
        else {
            return "tag '\(shown)' is invalid: use letters, digits, '_', '.', '-' (not starting with '.' or '-')"
        }
        return nil
    }

    /// ASCII letters, digits and '_', then also '.' and '-', at most `maxTagLength` bytes: what
    /// the checks below accept (a valid tag is all ASCII).
    private static func isPlainValidTag(_ bytes: String.UTF8View) -> Bool {
        guard !bytes.isEmpty, bytes.count <= maxTagLength else { return false }
        var first = true
        for b in bytes {
            let letterOrDigit = (b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9"))
                || (b >= UInt8(ascii: "a") && b <= UInt8(ascii: "z")) || (b >= UInt8(ascii: "A") && b <= UInt8(ascii: "Z"))
            guard letterOrDigit || b == UInt8(ascii: "_") || (!first && (b == UInt8(ascii: ".") || b == UInt8(ascii: "-"))) else {
                return false
            }
            first = false
        }
        return true
    }

    private static func repositoryProblem(_ path: Substring) -> String? {
        for component in path.split(separator: "/", omittingEmptySubsequences: false) {
            if component.isEmpty {
                return "repository path '\(OCIError.display(String(path), limit: 120))' has an empty component "
                    + "(leading, trailing or doubled '/')"
            }
            if isValidComponent(component) { continue }
            let shown = OCIError.display(String(component), limit: 80)
            if component.contains(where: { $0.isUppercase }) {
                return "repository path component '\(shown)' has uppercase letters; repository names must be lowercase"
            }
            return "repository path component '\(shown)' is invalid: use lowercase letters and digits, "
                + "separated by '.', '_', '__' or '-'"
        }
        return nil
    }

    /// `[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*`
    private static func isValidComponent(_ component: Substring) -> Bool {
        let chars = Array(component)
        var i = 0
        func alnumRun() -> Bool {
            let start = i
            while i < chars.count, isLowerAlnum(chars[i]) { i += 1 }
            return i > start
        }
        guard alnumRun() else { return false }
        while i < chars.count {
            switch chars[i] {
            case ".":
                i += 1
            case "_":
                i += 1
                if i < chars.count, chars[i] == "_" { i += 1 }
            case "-":
                while i < chars.count, chars[i] == "-" { i += 1 }
            default:
                return false
            }
            guard alnumRun() else { return false }
        }
        return true
    }
}
