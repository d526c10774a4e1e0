import Foundation
import Network
import NIOSSL
import Testing
import TestSupport

/// SSL_CERT_FILE and SSL_CERT_DIR as Go reads them. The certificates are made with openssl.
@Suite struct SystemTrustTests {
    static func makeCA(in directory: URL, name: String) async throws -> URL {
        let pem = directory.appendingPathComponent("\(name).pem")
        let run = try await TestProcess.run(
            "/usr/bin/openssl",
            ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", directory.appendingPathComponent("\(name).key").path, "-out", pem.path,
             "-days", "2", "-subj", "/CN=\(name)"])
        guard run.succeeded else { throw CocoaError(.fileWriteUnknown) }
        return pem
    }

    static func temporaryDirectory() throws -> URL {
        try TestRegistry.temporaryDirectory("dkp-trust")
    }

    static func certificates(_ roots: NIOSSLTrustRoots) -> [NIOSSLCertificate]? {
        if case .certificates(let list) = roots { return list }
        return nil
    }

    @Test func withoutTheVariablesTheLibraryDefaultsApply() throws {
        #expect(try SystemTrust.roots(environment: [:]) == .default)
    }

    @Test func sslCertFileReplacesTheDefaultFile() async throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let ca = try await Self.makeCA(in: directory, name: "file-ca")
        // An empty SSL_CERT_DIR directory leaves only the file.
        let emptyDir = directory.appendingPathComponent("empty")
        try FileManager.default.createDirectory(at: emptyDir, withIntermediateDirectories: true)
        let roots = try SystemTrust.roots(environment: ["SSL_CERT_FILE": ca.path, "SSL_CERT_DIR": emptyDir.path])
        let expected = try NIOSSLCertificate.fromPEMFile(ca.path)
        #expect(Self.certificates(roots) == expected)
    }

    @Test func sslCertDirReadsEveryFileOfEveryDirectory() async throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let one = directory.appendingPathComponent("one"), two = directory.appendingPathComponent("two")
        for dir in [one, two] { try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true) }
        let a = try await Self.makeCA(in: one, name: "a"), b = try await Self.makeCA(in: two, name: "b")
        try Data("not a certificate".utf8).write(to: one.appendingPathComponent("README"))
        let file = try await Self.makeCA(in: directory, name: "file")
        let roots = try SystemTrust.roots(environment: ["SSL_CERT_FILE": file.path, "SSL_CERT_DIR": "\(one.path):\(two.path)"])
        let got = Set(Self.certificates(roots) ?? [])
        let wanted = Set(try [file, a, b].flatMap { try NIOSSLCertificate.fromPEMFile($0.path) })
        #expect(got == wanted)
    }

    @Test func unreadableSettingsAreClearErrors() throws {
        do {
            _ = try SystemTrust.roots(environment: ["SSL_CERT_FILE": "/nonexistent/ca.pem"])
            Issue.record("a missing SSL_CERT_FILE was accepted")
        } catch let error as NetworkSettingsError {
            #expect(error.description.contains("SSL_CERT_FILE names /nonexistent/ca.pem"))
        }
        let empty = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: empty) }
        #expect(throws: NetworkSettingsError.self) { try SystemTrust.roots(environment: ["SSL_CERT_DIR": empty.path]) }
    }
}
