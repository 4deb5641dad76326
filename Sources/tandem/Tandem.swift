import ArgumentParser
import Foundation
import TandemKernels
import TandemTools
import TandemTraining

@main
struct Tandem: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tandem",
        abstract: "Data-parallel training of transformers on CPU clusters over MPI.",
        discussion: """
        Run under mpirun for several ranks (`mpirun -np 4 tandem train configs/bert-base.yaml`) or alone as a \
        single rank. Exit status is 0 only on success.
        """,
        version: TrainingRun.version,
        subcommands: [Train.self, PrepareText.self, PrepareImages.self, PrepareAudio.self, PrepareTranslation.self, Vocab.self, VocabOverlap.self,
                      Tokenize.self,
                      Translate.self, Bleu.self, Generate.self, Transcribe.self, TokenizeImages.self, Debug.self, Inspect.self, Bench.self, Plot.self])

    /// OpenBLAS's faster kernels for this CPU first (a re-exec with OPENBLAS_CORETYPE when it has a
    /// preference: `BLAS.selectPreferredCore`), then the command line. A command that failed through
    /// `withCommunicator` has printed its error and stopped every rank: it only sets the exit status.
    static func main() {
        BLAS.selectPreferredCore()
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch is CommandFailed {
            exit(withError: ExitCode.failure)
        } catch {
            exit(withError: error)
        }
    }
}

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a model from a YAML config.",
        discussion: "Config keys (any of them also as --set key=value; model.<field> sets an HF config.json field of the preset):\n"
            + TrainingConfig.reference)

    @Argument(help: "The training config (YAML).") var config: String
    @Option(name: .customLong("set"), help: "Override a config key: --set train.steps=20 (repeatable).") var overrides: [String] = []
    @Option(help: "Resume from `auto` (the newest valid checkpoint) or a checkpoint directory.") var resume: String?
    @Option(name: .customLong("init-from"), help: "Start from a transformers checkpoint directory.") var initFrom: String?

    func run() throws {
        try withCommunicator {
            try TrainingRun.run(configPath: config, overrides: overrides, resume: resume, initFrom: initFrom,
                                communicator: $0)
        }
    }
}

struct PrepareText: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prepare-text", abstract: "Text files -> token shards.",
        discussion: "Documents are separated by blank lines, one sentence per line. Under mpirun the files are dealt out to ranks.")
    @Option(help: "vocab.txt or tokenizer.json") var vocab: String
    @Option(help: "Output shard directory.") var out: String
    @Option(name: .customLong("eval-fraction"), help: "Fraction of whole documents held out in OUT-eval.") var evalFraction: Double = 0
    @Option(help: "Seed of the held-out split.") var seed: UInt64 = 0
    @Flag(help: "Keep case and accents (a cased vocabulary).") var cased = false
    @Flag(name: .customLong("line-aligned"), help: "Line i is sentence i (one side of a parallel corpus): no blank lines, token-less lines become [UNK].")
    var lineAligned = false
    @Argument(help: "Input text files.") var inputs: [String]
    func run() throws {
        try withCommunicator {
            try TextCommands.prepare(vocab: vocab, cased: cased, out: out, inputs: inputs, evalFraction: evalFraction,
                                     seed: seed, lineAligned: lineAligned, communicator: $0)
        }
    }
}

struct PrepareImages: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prepare-images", abstract: "A folder tree, CIFAR binary or MNIST IDX files -> image shards.",
        discussion: """
        INPUT is an IDX images file (the labels file beside it by the standard name, or --labels), a CIFAR-10/100 \
        binary batch file or extracted directory (--split picks the batches), or a folder tree ROOT/<class>/<image> \
        of PNG/JPEG files: those are converted to RGB, their shorter side resized to --size with Pillow's BILINEAR \
        filter (antialiased), then centre-cropped to --size x --size (torchvision Resize + CenterCrop). \
        Unreadable images are reported, listed in the manifest and skipped. Under mpirun ranks write \
        alternate shards; the output is identical for any rank count. See docs/prepare-images.md.
        """)
    @Option(help: "Output shard directory.") var out: String
    @Option(help: "Side of the square images of a folder tree (required there).") var size: Int?
    @Option(name: .customLong("shard-size"), help: "Images per shard.") var shardSize: Int = 10_000
    @Option(help: "CIFAR directory: train or test batches.") var split: String = "train"
    @Option(help: "IDX labels file, when not beside the images under the standard name.") var labels: String?
    @Option(help: "Comma-separated class names for IDX labels (default: Fashion-MNIST's names or 0..9).") var classes: String?
    @Option(help: "Decoding threads per rank (default: this node's cores / its ranks).") var threads: Int?
    @Argument(help: "Input file or folder.") var input: String

    func run() throws {
        let classNames = classes.map { $0.split(separator: ",").map(String.init) }
        try withCommunicator {
            try ImageCommands.prepare(input: input, out: out, size: size, shardSize: shardSize, split: split,
                                      labels: labels, classes: classNames, threads: threads, communicator: $0)
        }
    }
}

