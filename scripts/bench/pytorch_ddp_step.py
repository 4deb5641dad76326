#!/usr/bin/env python3
"""The PyTorch side of launch/compare-pytorch (issue 8): transformers' BertForPreTraining (or
ViTForImageClassification, BeitForImageClassification, ...) trained with DistributedDataParallel over gloo, N processes x 1 thread each,
fp32 (or --bf16: CPU autocast to bfloat16), AdamW with gradient clipping at 1.0, on synthetic batches
shaped like Tandem's. BERT: sequence 128, attention over every position, sentence A/B token types, MLM
labels at `--max-predictions` positions per sequence (-100 elsewhere) and an NSP label; hidden dropout
0.1 and no attention-probability dropout, as in Tandem. ViT: random pixels and labels over 10 classes,
no dropout (ViT's default), cross-entropy.

    /opt/tandem-ref/bin/python scripts/bench/pytorch_ddp_step.py --preset bert-base --global-batch 8

Prints, like `tandem bench step`: samples/s from the median step of the slowest process after the
warm-up steps, tokens/s, MFU with Tandem's FLOP count (BertPretrainingTask.trainingFLOPsPerSample:
6 x non-embedding parameters + 12 x L x C x T per token, plus 6 x V x C per masked prediction;
VisionTask's, ViT.trainingFLOPsPerImage: 6 per parameter per row it runs on plus 12 x C x Tq x T per layer,
with the last layer's queries, attention output and MLP and the final LayerNorm at the [CLS] row only,
which is all Tandem computes there; transformers computes them at every token) over
(processes x single-core sgemm FLOP/s), the median time split (forward, backward with DDP's overlapped
all-reduce, optimizer), and the peak resident memory of the largest process (getrusage maxrss).
The single-core sgemm is torch.mm on one thread at 512x768x768, the best over half a second, unless
--peak-gflops gives the figure to use (launch/compare-pytorch passes Tandem's, so both MFUs share it).
"""
import argparse
import contextlib
import os
import resource
import statistics
import time

PRESETS = {  # google-research/bert's compact models and BERT-base: (layers, hidden)
    "bert-tiny": (2, 128), "bert-mini": (4, 256), "bert-small": (4, 512),
    "bert-medium": (8, 512), "bert-base": (12, 768), "bert-large": (24, 1024),
}
ROBERTA_PRESETS = {"roberta-base": (12, 768)}  # (layers, hidden); RoBERTa's vocabulary of 50265
ALBERT_PRESETS = {"albert-base": (12, 768, 128)}  # (layers, hidden, embedding); ALBERT's vocabulary of 30000
VIT_PRESETS = {  # Tandem's ViT presets: (layers, hidden, image, patch)
    "vit-tiny-32": (12, 192, 32, 4), "vit-tiny": (12, 192, 224, 16), "vit-small": (12, 384, 224, 16),
    "vit-base": (12, 768, 224, 16),
}
VIT_LABELS = 10
BEIT_PRESETS = {  # Tandem's BEiT presets: (layers, hidden, image, patch); relative position bias in every layer,
    "beit-base": (12, 768, 224, 16),  # LayerScale 0.1, drop path 0.1, mean pooling, as BeitConfig's defaults otherwise
}
RNN_PRESETS = {  # the word-level language models of Tandem's configs: (rnn_type, layers, hidden, vocab, bptt, dropout)
    "lstm-medium": ("LSTM", 2, 650, 10000, 35, 0.5),  # Zaremba et al. 2014's medium model
}
GPT2_PRESETS = {  # GPT-2 sizes at a sequence length: (layers, hidden, sequence, vocab)
    "gpt2-small-512": (12, 768, 512, 50257),
}
SEQ2SEQ_PRESETS = {  # Tandem's seq2seq presets: (rnn_type, embedding, hidden, source and target vocab, S, T, dropout)
    "seq2seq-gru-bahdanau": ("GRU", 256, 512, 8000, 32, 0.1),
}
WAV2VEC2_PRESETS = {  # wav2vec 2.0 CTC on fixed-length audio: (transformers config fields, seconds per utterance, label length)
    "wav2vec2-base": ({}, 5.0, 20),
}
MARIAN_PRESETS = {  # Tandem's marian presets: (d_model, layers per stack, heads, ffn, activation, shared vocab, S = T)
    "marian-base": (512, 6, 8, 2048, "swish", 8000, 32),
}


class Output:
    """What transformers' models return, as far as the timed loop reads it: the loss."""
    def __init__(self, loss):
        self.loss = loss


