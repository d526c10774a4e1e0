import Foundation
import OCI

/// A manifest as the registry served it: bytes kept exactly, digest checked.
public struct FetchedManifest: Sendable {
    public var bytes: [UInt8]
    public var mediaType: MediaType
    public var digest: Digest
    public var document: ManifestDocument

    public var descriptor: Descriptor {
        Descriptor(mediaType: mediaType, digest: digest, size: Int64(bytes.count))
    }
}

/// A client of one registry host speaking the OCI distribution API. Create one per host and
/// configuration, share it between tasks, and call `shutdown()` when done.
public final class RegistryClient: Sendable {
    /// `text` for a URL's path or query: every byte outside RFC 3986's unreserved characters,
    /// `:` and (unless `segment`, for a tag or digest) `/` percent-encoded, so a name that
    /// slipped past validation (`bad tag/../x`) cannot change the request's path or query.
    public static func escaped(_ text: String, segment: Bool = false) -> String {
        var result = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"), UInt8(ascii: ":"):
                result.unicodeScalars.append(Unicode.Scalar(byte))
            case UInt8(ascii: "/") where !segment:
                result.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                result += String(format: "%%%02X", byte)
            }
        }
        return result
    }

    public let host: String
    public let configuration: RegistryConfiguration
    let transport: Transport

    public init(host: String, configuration: RegistryConfiguration = RegistryConfiguration()) throws {
        self.host = host
        self.configuration = configuration
        self.transport = try Transport(host: host, configuration: configuration)
    }

    /// Closes connections. Required before the client is released.
    public func shutdown() async {
        await transport.shutdown()
    }

    /// Runs `body` with a client and always shuts it down afterwards.
    public static func with<T: Sendable>(host: String, configuration: RegistryConfiguration,
                                         _ body: (RegistryClient) async throws -> T) async throws -> T {
        let client = try RegistryClient(host: host, configuration: configuration)
        do {
            let result = try await body(client)
            await client.shutdown()
            return result
        } catch {
            await client.shutdown()
            throw error
        }
    }

    public var statistics: TransferStatistics { transport.statistics.withLockedValue { $0 } }

    var base: String { transport.baseURL }

    // MARK: ping

    /// `GET /v2/`: checks reachability, TLS and (when credentials are given) that they are accepted.
    public func ping() async throws {
        _ = try await transport.execute(RegistryOperation(.GET, "\(base)/v2/", scopes: [], expecting: [200],
                                                          what: "registry API of \(host)", repository: "", action: "access"))
    }

    /// `/v2/REPOSITORY/KIND/REFERENCE`, every part escaped.
    func url(_ repository: String, _ kind: String, _ reference: String) -> String {
        "\(base)/v2/\(Self.escaped(repository))/\(kind)/\(Self.escaped(reference, segment: true))"
    }
}