struct TokenizeImages: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenize-images", abstract: "Image shards -> the visual tokens BEiT's masked image modeling predicts.",
        discussion: """
        TOKENIZER is a VQ-VAE checkpoint directory (a run of a vqvae preset, e.g. configs/vqvae-fmnist.yaml). Every image \
        of --images, normalised as the tokenizer was trained, becomes its grid of codes; --out is a safetensors file \
        with `visual_tokens` (images, grid x grid) I32 and the tokenizer, the grid, the vocabulary and the SHA-256 of \
        the images' manifest.json in its metadata: give it to a BEiT run as data.visual_tokens (or \
        data.eval_visual_tokens). Prints the reconstruction's error and PSNR and how many codes the images use; \
        --picture writes a PNG of originals above their reconstructions.
        """)
    @Option(help: "A VQ-VAE tokenizer checkpoint directory.") var tokenizer: String
    @Option(help: "An image shard directory (prepare-images).") var images: String
    @Option(help: "The visual tokens file to write (safetensors).") var out: String
    @Option(help: "Also write originals above reconstructions to this PNG.") var picture: String?
    @Option(name: .customLong("picture-count"), help: "Images in the picture (cycling through the classes).") var pictureCount: Int = 20
    @Option(name: .customLong("picture-scale"), help: "Picture pixels per image pixel.") var pictureScale: Int = 3
    @Option(help: "Images per forward pass.") var batch: Int = 256
    func run() throws {
        guard batch > 0, pictureCount > 0, pictureScale > 0 else {
            throw ValidationError("--batch, --picture-count and --picture-scale must be positive")
        }
        try withCommunicator { _ in
            try ImageTokenization.run(tokenizerDirectory: tokenizer, images: images, output: out, picture: picture,
                                      pictureCount: pictureCount, pictureScale: pictureScale, batch: batch) {
                FileHandle.standardError.write(Data(($0 + "\n").utf8))
            }
        }
    }
}

struct PrepareAudio: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prepare-audio", abstract: "Audio files -> shards of normalised 16 kHz utterances (wav2vec 2.0's input).",
        discussion: """
        INPUT is an audio file or a folder searched recursively for .wav, .flac, .ogg, .opus, .aiff, .au and .mp3 \
        files, read with libsndfile (channels averaged to mono), resampled to 16 kHz with libsamplerate's \
        SRC_SINC_MEDIUM_QUALITY converter, and normalised per utterance to zero mean and unit variance as \
        Wav2Vec2FeatureExtractor(do_normalize=True) does. --transcripts files hold 'ID<TAB>TEXT' or CMU Sphinx \
        'TEXT (ID)' lines, ID being an audio file's name without its extension; with them every utterance needs \
        one. Unreadable files (not audio, truncated, a sample rate of 0) and files without a transcript are \
        reported by path, listed in the manifest and skipped. Writes OUT/audio-NNNNN.{bin,idx,txt}, \
        utterances.tsv and manifest.json (with SHA-256s).
        """)
    @Option(help: "Output shard directory.") var out: String
    @Option(help: "Transcript file (repeatable).") var transcripts: [String] = []
    @Option(name: .customLong("shard-seconds"), help: "Seconds of audio per shard at most.") var shardSeconds: Double = 3600
    @Option(help: "Decoding threads (default: the cores).") var threads: Int?
    @Argument(help: "Audio files or folders.") var inputs: [String]

    func run() throws {
        try AudioCommands.prepare(inputs: inputs, out: out, transcripts: transcripts, shardSeconds: shardSeconds,
                                  threads: threads)
    }
}

