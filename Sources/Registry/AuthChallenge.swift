/// One `WWW-Authenticate` challenge: a scheme and its parameters.
public struct AuthChallenge: Sendable, Equatable {
    public var scheme: String          // lowercased: "basic", "bearer"
    public var parameters: [String: String]  // keys lowercased

    public var realm: String? { parameters["realm"] }
    public var service: String? { parameters["service"] }
    public var scope: String? { parameters["scope"] }

    /// Parses a header value such as
    /// `Bearer realm="https://auth.example/token",service="registry",scope="repository:a/b:pull"`.
    /// Several challenges in one value are split; quoted strings may hold commas and escapes.
    /// Returns an empty array for input that holds no challenge.
    public static func parse(_ header: String) -> [AuthChallenge] {
        var challenges: [AuthChallenge] = []
        var chars = Array(header.unicodeScalars)[...]
        func skipSpace() { while let c = chars.first, c == " " || c == "\t" { chars.removeFirst() } }
        func token() -> String {
            var out = ""
            while let c = chars.first, c != " ", c != "\t", c != ",", c != "=", c != "\"" {
                out.unicodeScalars.append(c)
                chars.removeFirst()
            }
            return out
        }
        func quoted() -> String {
            chars.removeFirst() // opening quote
            var out = ""
            while let c = chars.first {
                chars.removeFirst()
                if c == "\\", let next = chars.first { out.unicodeScalars.append(next); chars.removeFirst(); continue }
                if c == "\"" { break }
                out.unicodeScalars.append(c)
            }
            return out
        }
        while !chars.isEmpty {
            skipSpace()
            while chars.first == "," { chars.removeFirst(); skipSpace() }
            let scheme = token()
            guard !scheme.isEmpty else {
                if !chars.isEmpty { chars.removeFirst() }
                continue
            }
            var challenge = AuthChallenge(scheme: scheme.lowercased(), parameters: [:])
            // Parameters: name=value pairs separated by commas, until a token not followed by '='.
            while true {
                skipSpace()
                while chars.first == "," { chars.removeFirst(); skipSpace() }
                let saved = chars
                let name = token()
                skipSpace()
                guard !name.isEmpty, chars.first == "=" else { chars = saved; break }
                chars.removeFirst()
                skipSpace()
                let value = chars.first == "\"" ? quoted() : token()
                challenge.parameters[name.lowercased()] = value
            }
            challenges.append(challenge)
        }
        return challenges
    }
}

/// The `rel="next"` target of an RFC 8288 `Link` header, as registries use for tag pagination.
public func nextLink(fromLinkHeader header: String) -> String? {
    for part in header.split(separator: ",") {
        let pieces = part.split(separator: ";").map { $0.trimmed(" \t") }
        guard let first = pieces.first, first.hasPrefix("<"), first.hasSuffix(">") else { continue }
        let isNext = pieces.dropFirst().contains { param in
            let kv = param.split(separator: "=", maxSplits: 1).map { $0.trimmed(" \t\"") }
            return kv.count == 2 && kv[0].lowercased() == "rel" && kv[1].split(separator: " ").contains("next")
        }
        if isNext { return String(first.dropFirst().dropLast()) }
    }
    return nil
}

extension StringProtocol {
    func trimmed(_ set: String) -> String {
        var s = Substring(self)
        while let c = s.first, set.contains(c) { s.removeFirst() }
        while let c = s.last, set.contains(c) { s.removeLast() }
        return String(s)
    }
}
