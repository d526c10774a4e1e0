import Foundation
import Testing
import TestSupport

/// The packages `scripts/package.sh` leaves in `dist/` (scripts/test.sh builds them first), run
/// as on a bastion without Swift: each run of a packaged binary happens in a private mount
/// namespace (`unshare --mount`) in which the Swift toolchain's folder is covered by an empty
/// tmpfs, so its runtime libraries cannot be found at all, not merely left off PATH.
/// Serialized: one test installs the .deb into this machine (`dpkg -i`, then `dpkg -r`).
@Suite(.serialized) struct PackageTests {
    struct Packages {
        var version: String
        var commit: String
        var deb: URL
        var tarball: URL
        /// `dkp-mirror_<version>_linux_<arch>`: the tarball's top folder.
        var tarFolder: String
    }

    /// The files both packages hold, below `/`.
    static let payload = [
        "usr/bin/dkp-mirror",
        "usr/share/bash-completion/completions/dkp-mirror",
        "usr/share/zsh/vendor-completions/_dkp-mirror",
        "usr/share/fish/vendor_completions.d/dkp-mirror.fish",
        "usr/share/man/man1/dkp-mirror.1.gz",
        "usr/share/doc/dkp-mirror/changelog.gz",
    ]

    static func fail(_ message: String) -> TestSupportError {
        TestSupportError("\(message); build the packages with scripts/package.sh (scripts/test.sh runs it before the tests)")
    }

    /// The packages built from this very tree: `dist/SOURCE` (written by scripts/package.sh) must
    /// name this tree's version, commit and the fingerprint of its sources (scripts/common.sh
    /// package_fingerprint), `dist/SHA256SUMS` must match both
    /// packages, and the .deb must say it was built from the commit. Anything else is an error
    /// saying to run scripts/package.sh.
    static func packages() async throws -> Packages {
        let root = RepoPaths.root
        let info = try String(contentsOf: root.appendingPathComponent("Sources/dkp-mirror/BuildInfo.swift"), encoding: .utf8)
        guard let line = info.split(separator: "\n").first(where: { $0.contains("static let version = \"") }),
              let version = line.split(separator: "\"").dropFirst().first.map(String.init)
        else { throw TestSupportError("no version in Sources/dkp-mirror/BuildInfo.swift") }

        var commit = "unknown"
        let head = try await TestProcess.run("git", ["-C", root.path, "rev-parse", "--short=7", "HEAD"])
        if head.succeeded {
            commit = head.stdoutString.trimmingCharacters(in: .whitespacesAndNewlines)
            let status = try await TestProcess.run("git", ["-C", root.path, "status", "--porcelain"])
            if !status.stdoutString.isEmpty { commit += "-dirty" }
        }
        // The same fingerprint scripts/package.sh records (scripts/common.sh computes both).
        let print = try await TestProcess.run("/bin/bash", ["-c", "source scripts/common.sh && package_fingerprint"], currentDirectory: root)
        let fingerprint = print.stdoutString.trimmingCharacters(in: .whitespacesAndNewlines)
        guard print.succeeded, fingerprint.count == 64 else { throw TestSupportError("package_fingerprint failed: \(print.stderrString)") }

        let arch = try await TestProcess.run("dpkg", ["--print-architecture"]).stdoutString.trimmingCharacters(in: .whitespacesAndNewlines)
        let dist = root.appendingPathComponent("dist")
        let deb = dist.appendingPathComponent("dkp-mirror_\(version)_\(arch).deb")
        let tarFolder = "dkp-mirror_\(version)_linux_\(arch)"
        let tarball = dist.appendingPathComponent("\(tarFolder).tar.gz")
        for file in [deb, tarball, dist.appendingPathComponent("SOURCE"), dist.appendingPathComponent("SHA256SUMS")]
        where !FileManager.default.fileExists(atPath: file.path) {
            throw fail("no \(file.path)")
        }
        let source = try String(contentsOf: dist.appendingPathComponent("SOURCE"), encoding: .utf8)
        // Either configuration is tested (scripts/test.sh packages a debug build; see package.sh).
        let configuration = source.split(separator: "\n").first { $0.hasPrefix("configuration ") }.map { String($0.dropFirst(14)) } ?? ""
        guard ["release", "debug"].contains(configuration) else { throw fail("dist/SOURCE names no configuration: \(source)") }
        let expected = "version \(version)\ncommit \(commit)\nconfiguration \(configuration)\nsources \(fingerprint)\n"
        guard source == expected else {
            let line = { (text: String) in text.split(separator: "\n").joined(separator: ", ") }
            throw fail("the packages in \(dist.path) are stale: built from \(line(source)), this tree is \(line(expected))")
        }
        let sums = try await TestProcess.run("sha256sum", ["--strict", "-c", "SHA256SUMS"], currentDirectory: dist)
        guard sums.succeeded else { throw fail("dist/SHA256SUMS does not match the packages: \(sums.stdoutString) \(sums.stderrString)") }
        let packaged = try await TestProcess.run("dpkg-deb", ["-f", deb.path, "Description"])
        guard packaged.stdoutString.contains("Built from commit \(commit);") else {
            throw fail("\(deb.lastPathComponent) is not built from this tree (commit \(commit)): \(packaged.stdoutString)")
        }
        return Packages(version: version, commit: commit, deb: deb, tarball: tarball, tarFolder: tarFolder)
    }

