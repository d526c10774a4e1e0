import Foundation
import Logging
import Network
import NIOSSL
import DKP
import OCI
import Registry

/// What `ClusterDetector` found out about a running Deckhouse cluster.
public struct ClusterInfo: Codable, Sendable, Equatable {
    /// The image tag of container `deckhouse` of deployment `d8-system/deckhouse` (`v1.69.3`).
    public var tag: String
    /// Lowercased and trimmed: `ee`, `ce`, `se-plus`, ...
    public var edition: String
    /// The deckhouse container image as the deployment names it.
    public var image: String
    /// The registry the cluster pulls from: address + path of secret `d8-system/deckhouse-registry`
    /// (the image's repository when the secret cannot be read).
    public var registry: String
    /// Where the edition came from: `image /deckhouse/edition`, `registry path` or `moduleconfig`.
    public var editionSource: String

    public init(tag: String, edition: String, image: String, registry: String, editionSource: String) {
        self.tag = tag
        self.edition = edition
        self.image = image
        self.registry = registry
        self.editionSource = editionSource
    }
}

/// Reads a running cluster's Deckhouse version (tag) and edition through its API server
/// (dkp-source-and-bundle.md §5).
public enum ClusterDetector {
    public static let editionSourceImage = "image /deckhouse/edition"
    public static let editionSourceRegistryPath = "registry path"
    public static let editionSourceModuleConfig = "moduleconfig"

    public struct Options: Sendable {
        /// Registries whose paths are `/deckhouse/<edition>`.
        public var officialRegistries: Set<String> = ["registry.deckhouse.ru", "registry.deckhouse.io"]
        /// How long to wait for the cluster's registry; it is often unreachable from an
        /// operator's machine, which only means falling back to other sources.
        public var registryConnectTimeout: Duration = .seconds(5)
        public var registryIdleTimeout: Duration = .seconds(30)
        public var registryMaxAttempts = 2
        public var apiConnectTimeout: Duration = .seconds(10)
        public var apiRequestTimeout: Duration = .seconds(30)
        public var logger = Logger(label: "dkp-mirror.detect")
        /// Proxies for the API server (unless the kubeconfig names a proxy-url) and the registry.
        public var proxies: ProxySettings = .direct
        /// System trust (`SSL_CERT_FILE`, `SSL_CERT_DIR`), for the registry and an API server without a CA.
        public var trustRoots: NIOSSLTrustRoots = .default

        public init() {}
    }

    /// Detects the tag and edition of the cluster `kubeconfig` points at.
    public static func detect(kubeconfig: Kubeconfig, options: Options = Options()) async throws -> ClusterInfo {
        let client = try KubeClient(kubeconfig: kubeconfig, connectTimeout: options.apiConnectTimeout,
                                    requestTimeout: options.apiRequestTimeout, proxies: options.proxies, trustRoots: options.trustRoots)
        do {
            let info = try await detect(client: client, options: options)
            await client.shutdown()
            return info
        } catch {
            await client.shutdown()
            throw error
        }
    }

    /// Detects with an existing client (which stays open). The tag is the deployment image's
    /// (or, for an image pinned by digest, the image's /deckhouse/version); the edition is the
    /// first of: the image's /deckhouse/edition, the official registry's path, ModuleConfig
    /// `deckhouse`. Each source that did not answer is named in the error.
    public static func detect(client: KubeClient, options: Options = Options()) async throws -> ClusterInfo {
        let image = try await deckhouseImage(client: client)
        options.logger.debug("deckhouse image: \(image)")
        let parts = splitImage(image)

        // The registry the cluster uses.
        var tried: [String] = []
        var access: RegistryAccess?
        do {
            access = try RegistryAccess(secret: try await client.deckhouseRegistrySecret())
        } catch {
            options.logger.debug("no registry settings from the cluster: \(error)")
            tried.append("reading secret d8-system/deckhouse-registry: \(error)")
        }
        let reference = try? Reference(parsing: image)
        let registry = access?.registry ?? reference?.name ?? parts.name

        let read = await readDeckhouseFiles(of: reference, needVersion: parts.tag == nil, access: access, options: options)
        let tag = try parts.tag ?? tagFromVersionFile(read, image: image)
        func found(_ edition: String, source: String) -> ClusterInfo {
            ClusterInfo(tag: tag, edition: edition, image: image, registry: registry, editionSource: source)
        }

        // 1. The image's own /deckhouse/edition.
        if let bytes = read.files["deckhouse/edition"] {
            if let edition = normalizeEdition(String(decoding: bytes, as: UTF8.self)) {
                return found(edition, source: editionSourceImage)
            }
            tried.append("file /deckhouse/edition of image \(image): its content is not an edition name")
        } else {
            tried.append("file /deckhouse/edition of image \(image): \(read.problem ?? "not found")")
        }
        options.logger.debug("edition not read from the image: \(tried.last ?? "")")

        // 2. The registry path, when it is the official registry's /deckhouse/<edition>.
        var candidates: [(host: String, path: String)] = []
        if let access { candidates.append((access.address, access.path)) }
        if let reference { candidates.append((reference.host, reference.repository)) }
        for candidate in candidates {
            if let edition = editionFromRegistryPath(host: candidate.host, path: candidate.path, official: options.officialRegistries) {
                return found(edition, source: editionSourceRegistryPath)
            }
        }
        let official = options.officialRegistries.sorted().joined(separator: ", ")
        tried.append("registry path: \(registry) is not <official registry>/deckhouse/<edition> (official: \(official))")

        // 3. ModuleConfig deckhouse.
        do {
            let moduleConfig = try await client.deckhouseModuleConfig()
            if let value = moduleConfig.licenseEdition, let edition = normalizeEdition(value) {
                return found(edition, source: editionSourceModuleConfig)
            }
            tried.append("moduleconfig deckhouse: it has no .spec.settings.license.edition")
        } catch {
            tried.append("moduleconfig deckhouse: \(error)")
        }
        throw ClusterError.noEdition(tried: tried)
    }

