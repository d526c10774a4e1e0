import AsyncHTTPClient
import NIOConcurrencyHelpers

/// The HTTP clients of one component (a registry's transport, the Kubernetes client): one per
/// route, direct or through a given proxy, all with the same configuration, made when first
/// needed. A request picks its client by its URL, so a token service, a redirect to blob storage
/// or a host named in `NO_PROXY` each take the route the proxy settings give them.
public final class HTTPClients: Sendable {
    public let proxies: ProxySettings
    private let configuration: HTTPClient.Configuration
    private let clients = NIOLockedValueBox<[ProxyEndpoint?: HTTPClient]>([:])

    /// `configuration`'s own `proxy` is ignored: the route decides.
    public init(configuration: HTTPClient.Configuration, proxies: ProxySettings) {
        self.configuration = configuration
        self.proxies = proxies
    }

    /// The proxy a request to `url` goes through, nil for direct.
    public func proxy(for url: String) -> ProxyEndpoint? { proxies.proxy(for: url) }

    /// The client for a request to `url`.
    public func client(for url: String) -> HTTPClient {
        let route = proxies.proxy(for: url)
        return clients.withLockedValue { clients in
            if let existing = clients[route] { return existing }
            var configuration = self.configuration
            configuration.proxy = route.map(Self.proxy(of:))
            let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
            clients[route] = client
            return client
        }
    }

    /// Closes every client. Required before this is released.
    public func shutdown() async {
        let all = clients.withLockedValue { clients in
            defer { clients.removeAll() }
            return Array(clients.values)
        }
        for client in all { try? await client.shutdown() }
    }

    static func proxy(of endpoint: ProxyEndpoint) -> HTTPClient.Configuration.Proxy {
        switch endpoint.kind {
        case .http:
            let authorization = endpoint.username.map { HTTPClient.Authorization.basic(username: $0, password: endpoint.password ?? "") }
            return .server(host: endpoint.host, port: endpoint.port, authorization: authorization)
        case .socks5:
            return .socksServer(host: endpoint.host, port: endpoint.port)
        }
    }
}