    /// The folders to hide and a library that must then be gone. Two ways to the toolchain,
    /// both hidden: where the debug build (linked dynamically) takes `libswiftCore.so` from, and
    /// the root of the `swift` on PATH (`<root>/usr/bin/swift`). A toolchain installed into
    /// `/usr` itself is hidden by its library folder only.
    static func toolchain() async throws -> (hide: [String], probe: String) {
        let ldd = try await TestProcess.run("ldd", [CLITests.executable])
        guard let line = ldd.stdoutString.split(separator: "\n").first(where: { $0.contains("libswiftCore.so") }),
              let probe = line.split(separator: " ").first(where: { $0.hasPrefix("/") }).map(String.init)
        else { throw TestSupportError("the debug build \(CLITests.executable) links no libswiftCore.so: \(ldd.stdoutString)") }
        var hide: [String] = []
        if let range = probe.range(of: "/usr/lib/swift/"), !probe[..<range.lowerBound].isEmpty {
            hide.append(String(probe[..<range.lowerBound]))
        } else {
            hide.append((probe as NSString).deletingLastPathComponent)
        }
        let swift = try await TestProcess.run("/bin/sh", ["-c", "readlink -f \"$(command -v swift)\""])
        let driver = swift.stdoutString.trimmingCharacters(in: .whitespacesAndNewlines)
        if swift.succeeded, driver.hasPrefix("/") {
            // <root>/usr/bin/swift-driver -> <root>
            let root = ((driver as NSString).deletingLastPathComponent as NSString).deletingLastPathComponent
            if root.hasSuffix("/usr"), root != "/usr" {
                let toolchainRoot = (root as NSString).deletingLastPathComponent
                if !hide.contains(where: { toolchainRoot == $0 || toolchainRoot.hasPrefix($0 + "/") }) { hide.append(toolchainRoot) }
            }
        }
        return (hide, probe)
    }

    static func quoted(_ text: String) -> String { "'" + text.replacingOccurrences(of: "'", with: "'\\''") + "'" }

