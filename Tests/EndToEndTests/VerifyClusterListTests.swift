import Foundation
import OCI
import Registry
import Testing
import TestSupport

/// `verify --registry` builds the cluster's own item list (d8-current.md §9), and offline
/// verify checks packages' images_digests.json.
@Suite struct VerifyClusterListTests {
    struct Report: Decodable {
        struct Failure: Decodable { var source: String; var image: String; var error: String }
        var mode: String; var total: Int; var failures: [Failure]
    }

    static func kubeconfig(_ fake: FakeKubernetes) throws -> String {
        let directory = try TestRegistry.temporaryDirectory("dkp-kubeconfig")
        let path = directory.appendingPathComponent("config").path
        try """
            apiVersion: v1
            kind: Config
            clusters:
            - name: fake
              cluster:
                server: \(fake.url)
            contexts:
            - name: fake
              context:
                cluster: fake
                user: reader
            current-context: fake
            users:
            - name: reader
              user:
                token: \(fake.token ?? "")
            """.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func theClustersItemsBeforeAndAfterPushInBothModesAndFromTheDeployment() async throws {
        let bundle = try TestRegistry.temporaryDirectory("dkp-verify-list")
        let edition = try D8ShapeEdition.write(to: bundle)
        let target = try await TestRegistry.start(tls: true, users: ["rw": "pw-list-3"])
        let base = ["verify", bundle.path, "--registry", "\(target.host)/system/deckhouse", "--ca-file", target.caFile!,
                    "-u", "rw", "-p", "pw-list-3"]
        let image = "\(target.host)/system/deckhouse"

        // Before the push: every item is missing, named as the cluster names it.
        let before = try await CLITests.run(base + ["--json"])
        #expect(before.status == 1, "\(before.stderrString)")
        let missing = try JSONDecoder().decode(Report.self, from: Data(before.stdout))
        #expect(missing.mode == "default")
        #expect(missing.total == edition.clusterItems.count + 1, "three distinct digests (one listed twice) and the controller")
        let expected = (edition.clusterItems.map { ($0.label, "\(image)@\($0.digest)") }
            + [("deckhouse/containers/deckhouse", "\(image):v1.69.3")]).sorted { $0.1 < $1.1 }
        #expect(missing.failures.map(\.source) == expected.map(\.0))
        #expect(missing.failures.map(\.image) == expected.map(\.1))
        let text = try await CLITests.run(base)
        #expect(text.stdoutString.hasPrefix("Mode: Default\n0 of 4 items processed, 4 items with errors:\n- source: "), "\(text.stdoutString)")
        #expect(text.stdoutString.contains("- source: module/control-plane-manager/kube-apiserver133\n  image: \(image)@"))

        let push = try await PushTests.push(bundle, to: target, password: "pw-list-3")
        #expect(push.status == 0, "\(push.stderrString)")
        let after = try await CLITests.run(base)
        #expect(after.status == 0, "\(after.stdoutString) \(after.stderrString)")
        #expect(after.stdoutString.hasPrefix("Mode: Default\nall 4 items are checked\n"
            + "The rest of the bundle (every tag, children by digest, discovery tags):\nall "), "\(after.stdoutString)")
        #expect(after.stdoutString.hasSuffix(" items are checked\n"))
        let relax = try await CLITests.run(base + ["--check-mode", "relax", "-j", "1", "--only-cluster-list"])
        #expect(relax.stdoutString == "Mode: Relax\nall 1 items are checked\n", "\(relax.stdoutString) \(relax.stderrString)")

