#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

#if DKP_FUZZ
/// Built by scripts/fuzz.sh with -sanitize=fuzzer: libFuzzer's main calls this for every input.
/// The harness comes from DKP_FUZZ_TARGET (see `Harness`).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    FuzzTarget.harness.run(Array(UnsafeBufferPointer(start: data, count: size)))
    return 0
}

enum FuzzTarget {
    static let harness: Harness = {
        let name = getenv("DKP_FUZZ_TARGET").map { String(cString: $0) } ?? ""
        guard let harness = Harness(rawValue: name) else {
            let names = Harness.allCases.map(\.rawValue).joined(separator: ", ")
            printError("dkp-fuzz: set DKP_FUZZ_TARGET to one of: \(names)")
            exit(2)
        }
        return harness
    }()
}
#else
/// Built without the fuzzer: replays files through a harness (a crash input, a corpus).
@main
enum Replay {
    static func main() {
        let arguments = Array(CommandLine.arguments.dropFirst())
        let names = Harness.allCases.map(\.rawValue).joined(separator: "|")
        guard let name = arguments.first, let harness = Harness(rawValue: name) else {
            printError("usage: dkp-fuzz \(names) FILE...\n"
                + "  replays each FILE through the harness; scripts/fuzz.sh runs them under libFuzzer")
            exit(2)
        }
        for path in arguments.dropFirst() {
            guard let bytes = readFile(path) else {
                printError("dkp-fuzz: cannot read \(path)")
                exit(1)
            }
            harness.run(bytes)
            print("\(path): ok (\(bytes.count) bytes)")
        }
    }

    static func readFile(_ path: String) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 { return nil }
            if n == 0 { return bytes }
            bytes += buffer[0..<n]
        }
    }
}
#endif