struct PrepareTranslation: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prepare-translation", abstract: "Parallel text from Debian packages -> OUT/{train,valid,test}.{src,tgt}.",
        discussion: """
        en-es: the KJV and the Reina-Valera 1909 (sword-text-kjv, sword-text-sparv, read with diatheke), verses \
        aligned by reference, a book a document. en-hi: LibreOffice's Hindi UI catalogues (libreoffice-l10n-hi) \
        and help pages (libreoffice-help-hi against libreoffice-help-en-us), a catalogue or page a document. \
        Whole documents are held out for valid and test. Writes manifest.json (sources, licences, counts, SHA-256).
        """)
    @Option(help: "en-es or en-hi") var pair: String
    @Option(help: "Output directory.") var out: String
    @Option(help: "Seed of the held-out split.") var seed: UInt64 = 0
    func run() throws {
        try withCommunicator { _ in try TranslationCommands.prepare(pair: pair, out: out, seed: seed) }
    }
}

struct Vocab: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a WordPiece vocabulary (vocab.txt) or a byte-level BPE (GPT-2's: tokenizer.json, vocab.json, merges.txt).")
    @Option(help: "wordpiece or bpe.") var type = "wordpiece"
    @Option(help: "Vocabulary size.") var size: Int
    @Option(help: "Output vocab.txt (wordpiece) or directory (bpe).") var out: String
    @Option(name: .customLong("min-frequency"), help: "Least count of a merged pair.") var minFrequency: Int = 2
    @Flag(help: "Keep case and accents (WordPiece).") var cased = false
    @Flag(help: "RoBERTa's special tokens <s> <pad> </s> <unk> <mask> instead of GPT-2's <|endoftext|> (bpe).") var roberta = false
    @Argument(help: "Input text files.") var inputs: [String]
    func run() throws {
        try withCommunicator { _ in
            try TextCommands.vocab(type: type, size: size, minFrequency: minFrequency, cased: cased, roberta: roberta, out: out,
                                   inputs: inputs)
        }
    }
}

struct VocabOverlap: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vocab-overlap",
        abstract: "The tokens two vocabularies share (SciBERT's vocabulary overlap).",
        discussion: """
        Reads two vocabularies (a WordPiece vocab.txt, or a tokenizer.json of a WordPiece or BPE model), leaves out \
        the special tokens ([PAD] [UNK] [CLS] [SEP] [MASK] [unusedN], <s> </s> <pad> <unk> <mask> <|endoftext|> \
        and a tokenizer.json's special added tokens) and prints each one's size, the shared tokens and the \
        overlap as a percentage of each vocabulary's size: shared / size, SciBERT's definition (Beltagy et al. \
        2019 report 42% between BaseVocab and SciVocab, two vocabularies of one size, where both percentages \
        are one figure).
        """)
    @Argument(help: "The first vocabulary (A): vocab.txt or tokenizer.json.") var a: String
    @Argument(help: "The second vocabulary (B).") var b: String
    func run() throws {
        try withCommunicator { _ in try TextCommands.vocabOverlap(a, b) }
    }
}

struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Stdin lines -> one line of space-separated token ids each.")
    @Option(help: "vocab.txt or tokenizer.json") var vocab: String
    @Flag(help: "Add [CLS] and [SEP].") var special = false
    @Flag(help: "Keep case and accents (a cased vocab.txt).") var cased = false
    func run() throws {
        try withCommunicator { _ in try TextCommands.tokenize(vocab: vocab, cased: cased, special: special) }
    }
}

struct Bleu: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Corpus BLEU of stdin's lines against --ref, as sacreBLEU computes it (13a, exp smoothing).")
    @Option(help: "Reference translations, one a line, aligned with the hypotheses.") var ref: String
    @Option(name: .customLong("by-source-length"),
            help: "The source sentences (aligned): also print BLEU per bucket of source length in words.") var source: String?
    func run() throws {
        try withCommunicator { _ in try TranslationCommands.bleu(reference: ref, bySourceLength: source) }
    }
}

