import Foundation

extension RegistryClient {
    /// Every tag of a repository, following `Link` pagination.
    public func tags(repository: String, pageSize: Int = 1000) async throws -> [String] {
        var url: String? = "\(base)/v2/\(Self.escaped(repository))/tags/list?n=\(pageSize)"
        var tags: [String] = []
        var pages = 0
        while let current = url {
            pages += 1
            guard pages <= 10_000 else {
                throw RegistryError.invalidResponse(what: "tags of \(host)/\(repository)", detail: "more than 10000 pages")
            }
            let (response, body) = try await transport.execute(
                RegistryOperation(.GET, current, scopes: [.pull(repository)], expecting: [200],
                                  what: "repository \(host)/\(repository)", repository: repository, action: "pull"),
                collectingUpTo: 16 << 20, reading: "a tag list page of \(host)/\(repository)")
            struct Page: Decodable { var tags: [String]? }
            guard let page = try? JSONDecoder().decode(Page.self, from: Data(body.readableBytesView)) else {
                throw RegistryError.invalidResponse(what: "tags of \(host)/\(repository)", detail: "not a tag list")
            }
            tags += page.tags ?? []
            url = response.header("Link").flatMap(nextLink(fromLinkHeader:)).flatMap { Transport.resolve($0, against: current) }
        }
        return tags
    }
}
