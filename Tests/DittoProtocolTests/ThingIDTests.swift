import Testing

@testable import DittoProtocol

@Suite struct ThingIDTests {
    @Test(arguments: [
        "org.eclipse.ditto:smartcoffee", ":empty-namespace", "ns:name:with:colons", "ns:名前", "ns:😀", "a:b",
        "my-ns.sub_1:name with spaces %+", "ns:" + String(repeating: "x", count: 253),
    ])
    func valid(_ id: String) throws {
        let thingID = try ThingID(id)
        #expect(thingID.description == id)
    }

    @Test(arguments: [
        "ns:über", "ns:café", "no-colon", "ns:", "ns:a/b", "1ns:name", "ns.:name", "n$:name", "ns:tab\there",
        "ns:\u{7F}", "ns:" + String(repeating: "x", count: 254), "_:_", "ns-:x", ".ns:x",
    ])
    func invalid(_ id: String) throws {
        let error = try #require(throws: DittoError.self) { try ThingID(id) }
        #expect(error.error == "things:id.invalid")
        #expect(error.status == 400)
        #expect(error.message == "Thing ID '\(id)' is not valid!")
    }

    @Test func lengthLimitIsWholeID() throws {
        let name256 = String(repeating: "n", count: 255)
        _ = try ThingID(namespace: "", name: name256)  // ":" + 255 = 256
        let error = try #require(throws: DittoError.self) { try ThingID(namespace: "", name: name256 + "n") }
        #expect(error.description == "Not allowed to exceed length of 256.")
    }

    @Test func namespaces() {
        #expect(ThingID.isValidNamespace(""))
        #expect(ThingID.isValidNamespace("org.eclipse.ditto"))
        #expect(ThingID.isValidNamespace("a-b.c_d9"))
        #expect(!ThingID.isValidNamespace("a:b"))
        #expect(!ThingID.isValidNamespace("a/b"))
        #expect(!ThingID.isValidNamespace("a..b"))
        #expect(!ThingID.isValidNamespace("9a"))
        #expect(!ThingID.isValidNamespace("ä"))
    }
}
