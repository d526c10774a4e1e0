import Cluster
import Foundation
import Network
import Testing
import TestSupport

/// A kubeconfig's `proxy-url`, read from the fixtures in `testdata/kubeconfig/`.
@Suite struct KubeconfigProxyTests {
    static func fixture(_ name: String) -> String {
        RepoPaths.testdata.appendingPathComponent("kubeconfig/\(name)").path
    }

    @Test func proxyURLBecomesTheClustersProxy() throws {
        let config = try Kubeconfig.load(path: Self.fixture("proxy-url.yaml"), environment: [:])
        #expect(config.proxy == ProxyEndpoint(kind: .http, host: "proxy.corp.example", port: 3128, username: "ops", password: "pr0xy-pass"))
        #expect(config.proxy?.description == "http://o***@proxy.corp.example:3128")
        #expect(!"\(config)".contains("pr0xy-pass"))
    }

    @Test func aProxyURLOverTLSIsRefusedNamingTheField() {
        do {
            _ = try Kubeconfig.load(path: Self.fixture("proxy-url-https.yaml"), environment: [:])
            Issue.record("an https:// proxy-url was accepted")
        } catch {
            let message = "\(error)"
            #expect(message.contains("cluster 'corp': proxy-url is not a usable proxy URL"), "\(message)")
            #expect(message.contains("proxy-url-https.yaml"), "\(message)")
        }
    }
}
