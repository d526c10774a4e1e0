import DevSupport
import Registry

// The DevSupport helpers that take a TestRegistry (which lives with the tests).

extension FaultProxy {
    /// Starts a proxy in front of `registry` (TLS, if any, is passed through: clients must
    /// still trust `registry.caFile`, and the certificate names 127.0.0.1).
    public static func start(
        upstream registry: TestRegistry, fault: Fault = .none, clientFault: ClientFault = .none,
        latency: Duration = .zero, bytesPerSecond: Int? = nil
    ) async throws -> FaultProxy {
        try await start(upstreamPort: registry.port, fault: fault, clientFault: clientFault,
                        latency: latency, bytesPerSecond: bytesPerSecond)
    }
}

extension ImageSeeder {
    /// One small image (two layers) pushed into `registry` (which takes no password), through a
    /// client made for it: plain HTTP, or TLS trusting `caFile`.
    public static func seedSmallImage(registry: TestRegistry, repository: String, tag: String, caFile: String? = nil) async throws {
        var configuration = RegistryConfiguration()
        configuration.insecure = !registry.isTLS
        configuration.caFile = caFile
        _ = try await RegistryClient.with(host: registry.host, configuration: configuration) { client in
            try await pushImage(client, repository: repository, tag: tag, layerSizes: [4096, 1024])
        }
    }
}
