import TandemCollectives
import TandemKernels

// The sections of a training config (DESIGN.md "Training config": the keys there are a contract, the
// others are ours). Each property's initial value is the key's default; an optional without one is
// unset until the YAML or `--set` gives it. `TrainingConfig` reads the YAML into these once.

/// `model:`: a preset name and any HF config.json fields of the model family (`model.<field>`), which
/// the family checks (`ModelFamily`).
public struct ModelSection {
    public var preset: String?
    /// `model.<field>` values other than `model.preset`.
    public var fields: [String: ConfigValue] = [:]
    public init() {}
}

/// `data:`: where the samples come from and how they are cut, masked and augmented.
public struct DataSection: ConfigSection {
    public var train: String?
    public var eval: String?
    public var vocab: String?
    public var cased = false
    public var maxPredictions: Int?
    public var maskProb = 0.15
    public var shortSeqProb = 0.1
    public var wholeWordMasking = false
    public var maxNgram: Int?
    public var spanP = 0.2
    public var maxSpan = 10
    public var seqLen = 128
    /// nil: true, except for BEiT's masked image modeling (false, and true is refused there).
    public var augment: Bool?
    public var cropScale = 0.08
    public var hflip = true
    public var mixup = 0.0
    public var cutmix = 0.0
    public var mixSwitchProb = 0.5
    /// nil: the objective's default (SimMIM 0.6, BEiT 0.4).
    public var maskRatio: Double?
    public var maskPatchSize: Int?
    public var minMaskPatches: Int?
    public var visualTokens: String?
    public var evalVisualTokens: String?
    public var carryState = false
    public var trainTarget: String?
    public var evalTarget: String?
    public var targetVocab: String?
    public var targetCased = false
    public var targetSeqLen: Int?
    public var bucketByLength = true
    public var crossDocumentAttention = true
    public var maxSeconds = 16.0
    public init() {}

    public static let keys: [ConfigKey<Self>] = [
        .string("train", \.train, "training data: a shard directory (or a text file for byte-level models)"),
        .string("eval", \.eval, "held-out data, same format as data.train"),
        .string("vocab", \.vocab, "vocab.txt or tokenizer.json the shards were made with (BERT)"),
        .bool("cased", \.cased, "keep case and accents (a cased vocab.txt)"),
        .int("max_predictions", \.maxPredictions, 1...65536, "masked positions per sequence at most (default: 15% of seq_len, rounded up)"),
        .float("mask_prob", \.maskProb, 0.001...1, "fraction of tokens masked"),
        .float("short_seq_prob", \.shortSeqProb, 0...1, "probability of a shorter target length per document"),
        .bool("whole_word_masking", \.wholeWordMasking, "mask ## pieces with their word"),
        .int("max_ngram", \.maxNgram, 1...10, "n-gram masking: runs of 1...n whole words, P(k) proportional to 1/k (default 3 for ALBERT, 1 for BERT: single words)"),
        .float("span_p", \.spanP, 0.001...1, "SpanBERT (train.objective: spanbert): parameter of the geometric distribution of span lengths in words"),
        .int("max_span", \.maxSpan, 1...65536, "SpanBERT: the longest span in words (lengths are clipped here)"),
        .int("seq_len", \.seqLen, 1...65536, "tokens per sequence"),
        .bool("augment", \.augment, "images: random resized crop and flip in training (false: resize only; default true, but false for BEiT's masked_image_modeling, which refuses true)"),
        .float("crop_scale", \.cropScale, 0.01...1, "images: smallest area fraction of the random resized crop"),
        .bool("hflip", \.hflip, "images: random horizontal flips in training"),
        .float("mixup", \.mixup, 0...100, "images: mixup Beta(alpha, alpha); 0 turns it off"),
        .float("cutmix", \.cutmix, 0...100, "images: cutmix Beta(alpha, alpha); 0 turns it off"),
        .float("mix_switch_prob", \.mixSwitchProb, 0...1, "images: probability of cutmix when both mixup and cutmix are on"),
        .float("mask_ratio", \.maskRatio, 0.01...0.99, "masked image modelling: fraction of mask patches masked (default 0.6 for SimMIM (vit), 0.4 for BEiT, whose block masking masks round(ratio x patches) patches)"),
        .int("mask_patch_size", \.maskPatchSize, 1...4096, "SimMIM (vit masked_image_modeling): side of a mask patch in pixels (default 32 when it tiles the image, else the model's patch)"),
        .int("min_mask_patches", \.minMaskPatches, 1...65536, "BEiT masked_image_modeling: the fewest patches a block of the blockwise masking covers (default 16, BEiT's, on grids of 196 patches or more; 4 on smaller grids such as 7x7)"),
        .string("visual_tokens", \.visualTokens, "BEiT masked_image_modeling (required): the visual tokens of data.train's images, the safetensors file `tandem tokenize-images` writes (tensor visual_tokens, I32 (images, patches), format tandem-visual-tokens)"),
        .string("eval_visual_tokens", \.evalVisualTokens, "BEiT masked_image_modeling: the visual tokens of data.eval's images (required when data.eval is set)"),
        .string("train_target", \.trainTarget, "translation: the target side's shard directory, line-aligned with data.train (the source side)"),
        .string("eval_target", \.evalTarget, "translation: the held-out target shards, line-aligned with data.eval"),
        .string("target_vocab", \.targetVocab, "translation: the target side's vocab.txt (data.vocab is the source side's)"),
        .bool("target_cased", \.targetCased, "translation: keep case and accents on the target side (needed for Hindi's vowel signs)"),
        .int("target_seq_len", \.targetSeqLen, 1...65536, "translation: target tokens per sentence at most, eos included (default data.seq_len); longer training pairs are skipped"),
        .bool("bucket_by_length", \.bucketByLength, "translation: batches of similar length, each micro-batch's graph as long as its longest pair; false: shuffled pairs padded to data.seq_len and data.target_seq_len (static shapes)"),
        .bool("cross_document_attention", \.crossDocumentAttention, "causal language models on token shards: documents are packed back to back, each preceded by the end-of-text token; false: attention and positions restart at every document (block-diagonal causal masks)"),
        .float("max_seconds", \.maxSeconds, 0.1...3600, "audio (wav2vec2): utterances longer than this are skipped (the log counts them); each micro-batch's graph is as long as its longest utterance"),
        .bool("carry_state", \.carryState, "recurrent language models: the token stream is cut into one stream per global-batch slot and each stream's hidden state is carried from a batch to the next (truncated backpropagation through time, checkpointed); false: independent windows from a zero state"),
    ]
}

