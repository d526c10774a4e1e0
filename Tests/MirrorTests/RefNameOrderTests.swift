import DKP
import Testing

/// index.json lists references by ref name, byte by byte as d8 sorts them; the plan orders
/// them with `refNamePrecedes`, which never builds the strings. The two orders must agree.
@Suite struct RefNameOrderTests {
    static let hex = [String(repeating: "a", count: 64), String(repeating: "0", count: 63) + "f", String(repeating: "b", count: 64)]

    static func images() -> [BundleImage] {
        var images: [BundleImage] = []
        for host in ["registry.deckhouse.ru", "registry.deckhouse.ru:443", "127.0.0.1:5000"] {
            for repository in ["deckhouse/ee", "deckhouse/ee/install", "deckhouse/ee-x", "deckhouse/ee/release-channel", "deckhouse/e"] {
                for hex in hex {
                    images.append(BundleImage(tar: "platform.tar", layout: "", repository: repository, reference: "sha256:\(hex)",
                                              shortTag: hex, sourceHost: host))
                }
                for tag in ["v1.69.3", "v1.69", "stable", "Stable", "v1.69.3-rc.1", "sha256-\(hex[0]).att", "_x", "9"] {
                    images.append(BundleImage(tar: "platform.tar", layout: "", repository: repository, reference: tag, shortTag: tag, sourceHost: host))
                }
                // A retag (a pinned channel): its ref name carries the channel, not the version.
                images.append(BundleImage(tar: "platform.tar", layout: "", repository: repository, reference: "v1.69.3",
                                          shortTag: "rock-solid", sourceHost: host))
            }
        }
        return images
    }

    @Test func refNamePrecedesOrdersAsTheRefNameBytes() {
        let images = Self.images()
        let byStrings = images.map(\.refName).sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        #expect(images.sorted { $0.refNamePrecedes($1) }.map(\.refName) == byStrings)
        #expect(images.reversed().sorted { $0.refNamePrecedes($1) }.map(\.refName) == byStrings)
        for image in images { #expect(!image.refNamePrecedes(image)) }
    }
}
