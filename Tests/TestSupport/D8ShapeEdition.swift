import Foundation
import OCI

/// One complete d8-shape bundle (`D8Shape`) and what a push of it must leave in the target:
///
/// - platform.tar: controller `v1.69.3` (its `deckhouse/modules/images_digests.json` lists
///   three images, one of them twice), the three digest images, a VEX attestation of one of
///   them, install/ and release-channel/;
/// - module-console.tar: the module with a version, a digest image and `v1.2.3.att`, its
///   release channels, and an extra layout with the odd descriptors: no short tag but a ref
///   name with a tag, no short tag and the bare ref name `latest`, no short tag and a digest
///   ref name (skipped);
/// - package-bar.tar: `packages/bar` (version, digest image, VEX), `packages/bar/version`
///   (`stable`, `v0.3.0`), `packages/bar/extra/scanner`;
/// - package-versions.tar: `packages/bar/version` again (`stable` naming a different image:
///   the last tar wins; and `lts`), `packages/baz/version` (baz is nowhere else);
/// - plugin-foo-tool.tar (as chunk files): `deckhouse-cli/plugins/foo-tool`, `v2.0.0` a
///   two-platform index and `v1.9.0` an image.
public struct D8ShapeEdition: Sendable {
    /// What must resolve in the target: path below TARGET ("" for TARGET itself), tag, digest.
    public var expected: [(path: String, tag: String, digest: Digest)] = []
    /// What must not be there (skipped descriptors, the losing side of a conflict).
    public var absent: [(path: String, tag: String)] = []
    /// Digest images of the controller's images_digests.json in the cluster's order and labels.
    public var clusterItems: [(label: String, digest: Digest)] = []
    /// The digest `packages/bar`'s images_digests.json lists.
    public var packageImage: Digest
    public var controllerTag = "v1.69.3"
    /// The index of plugin foo-tool v2.0.0 and its children.
    public var pluginIndex: Digest
    public var pluginChildren: [Digest]
    public var vexCount = 3

