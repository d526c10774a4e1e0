// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "dkp-mirror",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "dkp-mirror", targets: ["dkp-mirror"]),
        .library(name: "Mirror", targets: ["Mirror"]),
        // libFuzzer harnesses for the parsers; scripts/fuzz.sh builds it with -sanitize=fuzzer,address.
        .executable(name: "dkp-fuzz", targets: ["dkp-fuzz"]),
    ],
    dependencies: [
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/mxcl/Version.git", from: "2.2.1"),
    ],
    targets: [
        // System libraries (Debian -dev packages, found through pkg-config).
        .systemLibrary(name: "CArchive", pkgConfig: "libarchive", providers: [.apt(["libarchive-dev"])]),
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "CCrypto", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),
        // GOST R 34.11-2012 (Streebog) for `.gostsum` files.
        .systemLibrary(name: "CRHash", pkgConfig: "librhash", providers: [.apt(["librhash-dev"])]),
        // libc's sync_file_range(2), which the Glibc module hides.
        .systemLibrary(name: "CWriteback"),

        // Value types of the OCI specs; no I/O.
        .target(name: "OCI"),
        // The one bounded pool of concurrent work (discovery, plan, pull, push, copy, verify).
        .target(name: "BoundedPool"),
        // Hashing and byte plumbing.
        .target(name: "Streams", dependencies: ["CCrypto", "CRHash", "CZstd", "OCI"]),
        // How to reach a host: proxies (HTTP(S)_PROXY, NO_PROXY, --proxy), the system's CA
        // certificates as Go finds them (SSL_CERT_FILE, SSL_CERT_DIR), one HTTP client per route.
        .target(name: "Network", dependencies: [
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
        ]),
        // OCI distribution client.
        .target(name: "Registry", dependencies: [
            "OCI", "Streams", "Network",
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        // The bundle on disk: tar layout and writing, chunk files, reading tars and image layers.
        .target(name: "Bundle", dependencies: ["OCI", "Streams", "CArchive", "CWriteback"]),
        // Deckhouse knowledge: editions, channels, versions, images_digests.json, modules, plugins.
        .target(name: "DKP", dependencies: [
            "BoundedPool", "OCI", "Registry", "Bundle",
            .product(name: "Yams", package: "Yams"),
            .product(name: "Version", package: "Version"),
            .product(name: "NIOCore", package: "swift-nio"),
        ]),
        // The running cluster: kubeconfig, a small Kubernetes API client, detection of the tag
        // and edition, the registry module's state, user and Ingress (`status`, `--cluster`).
        .target(name: "Cluster", dependencies: [
            "DKP", "OCI", "Registry", "Network",
            .product(name: "Yams", package: "Yams"),
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        // Engines: copy, pull (and later push, verify).
        .target(name: "Mirror", dependencies: ["BoundedPool", "OCI", "Streams", "Registry", "Bundle", "DKP",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "Version", package: "Version")]),
        .executableTarget(name: "dkp-mirror", dependencies: [
            "Mirror", "Registry", "OCI", "DKP", "Cluster", "Bundle", "Network",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Version", package: "Version"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "Logging", package: "swift-log"),
        ]),

        // Development helpers for the demo and the benchmark: seeding synthetic images, micro-benchmarks.
        .executableTarget(name: "dkp-dev", dependencies: [
            "Registry", "OCI", "Streams", "Bundle", "DevSupport",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        // Synthetic sources for the demo, the benchmark and the tests: the edition seeder (a DKP
        // edition as the real registry shapes it), seeded images, the fault and WAN proxy.
        .target(name: "DevSupport", dependencies: [
            "OCI", "Streams", "Registry", "Bundle",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
        ]),

        // Fuzz harnesses of the parsers that read outside input (references, manifests, index.json,
        // WWW-Authenticate, Link, bundle tars). Built plainly it replays files through a harness;
        // scripts/fuzz.sh builds it with -DDKP_FUZZ and the fuzzer, which then provides main.
        .executableTarget(name: "dkp-fuzz", dependencies: ["OCI", "Registry", "Bundle"]),

        // Test helpers: real registries started by scripts/registry.sh, a token issuer,
        // a fault-injecting TCP proxy.
        // DevSupport is re-exported, so a test imports TestSupport alone.
        .target(name: "TestSupport", dependencies: [
            "CCrypto", "OCI", "Streams", "Registry", "Bundle", "DevSupport",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
        ], path: "Tests/TestSupport"),
        .testTarget(name: "OCITests", dependencies: ["OCI"]),
        .testTarget(name: "DKPTests", dependencies: ["DKP", .product(name: "Version", package: "Version")]),
        .testTarget(name: "NetworkTests", dependencies: ["Network", "TestSupport", .product(name: "NIOSSL", package: "swift-nio-ssl")]),
        .testTarget(name: "StreamsTests", dependencies: ["Streams", "OCI", "DevSupport"]),
        .testTarget(name: "RegistryTests", dependencies: ["Registry", "OCI", "Streams", "TestSupport",
            .product(name: "NIOCore", package: "swift-nio")]),
        .testTarget(name: "BundleTests", dependencies: ["Bundle", "Streams", "OCI", "TestSupport"]),
        .testTarget(name: "ClusterTests", dependencies: ["Cluster", "DKP", "Network", "Registry", "Bundle", "OCI", "Streams", "TestSupport",
            .product(name: "NIOCore", package: "swift-nio")]),
        // The engines driven in-process (discovery, pull, verify, push), without the executable.
        .testTarget(name: "MirrorTests", dependencies: ["Mirror", "DKP", "Registry", "Bundle", "OCI", "TestSupport"]),
        .testTarget(name: "EndToEndTests", dependencies: ["OCI", "Registry", "TestSupport", "Mirror", "Streams",
            .product(name: "NIOCore", package: "swift-nio")]),
    ],
    swiftLanguageModes: [.v6]
)
