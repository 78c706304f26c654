import Testing

@Test func bridgeMappingTestsBuilds() {
    #expect(Bool(true))
}
