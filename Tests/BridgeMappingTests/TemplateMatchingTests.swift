import BridgeConfig
import BridgeMapping
import DittoProtocol
import Foundation
import Testing

/// `Template.match`: the inverse of rendering, with the shortcuts the data path takes.
struct TemplateMatchingTests {
    @Test func constantTemplate() throws {
        let t = try Template("alarm")
        #expect(t.isConstant)
        #expect(try t.render([:]) == "alarm")
        #expect(t.match("alarm") == [:])
        #expect(t.match("alarms") == nil)
    }

    @Test func matchSplitsAThingIDAtTheFirstColon() throws {
        let t = try Template("{namespace}:{deviceId}")
        #expect(t.match("org.example:dev:1") == ["namespace": "org.example", "deviceId": "dev:1"])
        #expect(t.match("no-colon") == nil)
        #expect(t.match(":name") == nil)  // placeholders take at least one character
    }

    @Test func matchHonoursFixedValuesAfterTransforms() throws {
        let t = try Template("{namespace}:{deviceId}")
        #expect(t.match("org.example:d1", fixed: ["namespace": "org.example"]) == ["namespace": "org.example", "deviceId": "d1"])
        #expect(t.match("com.other:d1", fixed: ["namespace": "org.example"]) == nil)
        let upper = try Template("{site|upper}-{id}")
        #expect(upper.match("NORTH-7", fixed: ["site": "north"]) == ["site": "north", "id": "7"])
    }

    @Test func matchInvertsTransforms() throws {
        let prefixed = try Template("org.example:{id|prefix('room-')}")
        #expect(prefixed.match("org.example:room-kitchen") == ["id": "kitchen"])
        #expect(prefixed.match("org.example:kitchen") == nil)
        let lower = try Template("org.example:{id|lower}")
        #expect(lower.match("org.example:abc") == ["id": "abc"])
        #expect(lower.match("org.example:Abc") == nil)  // rendering never produces upper case here
        let replaced = try Template("x:{id|replace('_','-')}")
        #expect(replaced.match("x:a-b") == ["id": "a_b"])
        let suffixed = try Template("x:{id|suffix('.dev')}")
        #expect(suffixed.match("x:pump.dev") == ["id": "pump"])
        #expect(suffixed.match("x:.dev") == nil)
    }

    @Test func repeatedPlaceholdersMustAgree() throws {
        let t = try Template("{a}-{a}")
        #expect(t.match("x-x") == ["a": "x"])
        #expect(t.match("x-y") == nil)
    }

    @Test func matchBacktracksOverRepeatedLiterals() throws {
        let t = try Template("{a}-{b}-end")
        #expect(t.match("1-2-3-end") == ["a": "1", "b": "2-3"])
        // A binding made on a path that failed is undone: `b` is bound to "2" while `a` is "1", and must be
        // free again when `a` becomes "1-2".
        let repeated = try Template("{a}-{b}-{b}")
        #expect(repeated.match("1-2-3-3") == ["a": "1-2", "b": "3"])
    }

    @Test func adversarialInputEndsQuickly() throws {
        let t = try Template("{a}-{b}-{c}-{d}-{e}!")
        #expect(t.match(String(repeating: "-", count: 256)) == nil)
        // Passes the prefix/suffix shortcut, so the search itself has to give up.
        #expect(t.match(String(repeating: "-", count: 255) + "!", fixed: ["e": "zzz"]) == nil)
        #expect(t.match("a-b-c-d-e!") == ["a": "a", "b": "b", "c": "c", "d": "d", "e": "e"])
    }

    @Test func matchedValuesRenderBackToTheSameText() throws {
        let t = try Template("{namespace}:{site}.{id|lower}")
        for text in ["org.example:north.pump-1", "a:b.c", "org:x.y.z"] {
            let values = try #require(t.match(text))
            #expect(try t.render(values) == text)
        }
    }

    /// `match` tries a plain template's first candidate on bytes before it searches; both must always agree.
    /// Every template of up to three placeholders (names may repeat) with these literals between and around them,
    /// on every text of up to five characters from the same alphabet, with and without a fixed value.
    @Test func bytePathAgreesWithTheSearch() throws {
        var templates: [String] = []
        func extend(_ source: String, placeholders: Int) {
            for name in ["a", "b"] {
                let next = source + "{\(name)}"
                for around in ["", "-", ":", "--"] { templates.append(next + around) }
                guard placeholders < 3 else { continue }
                for literal in ["-", ":", "--"] { extend(next + literal, placeholders: placeholders + 1) }
            }
        }
        for lead in ["", "-", "--"] { extend(lead, placeholders: 1) }
        var texts = [""]
        var frontier = [""]
        for _ in 0..<5 {
            frontier = frontier.flatMap { text in ["a", "-", ":"].map { text + $0 } }
            texts += frontier
        }
        var agreed = 0
        for source in templates {
            let template = try Template(source)
            for text in texts {
                for fixed in [[:], ["b": "a-"]] {
                    let fast = template.match(text, fixed: fixed)
                    #expect(fast == template.invert(text, fixed: fixed), "\(source) on '\(text)' with \(fixed)")
                    if fast != nil { agreed += 1 }
                }
            }
        }
        // The cases where a match exists are the ones the byte path can take; enough of them must be there.
        #expect(templates.count == 1_032 && texts.count == 364 && agreed > 3_000, "\(templates.count) \(texts.count) \(agreed)")
    }
}
