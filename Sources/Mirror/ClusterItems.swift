import Bundle
import Foundation
import OCI

/// The cluster's own names for what it checks (the registry module's checker):
/// `module/<kebab-module>/<kebab-image>` for images_digests.json entries,
/// `deckhouse/containers/<name>` and `deckhouse/init-containers/<name>` for the images of
/// deployment d8-system/deckhouse.
public enum ClusterItems {
    /// camelCase (or PascalCase, snake_case, dotted) to kebab-case the way the cluster does:
    /// a word starts at an upper-case letter after a lower-case one (`fooBar`), at the last
    /// capital of a run followed by a lower-case letter (`FOOBar`), and at any character other
    /// than a digit, a lower-case letter or `.` right after a digit (`v1Beta` -> `v1-beta`);
    /// `_`, `-`, `.` and spaces separate words and are dropped (a `.` or `,` between digits
    /// stays); digits after a letter stay in its word (`kubeApiserver133` -> `kube-apiserver133`).
    /// Everything is lower-cased.
    public static func kebab(_ text: String) -> String {
        let chars = Array(text)
        var words: [String] = []
        var word = ""
        func flush() {
            if !word.isEmpty { words.append(word) }
            word = ""
        }
        for i in chars.indices {
            let current = chars[i]
            let previous: Character? = i > 0 ? chars[i - 1] : nil
            let next: Character? = i + 1 < chars.count ? chars[i + 1] : nil
            func isLower(_ c: Character?) -> Bool { c.map { $0.isLowercase } ?? false }
            func isUpper(_ c: Character?) -> Bool { c.map { $0.isUppercase } ?? false }
            func isDigit(_ c: Character?) -> Bool { c.map { $0.isNumber } ?? false }
            if isLower(current) {
                word.append(current)
                continue
            }
            if current == "_" || current == "-" || current.isWhitespace {
                flush()
                continue
            }
            if isUpper(current), isLower(previous) || (isUpper(previous) && isLower(next)) {
                flush()
                word.append(current)
                continue
            }
            if isDigit(previous) {
                if (current == "." || current == ","), isDigit(next) {
                    word.append(current)
                    continue
                }
                if !isDigit(current), current != "." {
                    flush()
                    word.append(current)
                    continue
                }
            }
            if current == "." {
                flush()
                continue
            }
            word.append(current)
        }
        flush()
        return words.map { $0.lowercased() }.joined(separator: "-")
    }

    /// images_digests.json (`{"<moduleCamel>": {"<imageCamel>": "sha256:..."}}`) as
    /// (label, digest), modules and images in sorted order, each digest once (its first label),
    /// as the cluster builds `global.modulesImages.digests` into its list.
    public static func moduleDigests(_ json: [UInt8]) -> [(label: String, digest: Digest)] {
        guard let object = try? JSONSerialization.jsonObject(with: Data(json)) as? [String: Any] else { return [] }
        var seen = Set<Digest>()
        var result: [(String, Digest)] = []
        for module in object.keys.sorted() {
            guard let images = object[module] as? [String: Any] else { continue }
            for image in images.keys.sorted() {
                guard let text = images[image] as? String, let digest = try? Digest(parsing: text),
                      seen.insert(digest).inserted else { continue }
                result.append(("module/\(kebab(module))/\(kebab(image))", digest))
            }
        }
        return result
    }
}