def parse():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", required=True, choices=sorted(PRESETS) + sorted(ROBERTA_PRESETS) + sorted(ALBERT_PRESETS) + sorted(VIT_PRESETS) + sorted(BEIT_PRESETS) + sorted(RNN_PRESETS)
                    + sorted(SEQ2SEQ_PRESETS) + sorted(GPT2_PRESETS) + sorted(MARIAN_PRESETS) + sorted(WAV2VEC2_PRESETS))
    ap.add_argument("--vocab-size", type=int, default=30522)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--max-predictions", type=int, default=20)
    ap.add_argument("--global-batch", type=int, required=True)
    ap.add_argument("--micro-batch", type=int, default=None,
                    help="samples per forward/backward in each process (default: its whole share of the global "
                         "batch); smaller runs gradient accumulation under DDP's no_sync, all-reducing once per step")
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--bf16", action="store_true", help="torch.autocast('cpu', dtype=torch.bfloat16)")
    ap.add_argument("--peak-gflops", type=float, default=None, help="single-core peak GFLOP/s for MFU (sgemm, or Tandem's bf16 GEMM with --bf16)")
    ap.add_argument("--port", type=int, default=None, help="the rendezvous port (default: a free one)")
    a = ap.parse_args()
    if a.port is None:
        # A fixed port can still be held by the previous run's rendezvous when runs follow each other
        # (compare-pytorch's rounds): one run in a 3-round table died in gloo's set-up that way.
        import socket
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            a.port = s.getsockname()[1]
    if a.global_batch % a.procs:
        ap.error(f"--global-batch {a.global_batch} is not a multiple of --procs {a.procs}")
    return a


def sgemm_peak(torch):
    a = torch.full((512, 768), 0.5)
    b = torch.full((768, 768), 0.25)
    best, runs, start = float("inf"), 0, time.perf_counter()
    while runs < 5 or time.perf_counter() - start < 0.5:
        t = time.perf_counter()
        torch.mm(a, b.t())
        best = min(best, time.perf_counter() - t)
        runs += 1
    return 2.0 * 512 * 768 * 768 / best


def training_flops_per_sample(model, cfg, a):
    params = sum(p.numel() for p in model.parameters())  # unique: the tied decoder weight counts once
    embeddings = (cfg.vocab_size + cfg.max_position_embeddings + cfg.type_vocab_size) * cfg.hidden_size
    per_token = 6.0 * (params - embeddings) + 12.0 * cfg.num_hidden_layers * cfg.hidden_size * a.seq
    return per_token * a.seq + 6.0 * cfg.vocab_size * cfg.hidden_size * a.max_predictions, params


def vit_training_flops_per_sample(model, cfg, T, NP):
    """Tandem's ViT.trainingFLOPsPerImage for ViTForImageClassification: 6 FLOPs per parameter per row
    it runs on and 12 x C x Tq x T per layer for attention's products (Tq query rows over T keys). The
    patch embedding runs on NP patches, every layer on T tokens except the last one's queries, attention
    output, LayerNorm-after and MLP (its LayerNorm-before, keys and values run on all T), which with the
    final LayerNorm and the classifier run on the [CLS] row alone: the only work the loss needs there.
    Module names of transformers 5 (q_proj, mlp) and 4 (attention.attention.query, intermediate)."""
    def count(*modules):
        return sum(p.numel() for m in modules for p in m.parameters())
    vit, C = model.vit, cfg.hidden_size
    layers = list(vit.layers if hasattr(vit, "layers") else vit.encoder.layer)
    flops = 6.0 * count(vit.embeddings.patch_embeddings) * NP
    for i, layer in enumerate(layers):
        rows = 1 if i == len(layers) - 1 else T
        attn = layer.attention
        if hasattr(attn, "q_proj"):
            q, k, v, o = attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj
            mlp = (layer.mlp,)
        else:
            q, k, v, o = attn.attention.query, attn.attention.key, attn.attention.value, attn.output.dense
            mlp = (layer.intermediate, layer.output)
        flops += 6.0 * count(layer.layernorm_before, k, v) * T
        flops += 6.0 * count(q, o, layer.layernorm_after, *mlp) * rows + 12.0 * C * rows * T
    return flops + 6.0 * count(vit.layernorm) + 6.0 * count(model.classifier)


