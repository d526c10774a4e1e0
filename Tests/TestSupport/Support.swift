@_exported import DevSupport
import CCrypto
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `kill(2)`, reachable from types that have a `kill()` method of their own.
func posixKill(_ pid: Int32, _ signal: Int32) -> Int32 {
    #if canImport(Glibc)
    return Glibc.kill(pid, signal)
    #else
    return Darwin.kill(pid, signal)
    #endif
}

/// Paths inside the repository, found from this source file's location.
public enum RepoPaths {
    /// The repository root (the folder holding Package.swift).
    public static var root: URL {
        // <root>/Tests/TestSupport/Support.swift
        URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent()  // TestSupport
            .deletingLastPathComponent()  // Tests
            .deletingLastPathComponent()  // root
    }

    /// `scripts/registry.sh`.
    public static var registryScript: URL {
        root.appendingPathComponent("scripts/registry.sh")
    }

    /// `scripts/proxy.sh`.
    public static var proxyScript: URL {
        root.appendingPathComponent("scripts/proxy.sh")
    }

    /// `scripts/ingress.sh`.
    public static var ingressScript: URL {
        root.appendingPathComponent("scripts/ingress.sh")
    }

    /// `testdata/`.
    public static var testdata: URL {
        root.appendingPathComponent("testdata")
    }

    /// The regular files below `folder`, as paths relative to it, sorted (none when it is absent).
    public static func files(under folder: String) -> [String] {
        (FileManager.default.enumerator(atPath: folder)?.allObjects as? [String] ?? []).filter { name in
            var isDirectory: ObjCBool = false
            return FileManager.default.fileExists(atPath: folder + "/" + name, isDirectory: &isDirectory) && !isDirectory.boolValue
        }.sorted()
    }
}

/// Runs programs without blocking Swift concurrency's threads.
public enum TestProcess {
    public struct Output: Sendable {
        public let status: Int32
        public let stdout: [UInt8]
        public let stderr: [UInt8]
        public var stdoutString: String { String(decoding: stdout, as: UTF8.self) }
        public var stderrString: String { String(decoding: stderr, as: UTF8.self) }
        public var succeeded: Bool { status == 0 }
    }

    /// Runs `executable` (an absolute path, or a name looked up in PATH) with `arguments`,
    /// waits for it to exit and returns its exit status and output. Standard input is
    /// empty unless `stdin` is given. Output goes through temporary files, so a program
    /// that leaves a background child behind does not make this hang.
    public static func run(
        _ executable: String,
        _ arguments: [String],
        stdin: [UInt8]? = nil,
        environment: [String: String]? = nil,
        currentDirectory: URL? = nil
    ) async throws -> Output {
        let scratch = try TestRegistry.temporaryDirectory("dkp-proc")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let outURL = scratch.appendingPathComponent("stdout")
        let errURL = scratch.appendingPathComponent("stderr")
        let inURL = scratch.appendingPathComponent("stdin")
        guard FileManager.default.createFile(atPath: outURL.path, contents: nil),
            FileManager.default.createFile(atPath: errURL.path, contents: nil),
            FileManager.default.createFile(atPath: inURL.path, contents: Data(stdin ?? []))
        else {
            throw TestSupportError("cannot create files in \(scratch.path)")
        }
        let outHandle = try FileHandle(forWritingTo: outURL)
        let errHandle = try FileHandle(forWritingTo: errURL)
        let inHandle = try FileHandle(forReadingFrom: inURL)
        defer {
            try? outHandle.close()
            try? errHandle.close()
            try? inHandle.close()
        }

        let process = Process()
        if executable.hasPrefix("/") {
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = arguments
        } else {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = [executable] + arguments
        }
        if let environment { process.environment = environment }
        if let currentDirectory { process.currentDirectoryURL = currentDirectory }
        process.standardOutput = outHandle
        process.standardError = errHandle
        process.standardInput = inHandle

        let status: Int32 = try await withCheckedThrowingContinuation { continuation in
            process.terminationHandler = { finished in
                continuation.resume(returning: finished.terminationStatus)
            }
            do {
                try process.run()
            } catch {
                process.terminationHandler = nil
                continuation.resume(throwing: error)
            }
        }
        let out = (try? Data(contentsOf: outURL)) ?? Data()
        let err = (try? Data(contentsOf: errURL)) ?? Data()
        return Output(status: status, stdout: Array(out), stderr: Array(err))
    }
}

/// Small crypto helpers for tests (libcrypto).
public enum TestCrypto {
    /// SHA-256 of `bytes` as lowercase hex.
    public static func sha256Hex(_ bytes: [UInt8]) -> String {
        var digest = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 0
        let ok = bytes.withUnsafeBytes { raw in
            EVP_Digest(raw.baseAddress, raw.count, &digest, &length, EVP_sha256(), nil)
        }
        if ok != 1 || length != 32 {
            // libcrypto cannot fail on SHA-256 of memory; keep a recognisable value if it does.
            return String(repeating: "0", count: 64)
        }
        return digest.map { byte in
            let hex = String(byte, radix: 16)
            return byte < 16 ? "0" + hex : hex
        }.joined()
    }

    /// OCI digest string `sha256:<hex>` of `bytes`.
    public static func sha256Digest(_ bytes: [UInt8]) -> String {
        "sha256:" + sha256Hex(bytes)
    }

    /// `count` random bytes (not cryptographically strong; for test payloads).
    public static func randomBytes(_ count: Int) -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        var bytes = [UInt8](repeating: 0, count: count)
        var index = 0
        while index < count {
            var word = generator.next()
            for _ in 0..<8 where index < count {
                bytes[index] = UInt8(truncatingIfNeeded: word)
                word >>= 8
                index += 1
            }
        }
        return bytes
    }

    /// Base64url without padding (as used by JWTs).
    public static func base64URL(_ bytes: [UInt8]) -> String {
        var s = Data(bytes).base64EncodedString()
        s = s.replacingOccurrences(of: "+", with: "-")
        s = s.replacingOccurrences(of: "/", with: "_")
        while s.hasSuffix("=") { s.removeLast() }
        return s
    }
}
