import Foundation

/// Recorded shapes of the cluster objects behind `status`, `push --cluster` and
/// `verify --cluster`, read from testdata/cluster (each described in testdata/README.md).
public enum ClusterFixtures {
    public static let registryStatePath = "/api/v1/namespaces/d8-system/secrets/registry-state"
    public static let userPath = "/api/v1/namespaces/d8-system/secrets/registry-user-rw"
    public static let globalPath = "/apis/deckhouse.io/v1alpha1/moduleconfigs/global"
    public static let ingressesPath = "/apis/networking.k8s.io/v1/namespaces/d8-system/ingresses"
    public static let ingressTLSPath = "/api/v1/namespaces/d8-system/secrets/registry-ingress-tls"
    /// The password in registry-user-rw.json (the documentation's example).
    public static let password = "KFVxXZGuqKkkumPz"
    /// `registry.` + the publicDomainTemplate's domain in moduleconfig-global.json.
    public static let registryHost = "registry.dkp.test"

    /// The text of testdata/cluster/`name`.
    public static func text(_ name: String) throws -> String {
        let url = RepoPaths.testdata.appendingPathComponent("cluster").appendingPathComponent(name)
        guard let data = FileManager.default.contents(atPath: url.path) else { throw TestSupportError("cannot read \(url.path)") }
        return String(decoding: data, as: UTF8.self)
    }

    /// registry-ingress-tls.json with `ca.crt` set to the PEM in `caFile` (a test registry's CA).
    public static func ingressTLS(caFile: String) throws -> String {
        guard let pem = FileManager.default.contents(atPath: caFile) else { throw TestSupportError("cannot read \(caFile)") }
        let placeholder = Data("CA-OF-THE-TEST-REGISTRY".utf8).base64EncodedString()
        return try text("registry-ingress-tls.json").replacingOccurrences(of: placeholder, with: pem.base64EncodedString())
    }

    /// Every object of a cluster switching to Local, `state` naming the registry-state recording
    /// (`registry-state-switching.json`, `-images-checked`, `-done`); the ingress's CA from `caFile`.
    public static func objects(state: String = "registry-state-switching.json", caFile: String? = nil) throws -> [String: String] {
        var objects = [
            registryStatePath: try text(state),
            userPath: try text("registry-user-rw.json"),
            globalPath: try text("moduleconfig-global.json"),
            ingressesPath: try text("ingresses-d8-system.json"),
        ]
        if let caFile { objects[ingressTLSPath] = try ingressTLS(caFile: caFile) }
        return objects
    }
}
