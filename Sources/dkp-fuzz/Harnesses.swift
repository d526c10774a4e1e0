#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Bundle
import OCI
import Registry

/// The parsers that read input from outside (the command line, registries, bundles),
/// each as a function that must return or throw for any bytes, never trap.
///
/// `scripts/fuzz.sh` builds this target with `-sanitize=fuzzer,address` and `-DDKP_FUZZ`:
/// libFuzzer then provides `main` and calls `LLVMFuzzerTestOneInput`, which runs the
/// harness named by `DKP_FUZZ_TARGET`. Built normally (no sanitizer), the executable replays
/// files through a harness instead: `dkp-fuzz HARNESS FILE...`.
enum Harness: String, CaseIterable {
    /// `Reference(parsing:)` and `Digest(parsing:)` on a command-line string.
    case reference
    /// `ManifestDocument.parse` on a manifest or index body from a registry.
    case manifest
    /// A layout's `index.json` (and `oci-layout`) inside a bundle tar, through `BundleIndex.open`.
    case layoutIndex = "layout-index"
    /// `AuthChallenge.parse` on a `WWW-Authenticate` header value.
    case wwwAuthenticate = "www-authenticate"
    /// `nextLink(fromLinkHeader:)` on a `Link` header value.
    case link
    /// A whole bundle tar through `BundleIndex.open` and `TarReader`.
    case tar

    func run(_ bytes: [UInt8]) {
        switch self {
        case .reference: Self.reference(bytes)
        case .manifest: Self.manifest(bytes)
        case .layoutIndex: Self.layoutIndex(bytes)
        case .wwwAuthenticate: Self.wwwAuthenticate(bytes)
        case .link: Self.link(bytes)
        case .tar: Self.tar(bytes)
        }
    }

    /// Stops the run with a message libFuzzer records as a crash: a property that must hold
    /// for every input did not.
    static func violated(_ what: String) -> Never {
        printError("dkp-fuzz: invariant violated: \(what)")
        abort()
    }

    static func reference(_ bytes: [UInt8]) {
        let text = String(decoding: bytes, as: UTF8.self)
        if let reference = try? Reference(parsing: text) {
            // What a reference prints parses back to the same reference.
            guard let again = try? Reference(parsing: reference.description), again == reference else {
                violated("reference '\(reference.description)' does not parse back to itself")
            }
            _ = reference.repository.split(separator: "/")
        }
        if let digest = try? Digest(parsing: text) {
            guard digest.string == text else { violated("digest '\(digest)' is not its input") }
        }
    }

    /// The content types a registry may announce; the first input byte picks one.
    static let contentTypes: [MediaType?] = [
        nil, .ociManifest, .ociIndex, .dockerManifest, .dockerManifestList,
        MediaType(rawValue: "application/json"), MediaType(rawValue: "text/plain; charset=utf-8"),
        MediaType(rawValue: "application/vnd.docker.distribution.manifest.v1+prettyjws"),
    ]

    static func manifest(_ bytes: [UInt8]) {
        guard let first = bytes.first else { return }
        let type = contentTypes[Int(first) % contentTypes.count]
        guard let document = try? ManifestDocument.parse(Array(bytes.dropFirst()), contentType: type) else { return }
        _ = document.mediaType
        for descriptor in document.references { _ = descriptor.digest.string }
    }

    static func wwwAuthenticate(_ bytes: [UInt8]) {
        let challenges = AuthChallenge.parse(String(decoding: bytes, as: UTF8.self))
        for challenge in challenges {
            guard challenge.scheme == challenge.scheme.lowercased() else { violated("scheme not lowercased") }
            _ = (challenge.realm, challenge.service, challenge.scope)
        }
    }

    static func link(_ bytes: [UInt8]) {
        _ = nextLink(fromLinkHeader: String(decoding: bytes, as: UTF8.self))
    }

    /// A well-formed tar of one layout whose `index.json` is the input.
    static func layoutIndex(_ bytes: [UInt8]) {
        let layout = Array(#"{"imageLayoutVersion":"1.0.0"}"#.utf8)
        var tar = [UInt8]()
        for (name, data) in [("oci-layout", layout), ("index.json", bytes)] {
            tar += TarHeader.encode(name: name, size: Int64(data.count))
            tar += data
            tar += [UInt8](repeating: 0, count: Int(TarHeader.paddedSize(Int64(data.count))) - data.count)
        }
        tar += [UInt8](repeating: 0, count: 2 * TarHeader.blockSize)
        openBundle(tar)
    }

    static func tar(_ bytes: [UInt8]) {
        openBundle(bytes)
        guard let path = Scratch.store(bytes) else { return }
        // Every entry's data, read whole when small, through the same reader push uses.
        try? TarReader.forEachEntry(files: [path]) { entry, data in
            _ = entry.name.split(separator: "/")
            if entry.size <= 1 << 20 { _ = try data.readAll(limit: 1 << 20) }
        }
    }

    /// Writes `tar` as the bundle's `platform.tar`, indexes it and reads what it lists.
    static func openBundle(_ tar: [UInt8]) {
        guard Scratch.store(tar) != nil, let index = try? BundleIndex.open(directory: Scratch.directory) else { return }
        for layout in index.layouts {
            for digest in index.blobs(in: layout) {
                guard let location = index.blob(digest, in: layout) else { violated("listed blob not found") }
                guard location.size >= 0, location.segments.allSatisfy({ $0.offset >= 0 && $0.length >= 0 }) else {
                    violated("negative blob segment")
                }
                guard location.size <= 1 << 20 else { continue }
                _ = try? index.readSmall(location, limit: 1 << 20)
            }
        }
    }
}

/// Writes a line to standard error (fd 2, unbuffered).
func printError(_ line: String) {
    let bytes = Array((line + "\n").utf8)
    _ = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
}

/// One private directory per process holding the bundle under test.
enum Scratch {
    /// `$TMPDIR/dkp-fuzz-XXXXXX` (scripts/fuzz.sh points TMPDIR at its work folder).
    static let directory: String = {
        let base = getenv("TMPDIR").map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        var template = Array("\(base)/dkp-fuzz-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { return "\(base)/dkp-fuzz-\(getpid())" }
        return String(cString: made)
    }()

    /// Writes the bytes to `directory/platform.tar`; its path, or nil when it cannot.
    static func store(_ bytes: [UInt8]) -> String? {
        let path = directory + "/platform.tar"
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var done = 0
        while done < bytes.count {
            let n = bytes[done...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n <= 0 { return nil }
            done += n
        }
        return path
    }
}
