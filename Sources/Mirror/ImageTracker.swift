import Bundle
import DKP
import Foundation
import NIOCore
import OCI
import Registry
import Streams
import Synchronization

/// Counts references whose every blob is written, for "images done/total".
final class ImageTracker: Sendable {
    // Images are counted by their position in the plan's references, not their ref name: two
    // images may share one (a channel alias and its version in one repository), and each must
    // be counted once. Positions, not names, so 20,000 references cost no string each.
    private struct Key: Hashable {
        var tar: String    // the writer's path, shared, not a new string per key
        var entry: Int
    }
    private struct State {
        var remaining: [Int: Int] = [:]             // image -> blobs still missing
        var waiting: [Key: [Int]] = [:]             // tar entry -> images needing it
    }
    private let state: Mutex<State>
    let total: Int
    /// Positions of the images whose blobs were all on disk already.
    let alreadyComplete: [Int]

    init(pending: [(TarPlan, TarFileWriter)]) {
        var state = State()
        var total = 0
        var complete: [Int] = []
        for (tar, writer) in pending {
            for (image, entries) in tar.imageBlobs {
                total += 1
                let missing = Set(entries.filter { !writer.isComplete($0) })
                if missing.isEmpty { complete.append(image); continue }
                state.remaining[image] = missing.count
                for entry in missing { state.waiting[Key(tar: writer.finalPath, entry: entry), default: []].append(image) }
            }
        }
        self.state = Mutex(state)
        self.total = total
        self.alreadyComplete = complete
    }

    /// Positions of the images completed by this entry.
    func finished(tar: String, entry: Int) -> [Int] {
        state.withLock { state in
            var done: [Int] = []
            for image in state.waiting.removeValue(forKey: Key(tar: tar, entry: entry)) ?? [] {
                state.remaining[image, default: 1] -= 1
                if state.remaining[image] == 0 { done.append(image) }
            }
            return done
        }
    }
}
