import Foundation
import Testing

@testable import Cluster

@Suite("Kubeconfig discovery and parsing")
struct ClusterKubeconfigTests {
    let minimal = clusterKubeconfig(server: "https://10.0.0.1:6443", user: ["token: abc"])

    // MARK: Discovery

    @Test func explicitPathWinsOverKUBECONFIGAndHome() throws {
        let scratch = try ClusterScratch()
        let explicit = try scratch.write("explicit.yaml", minimal)
        let fromEnv = try scratch.write("env.yaml", minimal)
        try scratch.write("home/.kube/config", minimal)
        let environment = ["KUBECONFIG": fromEnv, "HOME": scratch.path + "/home"]
        #expect(try Kubeconfig.locate(explicitPath: explicit, environment: environment) == explicit)
        #expect(try Kubeconfig.locate(explicitPath: nil, environment: environment) == fromEnv)
        #expect(try Kubeconfig.locate(explicitPath: nil, environment: ["HOME": scratch.path + "/home"])
            == scratch.path + "/home/.kube/config")
    }

    @Test func kubeconfigListTakesTheFirstExistingFile() throws {
        let scratch = try ClusterScratch()
        let second = try scratch.write("second.yaml", minimal)
        let third = try scratch.write("third.yaml", minimal)
        let list = "\(scratch.path)/missing.yaml::\(second):\(third)"
        #expect(try Kubeconfig.locate(environment: ["KUBECONFIG": list, "HOME": scratch.path]) == second)
    }

    @Test func kubeconfigListIsMergedAsKubectlMergesIt() throws {
        let scratch = try ClusterScratch()
        // The first file sets current-context and a user; the second defines the context, the
        // cluster (its CA a path relative to the second file) and a user of the same name,
        // which loses to the first's. An empty file between them is passed over.
        let first = try scratch.write("home/config", """
            current-context: site
            users:
            - name: admin
              user:
                tokenFile: token
            """)
        try scratch.write("home/token", "first-token\n")
        let empty = try scratch.write("empty.yaml", "# nothing here yet\n---\n")
        try scratch.write("site/pki/ca.crt", "SITE CA")
        let second = try scratch.write("site/config", """
            clusters:
            - name: site
              cluster:
                server: https://10.1.0.1:6443
                certificate-authority: pki/ca.crt
            contexts:
            - name: site
              context: {cluster: site, user: admin}
            users:
            - name: admin
              user: {token: second-token}
            current-context: other
            """)
        let list = "\(scratch.path)/missing:\(first):\(empty):\(first):\(second)"
        #expect(try Kubeconfig.locateAll(environment: ["KUBECONFIG": list]) == [first, empty, second])
        let config = try Kubeconfig.load(environment: ["KUBECONFIG": list, "HOME": scratch.path])
        #expect(config.contextName == "site")
        #expect(config.server == "https://10.1.0.1:6443")
        #expect(config.certificateAuthorityPEM == Array("SITE CA".utf8))
        #expect(config.certificateAuthoritySource == "certificate-authority \(scratch.path)/site/pki/ca.crt of cluster 'site'")
        #expect(config.credentials.token == "first-token")
        // --kubeconfig reads its one file only.
        let error = #expect(throws: ClusterError.self) { try Kubeconfig.load(path: first, environment: ["KUBECONFIG": list]) }
        #expect(error?.description.contains("has no context 'site'") == true)
    }

    @Test func mergedKubeconfigErrorsNameTheFiles() throws {
        let scratch = try ClusterScratch()
        let a = try scratch.write("a.yaml", minimal)
        let b = try scratch.write("b.yaml", "current-context: nowhere\n")
        let error = #expect(throws: ClusterError.self) {
            try Kubeconfig.load(context: "absent", environment: ["KUBECONFIG": "\(b):\(a)"])
        }
        #expect(error?.description.hasPrefix("kubeconfig \(b):\(a): has no context 'absent' (contexts: dkp-test)") == true)
        let broken = try scratch.write("broken.yaml", "clusters: 3\n")
        let decoding = #expect(throws: ClusterError.self) { try Kubeconfig.load(environment: ["KUBECONFIG": "\(a):\(broken)"]) }
        #expect(decoding?.description.hasPrefix("kubeconfig \(broken): field clusters") == true)

        // An entry at fault is named with the file that defined it, not the whole list.
        let contexts = try scratch.write("contexts.yaml", """
            contexts:
            - name: site
              context: {cluster: site, user: site-admin}
            current-context: site
            """)
        let clusters = try scratch.write("clusters.yaml", """
            clusters:
            - name: site
              cluster: {certificate-authority-data: U0lURSBDQQ==}
            """)
        let users = try scratch.write("users.yaml", """
            users:
            - name: site-admin
              user: {username: admin}
            """)
        let list = "\(contexts):\(users):\(clusters)"
        let noServer = #expect(throws: ClusterError.self) { try Kubeconfig.load(environment: ["KUBECONFIG": list]) }
        #expect(noServer?.description.hasPrefix("kubeconfig \(clusters): cluster 'site' has no field cluster.server") == true,
                "\(String(describing: noServer))")
        try scratch.write("clusters.yaml", "clusters:\n- name: site\n  cluster: {server: https://10.1.0.1:6443}\n")
        let noPassword = #expect(throws: ClusterError.self) { try Kubeconfig.load(environment: ["KUBECONFIG": list]) }
        #expect(noPassword?.description.hasPrefix("kubeconfig \(users): user 'site-admin' has field username but no field password") == true,
                "\(String(describing: noPassword))")
        try scratch.write("users.yaml", "users: []\n")
        let noUser = #expect(throws: ClusterError.self) { try Kubeconfig.load(environment: ["KUBECONFIG": list]) }
        #expect(noUser?.description.hasPrefix("kubeconfig \(list): context 'site' names user 'site-admin', which is not in users") == true,
                "\(String(describing: noUser))")
    }

    @Test func kubeconfigListWithNoExistingFileIsAnError() throws {
        let scratch = try ClusterScratch()
        try scratch.write(".kube/config", minimal) // not used: KUBECONFIG is set
        let error = #expect(throws: ClusterError.self) {
            try Kubeconfig.locate(environment: ["KUBECONFIG": "\(scratch.path)/a:\(scratch.path)/b", "HOME": scratch.path])
        }
        #expect(error?.isUsageError == true)
        #expect(error?.description.contains("KUBECONFIG") == true)
        #expect(error?.description.contains("\(scratch.path)/a, \(scratch.path)/b") == true)
    }

    @Test func missingEverywhereSaysWhatToPass() throws {
        let scratch = try ClusterScratch()
        let error = #expect(throws: ClusterError.self) {
            try Kubeconfig.locate(environment: ["HOME": scratch.path])
        }
        #expect(error?.isUsageError == true)
        #expect(error?.description.contains("\(scratch.path)/.kube/config does not exist") == true)
        #expect(error?.description.contains("--kubeconfig") == true)
    }

    @Test func explicitPathThatDoesNotExist() throws {
        let error = #expect(throws: ClusterError.self) {
            try Kubeconfig.load(path: "/nonexistent/dkp/kubeconfig", environment: [:])
        }
        #expect(error == .kubeconfigNotFound("kubeconfig /nonexistent/dkp/kubeconfig does not exist; pass --kubeconfig with the path of the cluster's kubeconfig"))
        #expect(error?.isUsageError == true)
    }

    @Test func tildeIsExpanded() throws {
        let scratch = try ClusterScratch()
        let path = try scratch.write("cfg", minimal)
        #expect(try Kubeconfig.locate(explicitPath: "~/cfg", environment: ["HOME": scratch.path]) == path)
    }

    // MARK: Parsing

    @Test func tokenAndCADataOfTheCurrentContext() throws {
        let ca = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
        let yaml = clusterKubeconfig(server: "https://api.example.com:6443/", cluster: ["certificate-authority-data: \(clusterBase64(ca))"],
                                     user: ["token: eyJhbGciOi.secret-token"])
        let config = try Kubeconfig(yaml: yaml, path: "/k/config")
        #expect(config.contextName == "dkp-test")
        #expect(config.clusterName == "dkp-test-cluster")
        #expect(config.userName == "dkp-test-user")
        #expect(config.server == "https://api.example.com:6443")
        #expect(config.certificateAuthorityPEM == Array(ca.utf8))
        #expect(config.insecureSkipTLSVerify == false)
        #expect(config.credentials.token == "eyJhbGciOi.secret-token")
        #expect(config.credentials.clientCertificatePEM == nil)
        #expect(!config.description.contains("secret-token"))
        #expect(!"\(config.credentials)".contains("secret-token"))
        #expect(config.description.contains("token"))
    }

    // Choosing a context by name: KubeconfigFixtureTests (testdata/kubeconfig/two-contexts.yaml).

    @Test func noCurrentContextWithSeveralContexts() throws {
        let yaml = """
            clusters: [{name: a, cluster: {server: "https://a"}}]
            contexts: [{name: one, context: {cluster: a}}, {name: two, context: {cluster: a}}]
            """
        let error = #expect(throws: ClusterError.self) { try Kubeconfig(yaml: yaml, path: "/k") }
        #expect(error?.description == "kubeconfig /k: has no current-context; pass --context NAME (contexts: one, two)")
        // A single context is used even without current-context; no user means anonymous.
        let single = try Kubeconfig(yaml: "clusters: [{name: a, cluster: {server: \"https://a\"}}]\ncontexts: [{name: one, context: {cluster: a}}]\n", path: "/k")
        #expect(single.contextName == "one")
        #expect(single.credentials.hasAny == false)
    }

    @Test func filesAreResolvedAgainstTheKubeconfigDirectory() throws {
        let scratch = try ClusterScratch()
        try scratch.write("conf/pki/ca.crt", "CA PEM")
        try scratch.write("conf/pki/admin.crt", "CERT PEM")
        try scratch.write("conf/pki/admin.key", "KEY PEM")
        try scratch.write("conf/token", "  file-token-123\n")
        let path = try scratch.write("conf/config", clusterKubeconfig(
            server: "https://10.0.0.1:6443", cluster: ["certificate-authority: pki/ca.crt"],
            user: ["client-certificate: pki/admin.crt", "client-key: \(scratch.path)/conf/pki/admin.key", "tokenFile: token"]))
        let config = try Kubeconfig.load(path: path, environment: [:])
        #expect(config.path == path)
        #expect(config.certificateAuthorityPEM == Array("CA PEM".utf8))
        #expect(config.certificateAuthoritySource == "certificate-authority \(scratch.path)/conf/pki/ca.crt of cluster 'dkp-test-cluster'")
        #expect(config.credentials.clientCertificatePEM == Array("CERT PEM".utf8))
        #expect(config.credentials.clientKeyPEM == Array("KEY PEM".utf8))
        #expect(config.credentials.token == "file-token-123")
        #expect(config.credentials.kinds == "token, client certificate")
    }

    @Test func missingReferencedFileNamesKubeconfigAndField() throws {
        let scratch = try ClusterScratch()
        let path = try scratch.write("config", clusterKubeconfig(
            server: "https://10.0.0.1:6443", user: ["client-certificate: admin.crt", "client-key: admin.key"]))
        let error = #expect(throws: ClusterError.self) { try Kubeconfig.load(path: path, environment: [:]) }
        #expect(error?.description == "kubeconfig \(path): user 'dkp-test-user' field client-certificate names \(scratch.path)/admin.crt, which does not exist or cannot be read")
        #expect(error?.isUsageError == true)
    }

    @Test func clientCertificateDataNeedsAKey() throws {
        let yaml = clusterKubeconfig(server: "https://a:6443", user: ["client-certificate-data: \(clusterBase64("CERT"))"])
        let error = #expect(throws: ClusterError.self) { try Kubeconfig(yaml: yaml, path: "/k") }
        #expect(error?.description == "kubeconfig /k: user 'dkp-test-user' has a client certificate but no field client-key-data (or client-key)")
        let both = try Kubeconfig(yaml: clusterKubeconfig(server: "https://a:6443", user: [
            "client-certificate-data: \(clusterBase64("CERT"))", "client-key-data: \(clusterBase64("KEY"))",
        ]), path: "/k")
        #expect(both.credentials.clientKeyPEM == Array("KEY".utf8))
        #expect(!both.description.contains("KEY"))
    }

    /// An exec credential plugin, run as kubectl runs it: a command relative to the kubeconfig's
    /// directory, its args and env, KUBERNETES_EXEC_INFO, the ExecCredential's token; the token
    /// and the arguments never show.
    /// `provideClusterInfo: true` (Pinniped's kubeconfigs): KUBERNETES_EXEC_INFO carries the cluster
    /// in `spec.cluster`, as client-go gives it; without it, no cluster.
    @Test func execPluginGetsTheClusterWhenItAsks() async throws {
        let scratch = try ClusterScratch()
        let plugin = try scratch.write("plugin.sh", """
            #!/bin/sh
            printf '%s' "$KUBERNETES_EXEC_INFO" > "$(dirname "$0")/exec-info.json"
            printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"t"}}'
            """)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: plugin)
        let ca = Data("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".utf8).base64EncodedString()
        for provide in [true, false] {
            let path = try scratch.write("config", clusterKubeconfig(
                server: "https://api.example.com:6443", cluster: ["certificate-authority-data: \(ca)"],
                user: ["exec:", "  apiVersion: client.authentication.k8s.io/v1", "  command: \(plugin)", "  interactiveMode: Never",
                       "  provideClusterInfo: \(provide)"]))
            _ = try await Kubeconfig.load(path: path, environment: [:]).resolvingCredentials()
            let info = try JSONSerialization.jsonObject(with: Data(contentsOf: scratch.url.appendingPathComponent("exec-info.json"))) as? [String: Any]
            let spec = info?["spec"] as? [String: Any]
            let cluster = spec?["cluster"] as? [String: Any]
            #expect(spec?["interactive"] as? Bool == false)
            if provide {
                #expect(cluster?["server"] as? String == "https://api.example.com:6443", "\(String(describing: info))")
                #expect(cluster?["certificate-authority-data"] as? String == ca)
                #expect(cluster?["insecure-skip-tls-verify"] as? Bool == false)
            } else {
                #expect(cluster == nil, "\(String(describing: info))")
            }
        }
    }

    @Test func execPluginIsRunAsKubectlRunsIt() async throws {
        let scratch = try ClusterScratch()
        let plugin = try scratch.write("bin/plugin.sh", """
            #!/bin/sh
            case "$KUBERNETES_EXEC_INFO" in *'"kind":"ExecCredential"'*'"interactive":false'*) ;; *) echo "no exec info" >&2; exit 3 ;; esac
            [ "$DKP_PLUGIN_VAR" = "from-env" ] || { echo "env missing" >&2; exit 4; }
            [ "$1" = "get-token" ] || exit 5
            printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"exec-token-%s"}}' "$2"
            """)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: plugin)
        func user(_ command: String, _ args: String = "[get-token, '42', --client-secret=exec-secret-9]", mode: String? = "Never",
                  api: String = "client.authentication.k8s.io/v1") -> [String] {
            ["exec:", "  apiVersion: \(api)", "  command: \(command)", "  args: \(args)",
             "  env: [{name: DKP_PLUGIN_VAR, value: from-env}]", "  installHint: install the dkp test plugin"]
                + (mode.map { ["  interactiveMode: \($0)"] } ?? [])
        }
        let path = try scratch.write("config", clusterKubeconfig(server: "https://a:6443", user: user("bin/plugin.sh")))
        let config = try Kubeconfig.load(path: path, environment: [:])
        #expect(config.credentials.exec?.command == "bin/plugin.sh" && config.credentials.token == nil)
        let resolved = try await config.resolvingCredentials()
        #expect(resolved.credentials.token == "exec-token-42")
        #expect(!resolved.description.contains("exec-token-42") && !config.description.contains("exec-secret-9"))

        // A plugin that fails, or is not installed: one line naming the command, never its arguments.
        let failing = try scratch.write("failing", clusterKubeconfig(server: "https://a:6443", user: user("bin/plugin.sh", "[wrong]")))
        let failed = await #expect(throws: ClusterError.self) { _ = try await Kubeconfig.load(path: failing, environment: [:]).resolvingCredentials() }
        #expect(failed?.description.contains("command 'bin/plugin.sh') exited with status 5") == true, "\(failed!)")
        let missing = try scratch.write("missing", clusterKubeconfig(server: "https://a:6443", user: user("dkp-no-such-plugin")))
        let absent = await #expect(throws: ClusterError.self) { _ = try await Kubeconfig.load(path: missing, environment: [:]).resolvingCredentials() }
        #expect(absent?.description.contains("is not installed or not in PATH (install the dkp test plugin)") == true, "\(absent!)")
        #expect(failed?.isUsageError == false, "a plugin that fails is not bad input: exit 1")
        #expect(absent?.description.contains("exec-secret-9") == false && absent?.isUsageError == true)
        // A bare name is looked up in PATH, as kubectl does; a plugin that itself exits 127 failed, it is not missing.
        let bare = try scratch.write("bare", clusterKubeconfig(server: "https://a:6443", user: user(
            "sh", #"[-c, 'printf "{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"ExecCredential\",\"status\":{\"token\":\"from-sh\"}}"']"#)))
        #expect(try await Kubeconfig.load(path: bare, environment: [:]).resolvingCredentials().credentials.token == "from-sh")
        let exits127 = try scratch.write("exits127", clusterKubeconfig(server: "https://a:6443", user: user("sh", "[-c, 'exit 127']")))
        let failed127 = await #expect(throws: ClusterError.self) { _ = try await Kubeconfig.load(path: exits127, environment: [:]).resolvingCredentials() }
        #expect(failed127?.description.contains("exited with status 127") == true && failed127?.isUsageError == false, "\(failed127!)")

        // v1 without interactiveMode, and an apiVersion kubectl does not know: refused by name before anything runs.
        let noMode = #expect(throws: ClusterError.self) { try Kubeconfig(yaml: clusterKubeconfig(server: "https://a:6443", user: user("x", mode: nil)), path: "/k") }
        #expect(noMode?.description.contains("needs field interactiveMode") == true)
        let alpha = #expect(throws: ClusterError.self) {
            try Kubeconfig(yaml: clusterKubeconfig(server: "https://a:6443", user: user("x", api: "client.authentication.k8s.io/v1alpha1")), path: "/k")
        }
        #expect(alpha?.description.contains("apiVersion 'client.authentication.k8s.io/v1alpha1'") == true)

        // Its output must be an ExecCredential of the apiVersion asked for, with a whole credential.
        let v1 = "client.authentication.k8s.io/v1"
        func decoded(_ json: String) throws -> KubeCredentials {
            try ExecCredentialPlugin.decode(Data(json.utf8), apiVersion: v1, who: "the plugin", path: "/k")
        }
        #expect(try decoded(#"{"apiVersion":"\#(v1)","kind":"ExecCredential","status":{"token":"t","clientCertificateData":"C","clientKeyData":"K"}}"#).kinds
                == "token, client certificate")
        for (json, says) in [(#"{"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential","status":{"token":"t"}}"#, "apiVersion"),
                             (#"{"apiVersion":"\#(v1)","kind":"ExecCredential","status":{"clientCertificateData":"C"}}"#, "without its key"),
                             (#"{"apiVersion":"\#(v1)","kind":"ExecCredential","status":{}}"#, "neither a token"),
                             ("not json", "did not print an ExecCredential")] {
            let error = #expect(throws: ClusterError.self) { try decoded(json) }
            #expect(error?.description.contains(says) == true, "\(json): \(String(describing: error))")
        }

        // A static token next to the plugin is used instead.
        let withToken = clusterKubeconfig(server: "https://a:6443", user: ["token: t0k", "exec: {command: kubelogin}"])
        #expect(try Kubeconfig(yaml: withToken, path: "/k").credentials.token == "t0k")
    }

    @Test func authProvidersOtherThanOIDCAreRefused() throws {
        let yaml = clusterKubeconfig(server: "https://a:6443", user: [
            "auth-provider:", "  name: gcp", "  config: {access-token: ya29.secret-x}",
        ])
        let error = #expect(throws: ClusterError.self) { try Kubeconfig(yaml: yaml, path: "/k") }
        #expect(error?.description.contains("user 'dkp-test-user' authenticates through auth-provider 'gcp', which dkp-mirror does not support") == true)
        #expect(error?.description.contains("ya29.secret-x") == false)
    }

    @Test(arguments: [
        ("clusters:\n- name: dkp-test-cluster\n  cluster:\n    insecure-skip-tls-verify: true\ncontexts:\n- name: c\n  context: {cluster: dkp-test-cluster, user: u}\nusers:\n- name: u\n  user: {token: x}\ncurrent-context: c\n",
         "kubeconfig /k: cluster 'dkp-test-cluster' has no field cluster.server"),
        ("clusters: []\ncontexts:\n- name: c\n  context: {cluster: gone, user: u}\ncurrent-context: c\n",
         "kubeconfig /k: context 'c' names cluster 'gone', which is not in clusters"),
        ("clusters: [{name: a, cluster: {server: \"https://a\"}}]\ncontexts:\n- name: c\n  context: {user: u}\ncurrent-context: c\n",
         "kubeconfig /k: context 'c' has no field context.cluster"),
        ("clusters: [{name: a, cluster: {server: \"https://a\"}}]\ncontexts:\n- name: c\n  context: {cluster: a, user: nobody}\ncurrent-context: c\n",
         "kubeconfig /k: context 'c' names user 'nobody', which is not in users"),
        ("clusters: [{name: a, cluster: {server: \"ftp://a\"}}]\ncontexts: [{name: c, context: {cluster: a}}]\n",
         "kubeconfig /k: cluster 'a' has server 'ftp://a', which is not an https:// (or http://) URL"),
        ("clusters: [{name: a, cluster: {server: \"https://a\", certificate-authority-data: \"%%%not base64\"}}]\ncontexts: [{name: c, context: {cluster: a}}]\n",
         "kubeconfig /k: cluster 'a' field certificate-authority-data is not valid base64"),
        ("clusters: [{name: a, cluster: {server: \"https://a\"}}]\ncontexts: [{name: c, context: {cluster: a, user: u}}]\nusers: [{name: u, user: {username: bob}}]\n",
         "kubeconfig /k: user 'u' has field username but no field password"),
        ("clusters: \"oops\"\n", "kubeconfig /k: field clusters has the wrong type (expected a list)"),
        ("   \n", "kubeconfig /k: is empty; use the kubeconfig of the cluster (e.g. /etc/kubernetes/admin.conf on a master)"),
        ("# written later\n---\n", "kubeconfig /k: is empty; use the kubeconfig of the cluster (e.g. /etc/kubernetes/admin.conf on a master)"),
    ])
    func malformedKubeconfigs(yaml: String, expected: String) throws {
        let error = #expect(throws: ClusterError.self) { try Kubeconfig(yaml: yaml, path: "/k") }
        #expect(error?.description == expected)
        #expect(error?.isUsageError == true)
    }

    @Test func notYAMLAtAll() throws {
        let error = #expect(throws: ClusterError.self) { try Kubeconfig(yaml: "clusters: [unclosed\n  - {", path: "/k") }
        #expect(error?.description.hasPrefix("kubeconfig /k: ") == true)
        #expect(error?.isUsageError == true)
    }

    @Test func unreadableCAIsReportedWhenTheClientIsBuilt() throws {
        let yaml = clusterKubeconfig(server: "https://a:6443", cluster: ["certificate-authority-data: \(clusterBase64("not a certificate"))"],
                                     user: ["token: x"])
        let config = try Kubeconfig(yaml: yaml, path: "/k")
        let error = #expect(throws: ClusterError.self) { _ = try KubeClient(kubeconfig: config) }
        #expect(error?.description == "kubeconfig /k: certificate-authority-data of cluster 'dkp-test-cluster' holds no PEM certificate")
        #expect(error?.isUsageError == true)
    }
}