struct Translate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Translate stdin's lines with a seq2seq checkpoint, one translation per line on stdout.",
        discussion: "The checkpoint directory (runs/NAME/step-N) holds config.json, model.safetensors and both vocabularies.")
    @Option(help: "A seq2seq checkpoint directory.") var model: String
    @Option(help: "Beam width (1: greedy decoding).") var beam = 1
    @Option(name: .customLong("length-penalty"), help: "GNMT length penalty alpha for beam search (0: none).") var lengthPenalty = 0.0
    @Option(name: .customLong("max-length"), help: "Target tokens at most (default: twice the source's plus 10).") var maxLength: Int?
    @Option(help: "Draw the attention matrix of one sentence into this SVG file.") var attention: String?
    @Option(name: .customLong("attention-line"), help: "The input line (1-based) whose attention --attention draws.") var attentionLine = 1
    func run() throws {
        var o = Translation.Options()
        o.beam = beam
        o.lengthPenalty = lengthPenalty
        o.maxLength = maxLength
        o.attentionSVG = attention
        o.attentionLine = attentionLine
        try withCommunicator { _ in
            try Translation.run(model: model, options: o) { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }
        }
    }
}

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Continue a prompt with a GPT-2 checkpoint (key/value cache); the text on stdout, tokens/s on stderr.",
        discussion: "The checkpoint directory (runs/NAME/step-N, or a transformers GPT-2 directory) holds config.json, model.safetensors and the run's tokenizer.")
    @Option(help: "A GPT-2 checkpoint directory.") var model: String
    @Option(help: "The text to continue.") var prompt: String
    @Option(name: .customLong("max-new-tokens"), help: "Tokens to generate at most (fewer at the end-of-text token or the context's end).") var maxNewTokens = 100
    @Option(help: "Softmax temperature (0: greedy).") var temperature: Float = 1
    @Option(name: .customLong("top-k"), help: "Sample among the k most likely tokens only (0: all).") var topK = 0
    @Option(name: .customLong("top-p"), help: "Sample among the most likely tokens whose probability reaches p (nucleus; 1: all).") var topP: Float = 1
    @Option(help: "Seed of the sampling.") var seed: UInt64 = 0
    @Flag(name: .customLong("show-ids"), help: "Also print the prompt's and the new tokens' ids on stderr.") var showIDs = false
    func run() throws {
        var o = Generation.Options()
        o.showIDs = showIDs
        o.maxNewTokens = maxNewTokens
        o.sampling.temperature = temperature
        o.sampling.topK = topK
        o.sampling.topP = topP
        o.sampling.seed = seed
        try withCommunicator { _ in
            try Generation.run(model: model, prompt: prompt, options: o) { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }
        }
    }
}

struct Transcribe: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Speech to text with a wav2vec 2.0 CTC checkpoint: \"FILE<TAB>transcript\" per file on stdout.",
        discussion: """
        The checkpoint directory (runs/NAME/step-N, or a transformers Wav2Vec2ForCTC directory) holds config.json, \
        model.safetensors and vocab.json. Files are read through libsndfile (WAV, FLAC, OGG, ...), resampled to 16 kHz \
        and normalised as Wav2Vec2FeatureExtractor does; decoding is greedy CTC. With --references (transcript files \
        as prepare-audio reads them, matched by file name) each line adds its character error rate, and stderr the \
        overall one.
        """)
    @Option(help: "A wav2vec2 CTC checkpoint directory.") var model: String
    @Option(help: "A reference transcript file (\"ID<TAB>text\" or \"text (ID)\" lines); repeat for several.") var references: [String] = []
    @Argument(help: "Audio files.") var files: [String]
    func run() throws {
        try withCommunicator { _ in
            try Transcription.run(model: model, files: files, references: references) { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }
        }
    }
}

