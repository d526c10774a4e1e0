import Foundation
import OCI
import Registry
import TestSupport

/// A client for a test registry: its CA trusted, optional credentials, quick retries.
func makeClient(_ registry: TestRegistry, user: String? = nil, password: String? = nil,
                _ adjust: (inout RegistryConfiguration) -> Void = { _ in }) throws -> RegistryClient {
    var configuration = RegistryConfiguration()
    configuration.insecure = !registry.isTLS
    configuration.caFile = registry.caFile
    if let user { configuration.credential = Credential(username: user, password: password ?? "") }
    configuration.initialBackoff = .milliseconds(20)
    configuration.maxBackoff = .milliseconds(200)
    adjust(&configuration)
    return try RegistryClient(host: registry.host, configuration: configuration)
}

/// Runs `body` with a client, shutting it down afterwards even when the body throws.
func withClient<T: Sendable>(_ client: RegistryClient, _ body: (RegistryClient) async throws -> T) async throws -> T {
    do {
        let result = try await body(client)
        await client.shutdown()
        return result
    } catch {
        await client.shutdown()
        throw error
    }
}

/// Drains a blob download, returning its byte count.
func download(_ client: RegistryClient, repository: String, descriptor: Descriptor) async throws -> Int64 {
    var total: Int64 = 0
    for try await chunk in client.blob(repository: repository, descriptor: descriptor) { total += Int64(chunk.readableBytes) }
    return total
}