        // From the running Deployment: its containers and initContainers, repository replaced by
        // TARGET; its kube-rbac-proxy image (by digest) is not in the bundle.
        let fake = try await FakeKubernetes.start()
        let config = try Self.kubeconfig(fake)
        let cluster = try await CLITests.run(base + ["--kubeconfig", config, "--json"])
        #expect(cluster.status == 1, "\(cluster.stderrString)")
        let report = try JSONDecoder().decode(Report.self, from: Data(cluster.stdout))
        #expect(report.total == 5, "4 as before, and kube-rbac-proxy; the init container shares the controller image")
        #expect(report.failures.map(\.source) == ["deckhouse/containers/kube-rbac-proxy"])
        #expect(report.failures.first?.image == "\(image)@sha256:" + String(repeating: "ab", count: 32))
        #expect(report.failures.first?.error.contains("404 Not Found") == true)
        let relaxed = try await CLITests.run(base + ["--kubeconfig", config, "--check-mode", "Relax", "--only-cluster-list"])
        #expect(relaxed.status == 0, "\(relaxed.stdoutString) \(relaxed.stderrString)")
        #expect(relaxed.stdoutString == "Mode: Relax\nall 1 items are checked\n")

        // The cluster runs a version the bundle does not hold: one clear line, exit 2.
        fake.update { $0.deckhouseImage = "registry.example.com/system/deckhouse:v1.70.1" }
        let other = try await CLITests.run(base + ["--kubeconfig", config])
        #expect(other.status == 2)
        #expect(other.stderrString.contains("no controller image v1.70.1"), "\(other.stderrString)")
        try await fake.shutdown()

        // Bad usage.
        let stray = try await CLITests.run(["verify", bundle.path, "--check-mode", "relax"])
        #expect(stray.status == 2)
        #expect(stray.stderrString.contains("go with --registry"))
        let badMode = try await CLITests.run(base + ["--check-mode", "strict"])
        #expect(badMode.status == 2)
    }

    @Test func kebabCaseAsTheClusterWritesIt() async throws {
        // The labels come from the executable; this pins the cases of ettle/strcase's ToKebab
        // that images_digests.json keys meet, through a bundle of one controller image.
        let bundle = try TestRegistry.temporaryDirectory("dkp-kebab")
        let keys = ["kubeApiserver133", "controlPlaneManager", "v1Beta", "HTTPServer", "snake_case", "cni-cilium", "iptablesWrapper"]
        var images: [String: Digest] = [:]
        for (i, key) in keys.enumerated() { images[key] = try D8Shape.image(seed: 900 + i).digest }
        let controller = try D8Shape.image(seed: 899, files: [("deckhouse/modules/images_digests.json", D8Shape.imagesDigests(["ingressNginx133": images]))])
        try D8Shape.writeTar(bundle, "platform.tar", D8Shape.layout("", [D8Shape.tag(D8Shape.edition, "v1.69.3", controller)]))
        let target = try await TestRegistry.start()
        let out = try await CLITests.run(["verify", bundle.path, "--registry", "\(target.host)/system/deckhouse", "--insecure", "--json"])
        #expect(out.status == 1)
        let report = try JSONDecoder().decode(Report.self, from: Data(out.stdout))
        let labels = Set(report.failures.map(\.source))
        #expect(report.total == keys.count + 1)
        // More than five errors: the first five, then `...and more`, as the cluster writes it.
        let text = try await CLITests.run(["verify", bundle.path, "--registry", "\(target.host)/system/deckhouse", "--insecure",
                                           "--only-cluster-list"])
        #expect(text.stdoutString.hasPrefix("Mode: Default\n0 of 8 items processed, 8 items with errors:\n"), "\(text.stdoutString)")
        #expect(text.stdoutString.components(separatedBy: "- source: ").count - 1 == 5)
        #expect(text.stdoutString.hasSuffix("\n  ...and more\n"))
        for label in ["kube-apiserver133", "control-plane-manager", "v1-beta", "http-server", "snake-case", "cni-cilium", "iptables-wrapper"] {
            #expect(labels.contains("module/ingress-nginx133/\(label)"), "\(label): \(labels.sorted())")
        }
    }

    @Test func offlineVerifyChecksPackageImagesDigests() async throws {
        let bundle = try TestRegistry.temporaryDirectory("dkp-verify-package")
        _ = try D8ShapeEdition.write(to: bundle, missingPackageImage: true)
        let out = try await CLITests.run(["verify", bundle.path])
        #expect(out.status == 1)
        #expect(out.stdoutString.contains("problem: package-bar.tar: packages/bar v0.3.0 requires sha256:"), "\(out.stdoutString)")
        #expect(out.stdoutString.contains("(package/bar), which the bundle does not hold"))
    }
}

