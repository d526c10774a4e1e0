import Foundation
import NIOCore
import NIOPosix

final class ProxyState: Sendable {
    struct Values {
        var fault: FaultProxy.Fault = .none
        var generation: UInt64 = 1
        var cutsRemaining = 0
        var cutRandom = SeededGenerator(seed: 0)
        var clientFault: FaultProxy.ClientFault = .none
        var clientGeneration: UInt64 = 1
        var clientCutsRemaining = 0
        var clientRandom = SeededGenerator(seed: 0)
        /// `.holdAt` fired in the current client generation.
        var holding = false
        var patternMatches = 0
        var latency: Duration = .zero
        var bytesPerSecond: Int?
        var linkBytesPerSecond: Int?
        /// When the shared link is free again (with `linkBytesPerSecond`).
        var linkFree = NIODeadline.uptimeNanoseconds(0)
        var pacesUploads = false
        /// When the link's client→upstream side is free again (with `pacesUploads`).
        var uplinkFree = NIODeadline.uptimeNanoseconds(0)
        var bytesToClient = 0
        var bytesFromClient = 0
        var connectionsAccepted = 0
        var cutsPerformed = 0
        var cutOffsets: [Int] = []
        var stallsPerformed = 0
        var clientCutsPerformed = 0
        var clientCutOffsets: [Int] = []
        var clientStallsPerformed = 0
        var clientChannels: [ObjectIdentifier: any Channel] = [:]
        var upstreamChannels: [ObjectIdentifier: any Channel] = [:]

        mutating func arm(_ fault: FaultProxy.Fault) {
            self.fault = fault
            generation &+= 1
            switch fault {
            case .cutAfter(_, let connections):
                cutsRemaining = connections
            case .cutWithin(_, let connections, let seed):
                cutsRemaining = connections
                cutRandom = SeededGenerator(seed: seed)
            case .none, .stall:
                cutsRemaining = 0
            }
        }

        mutating func armClient(_ fault: FaultProxy.ClientFault) {
            clientFault = fault
            clientGeneration &+= 1
            holding = false
            patternMatches = 0
            switch fault {
            case .cutAfter(_, let connections):
                clientCutsRemaining = connections
            case .cutWithin(_, let connections, let seed):
                clientCutsRemaining = connections
                clientRandom = SeededGenerator(seed: seed)
            case .none, .stall, .holdAt:
                clientCutsRemaining = 0
            }
        }
    }

    enum Armed {
        case none
        case cut(limit: Int)
        case stall(limit: Int)
        /// Client side only: watch for `pattern`.
        case hold(pattern: [UInt8], occurrence: Int)
    }

    let locked = TSLocked(Values())

    /// If the upstream→client fault generation moved past `known`, the new generation and
    /// what this connection is armed with now (claiming one of the remaining cuts if any).
    func rearm(known: UInt64) -> (UInt64, Armed)? {
        locked.withLock { s in
            guard s.generation != known else { return nil }
            switch s.fault {
            case .none:
                return (s.generation, .none)
            case .cutAfter(let bytes, _):
                guard s.cutsRemaining > 0 else { return (s.generation, .none) }
                s.cutsRemaining -= 1
                return (s.generation, .cut(limit: max(0, bytes)))
            case .cutWithin(let range, _, _):
                guard s.cutsRemaining > 0 else { return (s.generation, .none) }
                s.cutsRemaining -= 1
                let offset = s.cutRandom.next(in: range)
                s.cutOffsets.append(offset)
                return (s.generation, .cut(limit: max(0, offset)))
            case .stall(let afterBytes):
                return (s.generation, .stall(limit: max(0, afterBytes)))
            }
        }
    }

    /// The same for the client→upstream direction.
    func rearmClient(known: UInt64) -> (UInt64, Armed)? {
        locked.withLock { s in
            guard s.clientGeneration != known else { return nil }
            switch s.clientFault {
            case .none:
                return (s.clientGeneration, .none)
            case .cutAfter(let bytes, _):
                guard s.clientCutsRemaining > 0 else { return (s.clientGeneration, .none) }
                s.clientCutsRemaining -= 1
                return (s.clientGeneration, .cut(limit: max(0, bytes)))
            case .cutWithin(let range, _, _):
                guard s.clientCutsRemaining > 0 else { return (s.clientGeneration, .none) }
                s.clientCutsRemaining -= 1
                let offset = s.clientRandom.next(in: range)
                s.clientCutOffsets.append(offset)
                return (s.clientGeneration, .cut(limit: max(0, offset)))
            case .stall(let afterBytes):
                return (s.clientGeneration, .stall(limit: max(0, afterBytes)))
            case .holdAt(let pattern, let occurrence):
                return (s.clientGeneration, .hold(pattern: Array(pattern.utf8), occurrence: occurrence))
            }
        }
    }

    /// Counts one occurrence of the hold pattern; true when this one starts the hold.
    func countMatch(generation: UInt64, occurrence: Int) -> Bool {
        locked.withLock { s in
            guard s.clientGeneration == generation, !s.holding else { return false }
            s.patternMatches += 1
            if s.patternMatches >= occurrence { s.holding = true }
            return s.holding
        }
    }

    func isHolding(generation: UInt64) -> Bool {
        locked.withLock { $0.holding && $0.clientGeneration == generation }
    }

    var pacing: (latency: Duration, bytesPerSecond: Int?) {
        locked.withLock { ($0.latency, $0.bytesPerSecond) }
    }

    /// With a link cap, reserves the link for `count` bytes and says when they have crossed it.
    func linkSlot(_ count: Int) -> NIODeadline? {
        locked.withLock { s -> NIODeadline? in
            guard let rate = s.linkBytesPerSecond else { return nil }
            let end = max(NIODeadline.now(), s.linkFree) + .nanoseconds(Int64(count) * 1_000_000_000 / Int64(rate))
            s.linkFree = end
            return end
        }
    }

    /// With `pacesUploads`: the per-connection rate for client→upstream bytes and, with a link
    /// cap, when `count` bytes have crossed the link's other side; nil when uploads go unpaced.
    func uploadPacing(_ count: Int) -> (bytesPerSecond: Int?, link: NIODeadline?)? {
        locked.withLock { s -> (Int?, NIODeadline?)? in
            guard s.pacesUploads, s.bytesPerSecond != nil || s.linkBytesPerSecond != nil else { return nil }
            var link: NIODeadline?
            if let rate = s.linkBytesPerSecond {
                let end = max(NIODeadline.now(), s.uplinkFree) + .nanoseconds(Int64(count) * 1_000_000_000 / Int64(rate))
                s.uplinkFree = end
                link = end
            }
            return (s.bytesPerSecond, link)
        }
    }
}

extension Duration {
    var timeAmount: TimeAmount {
        let (seconds, attoseconds) = components
        return .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}