    /// Runs `executable` in a private mount namespace with the toolchain covered by empty
    /// tmpfs mounts (they vanish with the namespace), a PATH without Swift and a private HOME.
    static func runHidden(_ executable: String, _ arguments: [String]) async throws -> TestProcess.Output {
        let (hide, probe) = try await toolchain()
        var script = hide.map { "mount -t tmpfs -o ro,size=64k dkp-hidden \(quoted($0))" }.joined(separator: " && ")
        script += " && if [ -e \(quoted(probe)) ]; then echo 'toolchain still visible' >&2; exit 99; fi && exec \"$0\" \"$@\""
        let home = try TestRegistry.temporaryDirectory("dkp-home")
        defer { try? FileManager.default.removeItem(at: home) }
        return try await TestProcess.run("/usr/bin/unshare", ["--mount", "--propagation", "private", "/bin/sh", "-c", script, executable] + arguments,
                                         environment: ["HOME": home.path, "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "LANG": "C.UTF-8"])
    }

    /// The hiding works: the debug build, which needs the toolchain's libraries, cannot start.
    static func checkHidingWorks() async throws {
        let control = try await runHidden(CLITests.executable, ["--help"])
        #expect(control.status == 127, "the debug build started with the toolchain hidden: \(control.status) \(control.stderrString)")
        #expect(control.stderrString.contains("libswift"), "\(control.stderrString)")
    }

    /// A real pull of the synthetic edition by `executable` with the toolchain hidden, then an
    /// offline verify of what it wrote by the same binary, also hidden.
    static func pullHidden(_ executable: String) async throws {
        let (registry, seeded) = try await PullTests.seededEdition()
        let directory = try TestRegistry.temporaryDirectory("dkp-bundle-packaged")
        defer { try? FileManager.default.removeItem(at: directory) }
        let pull = try await runHidden(executable, ["pull", directory.path, "--source", "\(registry.host)/deckhouse/ee", "--insecure",
                                                    "--deckhouse-tag", "v1.69.3", "--json", "--progress", "none"])
        #expect(pull.status == 0, "\(pull.stderrString)")
        let result = try JSONDecoder().decode(PullTests.PullResult.self, from: Data(pull.stdout))
        #expect(Set(result.files) == ["platform.tar", "installer.tar", "security.tar",
                                     "module-console.tar", "module-commander.tar", "module-stronghold.tar",
                                     "package-nginx-tools.tar", "package-versions.tar", "plugin-module-tools.tar", "plugin-diag.tar"])
        #expect(result.bytesTransferred > 0)
        let sums = try await TestProcess.run("sha256sum", ["-c", "SHA256SUMS"], currentDirectory: directory)
        #expect(sums.succeeded, "\(sums.stdoutString) \(sums.stderrString)")
        let platform = try await PullTests.extract([directory.appendingPathComponent("platform.tar")])
        defer { try? FileManager.default.removeItem(at: platform) }
        let refs = try PullTests.index(platform, "").manifests
        #expect(refs.contains { $0.digest == seeded.controller["v1.69.3"] }, "the controller of v1.69.3 is in platform.tar")

        let verify = try await runHidden(executable, ["verify", directory.path])
        #expect(verify.status == 0, "\(verify.stdoutString) \(verify.stderrString)")
    }

    /// `dpkg` wants its lock; another apt-get on this machine may hold it for a while.
    static func dpkg(_ arguments: [String]) async throws -> TestProcess.Output {
        var attempt = 0
        while true {
            let output = try await TestProcess.run("dpkg", arguments, environment: ["PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND": "noninteractive"])
            attempt += 1
            if output.succeeded || !output.stderrString.contains("lock") || attempt >= 60 { return output }
            try await Task.sleep(for: .seconds(2))
        }
    }

    @Test func debDeclaresItsDebianDependenciesAndHoldsTheFiles() async throws {
        let packages = try await Self.packages()
        let fields = try await TestProcess.run("dpkg-deb", ["-f", packages.deb.path, "Package", "Version", "Architecture", "Depends"])
        #expect(fields.succeeded, "\(fields.stderrString)")
        let text = fields.stdoutString
        #expect(text.contains("Package: dkp-mirror\n"))
        #expect(text.contains("Version: \(packages.version)\n"))
        let depends = text.split(separator: "\n").first { $0.hasPrefix("Depends: ") }.map(String.init) ?? ""
        for library in ["libarchive13", "libzstd1", "librhash0", "libssl3", "libstdc++6", "libc6"] {
            #expect(depends.contains(library), "Depends names \(library): \(depends)")
        }
        for toolchain in ["swift", "foundation", "dispatch"] {
            #expect(!depends.lowercased().contains(toolchain), "Depends: \(depends)")
        }
        let contents = try await TestProcess.run("dpkg-deb", ["--contents", packages.deb.path])
        #expect(contents.succeeded, "\(contents.stderrString)")
        let entries = contents.stdoutString.split(separator: "\n").map(String.init)
        for path in Self.payload {
            let entry = entries.first { $0.hasSuffix(" ./\(path)") }
            #expect(entry != nil, "\(path) in the .deb: \(contents.stdoutString)")
            #expect(entry?.hasPrefix(path == "usr/bin/dkp-mirror" ? "-rwxr-xr-x root/root" : "-rw-r--r-- root/root") == true, "\(entry ?? path)")
        }
    }

