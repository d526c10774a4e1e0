import Foundation
import Testing
import TestSupport

/// `push --cluster` and `verify --cluster` against FakeKubernetes serving the recorded
/// ModuleConfig global, registry-user-rw and the registry Ingress's TLS secret (testdata/cluster),
/// pushing into a real TLS + htpasswd registry (issue 14 items 3 and 4).
///
/// The ModuleConfig's `%s.dkp.test` names `registry.dkp.test`, which does not resolve here: the
/// hidden `--cluster-registry-address` sends the connections to the test registry instead;
/// the credentials and the CA still come from the cluster alone.
@Suite struct ClusterPushVerifyTests {
    static func cluster(_ target: TestRegistry, ingressCA: Bool = true) async throws -> (FakeKubernetes, String) {
        var objects = FakeClusterObjects()
        objects.deckhouseImage = "registry.dkp.test/system/deckhouse:v1.69.3"
        objects.extraObjects = try ClusterFixtures.objects(caFile: ingressCA ? target.caFile : nil)
        let fake = try await FakeKubernetes.start(objects: objects)
        return (fake, try VerifyClusterListTests.kubeconfig(fake))
    }

    @Test func pushWithWhatItFoundItselfThenVerifyTheClustersList() async throws {
        let bundle = try TestRegistry.temporaryDirectory("dkp-cluster-push")
        let edition = try D8ShapeEdition.write(to: bundle)
        let target = try await TestRegistry.start(tls: true, users: ["rw": ClusterFixtures.password])
        let (fake, config) = try await Self.cluster(target)
        let address = ["--cluster-registry-address", target.host]
        let image = "\(target.host)/system/deckhouse"

        // Before the push: the cluster's items (the Deployment's, repository replaced) are missing.
        let before = try await CLITests.run(["verify", bundle.path, "--cluster", "--kubeconfig", config, "--only-cluster-list"] + address)
        #expect(before.status == 1, "\(before.stdoutString) \(before.stderrString)")
        #expect(before.stdoutString.hasPrefix("Mode: Default\n0 of 5 items processed, 5 items with errors:\n"), "\(before.stdoutString)")

        let arguments = ["push", bundle.path, "--cluster", "--kubeconfig", config, "--progress", "none", "-v"] + address
        let push = try await CLITests.run(arguments)
        #expect(push.status == 0, "\(push.stderrString)")
        #expect(push.stderrString.contains("cluster: target registry.dkp.test/system/deckhouse (ModuleConfig global's publicDomainTemplate), "
            + "user rw (secret d8-system/registry-user-rw), CA: secret d8-system/registry-ingress-tls key ca.crt\n"), "\(push.stderrString)")
        #expect(push.stderrString.contains("push summary for \(image)"))
        // The password: not on the command line, not in any output.
        #expect(!arguments.contains { $0.contains(ClusterFixtures.password) })
        #expect(!push.stdoutString.contains(ClusterFixtures.password) && !push.stderrString.contains(ClusterFixtures.password))
        let paths = fake.requests.map(\.path)
        #expect(paths.contains(ClusterFixtures.globalPath) && paths.contains(ClusterFixtures.userPath) && paths.contains(ClusterFixtures.ingressTLSPath))

        // After: everything the bundle carries is there; kube-rbac-proxy, which the Deployment runs
        // by a digest the bundle does not hold, is the one item missing, as the cluster would say.
        let after = try await CLITests.run(["verify", bundle.path, "--cluster", "--kubeconfig", config, "--json"] + address)
        #expect(after.status == 1, "\(after.stdoutString) \(after.stderrString)")
        let report = try JSONDecoder().decode(VerifyClusterListTests.Report.self, from: Data(after.stdout))
        #expect(report.total == edition.clusterItems.count + 2)
        #expect(report.failures.map(\.source) == ["deckhouse/containers/kube-rbac-proxy"])
        struct Rest: Decodable {
            struct Section: Decodable { var total: Int; var failures: [VerifyClusterListTests.Report.Failure] }
            var bundle: Section
        }
        let rest = try JSONDecoder().decode(Rest.self, from: Data(after.stdout)).bundle
        #expect(rest.total > 10 && rest.failures.isEmpty, "every tag of the bundle is in the registry: \(rest.failures.prefix(3))")
        let relax = try await CLITests.run(["verify", bundle.path, "--cluster", "--kubeconfig", config, "--check-mode", "relax"] + address)
        #expect(relax.status == 0, "\(relax.stdoutString) \(relax.stderrString)")
        #expect(relax.stdoutString.hasPrefix("Mode: Relax\nall 1 items are checked\n"), "\(relax.stdoutString)")
        #expect(!after.stderrString.contains(ClusterFixtures.password) && !relax.stdoutString.contains(ClusterFixtures.password))
        try await fake.shutdown()
        withExtendedLifetime(target) {}
    }

    @Test func withoutTheIngressCAThenCAFileAndAWrongPasswordNeverShown() async throws {
        let bundle = try TestRegistry.temporaryDirectory("dkp-cluster-ca")
        _ = try D8ShapeEdition.write(to: bundle)
        let target = try await TestRegistry.start(tls: true, users: ["rw": ClusterFixtures.password])
        let (fake, config) = try await Self.cluster(target, ingressCA: false)
        let base = ["push", bundle.path, "--cluster", "--kubeconfig", config, "--progress", "none", "--cluster-registry-address", target.host]

        // No ca.crt to be found: the system's trust, which does not know the test CA.
        let untrusted = try await CLITests.run(base + ["--retries", "1"])
        #expect(untrusted.status == 1)
        #expect(untrusted.stderrString.contains("CA: no ingress of d8-system serves registry.dkp.test over TLS")
                || untrusted.stderrString.contains("CA: cannot read the ingress's TLS secret"), "\(untrusted.stderrString)")
        #expect(untrusted.stderrString.lowercased().contains("certificate"), "\(untrusted.stderrString)")
        let withCAFile = try await CLITests.run(base + ["--ca-file", target.caFile!])
        #expect(withCAFile.status == 0, "\(withCAFile.stderrString)")
        #expect(withCAFile.stderrString.contains("trusting the system's CAs and --ca-file"))

        // The cluster's password is not the registry's: 401, and still the password is nowhere.
        fake.update { $0.extraObjects[ClusterFixtures.ingressTLSPath] = try? ClusterFixtures.ingressTLS(caFile: target.caFile!) }
        let other = try await TestRegistry.start(tls: true, users: ["rw": "another-password-9"])
        let refused = try await CLITests.run(["push", bundle.path, "--cluster", "--kubeconfig", config, "--progress", "none", "-v",
                                              "--cluster-registry-address", other.host, "--ca-file", other.caFile!])
        #expect(refused.status == 1)
        #expect(refused.stderrString.contains("rejected the credentials of user 'rw'"), "\(refused.stderrString)")
        #expect(refused.stderrString.contains("hint: check keys name and password of secret d8-system/registry-user-rw"), "\(refused.stderrString)")
        #expect(!refused.stderrString.contains(ClusterFixtures.password) && !refused.stdoutString.contains(ClusterFixtures.password))
        try await fake.shutdown()
        withExtendedLifetime((target, other)) {}
    }

    @Test func clusterExcludesATargetAndExplicitCredentials() async throws {
        let bundle = try TestRegistry.temporaryDirectory("dkp-cluster-usage")
        _ = try D8ShapeEdition.write(to: bundle)
        let cases: [([String], String)] = [
            (["push", bundle.path, "registry.example.com/system/deckhouse", "--cluster"], "push --cluster takes the target from the cluster"),
            (["push", bundle.path, "--cluster", "-u", "rw", "-p", "s3cret-given"], "push --cluster uses the read-write user of secret d8-system/registry-user-rw"),
            (["push", bundle.path, "--cluster", "--registry-password-stdin"], "drop --registry-login, --registry-password and --registry-password-stdin"),
            (["push", bundle.path, "registry.example.com/system/deckhouse", "--kubeconfig", "/k"], "--kubeconfig and --cluster-registry-address go with --cluster"),
            (["verify", bundle.path, "--cluster", "--registry", "registry.example.com/system/deckhouse"], "verify --cluster takes the target from the cluster"),
            (["verify", bundle.path, "--cluster", "--deep"], "does not go with --cluster"),
            (["push", bundle.path, "--cluster", "--kubeconfig", "/nonexistent/config"], "/nonexistent/config"),
        ]
        for (arguments, message) in cases {
            let out = try await CLITests.run(arguments)
            #expect(out.status == 2, "\(arguments): \(out.stderrString)")
            #expect(out.stderrString.contains(message), "\(arguments): \(out.stderrString)")
            #expect(!out.stderrString.contains("s3cret-given"))
        }
    }
}