/// `verify --registry` checks everything the bundle carries, not only the cluster's list
/// (issue 11, item 7): every tag of every layout, children by digest and discovery tags, each
/// with the bundle's digest; the cluster's list first, in its words, then the rest alike.
@Suite struct VerifyRegistryWholeBundleTests {
    @Test func tagsMissingOrMovedInTheTargetAreNamedAfterTheClustersList() async throws {
        let (source, seeded) = try await PullTests.seededEdition()
        let bundle = try TestRegistry.temporaryDirectory("dkp-verify-whole")
        let pulled = try await PullTests.pull(source, into: bundle, ["--deckhouse-tag", "v1.69.3"])
        #expect(pulled.status == 0, "\(pulled.stderrString)")
        let target = try await TestRegistry.start()
        // Only platform.tar goes up: the cluster's own list is complete, the rest of the bundle is not.
        let pushed = try await CLITests.run(["push", "\(target.host)/system/deckhouse", "--file", bundle.appendingPathComponent("platform.tar").path,
                                             "--insecure", "--progress", "none"])
        #expect(pushed.status == 0, "\(pushed.stderrString)")
        // A tag moved in the target: there, but not the bundle's image. d8 tags each digest image
        // with its hex; that tag of one platform image now names another.
        var configuration = RegistryConfiguration()
        configuration.insecure = true
        let images = try #require(seeded.platformDigests["v1.69.3"])
        try await RegistryClient.with(host: target.host, configuration: configuration) { client in
            let other = try await client.manifest(repository: "system/deckhouse", reference: images[images.count - 1].string)
            _ = try await client.putManifest(repository: "system/deckhouse", reference: images[images.count - 2].hex, bytes: other.bytes,
                                             mediaType: other.mediaType)
        }
        let moved = images[images.count - 2].hex
        let base = ["verify", bundle.path, "--registry", "\(target.host)/system/deckhouse", "--insecure"]
        let clusterOnly = try await CLITests.run(base + ["--only-cluster-list"])
        #expect(clusterOnly.status == 0, "the cluster's own list is there: \(clusterOnly.stdoutString)")

        let whole = try await CLITests.run(base)
        #expect(whole.status == 1, "\(whole.stdoutString)\(whole.stderrString)")
        let text = whole.stdoutString
        #expect(text.hasPrefix("Mode: Default\nall "), "the cluster's list first: \(text)")
        #expect(text.contains("The rest of the bundle (every tag, children by digest, discovery tags):\n")
                && text.contains(" items with errors:\n"), "\(text)")
        struct Whole: Decodable {
            struct Section: Decodable { var total: Int; var failures: [VerifyClusterListTests.Report.Failure] }
            var failures: [VerifyClusterListTests.Report.Failure]; var bundle: Section
        }
        let json = try await CLITests.run(base + ["--json"])
        let report = try JSONDecoder().decode(Whole.self, from: Data(json.stdout))
        #expect(report.failures.isEmpty)
        let named = Dictionary(report.bundle.failures.map { ($0.image, $0.error) }, uniquingKeysWith: { a, _ in a })
        for image in ["/system/deckhouse/security/trivy-db:2", "/system/deckhouse/installer:latest",
                      "/system/deckhouse/modules/console/release:stable", "/system/deckhouse/modules:console"] {
            #expect(named[target.host + image]?.contains("404 Not Found") == true, "\(image) not named: \(named.keys.sorted())")
        }
        #expect(named["\(target.host)/system/deckhouse:\(moved)"]?.contains("the registry has sha256:") == true, "the moved tag")
        #expect(named["\(target.host)/system/deckhouse:v1.69.3"] == nil && named.keys.allSatisfy { !$0.contains("/release-channel:") },
                "what is there is not named")
        withExtendedLifetime(source) {}
    }
}
