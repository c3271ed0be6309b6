import STUN

extension TURNConfig {
    /// The username and password to allocate with: the configured pair, or with a
    /// ``secret`` the time-limited pair of the TURN REST scheme that coturn's
    /// `use-auth-secret` checks: `EXPIRY:USER` (unix seconds; USER is `username`, else
    /// the device's name) and base64(HMAC-SHA1(secret, that username)). No I/O; `now` in
    /// unix seconds.
    func credentials(now: Int64, deviceName: String) -> (username: String, password: String) {
        guard let secret else { return (username, credential) }
        let user = "\(now + Int64(ttlSeconds)):\(username.isEmpty ? deviceName : username)"
        let mac = hmacSHA1(key: Array(secret.utf8), data: ArraySlice(Array(user.utf8)))
        return (user, base64(mac))
    }
}

/// Standard base64 with padding (RFC 4648 §4), as coturn compares it.
func base64(_ bytes: [UInt8]) -> String {
    let table = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
    var out: [UInt8] = []
    out.reserveCapacity((bytes.count + 2) / 3 * 4)
    var i = 0
    while i < bytes.count {
        let b0 = bytes[i], b1 = i + 1 < bytes.count ? bytes[i + 1] : 0, b2 = i + 2 < bytes.count ? bytes[i + 2] : 0
        out.append(table[Int(b0 >> 2)])
        out.append(table[Int((b0 & 3) << 4 | b1 >> 4)])
        out.append(i + 1 < bytes.count ? table[Int((b1 & 15) << 2 | b2 >> 6)] : UInt8(ascii: "="))
        out.append(i + 2 < bytes.count ? table[Int(b2 & 63)] : UInt8(ascii: "="))
        i += 3
    }
    return String(decoding: out, as: UTF8.self)
}
