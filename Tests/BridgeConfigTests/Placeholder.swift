import Testing

@Test func bridgeConfigTestsBuilds() {
    #expect(Bool(true))
}
