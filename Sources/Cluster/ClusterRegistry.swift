import Foundation
import Registry

/// The cluster's own local registry as `push --cluster` and `verify --cluster` reach it
/// (registry-modes-usage.md, "Переключение на режим Local"): through its Ingress at
/// `registry.<PUBLIC_DOMAIN>/system/deckhouse`, as the read-write user of secret
/// `d8-system/registry-user-rw`. `description` never shows the password.
public struct ClusterRegistry: Sendable, CustomStringConvertible {
    /// `registry.<PUBLIC_DOMAIN>`: the `global` ModuleConfig's publicDomainTemplate with `%s` = `registry`.
    public var host: String
    /// Always `system/deckhouse`, where the local registry keeps DKP's images.
    public var repository = "system/deckhouse"
    public var credential: Credential
    /// `ca.crt` of the registry Ingress's TLS secret, when it has one (a cluster-issued certificate).
    public var caPEM: [UInt8]?
    /// Where the CA came from (`secret d8-system/NAME key ca.crt`), or why there is none.
    public var caSource: String

    public var target: String { "\(host)/\(repository)" }

    public var description: String {
        "ClusterRegistry(\(target), user \(credential.username), CA: \(caPEM == nil ? "none" : caSource))"
    }

    static let userSecret = "registry-user-rw"

    /// Reads the three things from the cluster. A failure to find the Ingress's CA is not an
    /// error (`caSource` says why; the system trust and `--ca-file` still apply).
    public static func read(_ client: KubeClient) async throws -> ClusterRegistry {
        let template = try await client.publicDomainTemplate()
        let host = try registryHost(template: template)
        let secret = try await client.secret(namespace: "d8-system", name: userSecret,
                                             notFoundHint: "the registry module creates it in Local mode: set settings.registry.mode: Local in ModuleConfig deckhouse first")
        let what = "secret d8-system/\(userSecret)"
        guard let name = secret.string("name") ?? secret.string("username") else {
            throw ClusterError.unexpectedResponse(what: what, detail: "it has no key name")
        }
        // The password verbatim (only a trailing newline is dropped): it may hold spaces.
        guard var password = secret.data["password"].map({ String(decoding: $0, as: UTF8.self) }), !password.isEmpty else {
            throw ClusterError.unexpectedResponse(what: what, detail: "it has no key password")
        }
        while password.hasSuffix("\n") || password.hasSuffix("\r") { password.removeLast() }
        var registry = ClusterRegistry(host: host, credential: Credential(username: name, password: password), caPEM: nil, caSource: "")
        (registry.caPEM, registry.caSource) = await client.ingressCA(host: host)
        return registry
    }

    /// `registry.<domain>` from a publicDomainTemplate such as `%s.example.com`.
    public static func registryHost(template: String) throws -> String {
        let what = "moduleconfig global"
        guard template.components(separatedBy: "%s").count == 2 else {
            throw ClusterError.unexpectedResponse(what: what, detail: "spec.settings.modules.publicDomainTemplate '\(template)' does not hold %s exactly once")
        }
        let host = template.replacingOccurrences(of: "%s", with: "registry").lowercased()
        let allowed = host.allSatisfy { ($0.isASCII && ($0.isLetter || $0.isNumber)) || $0 == "-" || $0 == "." }
        guard allowed, !host.hasPrefix("."), !host.hasSuffix(".") else {
            throw ClusterError.unexpectedResponse(what: what, detail: "spec.settings.modules.publicDomainTemplate '\(template)' does not make a host name")
        }
        return host
    }
}

extension KubeClient {
    /// `.spec.settings.modules.publicDomainTemplate` of ModuleConfig `global`.
    public func publicDomainTemplate() async throws -> String {
        let what = "moduleconfig global"
        let bytes = try await get("/apis/deckhouse.io/v1alpha1/moduleconfigs/global", what: what,
                                  notFoundHint: "is this a Deckhouse cluster? (check the kubeconfig's context)")
        let object = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any]
        let settings = (object?["spec"] as? [String: Any])?["settings"] as? [String: Any]
        guard let template = (settings?["modules"] as? [String: Any])?["publicDomainTemplate"] as? String, !template.isEmpty else {
            throw ClusterError.unexpectedResponse(what: what, detail: "it sets no spec.settings.modules.publicDomainTemplate, so the cluster has no registry.<PUBLIC_DOMAIN>: set it, or push to the registry's address with push BUNDLE_DIR TARGET")
        }
        return template
    }

    /// `ca.crt` of the TLS secret of the Ingress in d8-system that serves `host`, and where it
    /// came from; nil and the reason when there is none or it cannot be read.
    public func ingressCA(host: String) async -> ([UInt8]?, String) {
        let bytes: [UInt8]
        do {
            bytes = try await get("/apis/networking.k8s.io/v1/namespaces/d8-system/ingresses", what: "the ingresses of d8-system")
        } catch {
            return (nil, "cannot list the ingresses of d8-system (\(error))")
        }
        guard let secretName = Self.tlsSecretName(ingressList: bytes, host: host) else {
            return (nil, "no ingress of d8-system serves \(host) over TLS")
        }
        do {
            let secret = try await secret(namespace: "d8-system", name: secretName)
            guard let ca = secret.data["ca.crt"], !ca.allSatisfy({ $0 == 0x0A || $0 == 0x20 }) else {
                return (nil, "secret d8-system/\(secretName) has no ca.crt (a publicly trusted certificate)")
            }
            return (ca, "secret d8-system/\(secretName) key ca.crt")
        } catch {
            return (nil, "cannot read the ingress's TLS secret (\(error))")
        }
    }

    /// The `spec.tls[].secretName` covering `host` of the first Ingress with a rule for it.
    static func tlsSecretName(ingressList bytes: [UInt8], host: String) -> String? {
        guard let list = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any],
              let items = list["items"] as? [[String: Any]] else { return nil }
        for item in items {
            let spec = item["spec"] as? [String: Any] ?? [:]
            let rules = spec["rules"] as? [[String: Any]] ?? []
            guard rules.contains(where: { ($0["host"] as? String)?.lowercased() == host }) else { continue }
            for tls in spec["tls"] as? [[String: Any]] ?? [] {
                let hosts = (tls["hosts"] as? [String] ?? []).map { $0.lowercased() }
                if hosts.isEmpty || hosts.contains(host), let name = tls["secretName"] as? String { return name }
            }
        }
        return nil
    }
}
