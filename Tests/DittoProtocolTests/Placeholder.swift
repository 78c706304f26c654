import Testing

@Test func dittoProtocolTestsBuilds() {
    #expect(Bool(true))
}
