/// Every key a training config may hold outside `model.*`, with its kind and default (DESIGN.md
/// "Training config"; the keys there are a contract, the others are ours).
public enum ConfigSchema {
    public struct Entry {
        public let kind: ConfigKind
        public let `default`: ConfigValue?
        public let help: String
    }

    public static let sections: Set<String> = ["model", "data", "train", "checkpoint", "distributed", "eval"]

    public static let entries: [String: Entry] = [
        "model.preset": .init(kind: .string, default: nil, help: "a model preset: bert-tiny, bert-mini, bert-small, bert-medium, bert-base, bert-large, vit-tiny, vit-small, vit-base, vit-tiny-28, vit-tiny-32, vit-mini-28, vit-mini-32, gpt-nano, gpt-micro"),
        "data.train": .init(kind: .string, default: nil, help: "training data: a shard directory (or a text file for byte-level models)"),
        "data.eval": .init(kind: .string, default: nil, help: "held-out data, same format as data.train"),
        "data.vocab": .init(kind: .string, default: nil, help: "vocab.txt or tokenizer.json the shards were made with (BERT)"),
        "data.cased": .init(kind: .bool, default: .bool(false), help: "keep case and accents (a cased vocab.txt)"),
        "data.max_predictions": .init(kind: .int(1...65536), default: nil, help: "masked positions per sequence at most (default: 15% of seq_len, rounded up)"),
        "data.mask_prob": .init(kind: .float(0.001...1), default: .float(0.15), help: "fraction of tokens masked"),
        "data.short_seq_prob": .init(kind: .float(0...1), default: .float(0.1), help: "probability of a shorter target length per document"),
        "data.whole_word_masking": .init(kind: .bool, default: .bool(false), help: "mask ## pieces with their word"),
        "data.seq_len": .init(kind: .int(1...65536), default: .int(128), help: "tokens per sequence"),
        "data.augment": .init(kind: .bool, default: .bool(true), help: "images: random resized crop and flip in training (false: resize only)"),
        "data.crop_scale": .init(kind: .float(0.01...1), default: .float(0.08), help: "images: smallest area fraction of the random resized crop"),
        "data.hflip": .init(kind: .bool, default: .bool(true), help: "images: random horizontal flips in training"),
        "data.mixup": .init(kind: .float(0...100), default: .float(0), help: "images: mixup Beta(alpha, alpha); 0 turns it off"),
        "data.cutmix": .init(kind: .float(0...100), default: .float(0), help: "images: cutmix Beta(alpha, alpha); 0 turns it off"),
        "data.mix_switch_prob": .init(kind: .float(0...1), default: .float(0.5), help: "images: probability of cutmix when both mixup and cutmix are on"),
        "data.mask_ratio": .init(kind: .float(0.01...0.99), default: .float(0.6), help: "masked image modelling: fraction of mask patches masked"),
        "data.mask_patch_size": .init(kind: .int(1...4096), default: nil, help: "masked image modelling: side of a mask patch in pixels (default 32 when it tiles the image, else the model's patch)"),
        "train.objective": .init(kind: .choice(["classification", "masked_image_modeling", "distillation"]), default: nil, help: "ViT objective: classification (default), masked_image_modeling (SimMIM) or distillation (DeiT, needs train.teacher)"),
        "train.teacher": .init(kind: .string, default: nil, help: "distillation: a ViTForImageClassification checkpoint directory whose predictions are the distillation targets"),
        "train.label_smoothing": .init(kind: .float(0...0.99), default: .float(0), help: "classification: label smoothing"),
        "train.steps": .init(kind: .int(1...Int.max), default: nil, help: "optimizer steps"),
        "train.global_batch": .init(kind: .int(1...Int.max), default: nil, help: "sequences per step over all ranks = micro_batch x accumulation x ranks"),
        "train.micro_batch": .init(kind: .int(1...Int.max), default: nil, help: "sequences per forward pass on one rank"),
        "train.seed": .init(kind: .int(0...Int.max), default: .int(0), help: "seed of every random draw"),
        "train.lr": .init(kind: .float(1e-12...10), default: nil, help: "peak learning rate"),
        "train.warmup": .init(kind: .int(0...Int.max), default: .int(0), help: "linear warm-up steps"),
        "train.schedule": .init(kind: .choice(["linear", "cosine", "constant"]), default: .string("linear"), help: "decay after warm-up"),
        "train.optimizer": .init(kind: .choice(["adamw", "lamb"]), default: .string("adamw"), help: "optimizer"),
        "train.weight_decay": .init(kind: .float(0...1), default: .float(0.01), help: "decoupled weight decay (not on LayerNorm and biases)"),
        "train.beta1": .init(kind: .float(0...0.999999), default: .float(0.9), help: "Adam beta1"),
        "train.beta2": .init(kind: .float(0...0.999999999), default: .float(0.999), help: "Adam beta2"),
        "train.eps": .init(kind: .float(1e-12...1), default: .float(1e-6), help: "Adam epsilon"),
        "train.clip_grad_norm": .init(kind: .float(0...1e6), default: .float(1.0), help: "global gradient-norm clip after the all-reduce; 0 turns it off"),
        "train.stop_at": .init(kind: .int(0...Int.max), default: .int(0), help: "stop with a checkpoint once this step is reached (0: run to train.steps); the schedule still follows train.steps"),
        "train.dump_batches": .init(kind: .string, default: nil, help: "debugging: write every micro-batch as an HF batch file (step-S-rank-R-micro-M.safetensors) and the initial weights into this directory"),
        "train.log_every": .init(kind: .int(1...Int.max), default: .int(10), help: "steps between progress lines"),
        "train.threads": .init(kind: .int(1...4096), default: .int(1), help: "OpenBLAS threads per rank"),
        "train.precision": .init(kind: .choice(["fp32", "bf16"]), default: .string("fp32"), help: "matrix products: fp32, or bf16 (inputs rounded to bf16, fp32 accumulation; needs a CPU with AVX512_BF16); weights, gradients, optimizer state, all-reduce and checkpoints stay fp32"),
        "train.metrics": .init(kind: .string, default: nil, help: "JSONL metrics file (default: checkpoint.dir/metrics.jsonl)"),
        "checkpoint.dir": .init(kind: .string, default: nil, help: "checkpoint root; step-%08d directories go in it"),
        "checkpoint.every": .init(kind: .int(0...Int.max), default: .int(0), help: "steps between checkpoints; 0 saves only at the end"),
        "checkpoint.keep": .init(kind: .int(1...Int.max), default: .int(3), help: "newest checkpoints kept"),
        "checkpoint.keep_every": .init(kind: .int(0...Int.max), default: .int(0), help: "also keep steps divisible by this"),
        "distributed.deterministic": .init(kind: .bool, default: .bool(false), help: "bit-identical results for any rank count"),
        "distributed.reduce": .init(kind: .choice(["hierarchical", "mpi"]), default: .string("hierarchical"), help: "gradient reduction path"),
        "distributed.bucket_mb": .init(kind: .float(0.001...4096), default: .float(25), help: "gradient bucket size in MB"),
        "distributed.shard_optimizer": .init(kind: .bool, default: .bool(true), help: "each rank of a node updates only its share of the parameters (AdamW, hierarchical reduction, one node)"),
        "distributed.check_every": .init(kind: .int(0...Int.max), default: .int(100), help: "steps between replica checksum comparisons; 0 turns it off"),
        "distributed.watchdog_s": .init(kind: .float(0.1...86400), default: .float(60), help: "minimum seconds a collective may wait before the job is aborted"),
        "eval.every": .init(kind: .int(0...Int.max), default: .int(0), help: "steps between evaluations; 0 turns evaluation off"),
        "eval.batches": .init(kind: .int(0...Int.max), default: .int(8), help: "micro-batches per rank per evaluation; 0: the whole held-out set"),
    ]
}
