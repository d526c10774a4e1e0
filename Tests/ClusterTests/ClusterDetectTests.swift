import Foundation
import OCI
import Registry
import Testing
import TestSupport

@testable import Cluster

@Suite("Cluster detection: fake API server, real registries")
struct ClusterDetectTests {
    static let token = "detect-token-5b1e"

    func detect(_ objects: FakeClusterObjects, options: ClusterDetector.Options = clusterTestOptions()) async throws -> ClusterInfo {
        let fake = try await FakeKubernetes.start(objects: objects, token: Self.token)
        do {
            let config = try Kubeconfig(yaml: clusterKubeconfig(server: fake.url, user: ["token: \(Self.token)"]), path: "/k")
            let info = try await ClusterDetector.detect(kubeconfig: config, options: options)
            try await fake.shutdown()
            return info
        } catch {
            try await fake.shutdown()
            throw error
        }
    }

    // MARK: The image's own /deckhouse/edition

    @Test func editionFromTheImageThroughATLSRegistryWithCredentials() async throws {
        let registry = try await TestRegistry.start(tls: true, users: ["reader": "registry-pass-9c2"])
        var configuration = RegistryConfiguration()
        configuration.caFile = registry.caFile
        configuration.credential = Credential(username: "reader", password: "registry-pass-9c2")
        try await RegistryClient.with(host: registry.host, configuration: configuration) { client in
            _ = try await ClusterTestImage.push(client, repository: "system/deckhouse", tag: "v1.69.3")
        }
        let ca = try String(contentsOfFile: registry.caFile ?? "", encoding: .utf8)

        var objects = FakeClusterObjects()
        objects.deckhouseImage = "\(registry.host)/system/deckhouse:v1.69.3"
        objects.registrySecret = [
            ".dockerconfigjson": FakeClusterObjects.dockerConfigJSON(address: registry.host, username: "reader", password: "registry-pass-9c2"),
            "address": registry.host, "path": "/system/deckhouse", "scheme": "https", "ca": ca,
        ]
        objects.moduleConfigEdition = "ce" // must not be used: the image answers
        let info = try await detect(objects)
        #expect(info == ClusterInfo(tag: "v1.69.3", edition: "ee", image: "\(registry.host)/system/deckhouse:v1.69.3",
                                    registry: "\(registry.host)/system/deckhouse", editionSource: "image /deckhouse/edition"))
        #expect(info.shellLines == "TAG=v1.69.3\nEDITION=ee\n")
    }

    @Test func editionFromAMultiArchImageOnAPlainRegistry() async throws {
        let registry = try await TestRegistry.start()
        var configuration = RegistryConfiguration()
        configuration.insecure = true
        try await RegistryClient.with(host: registry.host, configuration: configuration) { client in
            let image = try await ClusterTestImage.push(client, repository: "system/deckhouse", tag: nil, edition: " SE-Plus \n")
            _ = try await image.pushIndex(client, repository: "system/deckhouse", tag: "v1.68.4")
        }
        var objects = FakeClusterObjects()
        objects.deckhouseImage = "\(registry.host)/system/deckhouse:v1.68.4"
        objects.registrySecret = ["address": registry.host, "path": "system/deckhouse", "scheme": "http"]
        let info = try await detect(objects)
        #expect(info.tag == "v1.68.4")
        #expect(info.edition == "se-plus")
        #expect(info.editionSource == ClusterDetector.editionSourceImage)
        #expect(info.registry == "\(registry.host)/system/deckhouse")
    }

    @Test func imageByDigestTakesTheTagFromDeckhouseVersion() async throws {
        let registry = try await TestRegistry.start()
        var configuration = RegistryConfiguration()
        configuration.insecure = true
        let image = try await RegistryClient.with(host: registry.host, configuration: configuration) { client in
            try await ClusterTestImage.push(client, repository: "system/deckhouse", tag: nil, version: "v1.67.5\n")
        }
        var objects = FakeClusterObjects()
        objects.deckhouseImage = "\(registry.host)/system/deckhouse@\(image.manifestDigest)"
        objects.registrySecret = ["address": registry.host, "path": "/system/deckhouse", "scheme": "http"]
        let info = try await detect(objects)
        #expect(info.tag == "v1.67.5")
        #expect(info.edition == "ee")
    }

    @Test func imageByDigestWithAnUnreachableRegistryCannotTellTheTag() async throws {
        var objects = FakeClusterObjects()
        let digest = "sha256:" + String(repeating: "0a", count: 32)
        objects.deckhouseImage = "\(clusterUnreachableRegistry)/deckhouse/ee@\(digest)"
        objects.registrySecret = ["address": clusterUnreachableRegistry, "path": "/deckhouse/ee", "scheme": "https"]
        objects.moduleConfigEdition = "ee"
        let error = await #expect(throws: ClusterError.self) {
            _ = try await detect(objects, options: clusterTestOptions(official: [clusterUnreachableRegistry]))
        }
        let text = error?.description ?? ""
        #expect(text.hasPrefix("container deckhouse of deployment d8-system/deckhouse runs image \(clusterUnreachableRegistry)/deckhouse/ee@\(digest), which is referenced by digest without a tag"))
        #expect(text.contains("cannot connect to \(clusterUnreachableRegistry)"))
        #expect(text.hasSuffix("pass the version with --deckhouse-tag instead"))
    }

    // MARK: Fallbacks

    @Test func unreachableOfficialRegistryGivesTheEditionFromItsPath() async throws {
        var objects = FakeClusterObjects()
        objects.deckhouseImage = "\(clusterUnreachableRegistry)/deckhouse/fe:v1.69.3"
        objects.registrySecret = [
            ".dockerconfigjson": FakeClusterObjects.dockerConfigJSON(address: clusterUnreachableRegistry, username: "license-token", password: "LICENSE-KEY-123"),
            "address": clusterUnreachableRegistry, "path": "/deckhouse/fe", "scheme": "https",
        ]
        objects.moduleConfigEdition = "ce" // the path comes first
        let info = try await detect(objects, options: clusterTestOptions(official: [clusterUnreachableRegistry]))
        #expect(info == ClusterInfo(tag: "v1.69.3", edition: "fe", image: "\(clusterUnreachableRegistry)/deckhouse/fe:v1.69.3",
                                    registry: "\(clusterUnreachableRegistry)/deckhouse/fe", editionSource: "registry path"))
    }

    @Test func unreadableSecretStillFallsBackToTheImagePath() async throws {
        var objects = FakeClusterObjects()
        objects.deckhouseImage = "\(clusterUnreachableRegistry)/deckhouse/ce:v1.68.4"
        objects.forbiddenPaths = [FakeClusterObjects.secretPath]
        let info = try await detect(objects, options: clusterTestOptions(official: [clusterUnreachableRegistry]))
        #expect(info.edition == "ce")
        #expect(info.editionSource == "registry path")
        #expect(info.registry == "\(clusterUnreachableRegistry)/deckhouse/ce")
    }

    @Test func unreachableCustomRegistryGivesTheEditionFromTheModuleConfig() async throws {
        var objects = FakeClusterObjects()
        objects.deckhouseImage = "\(clusterUnreachableRegistry)/system/deckhouse:v1.69.3"
        objects.registrySecret = ["address": clusterUnreachableRegistry, "path": "/system/deckhouse", "scheme": "https"]
        objects.moduleConfigEdition = " SE-Plus\n"
        let info = try await detect(objects, options: clusterTestOptions(official: [clusterUnreachableRegistry]))
        #expect(info == ClusterInfo(tag: "v1.69.3", edition: "se-plus", image: "\(clusterUnreachableRegistry)/system/deckhouse:v1.69.3",
                                    registry: "\(clusterUnreachableRegistry)/system/deckhouse", editionSource: "moduleconfig"))
    }

    @Test func everySourceFailingListsWhatWasTried() async throws {
        var objects = FakeClusterObjects()
        objects.deckhouseImage = "\(clusterUnreachableRegistry)/system/deckhouse:v1.69.3"
        objects.registrySecret = ["address": clusterUnreachableRegistry, "path": "/system/deckhouse", "scheme": "https"]
        objects.moduleConfigExists = false
        let error = await #expect(throws: ClusterError.self) { _ = try await detect(objects) }
        guard case let .noEdition(tried)? = error else {
            Issue.record("expected noEdition, got \(String(describing: error))")
            return
        }
        #expect(tried.count == 3)
        #expect(tried[0].hasPrefix("file /deckhouse/edition of image \(clusterUnreachableRegistry)/system/deckhouse:v1.69.3: cannot connect to \(clusterUnreachableRegistry)"))
        #expect(tried[1] == "registry path: \(clusterUnreachableRegistry)/system/deckhouse is not <official registry>/deckhouse/<edition> (official: registry.deckhouse.io, registry.deckhouse.ru)")
        #expect(tried[2] == "moduleconfig deckhouse: moduleconfig deckhouse not found: the cluster has no ModuleConfig deckhouse")
        #expect(error?.description.hasPrefix("cannot tell the cluster's Deckhouse edition; tried: (1) file /deckhouse/edition") == true)
        #expect(error?.isUsageError == false)
    }

    @Test func wrongRegistryPasswordFallsBackAndNeverShowsThePassword() async throws {
        let registry = try await TestRegistry.start(tls: true, users: ["reader": "right-pass"])
        var configuration = RegistryConfiguration()
        configuration.caFile = registry.caFile
        configuration.credential = Credential(username: "reader", password: "right-pass")
        try await RegistryClient.with(host: registry.host, configuration: configuration) { client in
            _ = try await ClusterTestImage.push(client, repository: "system/deckhouse", tag: "v1.69.3")
        }
        let ca = try String(contentsOfFile: registry.caFile ?? "", encoding: .utf8)
        var objects = FakeClusterObjects()
        objects.deckhouseImage = "\(registry.host)/system/deckhouse:v1.69.3"
        objects.registrySecret = [
            ".dockerconfigjson": FakeClusterObjects.dockerConfigJSON(address: registry.host, username: "reader", password: "wrong-pass-77"),
            "address": registry.host, "path": "/system/deckhouse", "scheme": "https", "ca": ca,
        ]
        objects.moduleConfigExists = false
        let error = await #expect(throws: ClusterError.self) { _ = try await detect(objects) }
        let text = error?.description ?? ""
        #expect(text.contains("rejected the credentials of user 'reader'"))
        #expect(!text.contains("wrong-pass-77"))

        objects.moduleConfigExists = true
        objects.moduleConfigEdition = "EE"
        let info = try await detect(objects)
        #expect(info.edition == "ee")
        #expect(info.editionSource == "moduleconfig")
    }

    @Test func anImageWithoutTheEditionFileFallsBack() async throws {
        let registry = try await TestRegistry.start()
        var configuration = RegistryConfiguration()
        configuration.insecure = true
        try await RegistryClient.with(host: registry.host, configuration: configuration) { client in
            _ = try await ImageSeeder.pushImage(client, repository: "system/deckhouse", tag: "v1.69.3", layerSizes: [])
        }
        var objects = FakeClusterObjects()
        objects.deckhouseImage = "\(registry.host)/system/deckhouse:v1.69.3"
        objects.registrySecret = ["address": registry.host, "path": "/system/deckhouse", "scheme": "http"]
        objects.moduleConfigEdition = "be"
        let info = try await detect(objects)
        #expect(info.edition == "be")
        #expect(info.editionSource == "moduleconfig")
    }

    @Test func deploymentWithoutADeckhouseContainer() async throws {
        var objects = FakeClusterObjects()
        objects.deckhouseImage = "registry.example.com/system/deckhouse:v1.69.3"
        let fake = try await FakeKubernetes.start(objects: objects, token: Self.token)
        // A deployment whose only container is not called deckhouse.
        fake.server.setHandler { request in
            guard request.path == FakeClusterObjects.deploymentPath else { return .notFound() }
            return .json(#"{"kind":"Deployment","apiVersion":"apps/v1","metadata":{"name":"deckhouse"},"spec":{"template":{"spec":{"containers":[{"name":"controller","image":"x.example/y:1"}]}}}}"#)
        }
        let config = try Kubeconfig(yaml: clusterKubeconfig(server: fake.url, user: ["token: \(Self.token)"]), path: "/k")
        let error = await #expect(throws: ClusterError.self) { _ = try await ClusterDetector.detect(kubeconfig: config, options: clusterTestOptions()) }
        #expect(error?.description == "deployment d8-system/deckhouse has no container named deckhouse (containers: controller); is this a Deckhouse cluster?")
        try await fake.shutdown()
    }
}