    // MARK: Pieces

    /// The image of container `deckhouse` of deployment `d8-system/deckhouse`.
    static func deckhouseImage(client: KubeClient) async throws -> String {
        let deployment = try await client.deckhouseDeployment()
        let names = deployment.containers.map(\.name)
        guard let container = deployment.containers.first(where: { $0.name == "deckhouse" }) else {
            throw ClusterError.noTag("deployment d8-system/deckhouse has no container named deckhouse (containers: \(names.isEmpty ? "none" : names.joined(separator: ", "))); is this a Deckhouse cluster?")
        }
        guard let image = container.image?.trimmingCharacters(in: .whitespaces), !image.isEmpty else {
            throw ClusterError.noTag("container deckhouse of deployment d8-system/deckhouse has no image")
        }
        return image
    }

    /// The files read out of the deckhouse image, or why they could not be.
    struct DeckhouseFiles {
        var files: [String: [UInt8]] = [:]
        var problem: String?
    }

    /// Reads /deckhouse/edition (and /deckhouse/version when the tag is unknown) out of the image.
    static func readDeckhouseFiles(of reference: Reference?, needVersion: Bool, access: RegistryAccess?,
                                   options: Options) async -> DeckhouseFiles {
        guard let reference else {
            return DeckhouseFiles(problem: "the image name cannot be parsed as HOST/PATH[:TAG][@DIGEST]")
        }
        var wanted: Set<String> = ["deckhouse/edition"]
        if needVersion { wanted.insert("deckhouse/version") }
        do {
            let files = try await readImageFiles(wanted, reference: reference, access: access, options: options)
            return DeckhouseFiles(files: files, problem: files["deckhouse/edition"] == nil ? "the image has no file /deckhouse/edition" : nil)
        } catch {
            return DeckhouseFiles(problem: "\(error)")
        }
    }

