import Foundation
import NIOConcurrencyHelpers
import NIOSSL

/// The system's CA certificates, found as Go's crypto/x509 finds them on Linux, so that
/// dkp-mirror trusts what d8 and the operator's other Go tools trust:
/// `SSL_CERT_FILE` replaces the default CA file, `SSL_CERT_DIR` (colon-separated) the default CA
/// directories, whose every file is read as PEM (no hashed names needed). With neither variable
/// set, the TLS library's own defaults apply. `--ca-file` adds to whatever is in force.
public enum SystemTrust {
    /// Go's list for Linux, first existing one wins.
    static let defaultFiles = [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/ca-bundle.pem",
        "/etc/pki/tls/cacert.pem",
        "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
        "/etc/ssl/cert.pem",
    ]
    static let defaultDirectories = ["/etc/ssl/certs", "/etc/pki/tls/certs"]

    private static let cache = NIOLockedValueBox<[String: NIOSSLTrustRoots]>([:])

    /// The trust roots in force for `environment`: `.default` without `SSL_CERT_FILE` and
    /// `SSL_CERT_DIR`, else the certificates they name (read once per process). A variable that
    /// names nothing readable, or nothing with a certificate in it, is a `NetworkSettingsError`.
    public static func roots(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> NIOSSLTrustRoots {
        let file = environment["SSL_CERT_FILE"].flatMap { $0.isEmpty ? nil : $0 }
        let directories = environment["SSL_CERT_DIR"].flatMap { $0.isEmpty ? nil : $0 }
        guard file != nil || directories != nil else { return .default }
        let key = "\(file ?? "")\u{0}\(directories ?? "")"
        if let cached = cache.withLockedValue({ $0[key] }) { return cached }

        var certificates: [NIOSSLCertificate] = []
        if let file {
            guard FileManager.default.isReadableFile(atPath: file), let pem = try? NIOSSLCertificate.fromPEMFile(file), !pem.isEmpty else {
                throw NetworkSettingsError.invalid("SSL_CERT_FILE names \(file), which is missing, unreadable or holds no PEM certificate; point it at a PEM CA bundle or unset it")
            }
            certificates += pem
        } else if let fallback = defaultFiles.first(where: { FileManager.default.isReadableFile(atPath: $0) }) {
            certificates += (try? NIOSSLCertificate.fromPEMFile(fallback)) ?? []
        }
        let dirs = directories.map { $0.split(separator: ":").map(String.init) } ?? defaultDirectories
        var fromDirectories = 0
        for directory in dirs {
            guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { continue }
            for name in names.sorted() {
                let path = directory + "/" + name
                var isDirectory: ObjCBool = false
                guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue,
                      let pem = try? NIOSSLCertificate.fromPEMFile(path) else { continue }
                certificates += pem
                fromDirectories += pem.count
            }
        }
        if directories != nil, fromDirectories == 0, file == nil {
            throw NetworkSettingsError.invalid("SSL_CERT_DIR names \(directories!), where no PEM certificate could be read; point it at directories of PEM files or unset it")
        }
        guard !certificates.isEmpty else {
            throw NetworkSettingsError.invalid("SSL_CERT_FILE/SSL_CERT_DIR leave no CA certificate to trust; point them at PEM files or unset them")
        }
        let roots = NIOSSLTrustRoots.certificates(certificates)
        cache.withLockedValue { $0[key] = roots }
        return roots
    }
}