/// `train:`: the objective, the batch, the optimizer and its schedule, and the run's own settings.
public struct TrainSection: ConfigSection {
    public var objective: String?
    public var teacher: String?
    public var alphaCE = 5.0
    public var alphaMLM = 2.0
    public var alphaCos = 1.0
    public var temperature = 2.0
    public var labelSmoothing = 0.0
    public var steps: Int?
    public var globalBatch: Int?
    public var microBatch: Int?
    public var seed = 0
    public var lr: Double?
    public var warmup = 0
    public var schedule = LRSchedule.Decay.linear
    public var optimizer = Optimizer.Kind.adamw
    public var weightDecay = 0.01
    public var beta1 = 0.9
    public var beta2 = 0.999
    public var eps = 1e-6
    public var clipGradNorm = 1.0
    public var stopAt = 0
    public var timeLimit = 0.0
    public var dumpBatches: String?
    public var logEvery = 10
    public var threads = 1
    public var precision = MatmulPrecision.fp32
    public var metrics: String?
    public var tensorboard: String? = "true"
    public init() {}

    public static let keys: [ConfigKey<Self>] = [
        .string("objective", \.objective, "what the model learns, one of its family's objectives (ViT: classification, the default, masked_image_modeling (SimMIM) or distillation (DeiT, needs train.teacher); BEiT: classification, the default, or masked_image_modeling (visual tokens, needs data.visual_tokens); DistilBERT: mlm, the default, or distillation (needs train.teacher); BERT: mlm_nsp, the default, or spanbert (span masking and the span-boundary objective on single segments))"),
        .string("teacher", \.teacher, "distillation: the teacher's checkpoint directory: a ViTForImageClassification whose predictions are DeiT's targets, or a BERT (tandem's step-N or transformers' BertForPreTraining/BertForMaskedLM) that DistilBERT's student starts from and learns from"),
        .float("alpha_ce", \.alphaCE, 0...1e6, "DistilBERT distillation: weight of the soft-target KL (times temperature squared)"),
        .float("alpha_mlm", \.alphaMLM, 0...1e6, "DistilBERT distillation: weight of the masked-LM cross-entropy"),
        .float("alpha_cos", \.alphaCos, 0...1e6, "DistilBERT distillation: weight of the cosine loss between the student's and the teacher's last hidden states"),
        .float("temperature", \.temperature, 0.01...100, "DistilBERT distillation: softmax temperature of the soft targets"),
        .float("label_smoothing", \.labelSmoothing, 0...0.99, "classification and translation (seq2seq, marian): label smoothing of the cross-entropy's targets"),
        .int("steps", \.steps, 1...Int.max, "optimizer steps"),
        .int("global_batch", \.globalBatch, 1...Int.max, "sequences per step over all ranks = micro_batch x accumulation x ranks"),
        .int("micro_batch", \.microBatch, 1...Int.max, "sequences per forward pass on one rank"),
        .int("seed", \.seed, 0...Int.max, "seed of every random draw"),
        .float("lr", \.lr, 1e-12...10, "peak learning rate"),
        .int("warmup", \.warmup, 0...Int.max, "linear warm-up steps"),
        .choice("schedule", \.schedule, "after warm-up: linear or cosine decay to 0 at train.steps, constant, or inverse_sqrt (lr sqrt(warmup/step), the Transformer paper's)"),
        .choice("optimizer", \.optimizer, "optimizer"),
        .float("weight_decay", \.weightDecay, 0...1, "decoupled weight decay (not on LayerNorm and biases)"),
        .float("beta1", \.beta1, 0...0.999999, "Adam beta1"),
        .float("beta2", \.beta2, 0...0.999999999, "Adam beta2"),
        .float("eps", \.eps, 1e-12...1, "Adam epsilon"),
        .float("clip_grad_norm", \.clipGradNorm, 0...1e6, "global gradient-norm clip after the all-reduce; 0 turns it off"),
        .int("stop_at", \.stopAt, 0...Int.max, "stop with a checkpoint once this step is reached (0: run to train.steps); the schedule still follows train.steps"),
        .float("time_limit", \.timeLimit, 0...1e9, "stop with a checkpoint after the first step that ends this many seconds of wall time after training started (0: no limit), for a batch system's time limit or a fixed time budget; the schedule still follows train.steps, and a resumed run counts from its own start"),
        .string("dump_batches", \.dumpBatches, "debugging: write every micro-batch as an HF batch file (step-S-rank-R-micro-M.safetensors) and the initial weights into this directory"),
        .int("log_every", \.logEvery, 1...Int.max, "steps between progress lines"),
        .int("threads", \.threads, 1...4096, "OpenBLAS threads per rank"),
        .choice("precision", \.precision, "matrix products: fp32, or bf16 (inputs rounded to bf16, fp32 accumulation; needs a CPU with AVX512_BF16); weights, gradients, optimizer state, all-reduce and checkpoints stay fp32"),
        .string("metrics", \.metrics, "JSONL metrics file (default: checkpoint.dir/metrics.jsonl)"),
        .string("tensorboard", \.tensorboard, "rank 0 writes the metrics file's scalars as TensorBoard event files: true (into checkpoint.dir/tensorboard), false, or a directory"),
    ]
}

