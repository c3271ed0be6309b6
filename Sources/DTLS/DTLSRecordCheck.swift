/// A stateless check of a datagram's DTLS 1.2 record layer (RFC 6347 §4.1), run before
/// OpenSSL sees it. OpenSSL treats some malformed plaintext records during the handshake
/// as fatal, so an off-path sender could end a call being set up with one datagram; RFC
/// 6347 §4.1.2.7 says invalid records are to be discarded, which this makes true.
///
/// ```
///  0      1      2      3 ... 10     11     12
/// +------+------+------+-- ... --+------+------+
/// | type | version     | epoch, sequence (8)  | length (2)  | fragment ...
/// +------+------+------+-- ... --+------+------+
/// ```
/// Handshake records in epoch 0 are plaintext: their messages' 12-byte headers must add up
/// to the record (RFC 6347 §4.2.2). Later epochs are encrypted and only framed.
public enum DTLSRecordCheck {
    /// Why a datagram was refused, or nil when every record in it is well formed.
    public static func problem(_ d: [UInt8]) -> String? {
        if d.isEmpty { return "empty datagram" }
        var i = 0
        while i < d.count {
            guard d.count - i >= 13 else { return "truncated record header" }
            let type = d[i]
            guard (20...23).contains(type) else { return "unknown content type \(type)" }
            guard d[i + 1] == 0xfe, d[i + 2] == 0xfd || d[i + 2] == 0xff else { return "not a DTLS 1.0/1.2 record" }
            let epoch = Int(d[i + 3]) << 8 | Int(d[i + 4])
            let length = Int(d[i + 11]) << 8 | Int(d[i + 12])
            let body = i + 13
            guard length <= d.count - body else { return "record length \(length) past the datagram" }
            if epoch == 0 {
                switch type {
                case 20: if length != 1 || d[body] != 1 { return "malformed change_cipher_spec" }
                case 21: if length != 2 { return "malformed alert" }
                case 22:
                    var m = body
                    let end = body + length
                    guard length >= 12 else { return "handshake record too short for a handshake header" }
                    while m < end {
                        guard end - m >= 12 else { return "handshake message header cut short" }
                        let total = Int(d[m + 1]) << 16 | Int(d[m + 2]) << 8 | Int(d[m + 3])
                        let offset = Int(d[m + 6]) << 16 | Int(d[m + 7]) << 8 | Int(d[m + 8])
                        let fragment = Int(d[m + 9]) << 16 | Int(d[m + 10]) << 8 | Int(d[m + 11])
                        guard offset + fragment <= total, fragment <= end - m - 12 else { return "handshake fragment outside its message" }
                        m += 12 + fragment
                    }
                case 23: return "application data before keys"
                default: break
                }
            } else if length == 0 {
                return "empty encrypted record"
            }
            i = body + length
        }
        return nil
    }
}
