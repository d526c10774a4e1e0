import Foundation
import NIOCore
import Testing
import TestSupport
@testable import Registry

/// What common registries send, read from testdata/registry (see its README).
@Suite struct RegistryFixtureTests {
    static func load<T: Decodable>(_ name: String, as type: T.Type) throws -> T {
        let url = RepoPaths.testdata.appendingPathComponent("registry/\(name)")
        return try JSONDecoder().decode(T.self, from: Data(contentsOf: url))
    }

    struct Challenge: Decodable {
        var registry: String
        var header: String
        var scheme: String
        var realm: String?
        var service: String?
        var scope: String?
        var error: String?
    }

    @Test func challengesOfCommonRegistriesParse() throws {
        let cases = try Self.load("www-authenticate.json", as: [Challenge].self)
        #expect(cases.count >= 8)
        for item in cases {
            let parsed = AuthChallenge.parse(item.header)
            #expect(parsed.count == 1, "\(item.registry)")
            guard let challenge = parsed.first else { continue }
            #expect(challenge.scheme == item.scheme, "\(item.registry)")
            #expect(challenge.realm == item.realm, "\(item.registry)")
            #expect(challenge.service == item.service, "\(item.registry)")
            #expect(challenge.scope == item.scope, "\(item.registry)")
            #expect(challenge.parameters["error"] == item.error, "\(item.registry)")
        }
    }

    struct ErrorBody: Decodable {
        var registry: String
        var status: Int
        var body: String
        var detail: String?
        var detailContains: String?
    }

    @Test func errorBodiesOfCommonRegistriesBecomeOneShortLine() throws {
        let cases = try Self.load("error-bodies.json", as: [ErrorBody].self)
        #expect(cases.count >= 9)
        for item in cases {
            let detail = Transport.errorDetail(ByteBuffer(string: item.body))
            if let expected = item.detail {
                #expect(detail == expected, "\(item.registry) \(item.status)")
            }
            if let fragment = item.detailContains {
                #expect(detail.contains(fragment), "\(item.registry) \(item.status): \(detail)")
            }
            #expect(!detail.contains("\n") && !detail.contains("\r") && detail.count <= 200, "\(item.registry)")
        }
    }
}