    @Test func tarballHoldsTheDebsFilesAndItsBinaryRunsWithTheToolchainHidden() async throws {
        let packages = try await Self.packages()
        try await Self.checkHidingWorks()
        let folder = try TestRegistry.temporaryDirectory("dkp-tarball")
        defer { try? FileManager.default.removeItem(at: folder) }
        let untar = try await TestProcess.run("tar", ["-xzf", packages.tarball.path, "-C", folder.path])
        #expect(untar.succeeded, "\(untar.stderrString)")
        let unpacked = folder.appendingPathComponent(packages.tarFolder)
        let listed = try await TestProcess.run("find", [unpacked.path, "-type", "f", "-printf", "%P\n"])
        #expect(Set(listed.stdoutString.split(separator: "\n").map(String.init)) == Set(Self.payload))

        // The same bytes as the .deb's files.
        let extracted = try TestRegistry.temporaryDirectory("dkp-deb-x")
        defer { try? FileManager.default.removeItem(at: extracted) }
        let x = try await TestProcess.run("dpkg-deb", ["-x", packages.deb.path, extracted.path])
        #expect(x.succeeded, "\(x.stderrString)")
        for path in Self.payload {
            let same = try await TestProcess.run("cmp", [unpacked.appendingPathComponent(path).path, extracted.appendingPathComponent(path).path])
            #expect(same.succeeded, "\(path): \(same.stdoutString)")
        }

        let binary = unpacked.appendingPathComponent("usr/bin/dkp-mirror").path
        let version = try await Self.runHidden(binary, ["--version"])
        #expect(version.status == 0, "\(version.stderrString)")
        #expect(version.stdoutString == "dkp-mirror \(packages.version) (commit \(packages.commit))\n")
        let help = try await Self.runHidden(binary, ["pull", "--help"])
        #expect(help.status == 0 && help.stdoutString.contains("--deckhouse-tag"), "\(help.stderrString)")
        // What the loader resolves inside the namespace: Debian's libraries only, none missing.
        let ldd = try await Self.runHidden("/usr/bin/ldd", [binary])
        #expect(ldd.status == 0, "\(ldd.stderrString)")
        for line in ldd.stdoutString.split(separator: "\n") {
            #expect(!line.contains("not found") && !line.contains("libswift") && !line.contains("libFoundation"), "\(line)")
        }
    }

    @Test func debInstallsThenItsBinaryPullsWithTheToolchainHiddenThenRemoves() async throws {
        let packages = try await Self.packages()
        try await Self.checkHidingWorks()
        // This machine's own dkp-mirror (say, a run that died before its dpkg -r) is not ours
        // to replace or remove.
        let before = try await TestProcess.run("dpkg-query", ["-W", "-f", "${Status}", "dkp-mirror"])
        let state = before.stdoutString.split(separator: " ").last.map(String.init) ?? ""
        guard !before.succeeded || ["", "not-installed", "config-files"].contains(state) else {
            throw TestSupportError("a dkp-mirror package is already installed here (\(before.stdoutString)); remove it with dpkg -r dkp-mirror")
        }
        let install = try await Self.dpkg(["-i", packages.deb.path])
        #expect(install.status == 0, "dpkg -i: \(install.stdoutString) \(install.stderrString)")
        guard install.succeeded else { return }
        // Removed again however the checks end.
        var failure: Error?
        do { try await Self.checkInstalled(packages) } catch { failure = error }
        let remove = try await Self.dpkg(["-r", "dkp-mirror"])
        #expect(remove.status == 0, "dpkg -r: \(remove.stderrString)")
        let after = try await TestProcess.run("dpkg-query", ["-W", "-f", "${Status}", "dkp-mirror"])
        #expect(!after.stdoutString.contains("install ok installed"), "\(after.stdoutString)")
        for path in Self.payload {
            #expect(!FileManager.default.fileExists(atPath: "/\(path)"), "/\(path) removed")
        }
        if let failure { throw failure }
    }