def batch(torch, cfg, a, B, g):
    T, P = a.seq, a.max_predictions
    ids = torch.randint(5, cfg.vocab_size, (B, T), generator=g)
    ids[:, 0] = 2  # a [CLS]-like first token; the ids' values do not change the work
    types = torch.zeros(B, T, dtype=torch.long)
    types[:, T // 2:] = 1
    labels = torch.full((B, T), -100, dtype=torch.long)
    for b in range(B):
        pos = torch.randperm(T - 1, generator=g)[:P] + 1
        labels[b, pos] = ids[b, pos]
    nsp = torch.randint(0, 2, (B,), generator=g)
    return dict(input_ids=ids, token_type_ids=types, attention_mask=torch.ones(B, T, dtype=torch.long),
                labels=labels, next_sentence_label=nsp)


def worker(rank, a):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(a.port), OMP_NUM_THREADS=str(a.threads))
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    torch.set_num_threads(a.threads)
    dist.init_process_group("gloo", rank=rank, world_size=a.procs)
    peak = a.peak_gflops * 1e9 if a.peak_gflops else sgemm_peak(torch)
    peak_t = torch.tensor([peak], dtype=torch.float64)
    dist.all_reduce(peak_t, op=dist.ReduceOp.MAX)
    peak = peak_t.item()

    worker = (roberta_worker if a.preset in ROBERTA_PRESETS else albert_worker if a.preset in ALBERT_PRESETS else vit_worker if a.preset in VIT_PRESETS
              else beit_worker if a.preset in BEIT_PRESETS else rnn_worker if a.preset in RNN_PRESETS
              else seq2seq_worker if a.preset in SEQ2SEQ_PRESETS else gpt2_worker if a.preset in GPT2_PRESETS
              else marian_worker if a.preset in MARIAN_PRESETS
              else wav2vec2_worker if a.preset in WAV2VEC2_PRESETS
              else bert_worker)
    worker(rank, a, torch, dist, DDP, peak)
    dist.destroy_process_group()


