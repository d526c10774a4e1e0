import Foundation
import Testing
import TestSupport

@testable import Cluster

/// Kubeconfigs of the shapes operators have, read from `testdata/kubeconfig/`.
@Suite struct KubeconfigFixtureTests {
    static func path(_ name: String) -> String {
        RepoPaths.testdata.appendingPathComponent("kubeconfig/\(name)").path
    }

    static func load(_ name: String, context: String? = nil) throws -> Kubeconfig {
        try Kubeconfig(yaml: String(contentsOfFile: path(name), encoding: .utf8), path: path(name), context: context)
    }

    @Test func kubeadmAdminConf() throws {
        let config = try Self.load("kubeadm-admin.conf")
        #expect(config.contextName == "kubernetes-admin@kubernetes")
        #expect(config.clusterName == "kubernetes")
        #expect(config.userName == "kubernetes-admin")
        #expect(config.server == "https://192.168.199.10:6443")
        #expect(String(decoding: config.certificateAuthorityPEM ?? [], as: UTF8.self).hasPrefix("-----BEGIN CERTIFICATE-----\nZml4dHVyZSBjbHVzdGVyIENB"))
        #expect(String(decoding: config.credentials.clientCertificatePEM ?? [], as: UTF8.self).contains("Zml4dHVyZSBhZG1pbiBjZXJ0"))
        #expect(String(decoding: config.credentials.clientKeyPEM ?? [], as: UTF8.self).hasPrefix("-----BEGIN RSA PRIVATE KEY-----"))
        #expect(config.credentials.token == nil && config.credentials.basic == nil)
        #expect(!config.description.contains("PRIVATE KEY") && !config.description.contains("Zml4dHVyZSBhZG1pbiBrZXk"))
    }

    @Test func twoContextsPickedByCurrentContextOrByName() throws {
        let current = try Self.load("two-contexts.yaml")
        #expect(current.server == "https://prod:6443")
        #expect(!current.insecureSkipTLSVerify)
        let stage = try Self.load("two-contexts.yaml", context: "stage")
        #expect(stage.server == "https://stage:6443")
        #expect(stage.insecureSkipTLSVerify)
        #expect(stage.credentials.basic?.username == "admin")
        #expect(stage.credentials.basic?.password == "p@ss:word")
        #expect(!stage.description.contains("p@ss"))
        let error = #expect(throws: ClusterError.self) { try Self.load("two-contexts.yaml", context: "dev") }
        #expect(error?.description == "kubeconfig \(Self.path("two-contexts.yaml")): has no context 'dev' (contexts: prod, stage); pass --context with one of them")
        #expect(error?.isUsageError == true)
    }

    /// kubelogin as `kubectl oidc-login setup` prints it: taken as an exec plugin to run (it runs
    /// when the kubeconfig is used), and its client secret never shows.
    @Test func execPluginIsTakenToRun() throws {
        let config = try Self.load("exec-plugin.yaml")
        #expect(config.credentials.exec?.command == "kubectl")
        #expect(config.description.contains("exec plugin 'kubectl'") && !config.description.contains("fixture-client-secret"), "\(config)")
    }

    /// The legacy oidc auth-provider of older kubeconfig generators: taken as that provider,
    /// its id-token (no JWT, so of unknown expiry) used as it is; none of its secrets shows.
    @Test func oidcAuthProviderIsTaken() async throws {
        let config = try Self.load("auth-provider-oidc.yaml")
        #expect(config.credentials.oidc != nil && config.credentials.token == nil)
        for secret in ["fixture-oidc-client-secret", "fixture.id.token", "fixture-refresh-token"] {
            #expect(!config.description.contains(secret) && !"\(config.credentials)".contains(secret))
        }
        #expect(try await config.resolvingCredentials().credentials.token == "fixture.id.token")
    }
}
