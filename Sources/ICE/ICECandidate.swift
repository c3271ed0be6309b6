import NetworkCore

/// Candidate types (RFC 8445 §5.1.1).
public enum ICECandidateType: String, Sendable, Comparable {
    case host, srflx, prflx, relay
    public var typePreference: UInt32 {
        switch self { case .host: 126; case .prflx: 110; case .srflx: 100; case .relay: 0 }
    }
    public static func < (a: Self, b: Self) -> Bool { a.typePreference < b.typePreference }
}

/// An ICE candidate as carried in `a=candidate` (RFC 8839 §5.1):
/// `foundation component transport priority address port typ type [raddr a rport p] *(ext)`.
public struct ICECandidate: Hashable, Sendable, CustomStringConvertible {
    public var foundation: String
    public var component: Int
    public var transport: String
    public var priority: UInt32
    /// The connection address: numeric, or an mDNS `.local` name still to be resolved.
    public var host: String
    public var port: UInt16
    public var type: ICECandidateType
    public var relatedHost: String?
    public var relatedPort: UInt16?

    public init(foundation: String, component: Int = 1, transport: String = "udp", priority: UInt32, host: String,
                port: UInt16, type: ICECandidateType, relatedHost: String? = nil, relatedPort: UInt16? = nil) {
        self.foundation = foundation; self.component = component; self.transport = transport
        self.priority = priority; self.host = host; self.port = port; self.type = type
        self.relatedHost = relatedHost; self.relatedPort = relatedPort
    }

    /// The numeric address, if `host` is one.
    public var address: TransportAddress? { TransportAddress(host: host, port: port) }
    public var isMDNS: Bool { host.hasSuffix(".local") }

    /// Parses an `a=candidate` value, with or without the `candidate:` prefix.
    public init?(sdp: String) {
        var s = Substring(sdp)
        if s.hasPrefix("a=") { s = s.dropFirst(2) }
        if s.hasPrefix("candidate:") { s = s.dropFirst("candidate:".count) }
        let f = s.split(separator: " ", omittingEmptySubsequences: true)
        guard f.count >= 8, f[6] == "typ", let comp = Int(f[1]), let prio = UInt32(f[3]), let port = UInt16(f[5]),
              let type = ICECandidateType(rawValue: String(f[7]).lowercased()) else { return nil }
        foundation = String(f[0]); component = comp; transport = f[2].lowercased(); priority = prio
        host = String(f[4]); self.port = port; self.type = type
        var i = 8
        while i + 1 < f.count {
            if f[i] == "raddr" { relatedHost = String(f[i + 1]) }
            if f[i] == "rport" { relatedPort = UInt16(f[i + 1]) }
            i += 2
        }
    }

    /// Why a signalled candidate is not one a peer could mean (RFC 8839 §5.1), or nil:
    /// component 1–256, UDP or TCP, a non-zero priority and port, and a numeric address
    /// or an mDNS `.local` name.
    public var problem: String? {
        guard (1...256).contains(component) else { return "component \(component) out of 1–256" }
        guard transport == "udp" || transport == "tcp" else { return "transport '\(transport.prefix(10))' is not UDP or TCP" }
        guard priority > 0 else { return "priority 0" }
        guard port > 0 || transport == "tcp" else { return "port 0" }
        guard foundation.utf8.count <= 32, !foundation.isEmpty else { return "foundation of \(foundation.utf8.count) characters" }
        if isMDNS {
            guard host.utf8.count <= 255, host.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else { return "malformed .local name" }
        } else if address == nil {
            return "address '\(host.prefix(64))' is neither numeric nor .local"
        }
        return nil
    }

    /// The `a=candidate` value (without `candidate:`).
    public var sdpValue: String {
        var s = "\(foundation) \(component) \(transport) \(priority) \(host) \(port) typ \(type.rawValue)"
        if let rh = relatedHost, let rp = relatedPort { s += " raddr \(rh) rport \(rp)" }
        return s + " generation 0"
    }

    public var description: String { "\(type.rawValue) \(host):\(port)" }

    /// Candidate priority (RFC 8445 §5.1.2.1).
    public static func priority(type: ICECandidateType, localPreference: UInt32, component: Int = 1) -> UInt32 {
        (type.typePreference << 24) | ((localPreference & 0xFFFF) << 8) | UInt32(256 - component)
    }
}
