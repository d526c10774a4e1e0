import Foundation
import Testing
import TestSupport

@testable import Cluster

/// Reading the recorded registry-state, the publicDomainTemplate and the Ingress list
/// (testdata/cluster) without a server.
@Suite struct ClusterRegistryTests {
    /// A recorded Secret's values, base64-decoded as KubeClient decodes them.
    static func secret(_ name: String) throws -> KubeSecret {
        let object = try JSONSerialization.jsonObject(with: Data(try ClusterFixtures.text(name).utf8)) as? [String: Any]
        let data = try #require(object?["data"] as? [String: String])
        return KubeSecret(name: name, data: data.compactMapValues { Data(base64Encoded: $0).map(Array.init) })
    }

    @Test func recordedStates() throws {
        let switching = try RegistryState(secret: Self.secret("registry-state-switching.json"))
        #expect(switching.mode == "Direct" && switching.targetMode == "Local" && !switching.isDone)
        #expect(switching.conditions.map(\.type) == ["RegistryContainsRequiredImages", "Ready"])
        let images = try #require(switching.condition("RegistryContainsRequiredImages"))
        #expect(images.status == "False" && images.reason == "Processing" && images.lastTransitionTime == "2026-11-30T09:02:11Z")
        #expect(images.message.hasPrefix("Mode: Default\nmaster-1: 0 of 166 items processed, 166 items with errors:\n"))
        #expect(!images.message.hasSuffix("\n"), "a |- block keeps no final newline")

        let checked = try RegistryState(secret: Self.secret("registry-state-images-checked.json"))
        #expect(!checked.isDone && checked.pending == "mode is Direct, target_mode is Local; condition Ready is False (Processing)")
        let done = try RegistryState(secret: Self.secret("registry-state-done.json"))
        #expect(done.isDone && done.pending.isEmpty)
    }

    @Test func stateKeyMissingKeysAndUnquotedStatus() throws {
        // Only `state`, as a YAML mapping; an unquoted True is still the string "True".
        let state = "mode: Local\ntarget_mode: Local\nconditions:\n- type: Ready\n  status: True\n"
        let fromState = try RegistryState(secret: KubeSecret(name: "registry-state", data: ["state": Array(state.utf8)]))
        #expect(fromState.isDone)
        #expect(throws: ClusterError.self) { try RegistryState(secret: KubeSecret(name: "registry-state", data: [:])) }
        let broken = KubeSecret(name: "registry-state", data: ["mode": Array("Local".utf8), "conditions": Array("{not a list".utf8)])
        #expect { try RegistryState(secret: broken) } throws: { "\($0)".contains("key conditions is not a YAML list") }
        let noReady = try RegistryState(secret: KubeSecret(name: "registry-state", data: ["mode": Array("Local".utf8)]))
        #expect(!noReady.isDone && noReady.pending == "there is no condition Ready yet")
    }

    @Test func registryHostFromTheTemplate() throws {
        #expect(try ClusterRegistry.registryHost(template: "%s.dkp.test") == "registry.dkp.test")
        #expect(try ClusterRegistry.registryHost(template: "%s-Kube.Example.com") == "registry-kube.example.com")
        for bad in ["dkp.test", "%s.%s.test", "%s.dkp.test/path", "%s.dkp test"] {
            #expect(throws: ClusterError.self, "\(bad)") { try ClusterRegistry.registryHost(template: bad) }
        }
    }

    @Test func theIngressServingTheHostNamesItsTLSSecret() throws {
        let list = Array(try ClusterFixtures.text("ingresses-d8-system.json").utf8)
        #expect(KubeClient.tlsSecretName(ingressList: list, host: "registry.dkp.test") == "registry-ingress-tls")
        #expect(KubeClient.tlsSecretName(ingressList: list, host: "documentation.dkp.test") == "documentation-ingress-tls")
        #expect(KubeClient.tlsSecretName(ingressList: list, host: "registry.other.test") == nil)
        #expect(KubeClient.tlsSecretName(ingressList: Array("{}".utf8), host: "registry.dkp.test") == nil)
    }
}