    /// Writes the bundle into `directory`. With `missingPackageImage`, packages/bar's
    /// images_digests.json also lists a digest the bundle does not hold.
    public static func write(to directory: URL, missingPackageImage: Bool = false) throws -> D8ShapeEdition {
        let e = D8Shape.edition
        let a = try D8Shape.image(seed: 11), b = try D8Shape.image(seed: 12), c = try D8Shape.image(seed: 13)
        let digests = D8Shape.imagesDigests([
            "controlPlaneManager": ["kubeApiserver133": a.digest, "controlPlaneManager133": b.digest],
            "ingressNginx": ["controller19": a.digest],
            "userAuthn": ["dex": c.digest],
        ])
        let controller = try D8Shape.image(seed: 10, files: [
            ("deckhouse/modules/images_digests.json", digests), ("deckhouse/version", Array("v1.69.3".utf8)),
            ("deckhouse/edition", Array("ee".utf8)),
        ])
        let install = try D8Shape.image(seed: 14), channel = try D8Shape.image(seed: 15)
        let vexA = D8Shape.vex(e, of: a, seed: 16)
        try D8Shape.writeTar(directory, "platform.tar",
            D8Shape.layout("", [D8Shape.tag(e, "v1.69.3", controller), D8Shape.digestRef(e, a), D8Shape.digestRef(e, b),
                                D8Shape.digestRef(e, c), vexA])
            + D8Shape.layout("install", [D8Shape.tag(e + "/install", "v1.69.3", install)])
            + D8Shape.layout("release-channel", [D8Shape.tag(e + "/release-channel", "v1.69.3", channel),
                                                 D8Shape.tag(e + "/release-channel", "stable", channel)]))

        // A module, with the odd descriptors in its extra layout.
        let m = e + "/modules/console"
        let frontend = try D8Shape.image(seed: 20)
        let console = try D8Shape.image(seed: 21, files: [("images_digests.json", D8Shape.imagesDigests(["console": ["frontend": frontend.digest]]))])
        let consoleVex = D8Shape.Ref(refName: "\(m):v1.2.3.att", shortTag: "v1.2.3.att", image: D8Shape.attestation(of: console, seed: 22))
        let release = try D8Shape.image(seed: 23)
        let noShort = try D8Shape.image(seed: 24), bareLatest = try D8Shape.image(seed: 25), digestOnly = try D8Shape.image(seed: 26)
        try D8Shape.writeTar(directory, "module-console.tar",
            D8Shape.layout("modules/console", [D8Shape.tag(m, "v1.2.3", console), D8Shape.digestRef(m, frontend), consoleVex])
            + D8Shape.layout("modules/console/release", [D8Shape.tag(m + "/release", "v1.2.3", release),
                                                         D8Shape.tag(m + "/release", "stable", release)])
            + D8Shape.layout("modules/console/extra/tools", [
                D8Shape.Ref(refName: "\(m)/extra/tools:1.0", shortTag: nil, image: noShort),
                D8Shape.Ref(refName: "latest", shortTag: nil, image: bareLatest),
                D8Shape.Ref(refName: "\(m)/extra/tools@\(digestOnly.digest)", shortTag: nil, image: digestOnly),
            ]))

        // A package in its own tar and, in part, in package-versions.tar.
        let p = e + "/packages/bar"
        let server = try D8Shape.image(seed: 30)
        var barDigests = ["bar": ["server": server.digest]]
        if missingPackageImage { barDigests["bar"]?["worker"] = try D8Shape.image(seed: 39).digest }
        let bar = try D8Shape.image(seed: 31, files: [("images_digests.json", D8Shape.imagesDigests(barDigests))])
        let stableOld = try D8Shape.image(seed: 32), stableNew = try D8Shape.image(seed: 33), barVersion = try D8Shape.image(seed: 34)
        let lts = try D8Shape.image(seed: 35), scanner = try D8Shape.image(seed: 36), baz = try D8Shape.image(seed: 37)
        let serverVex = D8Shape.vex(p, of: server, seed: 38)
        try D8Shape.writeTar(directory, "package-bar.tar",
            D8Shape.layout("packages/bar", [D8Shape.tag(p, "v0.3.0", bar), D8Shape.digestRef(p, server), serverVex])
            + D8Shape.layout("packages/bar/version", [D8Shape.tag(p + "/version", "stable", stableOld),
                                                      D8Shape.tag(p + "/version", "v0.3.0", barVersion)])
            + D8Shape.layout("packages/bar/extra/scanner", [D8Shape.tag(p + "/extra/scanner", "v3", scanner)]))
        try D8Shape.writeTar(directory, "package-versions.tar",
            D8Shape.layout("packages/bar/version", [D8Shape.tag(p + "/version", "stable", stableNew),
                                                    D8Shape.tag(p + "/version", "lts", lts)])
            + D8Shape.layout("packages/baz/version", [D8Shape.tag(e + "/packages/baz/version", "v0.0.1", baz)]))

        // A plugin whose newest version is a multi-platform index; as chunk files.
        let r = "registry.deckhouse.ru/deckhouse/deckhouse-cli/plugins/foo-tool"
        let amd = try D8Shape.image(seed: 40), arm = try D8Shape.image(seed: 41), older = try D8Shape.image(seed: 42)
        let pluginIndex = D8Shape.index([amd, arm])
        try D8Shape.writeTar(directory, "plugin-foo-tool.tar",
            D8Shape.layout("deckhouse-cli/plugins/foo-tool", [D8Shape.tag(r, "v2.0.0", pluginIndex), D8Shape.tag(r, "v1.9.0", older)]),
            chunkSize: 3000)

        var edition = D8ShapeEdition(packageImage: server.digest, pluginIndex: pluginIndex.digest, pluginChildren: [amd.digest, arm.digest])
        edition.expected = [
            ("", "v1.69.3", controller.digest), ("", a.digest.hex, a.digest), ("", b.digest.hex, b.digest), ("", c.digest.hex, c.digest),
            ("", "sha256-\(a.digest.hex).att", vexA.image.digest),
            ("install", "v1.69.3", install.digest), ("release-channel", "stable", channel.digest), ("release-channel", "v1.69.3", channel.digest),
            ("modules/console", "v1.2.3", console.digest), ("modules/console", frontend.digest.hex, frontend.digest),
            ("modules/console", "v1.2.3.att", consoleVex.image.digest),
            ("modules/console/release", "stable", release.digest), ("modules/console/extra/tools", "1.0", noShort.digest),
            ("modules/console/extra/tools", "latest", bareLatest.digest),
            ("packages/bar", "v0.3.0", bar.digest), ("packages/bar", server.digest.hex, server.digest),
            ("packages/bar", "sha256-\(server.digest.hex).att", serverVex.image.digest),
            ("packages/bar/version", "stable", stableNew.digest), ("packages/bar/version", "v0.3.0", barVersion.digest),
            ("packages/bar/version", "lts", lts.digest), ("packages/bar/extra/scanner", "v3", scanner.digest),
            ("packages/baz/version", "v0.0.1", baz.digest),
            ("deckhouse-cli/plugins/foo-tool", "v2.0.0", pluginIndex.digest), ("deckhouse-cli/plugins/foo-tool", "v1.9.0", older.digest),
            // Discovery tags.
            ("modules", "console", console.digest), ("packages", "bar", bar.digest), ("packages", "baz", baz.digest),
            ("deckhouse-cli/plugins", "foo-tool", pluginIndex.digest),
        ]
        edition.absent = [("modules/console/extra/tools", digestOnly.digest.hex)]
        edition.clusterItems = [
            ("module/control-plane-manager/control-plane-manager133", b.digest),
            ("module/control-plane-manager/kube-apiserver133", a.digest),
            ("module/user-authn/dex", c.digest),
        ]
        return edition
    }
}
