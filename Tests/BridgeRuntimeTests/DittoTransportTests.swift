import Testing

@testable import BridgeRuntime

@Suite("The Ditto side's tokens as the MQTT client carries them")
struct DittoTransportTests {
    @Test("Answer, spool and memory tokens survive the MQTT client's UInt64 and stay apart")
    func tokensRoundTrip() {
        let tokens: [UplinkToken] = [.answer, .spooled(1), .spooled(42), .spooled(1 << 62), .memory(1), .memory(42)]
        for token in tokens {
            #expect(UplinkToken(mqttToken: token.mqttToken) == token)
        }
        #expect(Set(tokens.map(\.mqttToken)).count == tokens.count)
        #expect(UplinkToken.answer.mqttToken == 0)
    }
}
