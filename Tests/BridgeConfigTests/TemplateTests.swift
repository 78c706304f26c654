@testable import BridgeConfig
import Testing

struct TemplateTests {
    @Test func rendersPlaceholdersAndLiterals() throws {
        let t = try Template("{namespace}:{deviceId}")
        #expect(try t.render(["namespace": "org.example", "deviceId": "dev-1"]) == "org.example:dev-1")
        #expect(t.placeholders == ["namespace", "deviceId"])
        #expect(!t.isConstant)
    }

    @Test func appliesTransformsLeftToRight() throws {
        let t = try Template("{id|lower|replace('_','-')|prefix('dev-')|suffix('.x')}")
        #expect(try t.render(["id": "AB_C"]) == "dev-ab-c.x")
        #expect(try Template("{id|upper}").render(["id": "ab"]) == "AB")
    }

    @Test func defaultFillsAMissingValueOnly() throws {
        let t = try Template("{site|default('main')}")
        #expect(try t.render([:]) == "main")
        #expect(try t.render(["site": "north"]) == "north")
    }

    @Test func missingValueThrows() throws {
        let t = try Template("a/{b}")
        #expect(throws: TemplateError(.missingValue("b"), offset: 2)) { try t.render([:]) }
    }

    @Test func escapesAreLiteral() throws {
        let t = try Template("\\{x\\}-{id}\\\\")
        #expect(try t.render(["id": "1"]) == "{x}-1\\")
        #expect(try Template("{id|prefix('it\\'s ')}").render(["id": "a"]) == "it's a")
        #expect(try Template("{id|replace('|','}')}").render(["id": "a|b"]) == "a}b")
    }

    @Test(arguments: [
        ("{a", TemplateError.Kind.unclosedPlaceholder, 0),
        ("a}", .unmatchedClosingBrace, 1),
        ("x{}", .emptyPlaceholder, 1),
        ("{1abc}", .invalidPlaceholderName("1abc"), 1),
        ("{{ thing:id }}", .dittoPlaceholderSyntax, 0),
        ("ab{x|shout}", .unknownTransform("shout", suggestion: nil), 5),
        ("{x|prefix}", .invalidTransformArguments("prefix", expected: "one quoted argument, e.g. prefix('x')"), 3),
        ("{x|lower('a')}", .invalidTransformArguments("lower", expected: "no arguments"), 3),
        ("{x|replace('a')}", .invalidTransformArguments("replace", expected: "two quoted arguments, e.g. replace('a','b')"), 3),
        ("{x|prefix(a)}", .invalidTransformArguments("prefix", expected: "one quoted argument, e.g. prefix('x')"), 3),
        ("abc\\", .danglingEscape, 3),
    ] as [(String, TemplateError.Kind, Int)])
    func syntaxErrorsCarryTheirOffset(_ text: String, _ kind: TemplateError.Kind, _ offset: Int) {
        #expect(throws: TemplateError(kind, offset: offset)) { try Template(text) }
    }

    @Test func headerPlaceholdersAreNamesToo() throws {
        let t = try Template("{header:x-trace}/{deviceId}")
        #expect(t.placeholders == ["header:x-trace", "deviceId"])
        #expect(try t.render(["header:x-trace": "t1", "deviceId": "d"]) == "t1/d")
    }

    @Test func errorsReadWell() {
        #expect(TemplateError(.missingValue("deviceId")).description == "no value for placeholder {deviceId}")
        #expect(
            TemplateError(.unknownTransform("lowr", suggestion: "lower")).description
                == "unknown transform 'lowr'; did you mean 'lower'?")
    }
}

