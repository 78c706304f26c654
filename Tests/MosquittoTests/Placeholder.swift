import Testing

@Test func mosquittoTestsBuilds() {
    #expect(Bool(true))
}
