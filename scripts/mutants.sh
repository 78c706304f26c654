#!/usr/bin/env bash
# Mutation check: applies each mutant below (one small textual change of the kind a real bug makes), builds
# (`swift build --build-tests`), runs the tests that should catch it, and reverts the file, always (also on
# Ctrl-C or a failed build). Prints killed/survived per mutant and a summary; exit 1 when any survived.
#
# Not part of CI: every mutant costs an incremental build plus its tests (tens of minutes in all). Run it on a
# committed tree before resolving an issue; it refuses to start when a file it mutates has uncommitted changes.
#
#   scripts/mutants.sh            every mutant
#   scripts/mutants.sh M06 M28    only these
#
# The list was chosen before the script was first run (only filters that selected no test were corrected
# before that run: Swift Testing names tests by suite and function, not by file). Format, per mutant:
#   @ <id> <file> :: <swift test --filter regex>
#   - <exact old text, found exactly once in the file>
#   + <new text>
# DataPathTests are never named here (minutes of both cores each).
set -uo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=/dev/null
source scripts/setup.sh >/dev/null
# setup.sh turns on `set -e`; here a failing command (a test run, a grep that finds nothing) is an answer.
set +e

MUTANTS=$(cat <<'LIST'
@ M01 Sources/Mosquitto/Errors.swift :: MosquittoTests|RestoredSubscriptionReadinessTests
- public var isFailure: Bool { rawValue >= 0x80 }
+ public var isFailure: Bool { rawValue > 0x80 }
@ M02 Sources/Mosquitto/ClientCore.swift :: RestoredSubscriptionReadinessTests
- if granted.contains(where: \.isFailure) {
+ if granted.contains(where: \.isFailure) && granted.isEmpty {
@ M03 Sources/Mosquitto/ClientCore.swift :: MosquittoTests.ResilienceTests
- delay = min(delay, max(configuration.reconnect.maximum, initial))
+ delay = max(delay, max(configuration.reconnect.maximum, initial)) * 20
@ M04 Sources/MQTT/MQTTTopic.swift :: MQTTTests|MosquittoTests|BridgeConfigTests
- return levels.count == topicLevels.count
+ return levels.count <= topicLevels.count
@ M05 Sources/MQTT/MQTTTopic.swift :: MQTTTests|MosquittoTests|BridgeConfigTests
- let matching = rest[rest.index(after: separator)...]
+ let matching = rest
@ M06 Sources/DittoProtocol/EnvelopeValidation.swift :: DittoProtocolTests|PromiseTests
- if subject.utf16.count > 256 || subject.unicodeScalars.contains(where:
+ if subject.utf16.count > 2560 || subject.unicodeScalars.contains(where:
@ M07 Sources/DittoProtocol/DittoHeaders.swift :: DittoProtocolTests|PromiseTests
- entries.reduce(0) { $0 + $1.name.utf16.count + $1.value.utf16.count }
+ entries.reduce(0) { $0 + $1.name.utf16.count + $1.value.utf8.count }
@ M08 Sources/DittoProtocol/ThingID.swift :: DittoProtocolTests
- guard namespace.utf16.count + 1 + name.utf16.count <= Self.maximumLength else {
+ guard namespace.utf16.count + 1 + name.utf16.count < Self.maximumLength else {
@ M09 Sources/DittoProtocol/AcknowledgementLabel.swift :: DittoProtocolTests
- guard count >= 3 && count <= maximumLength else { return false }
+ guard count >= 1 && count <= maximumLength else { return false }
@ M10 Sources/DittoProtocol/Envelope.swift :: DittoProtocolTests
- guard let hour = digits(2), hour < 24, expect(":")
+ guard let hour = digits(2), hour < 25, expect(":")
@ M11 Sources/BridgeConfig/Loader.swift :: BridgeConfigTests|CheckPromiseTests
- if let rendered = try? settings.publishTopic.render(sample), settings.subscribeFilter.match(rendered) != nil {
+ if let rendered = try? settings.publishTopic.render(sample), settings.subscribeFilter.match(rendered) != nil, rendered.isEmpty {
@ M12 Sources/BridgeConfig/Loader.swift :: BridgeConfigTests|CheckPromiseTests
- if passwordKeys.count > 1, let second = m[passwordKeys[1]] {
+ if passwordKeys.count > 2, let second = m[passwordKeys[1]] {
@ M13 Sources/BridgeConfig/Loader.swift :: BridgeConfigTests
- if let rendered = try? settings.replyTopic.render(sample), settings.subscribeFilter.match(rendered) == nil {
+ if let rendered = try? settings.replyTopic.render(sample), settings.subscribeFilter.match(rendered) == nil, rendered.isEmpty {
@ M14 Sources/MQTT/MQTTTopic.swift :: MQTTTests|BridgeConfigTests|BridgeMappingTests
- !text.utf8.contains { $0 == plus || $0 == hash || $0 == 0 }
+ !text.utf8.contains { $0 == plus || $0 == 0 }
@ M15 Sources/BridgeConfig/ThingIDRules.swift :: BridgeConfigTests
- guard let colon = id.firstIndex(of: ":") else { return "it has no ':' between namespace and name" }
+ guard let colon = id.firstIndex(of: ":") else { return nil }
@ M16 Sources/BridgeMapping/PendingTable.swift :: BridgeMappingTests
- self.capacity = max(capacity, 1)
+ self.capacity = max(capacity, 1) + 1
@ M17 Sources/BridgeMapping/DownlinkMapper.swift :: BridgeMappingTests
- public static let maximumTimeout: Duration = .seconds(60)
+ public static let maximumTimeout: Duration = .seconds(600)
@ M18 Sources/BridgeMapping/PayloadReader.swift :: BridgeMappingTests
- guard payload.count <= maximumPayloadSize else {
+ guard payload.count <= maximumPayloadSize + 1 else {
@ M19 Sources/BridgeMapping/PendingTable.swift :: BridgeMappingTests
- while let first = deadlines.min, first.deadline <= now {
+ while let first = deadlines.min, first.deadline < now - .seconds(1) {
@ M20 Sources/BridgeRuntime/DataPlane.swift :: BridgeRuntimeTests
- if let route { metadata["rule"] = "\(route.ruleName)" }
+ if let route { metadata["rule.name"] = "\(route.ruleName)" }
@ M21 Sources/BridgeRuntime/BridgeService.swift :: BridgeRuntimeTests.ReloadTests
- metrics.reload(unchanged == old ? .unchanged : .applied)
+ metrics.reload(.applied)
@ M22 Sources/BridgeRuntime/BridgeService.swift :: RestoredSubscriptionReadinessTests|readyFollowsTheBrokers
- readiness.setConnected(side, true)
+ readiness.setConnected(side, false)
@ M23 Sources/BridgeRuntime/Spool.swift :: BridgeRuntimeTests.SpoolTests
- ackedThrough = max(cursor ?? 0, oldest &- 1)
+ ackedThrough = max(cursor ?? 0, oldest)
@ M24 Sources/BridgeRuntime/DataPlane.swift :: BridgeRuntimeTests.UplinkTests|BridgeRuntimeTests.MetricsTests
- metrics.increment("uplink.dropped.\(error.kind.rawValue)")
+ metrics.increment("uplink.dropped")
@ M25 Sources/BridgeRuntime/DataPlane.swift :: BridgeRuntimeTests.ReloadTests
- topics.removeAll()
+ topics.reserveCapacity(0)
@ M26 Sources/BridgeOperations/SystemdNotifier.swift :: OperationsTests.SystemdNotifierTests|WatchdogPeriodTests
- let period = interval / 2
+ let period = interval
@ M27 Sources/BridgeOperations/SystemdNotifier.swift :: OperationsTests.SystemdNotifierTests
- case .watchdog: return "WATCHDOG=1"
+ case .watchdog: return "WATCHDOG=0"
@ M28 Sources/BridgeOperations/JSONLogHandler.swift :: OperationsTests.JSONLogHandlerTests
- case "\n": out += "\\n"
+ case "\n": out += "\n"
@ M29 Sources/BridgeOperations/JSONLogHandler.swift :: OperationsTests.JSONLogHandlerTests|OperationsPromiseTests
- public static let thingID = "thing-id"
+ public static let thingID = "thing.id"
@ M30 Sources/ditto-mqtt-bridge/DittoMQTTBridge.swift :: EndToEndTests.BridgeSecurityEndToEndTests|CheckPromiseTests
- if !report.ok { throw ExitCode(1) }
+ if !report.ok { throw ExitCode(0) }
@ M31 Sources/ditto-mqtt-bridge/DittoMQTTBridge.swift :: readyFollowsTheBrokers|countersEqualWhatHappened
- let isAlive: @Sendable () -> Bool = { [bridge] in bridge.secondsSinceEventLoopTurn < 10 }
+ let isAlive: @Sendable () -> Bool = { [bridge] in bridge.secondsSinceEventLoopTurn > 10 }
@ M32 Sources/ditto-mqtt-bridge/DittoMQTTBridge.swift :: reloadValidConfig|reloadKeepsTheAnswerPath
- await bridge.reload(new)
+ _ = new
LIST
)

ids=()
files=()
filters=()
olds=()
news=()
while IFS= read -r line; do
    case "$line" in
        "@ "*)
            read -r _ id file _ filter <<<"$line"
            ids+=("$id"); files+=("$file"); filters+=("$filter"); olds+=(""); news+=("")
            ;;
        "- "*) olds[${#olds[@]}-1]="${line#- }" ;;
        "+ "*) news[${#news[@]}-1]="${line#+ }" ;;
    esac
done <<<"$MUTANTS"

selected=("$@")
wanted() {
    [ ${#selected[@]} -eq 0 ] && return 0
    local s
    for s in "${selected[@]}"; do [ "$s" = "$1" ] && return 0; done
    return 1
}

for file in $(printf '%s\n' "${files[@]}" | sort -u); do
    if ! git diff --quiet -- "$file" || ! git diff --cached --quiet -- "$file"; then
        echo "mutants: $file has uncommitted changes; commit them first (this script rewrites and restores it)" >&2
        exit 2
    fi
done

work=$(mktemp -d)
saved=""
restore() {
    if [ -n "$saved" ] && [ -f "$work/saved" ]; then
        cp "$work/saved" "$saved"
        saved=""
    fi
}
# A mutated file goes back to its saved copy on every way out: normal end, error, Ctrl-C, SIGTERM.
trap 'restore; rm -rf "$work"' EXIT
trap 'restore; echo "mutants: interrupted; source restored" >&2; exit 130' INT TERM

killed=0
survived=0
invalid=0
survivors=()
for i in "${!ids[@]}"; do
    id=${ids[$i]} file=${files[$i]} filter=${filters[$i]}
    wanted "$id" || continue
    cp "$file" "$work/saved"
    saved=$file
    if ! OLD=${olds[$i]} NEW=${news[$i]} python3 - "$file" <<'EOF'
import os, sys
path = sys.argv[1]
old, new = os.environ["OLD"], os.environ["NEW"]
text = open(path, encoding="utf-8").read()
count = text.count(old)
if count != 1:
    sys.exit(f"the old text occurs {count} times")
open(path, "w", encoding="utf-8").write(text.replace(old, new))
EOF
    then
        restore
        echo "$id INVALID   $file (old text not found exactly once)"
        invalid=$((invalid + 1))
        continue
    fi
    start=$SECONDS
    if ! swift build --build-tests >"$work/build.log" 2>&1; then
        restore
        echo "$id KILLED    $file (does not build) [$((SECONDS - start)) s]"
        killed=$((killed + 1))
        continue
    fi
    if swift test --skip-build --filter "$filter" >"$work/test.log" 2>&1; then
        if ! grep -qE 'Test run with [1-9][0-9]* tests?' "$work/test.log"; then
            restore
            echo "$id INVALID   $file :: $filter (the filter selects no test)"
            invalid=$((invalid + 1))
            continue
        fi
        result=SURVIVED
        survived=$((survived + 1))
        survivors+=("$id")
    else
        result=KILLED
        killed=$((killed + 1))
    fi
    restore
    failing=$(grep -m1 -oE '✘ Test .{0,160}recorded an issue( at [^ ]+)?' "$work/test.log" || true)
    printf '%s %-9s %s :: %s [%d s]%s\n' "$id" "$result" "$file" "$filter" $((SECONDS - start)) \
        "${failing:+ (first failure: $failing)}"
done
# The tree's own build again, so that what is left in .build matches the sources.
swift build --build-tests >/dev/null 2>&1 || true

total=$((killed + survived))
echo "summary: $killed of $total killed, $survived survived${survivors[*]:+ (${survivors[*]})}, $invalid invalid"
if ! git diff --quiet; then
    echo "mutants: the tree is modified after the run:" >&2
    git diff --stat >&2
    exit 2
fi
[ "$survived" -eq 0 ] && [ "$invalid" -eq 0 ]
