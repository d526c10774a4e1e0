import Foundation
import NIOCore

extension RegistryClient {
    /// Every repository `GET /v2/_catalog` lists, following `n` and `Link` pagination; nil when
    /// the registry refuses the catalog (401, 403, 404: many registries restrict or lack it), so the
    /// caller can find its repositories another way. Other failures throw.
    public func catalog(pageSize: Int = 1000) async throws -> [String]? {
        var url: String? = "\(transport.baseURL)/v2/_catalog?n=\(pageSize)"
        var repositories: [String] = []
        var pages = 0
        while let current = url {
            pages += 1
            guard pages <= 10_000 else {
                throw RegistryError.invalidResponse(what: "the catalog of \(host)", detail: "more than 10000 pages")
            }
            let what = "a catalog page of \(host)"
            // No scope: with a Bearer challenge the registry names the one it wants (registry:catalog:*).
            let (response, body) = try await transport.execute(
                RegistryOperation(.GET, current, scopes: [], expecting: [200, 401, 403, 404],
                                  what: "the catalog of \(host)", repository: "", action: "list"),
                collectingUpTo: 64 << 20, reading: what)
            guard response.status == 200 else {
                // Refused halfway: a partial list would pass for a whole one.
                if pages == 1 { return nil }
                throw RegistryError.invalidResponse(what: "the catalog of \(host)", detail: "page \(pages) was refused after page 1 was served")
            }
            struct Page: Decodable { var repositories: [String]? }
            guard let decoded = try? JSONDecoder().decode(Page.self, from: Data(body.readableBytesView)) else {
                throw RegistryError.invalidResponse(what: "the catalog of \(host)", detail: "not a repository list")
            }
            repositories += decoded.repositories ?? []
            url = response.header("Link").flatMap(nextLink(fromLinkHeader:)).flatMap { Transport.resolve($0, against: current) }
        }
        return repositories
    }
}
