#!/usr/bin/env python3
"""Checks that a Tandem checkpoint directory (BERT, SpanBERT, ALBERT, RoBERTa, DistilBERT, ViT, SimMIM, DeiT, BEiT, GPT-2, Marian or wav2vec 2.0) is a transformers checkpoint.

    python scripts/interop/check_hf_checkpoint.py TANDEM_BINARY CKPT_DIR

Loads CKPT_DIR with the class its config.json names (BertForPreTraining, BertModel (SpanBERT's encoder), AlbertForPreTraining, ViTForImageClassification,
ViTForMaskedImageModeling, DeiTForImageClassificationWithTeacher, BeitForImageClassification,
BeitForMaskedImageModeling, GPT2LMHeadModel,
MarianMTModel, RobertaForMaskedLM, DistilBertForMaskedLM, Wav2Vec2ForCTC, Wav2Vec2ForPreTraining) through from_pretrained,
reporting missing, unexpected and mismatched keys, which must all be empty; runs it on a batch (random ids
with padding for BERT and ALBERT, random ids and labels for GPT-2, <s> ... </s> <pad> rows and labels for RoBERTa, padded rows and labels for DistilBERT, random pixels and a random patch mask for ViT, random sources and targets padded on
both sides for Marian, whose loss is compared too; for wav2vec 2.0 two utterances of noise, the second padded
under an attention mask, with character labels for CTC or transformers' own time masks and distractors for
pre-training), runs `tandem debug forward` on the same
directory and batch, and prints the largest differences. Needs torch, transformers and
safetensors (pip install them in a virtual environment); Tandem itself never needs Python.
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
from safetensors.numpy import load_file, save_file
import transformers


def run_tandem(binary, ckpt, batch_arrays):
    with tempfile.TemporaryDirectory() as tmp:
        batch = os.path.join(tmp, "batch.safetensors")
        out = os.path.join(tmp, "out.safetensors")
        save_file(batch_arrays, batch)
        subprocess.run([binary, "debug", "forward", "--model", ckpt, "--batch", batch, "--out", out], check=True)
        return load_file(out)


def report(problems, pairs):
    worst = 0.0
    for name, ours, theirs in pairs:
        diff = float(np.abs(ours - theirs).max())
        worst = max(worst, diff)
        print(f"{name}: max abs difference {diff:.3g}")
    if problems or worst > 1e-4:
        print("FAIL", problems)
        sys.exit(1)
    print("OK: transformers loads the checkpoint with no missing, unexpected or mismatched keys, and its outputs match")


def load(model_class, ckpt, **kwargs):
    """The checkpoint through from_pretrained, in eval mode, and the loading problems (all must be empty)."""
    model, info = model_class.from_pretrained(ckpt, output_loading_info=True, **kwargs)
    print("from_pretrained loading info:", json.dumps({k: list(map(str, v)) for k, v in info.items()}))
    model.eval()
    return model, {k: v for k, v in info.items() if v}


def check_vision(binary, ckpt, architecture):
    model, problems = load(getattr(transformers, architecture), ckpt)
    cfg = model.config
    rng = np.random.default_rng(0)
    B, S = 3, cfg.image_size
    pixels = rng.standard_normal((B, cfg.num_channels, S, S)).astype(np.float32)
    batch = {"pixel_values": pixels}
    args = {"pixel_values": torch.from_numpy(pixels)}
    if architecture in ("ViTForMaskedImageModeling", "BeitForMaskedImageModeling"):
        patches = (S // cfg.patch_size) ** 2
        mask = rng.random((B, patches)) < (0.6 if architecture == "ViTForMaskedImageModeling" else 0.4)
        batch["bool_masked_pos"] = mask
        args["bool_masked_pos"] = torch.from_numpy(mask)
    if architecture == "BeitForMaskedImageModeling":
        # Tandem's batch holds every patch's visual token; transformers' labels are the masked patches' only.
        tokens = rng.integers(0, cfg.vocab_size, size=(B, patches)).astype(np.int64)
        batch["labels"] = tokens
        args["labels"] = torch.from_numpy(tokens[mask])
    ours = run_tandem(binary, ckpt, batch)
    with torch.no_grad():
        ref = model(**args)
    names = {"ViTForImageClassification": ["logits"], "ViTForMaskedImageModeling": ["reconstruction"],
             "DeiTForImageClassificationWithTeacher": ["logits", "cls_logits", "distillation_logits"],
             "BeitForImageClassification": ["logits"], "BeitForMaskedImageModeling": ["logits", "loss"]}[architecture]
    report(problems, [(n, ours[n].reshape(getattr(ref, n).shape), getattr(ref, n).numpy()) for n in names])


def check_gpt2(binary, ckpt):
    model, problems = load(transformers.GPT2LMHeadModel, ckpt)
    cfg = model.config
    rng = np.random.default_rng(0)
    B, T = 3, min(29, cfg.n_positions)
    ids = rng.integers(0, cfg.vocab_size, size=(B, T)).astype(np.int64)
    labels = ids.copy()
    labels[1, 20:] = -100
    ours = run_tandem(binary, ckpt, {"input_ids": ids, "labels": labels})
    with torch.no_grad():
        ref = model(input_ids=torch.from_numpy(ids), labels=torch.from_numpy(labels))
    report(problems, [("logits", ours["logits"], ref.logits.numpy()), ("loss", ours["loss"].reshape(()), ref.loss.numpy())])


def check_marian(binary, ckpt):
    model, problems = load(transformers.MarianMTModel, ckpt, attn_implementation="eager")
    cfg = model.config
    rng = np.random.default_rng(0)
    B, S, T = 3, 13, 11
    pad, start = cfg.pad_token_id, cfg.decoder_start_token_id
    ids = rng.integers(5, cfg.vocab_size, size=(B, S)).astype(np.int64)
    mask = np.ones((B, S), dtype=np.int64)
    labels = rng.integers(5, cfg.vocab_size, size=(B, T)).astype(np.int64)
    target_mask = np.ones((B, T), dtype=np.int64)
    for b, (n, m) in enumerate([(13, 11), (7, 4), (2, 9)]):
        ids[b, n - 1] = cfg.eos_token_id
        ids[b, n:] = pad
        mask[b, n:] = 0
        labels[b, m - 1] = cfg.eos_token_id
        labels[b, m:] = -100
        target_mask[b, m:] = 0
    decoder = np.full((B, T), pad, dtype=np.int64)
    decoder[:, 0] = start
    decoder[:, 1:] = np.where(labels[:, :-1] == -100, pad, labels[:, :-1])
    batch = {"input_ids": ids, "attention_mask": mask, "decoder_input_ids": decoder,
             "decoder_attention_mask": target_mask, "labels": labels}
    ours = run_tandem(binary, ckpt, batch)
    with torch.no_grad():
        ref = model(**{k: torch.from_numpy(v) for k, v in batch.items()})
    report(problems, [("logits", ours["logits"], ref.logits.numpy()),
                      ("encoder_last_hidden_state", ours["encoder_last_hidden_state"], ref.encoder_last_hidden_state.numpy()),
                      ("loss", ours["loss"].reshape(-1), ref.loss.numpy().reshape(-1))])


def check_roberta(binary, ckpt):
    model, problems = load(transformers.RobertaForMaskedLM, ckpt)
    cfg = model.config
    rng = np.random.default_rng(0)
    B, T = 3, min(29, cfg.max_position_embeddings - cfg.pad_token_id - 1)
    ids = rng.integers(5, cfg.vocab_size, size=(B, T)).astype(np.int64)
    ids[:, 0] = cfg.bos_token_id
    mask = np.ones((B, T), dtype=np.int64)
    for b, n in enumerate([T, 20, 11]):
        ids[b, n - 1] = cfg.eos_token_id
        ids[b, n:] = cfg.pad_token_id
        mask[b, n:] = 0
    labels = np.where(rng.random((B, T)) < 0.2, ids, -100)
    ours = run_tandem(binary, ckpt, {"input_ids": ids, "attention_mask": mask, "labels": labels})
    with torch.no_grad():
        ref = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), labels=torch.from_numpy(labels))
    report(problems, [("logits", ours["logits"], ref.logits.numpy()), ("loss", ours["loss"].reshape(()), ref.loss.numpy())])


def check_distilbert(binary, ckpt):
    model, problems = load(transformers.DistilBertForMaskedLM, ckpt)
    cfg = model.config
    rng = np.random.default_rng(0)
    B, T = 3, min(29, cfg.max_position_embeddings)
    ids = rng.integers(5, cfg.vocab_size, size=(B, T)).astype(np.int64)
    mask = np.ones((B, T), dtype=np.int64)
    for b, n in enumerate([T, 20, 11]):
        ids[b, n:] = cfg.pad_token_id
        mask[b, n:] = 0
    labels = np.where((rng.random((B, T)) < 0.2) & (mask == 1), ids, -100)
    ours = run_tandem(binary, ckpt, {"input_ids": ids, "attention_mask": mask, "labels": labels})
    with torch.no_grad():
        ref = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), labels=torch.from_numpy(labels))
    report(problems, [("logits", ours["logits"], ref.logits.numpy()), ("loss", ours["loss"].reshape(()), ref.loss.numpy())])


def check_wav2vec2(binary, ckpt, architecture):
    from transformers.models.wav2vec2.modeling_wav2vec2 import _compute_mask_indices, _sample_negative_indices
    model, problems = load(getattr(transformers, architecture), ckpt)
    cfg = model.config
    rng = np.random.default_rng(0)
    B, S = 2, 16000 * 13 // 10
    audio = rng.standard_normal((B, S)).astype(np.float32)
    mask = np.ones((B, S), dtype=np.int64)
    mask[1, S * 3 // 4:] = 0
    audio[1, S * 3 // 4:] = 0
    batch = {"input_values": audio, "attention_mask": mask}
    args = {"input_values": torch.from_numpy(audio), "attention_mask": torch.from_numpy(mask)}
    if architecture == "Wav2Vec2ForCTC":
        labels = np.full((B, 12), -100, dtype=np.int64)
        labels[0] = rng.integers(5, cfg.vocab_size, size=12)
        labels[1, :7] = rng.integers(5, cfg.vocab_size, size=7)
        batch["labels"] = labels
        args["labels"] = torch.from_numpy(labels)
        names = ["logits", "loss"]
    else:
        frames = int(model._get_feat_extract_output_lengths(torch.tensor(S)))
        frame_mask = model._get_feature_vector_attention_mask(frames, torch.from_numpy(mask)).numpy()
        time_mask = _compute_mask_indices((B, frames), mask_prob=0.4, mask_length=cfg.mask_time_length,
                                          attention_mask=torch.from_numpy(frame_mask), min_masks=2)
        negatives = _sample_negative_indices((B, frames), cfg.num_negatives, mask_time_indices=time_mask)
        batch["mask_time_indices"] = time_mask.astype(bool)
        batch["sampled_negative_indices"] = negatives.astype(np.int64)
        args["mask_time_indices"] = torch.from_numpy(time_mask)
        args["sampled_negative_indices"] = torch.from_numpy(negatives)
        names = ["projected_states", "projected_quantized_states", "loss"]
    ours = run_tandem(binary, ckpt, batch)
    with torch.no_grad():
        ref = model(**args)
    # The loss is a sum over characters or masked frames: compare it relative to its size.
    pairs = []
    for n in names:
        theirs = getattr(ref, n).numpy()
        mine = ours[n].reshape(theirs.shape)
        if n == "loss":
            mine, theirs = mine / max(abs(float(theirs)), 1.0), theirs / max(abs(float(theirs)), 1.0)
            n = "loss (relative)"
        pairs.append((n, mine, theirs))
    report(problems, pairs)


def main():
    binary, ckpt = sys.argv[1], sys.argv[2]
    with open(os.path.join(ckpt, "config.json")) as f:
        architecture = json.load(f).get("architectures", ["BertForPreTraining"])[0]
    if architecture == "GPT2LMHeadModel":
        return check_gpt2(binary, ckpt)
    if architecture == "MarianMTModel":
        return check_marian(binary, ckpt)
    if architecture == "RobertaForMaskedLM":
        return check_roberta(binary, ckpt)
    if architecture == "DistilBertForMaskedLM":
        return check_distilbert(binary, ckpt)
    if architecture in ("Wav2Vec2ForCTC", "Wav2Vec2ForPreTraining"):
        return check_wav2vec2(binary, ckpt, architecture)
    if architecture not in ("BertForPreTraining", "AlbertForPreTraining", "BertModel"):
        return check_vision(binary, ckpt, architecture)
    model, problems = load(getattr(transformers, architecture), ckpt)
    cfg = model.config
    rng = np.random.default_rng(0)
    B, T = 3, 29
    ids = rng.integers(5, cfg.vocab_size, size=(B, T)).astype(np.int64)
    mask = np.ones((B, T), dtype=np.int64)
    mask[1, 20:] = 0
    mask[2, 11:] = 0
    types = np.zeros((B, T), dtype=np.int64)
    types[:, 15:] = 1
    ours = run_tandem(binary, ckpt, {"input_ids": ids, "attention_mask": mask, "token_type_ids": types})
    with torch.no_grad():
        ref = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                    token_type_ids=torch.from_numpy(types))
    if architecture == "BertModel":  # SpanBERT's encoder: its heads are in span_heads.safetensors beside it
        return report(problems, [("last_hidden_state", ours["last_hidden_state"], ref.last_hidden_state.numpy())])
    pair = "sop_logits" if architecture == "AlbertForPreTraining" else "seq_relationship_logits"
    report(problems, [(n, ours[n], getattr(ref, n).numpy()) for n in ("prediction_logits", pair)])

if __name__ == "__main__":
    main()
