import Testing
@testable import Registry

@Suite struct HeaderParsingTests {
    @Test func bearerChallengeWithQuotedCommas() {
        let header = #"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#
        let challenges = AuthChallenge.parse(header)
        #expect(challenges.count == 1)
        #expect(challenges[0].scheme == "bearer")
        #expect(challenges[0].realm == "https://auth.example/token")
        #expect(challenges[0].service == "registry.example")
        #expect(challenges[0].scope == "repository:a/b:pull,push")
    }

    @Test func basicChallengeAndEscapes() {
        let challenges = AuthChallenge.parse(#"Basic realm="Registry \"Realm\"""#)
        #expect(challenges.map(\.scheme) == ["basic"])
        #expect(challenges[0].realm == #"Registry "Realm""#)
    }

    @Test func twoChallengesInOneValue() {
        let challenges = AuthChallenge.parse(#"Basic realm="x", Bearer realm="https://t/token",service=s"#)
        #expect(challenges.map(\.scheme) == ["basic", "bearer"])
        #expect(challenges[1].service == "s")
    }

    @Test func errorParameterAndGarbage() {
        #expect(AuthChallenge.parse("").isEmpty)
        #expect(AuthChallenge.parse(",,,").isEmpty)
        let c = AuthChallenge.parse(#"Bearer realm="r",error="insufficient_scope""#)
        #expect(c.first?.parameters["error"] == "insufficient_scope")
        _ = AuthChallenge.parse("Bearer realm=\"unterminated")
        _ = AuthChallenge.parse("=== \"\"\" ,=")
    }

    @Test func linkHeaderNext() {
        #expect(nextLink(fromLinkHeader: #"</v2/a/tags/list?n=2&last=b>; rel="next""#) == "/v2/a/tags/list?n=2&last=b")
        #expect(nextLink(fromLinkHeader: #"<https://x/y>; rel="prev", <https://x/z>; rel=next"#) == "https://x/z")
        #expect(nextLink(fromLinkHeader: "garbage") == nil)
        #expect(nextLink(fromLinkHeader: #"<https://x/y>; rel="prev""#) == nil)
    }

    @Test func retryAfterForms() {
        #expect(Transport.parseRetryAfter("3") == .seconds(3))
        #expect(Transport.parseRetryAfter("-1") == .seconds(0))
        #expect(Transport.parseRetryAfter("soon") == nil)
        let past = Transport.parseRetryAfter("Wed, 21 Oct 2015 07:28:00 GMT")
        #expect(past == .zero)
    }

    @Test func originComparison() {
        #expect(Transport.sameOrigin("https://a:443/x", "https://a/y"))
        #expect(!Transport.sameOrigin("https://a/x", "https://b/x"))
        #expect(!Transport.sameOrigin("http://a/x", "https://a/x"))
        #expect(!Transport.sameOrigin("https://a:5000/x", "https://a/x"))
        #expect(Transport.redact("https://h/v2/x/blobs/uploads/u?_state=abc&digest=d") == "https://h/v2/x/blobs/uploads/u")
    }

    @Test func credentialNeverPrintsSecret() {
        let credential = Credential(username: "rw", password: "s3cr3t-pass")
        #expect(!"\(credential)".contains("s3cr3t"))
        #expect(!String(reflecting: credential).contains("s3cr3t"))
        #expect(Credential.licenseKey("KEY").username == "license-token")
    }
}