/// `checkpoint:`: where and how often rank 0 saves, and how many it keeps.
public struct CheckpointSection: ConfigSection {
    public var dir: String?
    public var every = 0
    public var keep = 3
    public var keepEvery = 0
    public init() {}

    public static let keys: [ConfigKey<Self>] = [
        .string("dir", \.dir, "checkpoint root; step-%08d directories go in it"),
        .int("every", \.every, 0...Int.max, "steps between checkpoints; 0 saves only at the end"),
        .int("keep", \.keep, 1...Int.max, "newest checkpoints kept"),
        .int("keep_every", \.keepEvery, 0...Int.max, "also keep steps divisible by this"),
    ]
}

/// `distributed:`: the gradient reduction and the checks between ranks.
public struct DistributedSection: ConfigSection {
    public var deterministic = false
    public var reduce = ReduceMode.hierarchical
    public var bucketMB = 25.0
    public var shardOptimizer = true
    public var checkEvery = 100
    public var watchdogSeconds = 60.0
    public var compress = GradientCompression.none
    public var errorFeedback = false
    public var overlap = CrossNodeOverlap.thread
    public init() {}

    public static let keys: [ConfigKey<Self>] = [
        .bool("deterministic", \.deterministic, "bit-identical results for any rank count"),
        .choice("reduce", \.reduce, "gradient reduction path"),
        .float("bucket_mb", \.bucketMB, 0.001...4096, "gradient bucket size in MB"),
        .bool("shard_optimizer", \.shardOptimizer, "each rank of a node updates only its share of the parameters (AdamW, hierarchical reduction, nodes of as many ranks each)"),
        .int("check_every", \.checkEvery, 0...Int.max, "steps between replica checksum comparisons; 0 turns it off"),
        .float("watchdog_s", \.watchdogSeconds, 0.1...86400, "minimum seconds a collective may wait before the job is aborted"),
        .choice("compress", \.compress, "what the hierarchical reduction sends between nodes: none (fp32) or bf16 (half the bytes, sums rounded to bf16, as Horovod's fp16 compression); fp32 within a node, in the optimizer and in checkpoints. Not with deterministic mode or reduce: mpi"),
        .bool("error_feedback", \.errorFeedback, "with compress: bf16, carry each node's rounding error of a gradient into the next step's (error feedback)"),
        .choice("overlap", \.overlap, "where the hierarchical reduction sums buckets between nodes: thread (on a thread of its own while backward goes on) or inline (on the training thread as each bucket completes); the same bits either way; used with one rank per node or a sharded optimizer, otherwise the node leader sums inline"),
    ]
}

/// `eval:`: how often and on how much held-out data.
public struct EvalSection: ConfigSection {
    public var every = 0
    public var batches = 8
    public init() {}

    public static let keys: [ConfigKey<Self>] = [
        .int("every", \.every, 0...Int.max, "steps between evaluations; 0 turns evaluation off"),
        .int("batches", \.batches, 0...Int.max, "micro-batches per rank per evaluation; 0: the whole held-out set"),
    ]
}
