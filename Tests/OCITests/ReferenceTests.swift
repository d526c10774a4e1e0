import Testing
@testable import OCI

@Suite struct ReferenceTests {
    static let d = "sha256:" + Fixtures.hexA

    static let valid: [(input: String, host: String, repository: String, tag: String?, digest: String?)] = [
        ("registry.deckhouse.ru/deckhouse/ee:v1.69.3", "registry.deckhouse.ru", "deckhouse/ee", "v1.69.3", nil),
        ("registry.deckhouse.ru/deckhouse/ee", "registry.deckhouse.ru", "deckhouse/ee", nil, nil),
        ("127.0.0.1:5000/foo", "127.0.0.1:5000", "foo", nil, nil),
        ("127.0.0.1:5000/foo:bar", "127.0.0.1:5000", "foo", "bar", nil),
        ("[::1]:5000/deckhouse/ee:v1", "[::1]:5000", "deckhouse/ee", "v1", nil),
        ("[::1]/repo", "[::1]", "repo", nil, nil),
        ("[fe80::1:2:3]:443/repo@\(d)", "[fe80::1:2:3]:443", "repo", nil, d),
        ("localhost:5000/repo", "localhost:5000", "repo", nil, nil),
        ("localhost/repo:tag", "localhost", "repo", "tag", nil),
        ("myhost:5000/repo", "myhost:5000", "repo", nil, nil),
        ("registry.example.com/system/deckhouse/modules/foo:v1.2.3",
         "registry.example.com", "system/deckhouse/modules/foo", "v1.2.3", nil),
        ("registry.example.com/a/b/c/d/e/f", "registry.example.com", "a/b/c/d/e/f", nil, nil),
        ("registry.example.com:443/repo@\(d)", "registry.example.com:443", "repo", nil, d),
        ("registry.example.com/repo:v1@\(d)", "registry.example.com", "repo", "v1", d),
        ("Registry.Example.COM/repo", "Registry.Example.COM", "repo", nil, nil),
        ("my-registry.example.com:65535/repo", "my-registry.example.com:65535", "repo", nil, nil),
        ("r.io:1/repo", "r.io:1", "repo", nil, nil),
        ("r.io/a.b_c__d-e---f/x0", "r.io", "a.b_c__d-e---f/x0", nil, nil),
        ("r.io/0/9", "r.io", "0/9", nil, nil),
        ("r.io/repo:_tag", "r.io", "repo", "_tag", nil),
        ("r.io/repo:Tag_1.2-rc.3", "r.io", "repo", "Tag_1.2-rc.3", nil),
        ("r.io/repo:" + String(repeating: "t", count: 128), "r.io", "repo", String(repeating: "t", count: 128), nil),
    ]

    @Test(arguments: valid)
    func parsesValid(input: String, host: String, repository: String, tag: String?, digest: String?) throws {
        let reference = try Reference(parsing: input)
        #expect(reference.host == host)
        #expect(reference.repository == repository)
        #expect(reference.tag == tag)
        #expect(reference.digest?.string == digest)
        #expect(reference.description == input)
        #expect(reference.name == "\(host)/\(repository)")
        #expect(try Reference(parsing: reference.description) == reference)
    }

    static let invalid: [(input: String, fragment: String)] = [
        ("", "empty"),
        ("ubuntu", "no registry host"),
        ("ubuntu:22", "no registry host"),
        ("library/ubuntu", "no registry host"),
        ("deckhouse/ee:v1", "no registry host"),
        ("myhost/repo", "no registry host"),
        ("registry.example.com", "has no repository path"),
        ("registry.example.com/", "has no repository path"),
        ("registry.example.com/:v1", "has no repository path"),
        ("registry.example.com@\(d)", "has no repository path"),
        ("localhost:5000", "has no repository path"),
        ("localhost", "has no repository path"),
        ("127.0.0.1:5000", "has no repository path"),
        ("[::1]:5000", "has no repository path"),
        ("registry.example.com/Deckhouse/ee", "repository names must be lowercase"),
        ("registry.example.com/deckhouse/EE:v1", "repository names must be lowercase"),
        ("registry.example.com/a//b", "empty component"),
        ("registry.example.com/a/b/", "empty component"),
        ("registry.example.com//a", "empty component"),
        ("registry.example.com/-a", "is invalid"),
        ("registry.example.com/a-", "is invalid"),
        ("registry.example.com/a..b", "is invalid"),
        ("registry.example.com/a___b", "is invalid"),
        ("registry.example.com/.a", "is invalid"),
        ("registry.example.com/a_", "is invalid"),
        ("registry.example.com/a+b", "is invalid"),
        ("registry.example.com/caf\u{E9}", "is invalid"),
        ("registry.example.com/repo:", "empty tag"),
        ("registry.example.com/repo:-v1", "tag '-v1' is invalid"),
        ("registry.example.com/repo:.v1", "tag '.v1' is invalid"),
        ("registry.example.com/repo:v1+build", "tag 'v1+build' is invalid"),
        ("registry.example.com/repo:a:b", "is invalid"),
        ("registry.example.com/repo:" + String(repeating: "t", count: 129), "longer than 128"),
        ("registry.example.com:0/repo", "out of range 1-65535"),
        ("registry.example.com:70000/repo", "out of range 1-65535"),
        ("registry.example.com:65536/repo", "out of range 1-65535"),
        ("registry.example.com:99999999999999999999999/repo", "out of range 1-65535"),
        ("registry.example.com:abc/repo", "port 'abc' of registry host 'registry.example.com:abc' is not a number"),
        ("registry.example.com:-1/repo", "is not a number"),
        ("registry.example.com:/repo", "empty port"),
        ("localhost:abc/repo", "is not a number"),
        (":5000/repo", "empty host name"),
        ("registry..example.com/repo", "not a valid host name"),
        ("-registry.example.com/repo", "not a valid host name"),
        ("registry_1.example.com/repo", "not a valid host name"),
        ("::1:5000/repo", "more than one ':'"),
        ("[::1/repo", "no closing ']'"),
        ("[]:5000/repo", "not a valid IPv6"),
        ("[zz::1]:5000/repo", "not a valid IPv6"),
        ("[::1]5000/repo", "expected ':PORT' after ']'"),
        ("[::1]:0/repo", "out of range"),
        ("registry.example.com/repo@sha256:abc", "bad digest 'sha256:abc'"),
        ("registry.example.com/repo@sha512:" + String(repeating: "a", count: 128), "only sha256 is supported"),
        ("registry.example.com/repo@", "bad digest"),
        ("registry.example.com/repo@\(d)@\(d)", "bad digest"),
        (" registry.example.com/repo", "whitespace"),
        ("registry.example.com/repo ", "whitespace"),
        ("registry.example.com/repo:v1\n", "whitespace"),
        ("registry.example.com/re po", "whitespace"),
        ("registry.example.com/repo\t:v1", "whitespace"),
        ("registry.example.com/" + String(repeating: "a", count: 250), "at most 255"),
    ]