    /// The tag of an image referenced by digest alone: its /deckhouse/version.
    static func tagFromVersionFile(_ read: DeckhouseFiles, image: String) throws -> String {
        let version = read.files["deckhouse/version"].map {
            String(decoding: $0, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        } ?? ""
        guard !version.isEmpty, !version.contains(where: { $0.isWhitespace }) else {
            let why = read.problem ?? "the image has no file /deckhouse/version"
            throw ClusterError.noTag("container deckhouse of deployment d8-system/deckhouse runs image \(image), which is referenced by digest without a tag, so the Deckhouse version is unknown, and /deckhouse/version of the image cannot be read (\(why)); pass the version with --deckhouse-tag instead")
        }
        return version
    }

    /// `ee`, `se-plus`: lowercased, trimmed, letters, digits and '-' only; nil otherwise.
    public static func normalizeEdition(_ text: String) -> String? {
        let edition = text.trimmingCharacters(in: .whitespacesAndNewlines).lowercased()
        guard !edition.isEmpty, edition.count <= 32,
              edition.allSatisfy({ ($0.isASCII && ($0.isLetter || $0.isNumber)) || $0 == "-" }),
              edition.first != "-" else { return nil }
        return edition
    }

    /// The edition in an official registry path `/deckhouse/<edition>`, nil for other registries or paths.
    public static func editionFromRegistryPath(host: String, path: String, official: Set<String>) -> String? {
        guard official.contains(host.lowercased()) else { return nil }
        let components = path.split(separator: "/", omittingEmptySubsequences: true)
        guard components.count >= 2, components[0] == "deckhouse" else { return nil }
        return normalizeEdition(String(components[1]))
    }

    /// Splits an image name into name, tag and digest without validating it, as the kubelet
    /// reads it: the tag is after the last ':' that follows the last '/'.
    static func splitImage(_ image: String) -> (name: String, tag: String?, digest: String?) {
        var rest = Substring(image)
        var digest: String?
        if let at = rest.firstIndex(of: "@") {
            digest = String(rest[rest.index(after: at)...])
            rest = rest[..<at]
        }
        let lastSlash = rest.lastIndex(of: "/") ?? rest.startIndex
        if let colon = rest[lastSlash...].lastIndex(of: ":") {
            let tag = String(rest[rest.index(after: colon)...])
            return (String(rest[..<colon]), tag.isEmpty ? nil : tag, digest)
        }
        return (String(rest), nil, digest)
    }

    /// Reads `wanted` out of the image through the cluster's registry settings.
    static func readImageFiles(_ wanted: Set<String>, reference: Reference, access: RegistryAccess?,
                               options: Options) async throws -> [String: [UInt8]] {
        var configuration = RegistryConfiguration()
        configuration.connectTimeout = options.registryConnectTimeout
        configuration.idleTimeout = options.registryIdleTimeout
        configuration.maxAttempts = max(1, options.registryMaxAttempts)
        configuration.logger = options.logger
        configuration.maxConnections = 4
        configuration.proxies = options.proxies
        configuration.trustRoots = options.trustRoots
        var caFile: String?
        if let access {
            if access.address == reference.host { configuration.insecure = access.scheme == "http" }
            configuration.credential = access.credential(for: reference.host)
            if let ca = access.caPEM, !configuration.insecure {
                let path = NSTemporaryDirectory() + "dkp-mirror-registry-ca-\(UUID().uuidString).pem"
                if FileManager.default.createFile(atPath: path, contents: Data(ca)) {
                    caFile = path
                    configuration.caFile = path
                }
            }
        }
        defer {
            if let caFile { try? FileManager.default.removeItem(atPath: caFile) }
        }
        return try await RegistryClient.with(host: reference.host, configuration: configuration) { client in
            try await ImageFiles.read(wanted, client: client, repository: reference.repository,
                                      reference: reference.manifestReference)
        }
    }
}

/// How the cluster reaches its registry, from secret `d8-system/deckhouse-registry`
/// (`address`, `path`, `scheme`, `ca`, `.dockerconfigjson`). Never printed with its credentials.
public struct RegistryAccess: Sendable, CustomStringConvertible {
    /// `registry.deckhouse.ru`, `10.128.0.5:5001`.
    public var address: String
    /// `/deckhouse/ee`, `/system/deckhouse` (always with a leading '/', or empty).
    public var path: String
    /// `https` or `http`.
    public var scheme: String
    public var caPEM: [UInt8]?
    /// `.dockerconfigjson` auths by registry address.
    var auths: [String: Credential]

    public init(secret: KubeSecret) throws {
        guard let address = secret.string("address") else {
            throw ClusterError.unexpectedResponse(what: "secret d8-system/deckhouse-registry", detail: "it has no key address")
        }
        self.address = address
        let path = secret.string("path") ?? ""
        self.path = path.isEmpty || path.hasPrefix("/") ? path : "/" + path
        self.scheme = secret.string("scheme")?.lowercased() ?? "https"
        self.caPEM = secret.string("ca").map { Array($0.utf8) }
        self.auths = Self.parseDockerConfig(secret.data[".dockerconfigjson"] ?? [])
    }

    /// `address` + `path`, e.g. `10.128.0.5:5001/system/deckhouse`.
    public var registry: String {
        let trimmed = path.hasSuffix("/") ? String(path.dropLast()) : path
        return address + trimmed
    }

    /// The credential `.dockerconfigjson` holds for `host`, if any.
    public func credential(for host: String) -> Credential? {
        auths[host.lowercased()]
    }

    public var description: String {
        "RegistryAccess(\(scheme)://\(registry), ca: \(caPEM == nil ? "no" : "yes"), auths: \(auths.keys.sorted().joined(separator: ", ")))"
    }

    /// `{"auths": {"host": {"auth": base64(user:password)} | {"username", "password"}}}`, keyed by bare host.
    static func parseDockerConfig(_ bytes: [UInt8]) -> [String: Credential] {
        guard !bytes.isEmpty,
              let object = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any],
              let auths = object["auths"] as? [String: Any] else { return [:] }
        var result: [String: Credential] = [:]
        for (key, value) in auths {
            guard let entry = value as? [String: Any] else { continue }
            var host = Substring(key)
            if let scheme = host.range(of: "://") { host = host[scheme.upperBound...] }
            if let slash = host.firstIndex(of: "/") { host = host[..<slash] }
            let name = host.lowercased()
            if let auth = entry["auth"] as? String,
               let decoded = Data(base64Encoded: auth.filter { !$0.isWhitespace }).map({ String(decoding: $0, as: UTF8.self) }),
               let colon = decoded.firstIndex(of: ":") {
                result[name] = Credential(username: String(decoded[..<colon]), password: String(decoded[decoded.index(after: colon)...]))
            } else if let username = entry["username"] as? String, let password = entry["password"] as? String {
                result[name] = Credential(username: username, password: password)
            }
        }
        return result
    }
}

extension ClusterInfo {
    /// `TAG=<tag>` and `EDITION=<edition>`, one a line (what `dkp-mirror detect` prints;
    /// safe to `eval` or source: values are tags and edition names).
    public var shellLines: String {
        "TAG=\(tag)\nEDITION=\(edition)\n"
    }
}
