import Foundation
import Yams

/// The registry module's switch state, secret `d8-system/registry-state` (type `registry/state`,
/// d8-current.md §9): keys `mode`, `target_mode`, `conditions` (a YAML list), `hash`, `state`.
/// When `conditions` is absent, `state` is read as a YAML (or JSON) mapping with the same keys.
public struct RegistryState: Codable, Sendable, Equatable {
    public struct Condition: Codable, Sendable, Equatable {
        public var type: String
        /// `True`, `False` or `Unknown`, as the cluster wrote it.
        public var status: String
        public var reason: String
        /// Verbatim, multi-line as written (`Mode: Default\nmaster-1: 0 of 166 items processed, ...`).
        public var message: String
        public var lastTransitionTime: String?

        public init(type: String, status: String, reason: String = "", message: String = "", lastTransitionTime: String? = nil) {
            self.type = type
            self.status = status
            self.reason = reason
            self.message = message
            self.lastTransitionTime = lastTransitionTime
        }

        public init(from decoder: Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            type = try container.decode(String.self, forKey: .type)
            status = try container.decodeIfPresent(String.self, forKey: .status) ?? "Unknown"
            reason = try container.decodeIfPresent(String.self, forKey: .reason) ?? ""
            message = try container.decodeIfPresent(String.self, forKey: .message) ?? ""
            lastTransitionTime = try container.decodeIfPresent(String.self, forKey: .lastTransitionTime)
        }
    }

    public var mode: String
    public var targetMode: String
    public var conditions: [Condition]

    enum CodingKeys: String, CodingKey {
        case mode, targetMode = "target_mode", conditions
    }

    public init(mode: String, targetMode: String, conditions: [Condition]) {
        self.mode = mode
        self.targetMode = targetMode
        self.conditions = conditions
    }

    /// Condition `Ready` is True and the switch has reached its target.
    public var isDone: Bool {
        mode == targetMode && condition("Ready")?.status == "True"
    }

    public func condition(_ type: String) -> Condition? {
        conditions.first { $0.type == type }
    }

    /// What a `--wait` is still waiting for, in a few words.
    public var pending: String {
        var parts: [String] = []
        if mode != targetMode { parts.append("mode is \(mode), target_mode is \(targetMode)") }
        if let ready = condition("Ready") {
            if ready.status != "True" { parts.append("condition Ready is \(ready.status)\(ready.reason.isEmpty ? "" : " (\(ready.reason))")") }
        } else {
            parts.append("there is no condition Ready yet")
        }
        for other in conditions where other.type != "Ready" && other.status != "True" {
            parts.append("condition \(other.type) is \(other.status)\(other.reason.isEmpty ? "" : " (\(other.reason))")")
        }
        return parts.joined(separator: "; ")
    }

    static let what = "secret d8-system/registry-state"

    /// Reads the secret's values (already base64-decoded).
    public init(secret: KubeSecret) throws {
        func fail(_ detail: String) -> ClusterError { .unexpectedResponse(what: Self.what, detail: detail) }
        if secret.data["conditions"] == nil, let state = secret.data["state"] {
            do {
                self = try YAMLDecoder().decode(RegistryState.self, from: String(decoding: state, as: UTF8.self))
                return
            } catch {
                throw fail("it has no key conditions, and key state is not a mapping with mode, target_mode and conditions")
            }
        }
        guard let mode = secret.string("mode") else { throw fail("it has no key mode") }
        let target = secret.string("target_mode") ?? mode
        var conditions: [Condition] = []
        if let bytes = secret.data["conditions"] {
            let text = String(decoding: bytes, as: UTF8.self)
            if !text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
                do {
                    conditions = try YAMLDecoder().decode([Condition].self, from: text)
                } catch {
                    throw fail("key conditions is not a YAML list of conditions with type and status (\(String(describing: error).prefix(160)))")
                }
            }
        }
        self.init(mode: mode, targetMode: target, conditions: conditions)
    }
}

extension KubeClient {
    /// Secret `d8-system/registry-state`, the registry module's switch state.
    public func registryState() async throws -> RegistryState {
        let secret = try await secret(namespace: "d8-system", name: "registry-state",
                                      notFoundHint: "the registry module writes it once it manages the registry: check that it is enabled (d8 k get module registry) and its ModuleConfig deckhouse sets settings.registry.mode")
        return try RegistryState(secret: secret)
    }

    /// A secret's values, base64-decoded (`stringData` too, where `data` lacks the key).
    public func secret(namespace: String, name: String, notFoundHint: String = "") async throws -> KubeSecret {
        let what = "secret \(namespace)/\(name)"
        guard Self.isObjectName(namespace), Self.isObjectName(name) else {
            throw ClusterError.unexpectedResponse(what: what, detail: "not a valid object name")
        }
        let bytes = try await get("/api/v1/namespaces/\(namespace)/secrets/\(name)", what: what, notFoundHint: notFoundHint)
        let raw = try decode(KubeSecret.Raw.self, from: bytes, what: what)
        var data: [String: [UInt8]] = [:]
        for (key, value) in raw.data ?? [:] {
            guard let decoded = Data(base64Encoded: value.filter { !$0.isWhitespace }) else {
                throw ClusterError.unexpectedResponse(what: what, detail: "the value of key \(key) is not base64")
            }
            data[key] = Array(decoded)
        }
        for (key, value) in raw.stringData ?? [:] where data[key] == nil {
            data[key] = Array(value.utf8)
        }
        return KubeSecret(name: raw.metadata?.name ?? name, data: data)
    }

    /// A DNS-1123 name (what a namespace or secret name can be): safe to put in a path.
    static func isObjectName(_ text: String) -> Bool {
        !text.isEmpty && text.count <= 253
            && text.allSatisfy { ($0.isASCII && ($0.isLowercase || $0.isNumber)) || $0 == "-" || $0 == "." }
    }
}