    @Test(arguments: invalid)
    func rejectsInvalid(input: String, fragment: String) {
        let error = ociError { try Reference(parsing: input) }
        guard case let .invalidReference(reported, reason)? = error else {
            Issue.record("expected invalidReference for \(input.debugDescription), got \(String(describing: error))")
            return
        }
        #expect(reported == input)
        #expect(reason.contains(fragment), "\(reason)")
        let message = error?.description ?? ""
        #expect(message.hasPrefix("invalid reference '"))
        #expect(!message.contains("\n"))
        #expect(message.count < 600, "\(message)")
    }

    @Test func missingHostMessage() {
        let error = ociError { try Reference(parsing: "ubuntu:22") }
        #expect(error?.description == "invalid reference 'ubuntu:22': no registry host; write it as "
            + "HOST[:PORT]/PATH[:TAG][@DIGEST], e.g. registry.example.com/system/deckhouse:v1.69.3")
    }

    @Test func missingPathMessage() {
        let error = ociError { try Reference(parsing: "registry.example.com") }
        #expect(error?.description.hasPrefix("invalid reference 'registry.example.com': has no repository path") == true)
    }

    @Test func longInputIsTruncated() {
        let input = "registry.example.com/" + String(repeating: "A", count: 1000)
        let message = ociError { try Reference(parsing: input) }?.description ?? ""
        #expect(message.contains("…"))
        #expect(message.count < 600)
    }

    @Test func manifestReference() throws {
        let digest = try Digest(sha256Hex: Fixtures.hexA)
        #expect(try Reference(parsing: "r.io/repo").manifestReference == "latest")
        #expect(try Reference(parsing: "r.io/repo:v1").manifestReference == "v1")
        #expect(try Reference(parsing: "r.io/repo@\(digest)").manifestReference == digest.string)
        #expect(try Reference(parsing: "r.io/repo:v1@\(digest)").manifestReference == digest.string)
    }

    @Test func withTagAndDigest() throws {
        let digest = try Digest(sha256Hex: Fixtures.hexB)
        let base = try Reference(parsing: "r.io/a/b:v1")
        #expect(base.with(tag: "v2").description == "r.io/a/b:v2")
        #expect(base.with(tag: nil).description == "r.io/a/b")
        #expect(base.with(digest: digest).description == "r.io/a/b:v1@\(digest)")
        #expect(base.with(digest: digest).with(tag: nil).description == "r.io/a/b@\(digest)")
        #expect(base.with(digest: digest).with(digest: nil) == base)
        #expect(base.tag == "v1")
    }

    @Test func appendingPath() throws {
        let digest = try Digest(sha256Hex: Fixtures.hexB)
        let base = try Reference(parsing: "registry.example.com:5000/system/deckhouse:v1@\(digest)")
        let module = base.appending(path: "modules/foo")
        #expect(module == Reference(host: "registry.example.com:5000", repository: "system/deckhouse/modules/foo"))
        #expect(module.tag == nil && module.digest == nil)
        #expect(module.lastPathComponent == "foo")
        #expect(base.appending(path: "/security/trivy-db/").description
            == "registry.example.com:5000/system/deckhouse/security/trivy-db")
        #expect(base.appending(path: "").description == "registry.example.com:5000/system/deckhouse")
    }

    @Test func lastPathComponent() throws {
        #expect(try Reference(parsing: "r.io/repo").lastPathComponent == "repo")
        #expect(try Reference(parsing: "r.io/system/deckhouse/modules/foo:v1").lastPathComponent == "foo")
    }

    @Test func memberwiseInitAndDescription() throws {
        let digest = try Digest(sha256Hex: Fixtures.hexC)
        let reference = Reference(host: "[::1]:5000", repository: "a/b", tag: "t", digest: digest)
        #expect(reference.description == "[::1]:5000/a/b:t@\(digest)")
        #expect(reference.name == "[::1]:5000/a/b")
        #expect(Reference(host: "h.io", repository: "r").description == "h.io/r")
        #expect(Set([reference, reference, reference.with(tag: nil)]).count == 2)
    }
}