def bert_worker(rank, a, torch, dist, DDP, peak):
    from transformers import BertConfig, BertForPreTraining
    layers, hidden = PRESETS[a.preset]
    # Tandem's attention has no dropout on the probabilities (its hidden dropout, 0.1, matches HF's):
    # the same work on both sides.
    cfg = BertConfig(vocab_size=a.vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                     num_attention_heads=hidden // 64, intermediate_size=4 * hidden, max_position_embeddings=512,
                     attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    model = BertForPreTraining(cfg)
    model.train()
    flops, params = training_flops_per_sample(model, cfg, a)
    ddp = DDP(model)
    B = a.global_batch // a.procs
    g = torch.Generator().manual_seed(rank)
    batches = [batch(torch, cfg, a, B, g) for _ in range(2)]
    describe = (f"transformers BertForPreTraining layers={layers} hidden={hidden} heads={hidden // 64} "
                f"vocab={a.vocab_size} params={params}")
    run(rank, a, torch, dist, model, ddp, batches, flops, peak, a.seq, describe)


def roberta_worker(rank, a, torch, dist, DDP, peak):
    """RobertaForMaskedLM as Tandem's roberta-base trains it: sequence a.seq of <s> ... </s> with no
    padding, one token type, MLM labels at a.max_predictions positions, no NSP; no attention-probability
    dropout (as Tandem), hidden dropout 0.1."""
    from transformers import RobertaConfig, RobertaForMaskedLM
    layers, hidden = ROBERTA_PRESETS[a.preset]
    cfg = RobertaConfig(vocab_size=50265, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=hidden // 64,
                        intermediate_size=4 * hidden, max_position_embeddings=514, type_vocab_size=1, layer_norm_eps=1e-5,
                        pad_token_id=1, bos_token_id=0, eos_token_id=2, attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    model = RobertaForMaskedLM(cfg)
    model.train()
    a.seq = min(a.seq, 512)
    flops, params = training_flops_per_sample(model, cfg, a)
    ddp = DDP(model)
    B = a.global_batch // a.procs
    g = torch.Generator().manual_seed(rank)

    def roberta_batch():
        T, P = a.seq, a.max_predictions
        ids = torch.randint(5, cfg.vocab_size, (B, T), generator=g)
        ids[:, 0], ids[:, -1] = cfg.bos_token_id, cfg.eos_token_id
        labels = torch.full((B, T), -100, dtype=torch.long)
        for b in range(B):
            pos = torch.randperm(T - 2, generator=g)[:P] + 1
            labels[b, pos] = ids[b, pos]
        return dict(input_ids=ids, attention_mask=torch.ones(B, T, dtype=torch.long), labels=labels)

    batches = [roberta_batch() for _ in range(2)]
    describe = (f"transformers RobertaForMaskedLM layers={layers} hidden={hidden} heads={hidden // 64} "
                f"vocab={cfg.vocab_size} params={params}")
    run(rank, a, torch, dist, model, ddp, batches, flops, peak, a.seq, describe)


def albert_worker(rank, a, torch, dist, DDP, peak):
    """AlbertForPreTraining as Tandem's albert-base trains it: one layer shared by all 12, embedding 128,
    gelu_new, no dropout (ALBERT v2), MLM at a.max_predictions positions plus sentence-order labels on
    two-segment batches. FLOPs as Tandem's AlbertPretrainingTask counts them: the shared layer's
    parameters once per use, the (V, E) decoder at the masked positions only."""
    from transformers import AlbertConfig, AlbertForPreTraining
    layers, hidden, embedding = ALBERT_PRESETS[a.preset]
    cfg = AlbertConfig(vocab_size=30000, embedding_size=embedding, hidden_size=hidden, num_hidden_layers=layers,
                       num_attention_heads=hidden // 64, intermediate_size=4 * hidden, max_position_embeddings=512,
                       hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, classifier_dropout_prob=0.1)
    torch.manual_seed(0)
    model = AlbertForPreTraining(cfg)
    model.train()
    params = sum(p.numel() for p in model.parameters())
    layer = sum(p.numel() for n, p in model.named_parameters() if ".albert_layer_groups." in n)
    embeddings = (cfg.vocab_size + cfg.max_position_embeddings + cfg.type_vocab_size) * embedding
    per_token = 6.0 * (params - embeddings + (layers - 1) * layer) + 12.0 * layers * hidden * a.seq
    flops = per_token * a.seq + 6.0 * cfg.vocab_size * embedding * a.max_predictions
    ddp = DDP(model)
    B = a.global_batch // a.procs
    g = torch.Generator().manual_seed(rank)
    batches = []
    for _ in range(2):
        b = batch(torch, cfg, a, B, g)
        b["sentence_order_label"] = b.pop("next_sentence_label")
        batches.append(b)
    describe = (f"transformers AlbertForPreTraining layers={layers} (shared) embedding={embedding} hidden={hidden} "
                f"heads={hidden // 64} vocab={cfg.vocab_size} params={params}")
    run(rank, a, torch, dist, model, ddp, batches, flops, peak, a.seq, describe)


def run_image_classifier(rank, a, torch, dist, DDP, peak, make_model, flops_per_sample, image, patch, describe):
    """The ViT and BEiT classifiers' common run: the model built after seeding 0, in training mode, DDP,
    two batches of random pixels and labels over VIT_LABELS classes per rank, `describe` plus the
    parameter count."""
    torch.manual_seed(0)
    model = make_model()
    model.train()
    params = sum(p.numel() for p in model.parameters())
    NP = (image // patch) ** 2
    T = NP + 1
    flops = flops_per_sample(model, T, NP)
    ddp = DDP(model)
    B = a.global_batch // a.procs
    g = torch.Generator().manual_seed(rank)
    batches = [dict(pixel_values=torch.randn(B, 3, image, image, generator=g),
                    labels=torch.randint(0, VIT_LABELS, (B,), generator=g)) for _ in range(2)]
    run(rank, a, torch, dist, model, ddp, batches, flops, peak, T, f"{describe} params={params}")


def vit_worker(rank, a, torch, dist, DDP, peak):
    from transformers import ViTConfig, ViTForImageClassification
    layers, hidden, image, patch = VIT_PRESETS[a.preset]
    cfg = ViTConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=hidden // 64,
                    intermediate_size=4 * hidden, image_size=image, patch_size=patch, layer_norm_eps=1e-6,
                    qkv_bias=True, num_labels=VIT_LABELS)
    run_image_classifier(rank, a, torch, dist, DDP, peak, lambda: ViTForImageClassification(cfg),
                         lambda model, T, NP: vit_training_flops_per_sample(model, cfg, T, NP), image, patch,
                         f"transformers ViTForImageClassification layers={layers} hidden={hidden} heads={hidden // 64} "
                         f"image={image}px patch={patch} labels={VIT_LABELS}")


def beit_training_flops_per_sample(model, cfg, T, NP):
    """Tandem's BEiT.trainingFLOPsPerImage for BeitForImageClassification: 6 FLOPs per parameter per row
    it runs on and 12 x C x T^2 per layer for attention's products. The patch embedding runs on NP
    patches; every layer (LayerNorms, projections, LayerScale's lambdas, MLP) and the final LayerNorm
    (none under mean pooling) on all T tokens; the pooler's LayerNorm and the classifier on one row. The
    relative position tables (gathered and added) count nothing. Module names of transformers 5 (layers)
    and 4 (encoder.layer)."""
    def count(*modules):
        return sum(p.numel() for m in modules if m is not None for p in m.parameters())
    beit, C = model.beit, cfg.hidden_size
    layers = list(beit.layers if hasattr(beit, "layers") else beit.encoder.layer)
    flops = 6.0 * count(beit.embeddings.patch_embeddings) * NP
    for layer in layers:
        own = sum(p.numel() for n, p in layer.named_parameters() if "relative_position_bias" not in n)
        flops += 6.0 * own * T + 12.0 * C * T * T
    flops += 6.0 * count(beit.layernorm) * T
    return flops + 6.0 * count(beit.pooler) + 6.0 * count(model.classifier)


def beit_worker(rank, a, torch, dist, DDP, peak):
    """transformers' BeitForImageClassification as Tandem's beit preset builds it: a relative position bias
    table in every layer, no absolute positions, LayerScale 0.1, stochastic depth 0.1 (the same on both
    sides), mean pooling, no hidden dropout (BeitConfig's default) and no attention-probability dropout
    (Tandem applies none); random pixels and labels over 10 classes, cross-entropy."""
    from transformers import BeitConfig, BeitForImageClassification
    layers, hidden, image, patch = BEIT_PRESETS[a.preset]
    cfg = BeitConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=hidden // 64,
                     intermediate_size=4 * hidden, image_size=image, patch_size=patch, use_relative_position_bias=True,
                     use_shared_relative_position_bias=False, use_absolute_position_embeddings=False, use_mask_token=False,
                     use_mean_pooling=True, layer_scale_init_value=0.1, drop_path_rate=0.1, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0, layer_norm_eps=1e-12, num_labels=VIT_LABELS)
    run_image_classifier(rank, a, torch, dist, DDP, peak, lambda: BeitForImageClassification(cfg),
                         lambda model, T, NP: beit_training_flops_per_sample(model, cfg, T, NP), image, patch,
                         f"transformers BeitForImageClassification layers={layers} hidden={hidden} heads={hidden // 64} "
                         f"image={image}px patch={patch} labels={VIT_LABELS} relative-position-bias=per-layer drop-path=0.1")


def gpt2_worker(rank, a, torch, dist, DDP, peak):
    """transformers' GPT2LMHeadModel (pre-LN, gelu_new, tied head) on random token windows, labels the
    inputs (the model shifts them). Embedding and residual dropout 0.1 and no attention-probability dropout,
    as in Tandem; attention is transformers' default implementation (sdpa)."""
    from transformers import GPT2Config, GPT2LMHeadModel
    layers, hidden, T, vocab = GPT2_PRESETS[a.preset]
    cfg = GPT2Config(vocab_size=vocab, n_positions=1024, n_embd=hidden, n_layer=layers, n_head=hidden // 64,
                     attn_pdrop=0.0)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(cfg)
    model.train()
    params = sum(p.numel() for p in model.parameters())  # the tied head counts once
    # Tandem's CausalLanguageModelTask.trainingFLOPsPerSample: (6 x parameters + 12 x L x C x T) x T.
    flops = (6.0 * params + 12.0 * layers * hidden * T) * T
    ddp = DDP(model)
    B = a.global_batch // a.procs
    g = torch.Generator().manual_seed(rank)
    batches = []
    for _ in range(2):
        ids = torch.randint(0, vocab, (B, T), generator=g)
        batches.append(dict(input_ids=ids, labels=ids.clone()))
    describe = (f"transformers GPT2LMHeadModel layers={layers} hidden={hidden} heads={hidden // 64} vocab={vocab} "
                f"sequence={T} attention={model.config._attn_implementation} params={params}")
    run(rank, a, torch, dist, model, ddp, batches, flops, peak, T, describe)


def rnn_worker(rank, a, torch, dist, DDP, peak):
    """PyTorch's examples/word_language_model RNNModel (encoder -> dropout -> nn.LSTM/GRU -> dropout ->
    decoder, untied) trained with truncated backpropagation through time: the hidden state of each of the
    process's streams is carried, detached, from one batch to the next, as the example's repackage_hidden
    does. nn.LSTM runs PyTorch's fused CPU kernels (oneDNN where available)."""
    nn = torch.nn
    rnn_type, layers, hidden, vocab, bptt, dropout = RNN_PRESETS[a.preset]

    class RNNModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.drop = nn.Dropout(dropout)
            self.encoder = nn.Embedding(vocab, hidden)
            self.rnn = getattr(nn, rnn_type)(hidden, hidden, layers, dropout=dropout, batch_first=True)
            self.decoder = nn.Linear(hidden, vocab)
            self.hidden = None
            self.config = type("Config", (), {"_attn_implementation": "none"})()

        def forward(self, input_ids, labels):
            if self.hidden is None or self.hidden[0].shape[1] != input_ids.shape[0]:
                zeros = torch.zeros(layers, input_ids.shape[0], hidden)
                self.hidden = (zeros, zeros.clone()) if rnn_type == "LSTM" else zeros
            output, h = self.rnn(self.drop(self.encoder(input_ids)), self.hidden)
            self.hidden = tuple(x.detach() for x in h) if rnn_type == "LSTM" else h.detach()
            logits = self.decoder(self.drop(output))
            return Output(nn.functional.cross_entropy(logits.reshape(-1, vocab), labels.reshape(-1), ignore_index=-100))

    torch.manual_seed(0)
    model = RNNModel()
    model.train()
    params = sum(p.numel() for p in model.parameters())
    # Tandem's RNNLanguageModel.trainingFLOPsPerToken: 6 x the multiply-adds per token of the recurrent
    # weights and the decoder (the embedding is a lookup; biases are adds).
    macs = model.decoder.weight.numel() + sum(p.numel() for n, p in model.rnn.named_parameters() if "weight" in n)
    flops = 6.0 * macs * bptt
    ddp = DDP(model)
    B = a.global_batch // a.procs
    g = torch.Generator().manual_seed(rank)
    batches = []
    for _ in range(2):
        ids = torch.randint(0, vocab, (B, bptt + 1), generator=g)
        batches.append(dict(input_ids=ids[:, :-1].contiguous(), labels=ids[:, 1:].contiguous()))
    describe = (f"word_language_model RNNModel {rnn_type} layers={layers} hidden={hidden} vocab={vocab} "
                f"bptt={bptt} dropout={dropout} params={params}")
    run(rank, a, torch, dist, model, ddp, batches, flops, peak, bptt, describe)


def seq2seq_worker(rank, a, torch, dist, DDP, peak):
    """PyTorch's "NLP From Scratch: Translation with a Sequence to Sequence Network and Attention": an
    embedding and nn.GRU encoder, and a decoder that at every target step scores the encoder outputs with
    BahdanauAttention (Va(tanh(Wa(q) + Ua(k)))), q the previous hidden state, and runs nn.GRU on
    [embedded; context]; teacher forcing; one Linear over all steps' outputs and cross-entropy. Ua(k) is
    computed once per batch (the tutorial recomputes it at every step, which would only slow PyTorch
    down). Dropout on both embeddings, as Tandem's Seq2SeqModel. Fixed shapes: S source and S target
    tokens per pair (Tandem runs with data.bucket_by_length=false, padded to the same shape)."""
    nn = torch.nn
    rnn_type, E, H, V, S, dropout = SEQ2SEQ_PRESETS[a.preset]
    T = S

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.Wa, self.Ua, self.Va = nn.Linear(H, H), nn.Linear(H, H), nn.Linear(H, 1)

    class Seq2Seq(nn.Module):
        def __init__(self):
            super().__init__()
            self.drop = nn.Dropout(dropout)
            self.encoder_embedding = nn.Embedding(V, E)
            self.encoder_rnn = getattr(nn, rnn_type)(E, H, batch_first=True)
            self.decoder_embedding = nn.Embedding(V, E)
            self.attention = Attention()
            self.decoder_rnn = getattr(nn, rnn_type)(E + H, H, batch_first=True)
            self.out = nn.Linear(H, V)
            self.config = type("Config", (), {"_attn_implementation": "bahdanau"})()

        def forward(self, input_ids, decoder_input_ids, labels):
            memory, hidden = self.encoder_rnn(self.drop(self.encoder_embedding(input_ids)))
            keys = self.attention.Ua(memory)  # (B, S, H)
            embedded = self.drop(self.decoder_embedding(decoder_input_ids))  # (B, T, E)
            outputs = []
            for t in range(decoder_input_ids.shape[1]):
                q = self.attention.Wa(hidden[-1]).unsqueeze(1)  # (B, 1, H)
                scores = self.attention.Va(torch.tanh(q + keys)).squeeze(2)  # (B, S)
                weights = torch.softmax(scores, dim=-1).unsqueeze(1)  # (B, 1, S)
                context = torch.bmm(weights, memory)  # (B, 1, H)
                output, hidden = self.decoder_rnn(torch.cat([embedded[:, t:t + 1], context], dim=2), hidden)
                outputs.append(output)
            logits = self.out(torch.cat(outputs, dim=1))
            return Output(nn.functional.cross_entropy(logits.reshape(-1, V), labels.reshape(-1), ignore_index=-100))

    torch.manual_seed(0)
    model = Seq2Seq()
    model.train()
    params = sum(p.numel() for p in model.parameters())
    # Tandem's Seq2SeqModel.trainingFLOPsPerSample(S, T) for a 1-layer GRU with Bahdanau attention.
    G = 3
    source = G * H * (E + H) + H * H
    target = H * V + G * H * ((E + H) + H) + H * H + 3 * S * H
    flops = 6.0 * (S * source + T * target)
    ddp = DDP(model)
    B = a.global_batch // a.procs
    g = torch.Generator().manual_seed(rank)
    batches = []
    for _ in range(2):
        tgt = torch.randint(5, V, (B, T + 1), generator=g)
        batches.append(dict(input_ids=torch.randint(5, V, (B, S), generator=g), decoder_input_ids=tgt[:, :-1].contiguous(),
                            labels=tgt[:, 1:].contiguous()))
    describe = (f"seq2seq tutorial {rnn_type} + Bahdanau attention embedding={E} hidden={H} vocab={V}->{V} "
                f"source={S} target={T} dropout={dropout} params={params}")
    run(rank, a, torch, dist, model, ddp, batches, flops, peak, T, describe)


def marian_worker(rank, a, torch, dist, DDP, peak):
    """transformers' MarianMTModel shaped as Tandem's preset (shared vocabulary, scaled embeddings,
    sinusoidal positions, dropout 0.1, no attention or activation dropout, as Tandem), teacher-forced on
    random pairs of S source and S target tokens (Tandem runs with data.bucket_by_length=false, padded to
    the same shape), HF's mean cross-entropy without label smoothing."""
    from transformers import MarianConfig, MarianMTModel
    C, L, NH, F, activation, V, S = MARIAN_PRESETS[a.preset]
    T = S
    cfg = MarianConfig(vocab_size=V, decoder_vocab_size=V, d_model=C, encoder_layers=L, decoder_layers=L,
                       encoder_attention_heads=NH, decoder_attention_heads=NH, encoder_ffn_dim=F, decoder_ffn_dim=F,
                       max_position_embeddings=512, dropout=0.1, attention_dropout=0.0, activation_dropout=0.0,
                       activation_function=activation, scale_embedding=True, pad_token_id=0, decoder_start_token_id=2,
                       eos_token_id=3, forced_eos_token_id=3)
    torch.manual_seed(0)
    model = MarianMTModel(cfg)
    model.train()
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    # Tandem's MarianMT.trainingFLOPsPerSample(S, T).
    encoder = L * (4 * C * C + 2 * C * F)
    decoder = L * (8 * C * C + 2 * C * F)
    flops = 6.0 * (S * encoder + T * (decoder + C * V)) + 12.0 * C * (L * S * S + L * (T * T + T * S))
    ddp = DDP(model)
    B = a.global_batch // a.procs
    g = torch.Generator().manual_seed(rank)
    batches = []
    for _ in range(2):
        tgt = torch.randint(5, V, (B, T + 1), generator=g)
        batches.append(dict(input_ids=torch.randint(5, V, (B, S), generator=g), decoder_input_ids=tgt[:, :-1].contiguous(),
                            labels=tgt[:, 1:].contiguous()))
    describe = (f"transformers MarianMTModel d_model={C} layers={L}+{L} heads={NH} ffn={F} {activation} vocab={V} (shared) "
                f"source={S} target={T} params={params}")
    run(rank, a, torch, dist, model, ddp, batches, flops, peak, T, describe)


def wav2vec2_worker(rank, a, torch, dist, DDP, peak):
    """Wav2Vec2ForCTC as Tandem's wav2vec2 family trains it: wav2vec2-base (group norm, post-LN) with hidden and
    activation dropout 0.1, SpecAugment's time masking at 5%, no LayerDrop and no attention-probability dropout
    (Tandem applies neither), CTC with reduction sum over the 32-character vocabulary, on utterances of a fixed
    length with an all-ones attention mask. FLOPs as Tandem's SpeechTask counts them: 6 per convolution weight per
    frame it makes, 6 per other parameter per encoder frame, 12 L C T^2 for attention."""
    from transformers import Wav2Vec2Config, Wav2Vec2ForCTC
    fields, seconds, U = WAV2VEC2_PRESETS[a.preset]
    cfg = Wav2Vec2Config(vocab_size=32, layerdrop=0.0, attention_dropout=0.0, mask_time_prob=0.05,
                         attn_implementation="sdpa", **fields)
    torch.manual_seed(0)
    model = Wav2Vec2ForCTC(cfg)
    model.train()
    params = sum(p.numel() for p in model.parameters())
    S = int(seconds * 16000)
    n, conv, conv_params = S, 0.0, 0
    for i, layer in enumerate(model.wav2vec2.feature_extractor.conv_layers):
        n = (n - cfg.conv_kernel[i]) // cfg.conv_stride[i] + 1
        conv += 6.0 * layer.conv.weight.numel() * n
        conv_params += sum(p.numel() for p in layer.parameters())
    T = n
    flops = conv + 6.0 * (params - conv_params) * T + 12.0 * cfg.num_hidden_layers * cfg.hidden_size * T * T
    ddp = DDP(model)
    B = a.global_batch // a.procs
    g = torch.Generator().manual_seed(rank)
    batches = [dict(input_values=torch.randn(B, S, generator=g), attention_mask=torch.ones(B, S, dtype=torch.long),
                    labels=torch.randint(5, 32, (B, U), generator=g)) for _ in range(2)]
    describe = (f"transformers Wav2Vec2ForCTC layers={cfg.num_hidden_layers} hidden={cfg.hidden_size} "
                f"conv={len(cfg.conv_dim)}x{cfg.conv_dim[-1]} audio={seconds} s ({T} frames) labels={U} params={params}")
    run(rank, a, torch, dist, model, ddp, batches, flops, peak, T, describe)


def run(rank, a, torch, dist, model, ddp, batches, flops, peak, tokens, describe):
    """The timed loop: AdamW (decay off for biases and LayerNorm), clipping at 1.0, DDP all-reduce."""
    no_decay = [p for n, p in model.named_parameters() if n.endswith("bias") or "LayerNorm" in n or "layernorm" in n]
    decay = [p for n, p in model.named_parameters()
             if not (n.endswith("bias") or "LayerNorm" in n or "layernorm" in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-4, betas=(0.9, 0.999), eps=1e-6)
    B = a.global_batch // a.procs
    M = a.micro_batch or B
    assert B % M == 0, f"--micro-batch {M} does not divide the {B} samples per process"
    # Each batch as its micro-batches (views): every micro-step but the last skips DDP's all-reduce.
    micro = [[{k: v[i * M:(i + 1) * M] for k, v in b.items()} for i in range(B // M)] for b in batches]
    times = []  # (total, forward, backward, optimizer) of the slowest process, per timed step
    for step in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        forward = backward = 0.0
        for i, mb in enumerate(micro[step % 2]):
            last = i == len(micro[step % 2]) - 1
            s0 = time.perf_counter()
            with contextlib.nullcontext() if last else ddp.no_sync():
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
                    loss = ddp(**mb).loss / len(micro[step % 2])
                s1 = time.perf_counter()
                loss.backward()  # on the last micro-batch DDP all-reduces the buckets as backward produces them
            forward += s1 - s0
            backward += time.perf_counter() - s1
        t1 = t0 + forward
        t2 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        t3 = time.perf_counter()
        if step >= a.warmup:
            t = torch.tensor([t3 - t0, t1 - t0, t2 - t1, t3 - t2], dtype=torch.float64)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            times.append(t.tolist())
    rss = torch.tensor([resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024.0], dtype=torch.float64)
    dist.all_reduce(rss, op=dist.ReduceOp.MAX)
    if rank == 0:
        med = [statistics.median(t[i] for t in times) for i in range(4)]
        rate = a.global_batch / med[0]
        cores = a.procs * a.threads
        print(f"PyTorch {torch.__version__} {describe} "
              f"({'bf16 autocast' if a.bf16 else 'fp32'}, attention {model.config._attn_implementation})")
        print(f"{a.procs} process(es) x {a.threads} thread(s), DDP over gloo, global batch {a.global_batch} "
              f"(micro-batch {a.micro_batch or a.global_batch // a.procs}), "
              f"{tokens} tokens per sample; median of {a.steps} steps after {a.warmup} warm-up")
        print(f"{rate:.2f} samples/s")
        print(f"{rate * tokens:.0f} tokens/s")
        print(f"MFU {rate * flops / (cores * peak):.3f} ({rate * flops / 1e9:.1f} GFLOP/s model FLOPs over {cores} "
              f"core(s) x {peak / 1e9:.1f} GFLOP/s {'given' if a.peak_gflops else 'measured torch.mm sgemm'} peak)")
        print(f"step {med[0] * 1e3:.1f} ms: forward {med[1] * 1e3:.1f}, backward+allreduce {med[2] * 1e3:.1f}, "
              f"optimizer {med[3] * 1e3:.1f}")
        print(f"peak resident memory {rss.item() / 1e6:.1f} MB (largest process)")


def main():
    a = parse()
    os.environ["OMP_NUM_THREADS"] = str(a.threads)
    import torch.multiprocessing as mp
    mp.spawn(worker, args=(a,), nprocs=a.procs, join=True)


if __name__ == "__main__":
    main()
