// A stand-alone `tandem tokenize` for the comparison scripts, built by build_swift_tokenize.sh from the
// TandemData sources until the executable has the subcommand: reads stdin as bytes, writes one line of
// space-separated ids per input line, and reports throughput on stderr.
import Foundation

let arguments = CommandLine.arguments
guard arguments.count >= 2 else {
    FileHandle.standardError.write("usage: swift-tokenize VOCAB.txt|tokenizer.json [--cased] [--special]\n".data(using: .utf8)!)
    exit(2)
}
let tokenizer = try WordPieceTokenizer(path: arguments[1], cased: arguments.contains("--cased"))
let special = arguments.contains("--special")
let input = FileHandle.standardInput.readDataToEndOfFile()
var output = [UInt8]()
output.reserveCapacity(input.count * 2)
var ids = [Int32]()
let start = Date()
input.withUnsafeBytes { (all: UnsafeRawBufferPointer) in
    var lineStart = 0
    while lineStart < all.count {
        var end = lineStart
        while end < all.count && all[end] != 0x0A { end += 1 }
        ids.removeAll(keepingCapacity: true)
        if special { ids.append(tokenizer.clsID) }
        tokenizer.appendIDs(utf8: UnsafeRawBufferPointer(rebasing: all[lineStart..<end]), to: &ids)
        if special { ids.append(tokenizer.sepID) }
        for (k, id) in ids.enumerated() {
            if k > 0 { output.append(0x20) }
            output += String(id).utf8
        }
        output.append(0x0A)
        lineStart = end + 1
    }
}
let seconds = Date().timeIntervalSince(start)
FileHandle.standardOutput.write(Data(output))
FileHandle.standardError.write(String(format: "swift-tokenize: %.1f MB in %.3f s: %.1f MB/s\n",
                                      Double(input.count) / 1e6, seconds, Double(input.count) / 1e6 / seconds).data(using: .utf8)!)
