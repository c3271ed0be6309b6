import Testing
@testable import VideoPhone

@Suite struct TURNCAConfigTests {
    @Test func aTURNServerMayNameTheCAFileForItsCertificate() throws {
        let c = try DeviceConfig.parse("""
        [device]
        name = "door"
        [[turn]]
        url = "turns:192.0.2.10:5349"
        username = "vp"
        credential = "secret"
        ca = "/etc/videophone/turn-ca.pem"
        [[turn]]
        url = "turn:192.0.2.10:3478"
        username = "vp"
        credential = "secret"
        """, file: "cfg.toml")
        #expect(c.turnServers.count == 2)
        #expect(c.turnServers[0].transport == "tls")
        #expect(c.turnServers[0].ca == "/etc/videophone/turn-ca.pem")
        #expect(c.turnServers[1].ca == nil)
    }

    @Test func theCAMustBeAString() {
        #expect(throws: ConfigError.self) {
            _ = try DeviceConfig.parse("[[turn]]\nurl = \"turns:192.0.2.10:5349\"\nusername = \"vp\"\ncredential = \"x\"\nca = 3\n", file: "cfg.toml")
        }
    }
}
