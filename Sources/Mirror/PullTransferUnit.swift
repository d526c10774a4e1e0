import Bundle
import DKP
import Foundation
import NIOCore
import OCI
import Registry
import Streams
import Synchronization

/// One unit of the pull's pool: a blob fetched whole, or one part of a large one.
enum TransferUnit: Sendable {
    case whole(BlobJob)
    case part(RangedBlob, Int?)
}

struct BlobJob: Sendable {
    let writer: TarFileWriter
    let entry: Int
    let repository: String
    let descriptor: Descriptor

    /// The whole blob in one verified stream, written from its entry's first byte and finished.
    func fetchWhole(client: RegistryClient, progress: TransferProgress) async throws {
        let stream = writer.entryStream(entry)
        var received: Int64 = 0
        do {
            for try await buffer in client.blob(repository: repository, descriptor: descriptor, onBytes: { progress.addBytes($0) }) {
                try buffer.withUnsafeReadableBytes { try stream.append($0) }
                received += Int64(buffer.readableBytes)
            }
            try stream.finish()
        } catch {
            stream.reset()
            progress.retract(bytes: received)
            throw error
        }
        progress.blobDone(digest: descriptor.digest.string, bytes: descriptor.size, transferred: true)
    }
}
