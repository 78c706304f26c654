import Testing

@Test func bridgeRuntimeTestsBuilds() {
    #expect(Bool(true))
}