@Suite("Cluster detection: pieces")
struct ClusterPiecesTests {
    @Test func editionNames() {
        #expect(ClusterDetector.normalizeEdition("ee\n") == "ee")
        #expect(ClusterDetector.normalizeEdition("  SE-Plus ") == "se-plus")
        #expect(ClusterDetector.normalizeEdition("") == nil)
        #expect(ClusterDetector.normalizeEdition("e e") == nil)
        #expect(ClusterDetector.normalizeEdition("{\"x\":1}") == nil)
        #expect(ClusterDetector.normalizeEdition("-ee") == nil)
    }

    @Test func officialRegistryPaths() {
        let official: Set<String> = ["registry.deckhouse.ru", "registry.deckhouse.io"]
        #expect(ClusterDetector.editionFromRegistryPath(host: "registry.deckhouse.ru", path: "/deckhouse/ee", official: official) == "ee")
        #expect(ClusterDetector.editionFromRegistryPath(host: "Registry.Deckhouse.IO", path: "deckhouse/se-plus", official: official) == "se-plus")
        #expect(ClusterDetector.editionFromRegistryPath(host: "registry.deckhouse.ru", path: "/deckhouse", official: official) == nil)
        #expect(ClusterDetector.editionFromRegistryPath(host: "registry.deckhouse.ru", path: "/sys/deckhouse-oss", official: official) == nil)
        #expect(ClusterDetector.editionFromRegistryPath(host: "registry.example.com", path: "/deckhouse/ee", official: official) == nil)
    }