    /// What the installed package provides, checked while it is installed.
    static func checkInstalled(_ packages: Packages) async throws {
        let status = try await TestProcess.run("dpkg-query", ["-W", "-f", "${Status} ${Version}", "dkp-mirror"])
        #expect(status.stdoutString == "install ok installed \(packages.version)")
        let files = try await TestProcess.run("dpkg", ["-L", "dkp-mirror"])
        for path in Self.payload {
            #expect(files.stdoutString.contains("/\(path)\n"), "dpkg -L lists /\(path)")
            #expect(FileManager.default.fileExists(atPath: "/\(path)"), "/\(path) installed")
        }

        let version = try await Self.runHidden("/usr/bin/dkp-mirror", ["--version"])
        #expect(version.stdoutString == "dkp-mirror \(packages.version) (commit \(packages.commit))\n", "\(version.stderrString)")
        try await Self.pullHidden("/usr/bin/dkp-mirror")

        // The man page renders and documents the subcommands; the completions load.
        let man = try await TestProcess.run("man", ["-P", "cat", "-l", "/usr/share/man/man1/dkp-mirror.1.gz"],
                                            environment: ["PATH": "/usr/bin:/bin", "MANWIDTH": "100", "LANG": "C"])
        #expect(man.status == 0, "\(man.stderrString)")
        for word in ["dkp-mirror", "pull", "push", "verify", "copy", "--deckhouse-tag", "--registry-password-stdin", "--version"] {
            #expect(man.stdoutString.contains(word), "the man page mentions \(word)")
        }
        let bash = try await TestProcess.run("bash", ["-c", """
            source /usr/share/bash-completion/completions/dkp-mirror
            complete -p dkp-mirror
            COMP_WORDS=(dkp-mirror pu); COMP_CWORD=1; COMP_LINE='dkp-mirror pu'; COMP_POINT=${#COMP_LINE}
            fn=$(complete -p dkp-mirror | sed -n 's/.*-F \\([^ ]*\\) .*/\\1/p')
            "$fn" dkp-mirror pu dkp-mirror
            echo "replies: ${COMPREPLY[*]}"
            """], environment: ["PATH": "/usr/bin:/bin"])
        #expect(bash.status == 0, "\(bash.stderrString)")
        #expect(bash.stdoutString.contains("dkp-mirror") && bash.stdoutString.contains("replies: ") , "\(bash.stdoutString)")
        let replies = bash.stdoutString.split(separator: "\n").first { $0.hasPrefix("replies: ") } ?? ""
        #expect(replies.contains("pull") && replies.contains("push") && !replies.contains("verify"), "\(replies)")
        // zsh: the script parses, and compinit, reading the default fpath only, binds it to dkp-mirror.
        let zsh = try await TestProcess.run("zsh", ["-fc", """
            zsh -n /usr/share/zsh/vendor-completions/_dkp-mirror || exit 3
            autoload -Uz compinit && compinit -u -D && print -r -- "bound: ${_comps[dkp-mirror]}"
            """], environment: ["PATH": "/usr/bin:/bin", "HOME": "/nonexistent"])
        #expect(zsh.status == 0 && zsh.stdoutString.contains("bound: _dkp-mirror\n"), "\(zsh.stdoutString) \(zsh.stderrString)")
        // fish (a private, empty HOME; not --no-config, which empties the completion path): loaded
        // from its vendor folder without being named, it completes subcommands and flags.
        let fishHome = try TestRegistry.temporaryDirectory("dkp-fish")
        defer { try? FileManager.default.removeItem(at: fishHome) }
        let fish = try await TestProcess.run("fish", ["-c", """
            complete -C 'dkp-mirror pu'; echo ---; complete -C 'dkp-mirror pull --deckhouse-t'
            """], environment: ["PATH": "/usr/bin:/bin", "HOME": fishHome.path, "XDG_CONFIG_HOME": fishHome.path, "XDG_DATA_HOME": fishHome.path])
        #expect(fish.status == 0, "\(fish.stderrString)")
        let (subcommands, flags) = (fish.stdoutString.components(separatedBy: "---\n").first ?? "",
                                    fish.stdoutString.components(separatedBy: "---\n").dropFirst().first ?? "")
        #expect(subcommands.hasPrefix("pull\t") && subcommands.contains("\npush\t") && !subcommands.contains("verify"), "\(fish.stdoutString)")
        #expect(flags.hasPrefix("--deckhouse-tag\t"), "\(fish.stdoutString)")
    }
}
