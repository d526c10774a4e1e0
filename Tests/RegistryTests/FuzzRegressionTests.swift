import Testing
@testable import Registry

/// Hostile `WWW-Authenticate`, `Link` and `Retry-After` values (the inputs `scripts/fuzz.sh`
/// throws at the header parsers): each parses to something or nothing, never traps or hangs.
@Suite struct RegistryFuzzRegressionTests {
    /// Header values as a registry could send them (AsyncHTTPClient hands them over as Strings,
    /// invalid UTF-8 replaced).
    static let hostile: [String] = [
        "",
        "\"",
        "\\",
        "Bearer realm=\"",
        "Bearer realm=\"\\",
        "Bearer realm=\\\"x\\\"",
        "Bearer ,,,,=,=,=\"\"\"",
        "Bearer realm=\"a\",realm=\"b\",REALM=c",
        "=\"x\"",
        ", , Basic",
        "Bearer\trealm=x\tservice=y",
        String(decoding: [0x42, 0x65, 0x61, 0x72, 0x65, 0x72, 0x20, 0xFF, 0xFE, 0x3D, 0x22, 0xC0, 0x80, 0x22], as: UTF8.self),
        "Bearer realm=\"\u{0}\u{7F}\u{202E}\"",
        String(repeating: "Bearer realm=\"x\",", count: 20_000),
        "Bearer realm=\"" + String(repeating: "\\\"", count: 200_000),
        String(repeating: "a=", count: 100_000),
        String(repeating: "\"", count: 100_000),
        String(repeating: ",", count: 100_000),
        "<" + String(repeating: "<", count: 100_000) + ">; rel=next",
        String(repeating: "<x>; rel=\"prev\", ", count: 20_000) + "<y>; rel=next",
        "<>; rel=next",
        "<x>; rel",
        "<x>; =next",
        "<x>;;;; rel=\"next prev\"",
        "<x>; rel=\"\u{FFFD}next\"",
        "x>; rel=next",
        "<x; rel=next",
    ]

    @Test func authChallengesOfHostileValues() {
        for value in Self.hostile {
            let challenges = AuthChallenge.parse(value)
            for challenge in challenges {
                #expect(!challenge.scheme.isEmpty)
                #expect(challenge.scheme == challenge.scheme.lowercased())
                #expect(challenge.parameters.keys.allSatisfy { $0 == $0.lowercased() && !$0.isEmpty })
            }
        }
        // Whatever the garbage around it, a well-formed challenge is still found.
        let mixed = AuthChallenge.parse(",,, ===, Bearer realm=\"https://t/token\",service=\"s\"")
        #expect(mixed.contains { $0.scheme == "bearer" && $0.realm == "https://t/token" && $0.service == "s" })
        // An unterminated quote takes the rest of the value, nothing more.
        #expect(AuthChallenge.parse("Bearer realm=\"abc").first?.realm == "abc")
        #expect(AuthChallenge.parse("Bearer realm=\"abc\\").first?.realm == "abc\\", "a lone final backslash is kept")
    }

    @Test func linkHeadersOfHostileValues() {
        for value in Self.hostile {
            if let next = nextLink(fromLinkHeader: value) {
                #expect(!next.hasPrefix("<") || value.hasPrefix("<<"))
            }
        }
        #expect(nextLink(fromLinkHeader: "<>; rel=next") == "")
        #expect(nextLink(fromLinkHeader: "<x>; rel") == nil)
        #expect(nextLink(fromLinkHeader: "<x; rel=next") == nil)
        #expect(nextLink(fromLinkHeader: String(repeating: "<x>; rel=\"prev\", ", count: 20_000) + "<y>; rel=next") == "y")
    }

    @Test(arguments: [
        "99999999999999999999", "-99999999999999999999", "9223372036854775807", "1e9", " 5 ", "",
        "Wed, 21 Oct 999999999 07:28:00 GMT", "Wed, 21 Oct -999999999 07:28:00 GMT", "Wed, 99 Zzz 2015 99:99:99 GMT",
        String(repeating: "9", count: 100_000),
    ])
    func retryAfterOfHostileValues(_ value: String) {
        if let delay = Transport.parseRetryAfter(value) {
            #expect(delay >= .zero)
        }
    }
}