    @Test func imageNames() {
        #expect(ClusterDetector.splitImage("registry.deckhouse.ru/deckhouse/ee:v1.69.3") == ("registry.deckhouse.ru/deckhouse/ee", "v1.69.3", nil))
        #expect(ClusterDetector.splitImage("10.0.0.5:5001/system/deckhouse:v1.69.3@sha256:ab") == ("10.0.0.5:5001/system/deckhouse", "v1.69.3", "sha256:ab"))
        #expect(ClusterDetector.splitImage("10.0.0.5:5001/system/deckhouse@sha256:ab") == ("10.0.0.5:5001/system/deckhouse", nil, "sha256:ab"))
        #expect(ClusterDetector.splitImage("deckhouse:dev") == ("deckhouse", "dev", nil))
    }

    @Test func registrySecret() throws {
        let docker = #"{"auths":{"https://10.0.0.5:5001/v2/":{"auth":"\#(clusterBase64("ro:pa:ss"))"},"other.example":{"username":"u","password":"p"}}}"#
        let secret = KubeSecret(name: "deckhouse-registry", data: [
            ".dockerconfigjson": Array(docker.utf8), "address": Array("10.0.0.5:5001".utf8), "path": Array("system/deckhouse\n".utf8),
        ])
        let access = try RegistryAccess(secret: secret)
        #expect(access.registry == "10.0.0.5:5001/system/deckhouse")
        #expect(access.scheme == "https")
        #expect(access.caPEM == nil)
        #expect(access.credential(for: "10.0.0.5:5001") == Credential(username: "ro", password: "pa:ss"))
        #expect(access.credential(for: "other.example") == Credential(username: "u", password: "p"))
        #expect(access.credential(for: "third.example") == nil)
        #expect(!access.description.contains("pa:ss"))

        let error = #expect(throws: ClusterError.self) { _ = try RegistryAccess(secret: KubeSecret(name: "x", data: [:])) }
        #expect(error?.description == "unexpected answer for secret d8-system/deckhouse-registry: it has no key address")
    }

    @Test func jsonOutput() throws {
        let info = ClusterInfo(tag: "v1.69.3", edition: "ee", image: "r.example/deckhouse/ee:v1.69.3", registry: "r.example/deckhouse/ee",
                               editionSource: "image /deckhouse/edition")
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let text = String(decoding: try encoder.encode(info), as: UTF8.self)
        #expect(text == #"{"edition":"ee","editionSource":"image /deckhouse/edition","image":"r.example/deckhouse/ee:v1.69.3","registry":"r.example/deckhouse/ee","tag":"v1.69.3"}"#)
        #expect(try JSONDecoder().decode(ClusterInfo.self, from: Data(text.utf8)) == info)
    }
}