struct Debug: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Reference outputs and gradients for parity checks.",
                                                    subcommands: [Forward.self, Grads.self])

    /// What both subcommands read and write.
    struct Files: ParsableArguments {
        @Option(help: "A transformers model directory (its config.json's model_type picks the family).") var model: String
        @Option(help: "A batch file (safetensors).") var batch: String
        @Option(help: "Output safetensors file.") var out: String
    }

    struct Forward: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Write a model's outputs for a batch file (HF output names).")
        @OptionGroup var files: Files
        func run() throws { try DebugCommands.forward(model: files.model, batch: files.batch, out: files.out) }
    }

    struct Grads: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Write the loss and one gradient per parameter (dropout off).")
        @OptionGroup var files: Files
        func run() throws { try DebugCommands.grads(model: files.model, batch: files.batch, out: files.out) }
    }
}

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print a checkpoint's tensors, step, config and manifest check.")
    @Argument(help: "A checkpoint directory.") var checkpoint: String
    func run() throws {
        let inspection = CheckpointInspector.inspect(checkpoint)
        print(inspection.report, terminator: "")
        if !inspection.isValid { throw ExitCode.failure }
    }
}

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmarks that print figures and MFU.",
        discussion: """
        kernels: matrix products next to raw cblas_sgemm (also the bf16 GEMM of train.precision=bf16, on \
        CPUs with AVX512_BF16) and memory-bound kernels next to memcpy. \
        allreduce: hierarchical and plain gradient reduction from 1 to 440 MB and the gradient wait of a \
        BERT-base-sized backward (run under mpirun). step: median training step of --config (samples/s, \
        tokens/s, MFU, peak memory, time breakdown; under mpirun the aggregate over ranks). images: the \
        image pipeline per core: decoding and resizing the PNG/JPEG files of --input, then the training \
        augmentation and the evaluation view.
        """)
    enum Kind: String, ExpressibleByArgument, CaseIterable { case kernels, allreduce, step, images }
    @Argument(help: "kernels | allreduce | step | images") var kind: Kind
    @Option(help: "Image files or folders to decode (images, repeatable).") var input: [String] = []
    @Option(help: "Side images are resized to (images).") var size: Int = 224
    @Option(help: "Training config (for `step`).") var config: String?
    @Option(name: .customLong("set"), help: "Override a config key (for `step`, repeatable).") var overrides: [String] = []
    @Option(help: "Repeats per measurement (kernels) or timed steps (step).") var repeats: Int = 5
    @Option(help: "Warm-up steps (step).") var warmup: Int = 3
    @Flag(help: "Time every op of rank 0's tape and every matrix product in the timed steps, and print a table by operation and one by product kernel (step).")
    var profile = false
    @Option(help: "Benchmark groups, comma-separated (kernels): gemm, bf16, libraries, memory, adamw, recurrent; all by default.")
    var sections: String?
    @Option(help: "Sizes in MB, comma-separated (allreduce).") var sizes: String = "1,4,16,64,256,440"
    @Option(help: "Tokens per rank of the simulated BERT-base backward (allreduce; 1024 = 8 sequences of 128).")
    var tokens: Int = 1024

    func run() throws {
        switch kind {
        case .kernels:
            var chosen = Set(KernelBenchmark.Section.allCases)
            if let sections {
                chosen = []
                for name in sections.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) {
                    guard let section = KernelBenchmark.Section(rawValue: name) else {
                        throw ValidationError("--sections: unknown group '\(name)' (gemm, bf16, libraries, memory, adamw, recurrent)")
                    }
                    chosen.insert(section)
                }
            }
            Benchmarks.kernels(repeats: repeats, sections: chosen) { print($0); fflush(stdout) }
        case .allreduce:
            let list = sizes.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard !list.isEmpty, list.allSatisfy({ $0 > 0 }) else { throw ValidationError("--sizes: expected MB values such as 1,4,440") }
            try withCommunicator {
                Benchmarks.allReduce(sizesMB: list, tokens: tokens, communicator: $0) { print($0); fflush(stdout) }
            }
        case .images:
            try ImageBenchmark.run(inputs: input, size: size, seconds: 1) { print($0); fflush(stdout) }
        case .step:
            guard let config else { throw ValidationError("bench step needs --config CONFIG.yaml") }
            try withCommunicator {
                try Benchmarks.step(configPath: config, overrides: overrides, warmup: warmup, steps: repeats,
                                    profile: profile, communicator: $0) { print($0); fflush(stdout) }
            }
        }
    }
}

struct Plot: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Loss, accuracy and throughput curves from a metrics file, as SVG; or several runs compared.",
        discussion: """
        One file: six panels (training loss, evaluation losses and accuracies, throughput, step time over \
        ranks and by phase). Several files: each run's smoothed training loss and each evaluation metric, \
        one curve per run, named by --label (default: the directory of each file).
        """)
    @Argument(help: "Metrics JSONL files (runs/NAME/metrics.jsonl).") var metrics: [String]
    @Option(help: "Output SVG file.") var out: String
    @Option(name: .customLong("label"), help: "A name for each run, in the order of the files (several files).") var labels: [String] = []
    func validate() throws {
        if metrics.isEmpty { throw ValidationError("give at least one metrics file") }
    }
    func run() throws {
        do { try MetricsPlot.write(metricsPaths: metrics, labels: labels, out: out) } catch {
            FileHandle.standardError.write(Data("tandem plot: error: \(error)\n".utf8))
            throw ExitCode.failure
        }
        print("wrote \(out)")
    }
}
