import ArgumentParser
import BootTrace
import Foundation

struct Trace: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Work with call traces (strata serve --trace) and boot scripts.",
        subcommands: [Convert.self, Check.self])

    struct Convert: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Turn a call trace into a path-based boot script (Docs/BOOT-TRACE.md).",
            discussion: """
                Paths are rebuilt from the replies the client got (MNT, LOOKUP, CREATE, READDIRPLUS...); \
                calls on handles no reply gave are left out and counted on stderr.
                """)

        @Argument(help: "The call trace written by 'strata serve --trace FILE'.")
        var trace: String

        @Option(name: .shortAndLong, help: "Write the boot script here (default: stdout).")
        var output: String?

        @Option(name: .long, help: "The client address whose calls to keep (needed when the trace holds several).")
        var client: String?

        @Option(name: .long, help: "A comment line for the script's header (repeatable): how it was recorded.")
        var note: [String] = []

        func run() throws {
            let trace = try readText(self.trace, unreadable: "cannot read the call trace \(self.trace)")
            let report: BootScriptRecorder.Report
            do {
                let calls = try BootScriptRecorder.parseTrace(trace, source: self.trace)
                report = try BootScriptRecorder.script(from: calls, client: self.client, notes: self.note)
            } catch {
                throw RuntimeError("\(error)")
            }
            let text = report.script.text
            // The script must read back as written: a converter bug is caught here, not in a replay.
            do {
                _ = try BootScript.parse(text, source: self.output ?? "converted script")
            } catch {
                throw RuntimeError("the converted script does not parse (a converter bug): \(error)")
            }
            if let output {
                try text.write(toFile: output, atomically: true, encoding: .utf8)
            } else {
                print(text, terminator: "")
            }
            var summary = "\(report.script.calls.count) calls"
            for (reason, count) in report.skipped.sorted(by: { $0.key < $1.key }) {
                summary += "; left out \(count): \(reason)"
            }
            printErrors([summary])
        }
    }

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Parse a boot script and print what it holds; errors name the line.")

        @Argument(help: "The boot script.")
        var script: String

        func run() throws {
            let parsed = try readBootScript(self.script, unreadable: "cannot read \(self.script)")
            var counts: [String: Int] = [:]
            for call in parsed.calls { counts[call.operation.keyword, default: 0] += 1 }
            let concurrent = parsed.calls.filter { !$0.overlapping.isEmpty }.count
            let maxInFlight = (parsed.calls.map(\.overlapping.count).max() ?? 0) + 1
            print(
                "\(parsed.calls.count) calls over \(String(format: "%.1f", parsed.calls.last?.startMilliseconds ?? 0)) ms; \(concurrent) started while others ran (up to \(maxInFlight) at once)"
            )
            print(counts.sorted { $0.value > $1.value }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        }
    }
}
